//! `Client`: the SQL API of pdoflow as typed Rust calls.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Statement};
use uuid::Uuid;

use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::job::{Job, JobFilter, NewJob, PriorityCount, QueueCount, JOB_COLUMNS};

/// A connection to a database where `CREATE EXTENSION pdoflow` has run.
pub struct Client {
    db: tokio_postgres::Client,
    /// The statements of a worker's loop (see `loop_statements`).
    prepared: tokio::sync::OnceCell<LoopStatements>,
    /// What it connected with, for `reconnect`; None when made from a
    /// connection of the caller's.
    settings: Option<ConnectionSettings>,
}

struct LoopStatements {
    finish: Statement,
    claim: Statement,
    /// The claim that waits, prepared on its first use.
    claim_wait: tokio::sync::OnceCell<Statement>,
}

const FINISH_SQL: &str =
    "SELECT id, attempt, state, rejected FROM pdoflow.finish_many($1, $2, $3, $4)";
/// `SELECT` and the columns `ClaimedJob::from_row` reads, in order: one list
/// for both claim paths.
macro_rules! select_claimed {
    () => {
        "SELECT id, task, args, queue, priority, attempt, max_attempts, lease_expires_at, \
         last_error, posting, parent_results"
    };
}
const CLAIM_SQL: &str = concat!(
    select_claimed!(),
    " FROM pdoflow.claim($1, $2, $3, make_interval(secs => $4), $5)"
);
const CLAIM_JOB_SQL: &str = concat!(
    select_claimed!(),
    " FROM pdoflow.claim_job($1, $2, make_interval(secs => $3))"
);

/// The claim that waits: `CLAIM_SQL` with claim's `wait`. A statement of
/// its own, so that a claim without a wait still works with an extension
/// older than the `wait` parameter.
const CLAIM_WAIT_SQL: &str = concat!(
    select_claimed!(),
    " FROM pdoflow.claim($1, $2, $3, make_interval(secs => $4), $5, make_interval(secs => $6))"
);

/// What to claim: `n` jobs of `queues` and `tasks` (all when `None`) for `worker`.
#[derive(Clone, Copy, Debug)]
pub struct ClaimRequest<'a> {
    /// The most jobs to claim (from 1 to the server's `pdoflow.max_claim`).
    pub n: i32,
    /// Claim only from these queues; `None`: every queue.
    pub queues: Option<&'a [String]>,
    /// Claim only jobs of these tasks; `None`: every task.
    pub tasks: Option<&'a [String]>,
    /// The worker name recorded on the claims and in `pdoflow.workers`.
    pub worker: &'a str,
    /// How long each claim holds its job before the sweeper may take it back
    /// (renew it with `heartbeat`).
    pub lease: Duration,
    /// When no job is available, how long the claim waits inside the
    /// database for one (claim's `wait`: from 1 ms to 1 hour, sent to the
    /// microsecond); it returns as soon as jobs become available.
    /// `None` or zero: return at once, as a claim did before `wait`. The
    /// connection is busy meanwhile, and the wait counts against its
    /// `statement_timeout`: wait in chunks of seconds and claim again.
    pub wait: Option<Duration>,
}

/// A job handed to a worker by `claim`: run it, then finish the claim
/// `(id, attempt)`.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub task: String,
    pub args: Value,
    pub queue: String,
    pub priority: i32,
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_expires_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub posting: Option<Uuid>,
    /// The results of the job's succeeded parents, keyed by DAG node name
    /// (or by job id for parents outside a DAG); `None` without parents.
    pub parent_results: Option<Value>,
}

impl<'a> ClaimRequest<'a> {
    /// `CLAIM_SQL`'s parameters; `lease_seconds` is `lease` in seconds.
    fn params(&'a self, lease_seconds: &'a f64) -> [&'a (dyn ToSql + Sync); 5] {
        [
            &self.n,
            &self.queues,
            &self.worker,
            lease_seconds,
            &self.tasks,
        ]
    }

    /// `CLAIM_WAIT_SQL`'s parameters; `wait_seconds` is `wait` in seconds.
    fn wait_params(
        &'a self,
        lease_seconds: &'a f64,
        wait_seconds: &'a f64,
    ) -> [&'a (dyn ToSql + Sync); 6] {
        let [n, queues, worker, lease, tasks] = self.params(lease_seconds);
        [n, queues, worker, lease, tasks, wait_seconds]
    }

    /// The wait in seconds, rounded to the microsecond as PostgreSQL keeps
    /// intervals; `None` for a claim that does not wait.
    fn wait_seconds(&self) -> Option<f64> {
        self.wait
            .map(|wait| wait.as_micros() as f64 / 1e6)
            .filter(|seconds| *seconds > 0.0)
    }
}

/// `finish_many`'s array parameters, built from a list of claims.
struct FinishArrays<'a> {
    ids: Vec<Uuid>,
    attempts: Vec<i32>,
    errors: Vec<Option<&'a str>>,
    results: Vec<Option<&'a Value>>,
}

impl<'a> FinishArrays<'a> {
    fn new(claims: &'a [(Uuid, i32, Outcome)]) -> Self {
        FinishArrays {
            ids: claims.iter().map(|claim| claim.0).collect(),
            attempts: claims.iter().map(|claim| claim.1).collect(),
            errors: claims
                .iter()
                .map(|claim| claim.2.as_ref().err().map(String::as_str))
                .collect(),
            results: claims
                .iter()
                .map(|claim| claim.2.as_ref().ok().and_then(Option::as_ref))
                .collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.ids, &self.attempts, &self.errors, &self.results]
    }
}

impl Finished {
    fn from_row(row: &tokio_postgres::Row) -> Result<Finished, tokio_postgres::Error> {
        Ok(Finished {
            id: row.try_get(0)?,
            attempt: row.try_get(1)?,
            state: row.try_get(2)?,
            rejected: row.try_get(3)?,
        })
    }
}

impl ClaimedJob {
    fn from_row(row: &tokio_postgres::Row) -> Result<ClaimedJob, tokio_postgres::Error> {
        Ok(ClaimedJob {
            id: row.try_get(0)?,
            task: row.try_get(1)?,
            args: row.try_get(2)?,
            queue: row.try_get(3)?,
            priority: row.try_get(4)?,
            attempt: row.try_get(5)?,
            max_attempts: row.try_get(6)?,
            lease_expires_at: row.try_get(7)?,
            last_error: row.try_get(8)?,
            posting: row.try_get(9)?,
            parent_results: row.try_get(10)?,
        })
    }
}

/// What one `pdoflow.sweep()` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_requeued: i64,
    pub expired_failed: i64,
    pub queues_notified: i64,
    pub finished_deleted: i64,
    pub workers_gone: i64,
}

/// How one claim ended, for `finish_many`: `Ok(result)` or `Err(message)`.
pub type Outcome = std::result::Result<Option<Value>, String>;

/// What `finish_many` did with one claim.
#[derive(Clone, Debug)]
pub struct Finished {
    pub id: Uuid,
    pub attempt: i32,
    /// The job's state now (`succeeded`, `queued` for a retry, `failed`, ...).
    pub state: Option<String>,
    /// Why the claim could not be finished (it was not current).
    pub rejected: Option<String>,
}

impl Client {
    /// Connects with a `postgresql://` URL or a key=value connection string,
    /// which may hold libpq's TLS parameters (`sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey`, `sslsni`; else `PGSSLMODE`, ... apply) and
    /// several hosts with `target_session_attrs`, with the default session
    /// settings (`connect::SessionSettings`).
    pub async fn connect(url: &str) -> Result<Client> {
        let settings = ConnectionSettings::from_url(url, "Client::connect")?;
        Client::connect_with_settings(&settings).await
    }

    /// Connects with tokio-postgres settings: TLS from its `ssl_mode` and
    /// the environment (see `ConnectionSettings::from_config`), the default
    /// session settings.
    pub async fn connect_with(config: &Config) -> Result<Client> {
        let settings = ConnectionSettings::from_config(config.clone(), "Client::connect_with")?;
        Client::connect_with_settings(&settings).await
    }

    /// Connects with `settings` (see `config::resolve`): their TLS, then the
    /// session settings in one round trip.
    pub async fn connect_with_settings(settings: &ConnectionSettings) -> Result<Client> {
        let mut client = Client::from_postgres(crate::connect::connect(settings).await?);
        client.settings = Some(settings.clone());
        Ok(client)
    }

    /// Connects again with the settings it was made with: after the
    /// connection was lost (`is_closed`, or an error whose
    /// `is_connection_lost` is true), and with several hosts after a
    /// failover, to whichever now fits `target_session_attrs`. A call that
    /// failed with the connection is not repeated: whether it took effect
    /// is unknown (an enqueue may have committed). Statements prepared for
    /// a worker's loop are prepared again on their next use. A `Client`
    /// made by `from_postgres` cannot reconnect (`Error::Invalid`).
    pub async fn reconnect(&mut self) -> Result<()> {
        let settings = self.settings.clone().ok_or_else(|| {
            Error::Invalid(
                "this Client wraps a connection made elsewhere: connect a new one".into(),
            )
        })?;
        self.db = crate::connect::connect(&settings).await?;
        self.prepared = tokio::sync::OnceCell::new();
        Ok(())
    }

    /// Wraps a connection made elsewhere.
    pub fn from_postgres(db: tokio_postgres::Client) -> Client {
        Client {
            db,
            prepared: tokio::sync::OnceCell::new(),
            settings: None,
        }
    }

    /// The underlying tokio-postgres client, for SQL of your own.
    pub fn postgres(&self) -> &tokio_postgres::Client {
        &self.db
    }

    /// True once the connection is gone; `reconnect` (or make a new `Client`).
    pub fn is_closed(&self) -> bool {
        self.db.is_closed()
    }

    /// Enqueues one job; returns its id, or, for a job with a `unique_key`
    /// that another job of its task holds, that job's id (nothing is added).
    pub async fn enqueue(&self, job: &NewJob) -> Result<Uuid> {
        let ids = self.enqueue_many(std::slice::from_ref(job)).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| Error::Invalid("enqueue returned no id".into()))
    }

    /// Enqueues many jobs in one statement (all or none); returns their ids
    /// in the order given. A job whose `unique_key` is held (by an existing
    /// job, or by an earlier job of the list) gets the holder's id.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        let document = serde_json::to_value(jobs).map_err(|source| Error::Json {
            context: "job list".into(),
            source,
        })?;
        let rows = self
            .db
            .query(
                "SELECT id FROM pdoflow.enqueue_many($1::jsonb)",
                &[&document],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    /// Cancels a queued or running job; false if it had already ended.
    pub async fn cancel(&self, id: Uuid) -> Result<bool> {
        self.job_call("SELECT pdoflow.cancel($1)", id).await
    }

    /// Re-queues a failed or cancelled job; false if it is queued or running.
    pub async fn retry(&self, id: Uuid) -> Result<bool> {
        self.job_call("SELECT pdoflow.retry($1)", id).await
    }

    async fn job_call(&self, sql: &str, id: Uuid) -> Result<bool> {
        match self.db.query_one(sql, &[&id]).await {
            Ok(row) => Ok(row.try_get(0)?),
            Err(error) if error.code().map(|code| code.code()) == Some("22023") => {
                Err(Error::NoSuchJob(id))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// One job, whatever its state.
    pub async fn job(&self, id: Uuid) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM pdoflow.jobs WHERE id = $1");
        Ok(self
            .db
            .query_opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(Job::from_row)
            .transpose()?)
    }

    /// Jobs matching `filter`, newest first, one page at a time.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM pdoflow.jobs
             WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
               AND ($3::text IS NULL OR task = $3) AND ($6::uuid IS NULL OR posting = $6)
             ORDER BY id DESC LIMIT $4 OFFSET $5"
        );
        let limit = filter.limit.unwrap_or(50);
        let offset = filter.offset.unwrap_or(0);
        if limit < 1 || offset < 0 {
            return Err(Error::Invalid(format!(
                "page size must be at least 1 and offset at least 0, got {limit} and {offset}"
            )));
        }
        let rows = self
            .db
            .query(
                &sql,
                &[
                    &filter.state,
                    &filter.queue,
                    &filter.task,
                    &limit,
                    &offset,
                    &filter.posting,
                ],
            )
            .await?;
        Ok(rows.iter().map(Job::from_row).collect::<Result<_, _>>()?)
    }

    /// Job counts per queue and state.
    pub async fn queue_counts(&self) -> Result<Vec<QueueCount>> {
        let rows = self
            .db
            .query(
                "SELECT queue, state, count(*) FROM pdoflow.jobs GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(QueueCount {
                    queue: row.try_get(0)?,
                    state: row.try_get(1)?,
                    jobs: row.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    /// Waiting and running jobs per queue and priority (`pdoflow.priority_stats`),
    /// by queue, highest priority first.
    pub async fn priority_counts(&self) -> Result<Vec<PriorityCount>> {
        let rows = self
            .db
            .query(
                "SELECT queue, priority, waiting, due, paused, blocked, running
                 FROM pdoflow.priority_stats ORDER BY queue, priority DESC",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(PriorityCount {
                    queue: row.try_get(0)?,
                    priority: row.try_get(1)?,
                    waiting: row.try_get(2)?,
                    due: row.try_get(3)?,
                    paused: row.try_get(4)?,
                    blocked: row.try_get(5)?,
                    running: row.try_get(6)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    /// Claims due jobs as `request` describes; with `request.wait`, waits
    /// up to that long inside the database when none is available, and
    /// returns as soon as some are (an empty list when none came).
    pub async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedJob>> {
        let seconds = request.lease.as_secs_f64();
        let statements = self.loop_statements().await?;
        let rows = match request.wait_seconds() {
            None => {
                self.db
                    .query(&statements.claim, &request.params(&seconds))
                    .await?
            }
            Some(wait) => {
                let claim = statements
                    .claim_wait
                    .get_or_try_init(|| self.db.prepare(CLAIM_WAIT_SQL))
                    .await?;
                self.db
                    .query(claim, &request.wait_params(&seconds, &wait))
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(ClaimedJob::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Which of `ids` must not run as granted-only jobs
    /// (`Task::GRANTED_ONLY`): their task has no grant, or the role that
    /// enqueued them holds none (`pdoflow.job_is_granted`).
    pub async fn ungranted(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        let rows = self
            .db
            .query(
                "SELECT j.id FROM unnest($1::uuid[]) AS j(id) WHERE NOT pdoflow.job_is_granted(j.id)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    /// Claims the queued job `id` (even before it is due) for `worker`;
    /// `None` when it is not queued.
    pub async fn claim_job(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>> {
        let row = self
            .db
            .query_opt(CLAIM_JOB_SQL, &[&id, &worker, &lease.as_secs_f64()])
            .await?;
        Ok(row.as_ref().map(ClaimedJob::from_row).transpose()?)
    }

    /// Finishes many claims in one statement.
    pub async fn finish_many(&self, claims: &[(Uuid, i32, Outcome)]) -> Result<Vec<Finished>> {
        let arrays = FinishArrays::new(claims);
        let finish = &self.loop_statements().await?.finish;
        let rows = self.db.query(finish, &arrays.params()).await?;
        Ok(rows
            .iter()
            .map(Finished::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The claim and finish statements, prepared on first use: a worker
    /// sends them thousands of times, each then one round trip without parsing.
    async fn loop_statements(&self) -> Result<&LoopStatements> {
        Ok(self
            .prepared
            .get_or_try_init(|| async {
                Ok::<_, tokio_postgres::Error>(LoopStatements {
                    finish: self.db.prepare(FINISH_SQL).await?,
                    claim: self.db.prepare(CLAIM_SQL).await?,
                    claim_wait: tokio::sync::OnceCell::new(),
                })
            })
            .await?)
    }

    /// Extends the claim's lease by `lease`; returns the new expiry.
    pub async fn heartbeat(
        &self,
        id: Uuid,
        attempt: i32,
        lease: Duration,
    ) -> Result<DateTime<Utc>> {
        let row = self
            .db
            .query_one(
                "SELECT pdoflow.heartbeat($1, $2, make_interval(secs => $3))",
                &[&id, &attempt, &lease.as_secs_f64()],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Records `progress` (any `Serialize` value) as how far the claim
    /// (`id`, `attempt`) got, shown as the job's `progress`; renews its lease
    /// as `heartbeat` does. A claim that is no longer current is refused
    /// with SQLSTATE 55000. Each call is a database write: a handler run by
    /// `Worker` reports through `JobContext::progress`, which paces them.
    pub async fn progress(&self, id: Uuid, attempt: i32, progress: &impl Serialize) -> Result<()> {
        let progress = serde_json::to_value(progress).map_err(|source| Error::Json {
            context: format!("progress of job {id}"),
            source,
        })?;
        self.db
            .execute(
                "SELECT pdoflow.progress($1, $2, $3::jsonb)",
                &[&id, &attempt, &progress],
            )
            .await?;
        Ok(())
    }

    /// Hands a claimed job back without counting the attempt.
    pub async fn release(&self, id: Uuid, attempt: i32) -> Result<bool> {
        let row = self
            .db
            .query_one("SELECT pdoflow.release($1, $2)", &[&id, &attempt])
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Records the worker as alive in `pdoflow.workers`.
    pub async fn register_worker(&self, name: &str) -> Result<()> {
        self.db
            .execute("SELECT pdoflow.register_worker($1)", &[&name])
            .await?;
        Ok(())
    }

    /// Runs one round of the sweeper's work (`pdoflow.sweep()`): for
    /// databases that no background sweeper covers.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let row = self
            .db
            .query_one(
                "SELECT expired_requeued, expired_failed, queues_notified, finished_deleted, workers_gone
                 FROM pdoflow.sweep()",
                &[],
            )
            .await?;
        Ok(SweepReport {
            expired_requeued: row.try_get(0)?,
            expired_failed: row.try_get(1)?,
            queues_notified: row.try_get(2)?,
            finished_deleted: row.try_get(3)?,
            workers_gone: row.try_get(4)?,
        })
    }

    /// Why no background sweeper works in this database, or `None` when one
    /// does (pdoflow preloaded and the database in `pdoflow.database`).
    pub async fn background_sweeper_missing(&self) -> Result<Option<String>> {
        let row = self
            .db
            .query_one(
                "SELECT pdoflow._background_sweeper_missing(current_database())",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Whether `queues` (all when `None`) have a job of `tasks` (all when
    /// `None`) that is running or due (and not held by a paused posting or
    /// a paused queue): the test `--burst` workers stop on. Jobs that a
    /// queue's limits hold back count: they run once the limits allow.
    pub async fn has_pending_jobs(
        &self,
        queues: Option<&[String]>,
        tasks: Option<&[String]>,
    ) -> Result<bool> {
        const PENDING: &str = "SELECT EXISTS (SELECT FROM pdoflow.jobs AS j
                                WHERE j.state IN ('queued', 'running')
                                  AND ($1::text[] IS NULL OR j.queue = ANY ($1))
                                  AND ($2::text[] IS NULL OR j.task = ANY ($2))
                                  AND (j.state = 'running' OR j.run_at <= now())
                                  -- a paused posting's jobs show as queued
                                  -- but are not available
                                  AND (j.state = 'running' OR j.posting IS NULL
                                       OR NOT EXISTS (SELECT FROM pdoflow.posting_status AS p
                                                      WHERE p.id = j.posting AND p.status = 'paused'))";
        // Nor are a paused queue's (pdoflow 0.11.0 and later).
        const NOT_PAUSED: &str = "
                                  AND (j.state = 'running'
                                       OR NOT EXISTS (SELECT FROM pdoflow.queue_controls AS c
                                                      WHERE c.queue = j.queue AND c.paused
                                                        AND c.released_at IS NULL))";
        let with_queues = format!("{PENDING}{NOT_PAUSED})");
        let row = match self.db.query_one(&with_queues, &[&queues, &tasks]).await {
            Err(error)
                if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
            {
                self.db
                    .query_one(&format!("{PENDING})"), &[&queues, &tasks])
                    .await?
            }
            result => result?,
        };
        Ok(row.try_get(0)?)
    }
}
