//! Jobs: submit one or many, read one (long-polling with `Prefer: wait=N`),
//! list with filters and cursor pagination, cancel, retry.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    created, decode_cursor, encode_cursor, job_id, json, page_limit, positive_seconds, seconds,
};
use crate::auth::Role;
use crate::json::{Body, Query};
use crate::pool::Session;
use crate::problem::Problem;
use crate::raw_json::RawJson;
use crate::schemas::{Cursor, JobState, Key, Name};
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

/// The columns of `pdoflow.jobs` a `Job` is read from, in `Job::from_row`'s order.
pub const JOB_COLUMNS: &str = "id, task, queue, priority, state, attempt, max_attempts, args, \
    result, last_error, run_at, created_at, started_at, finished_at, lease_expires_at, \
    heartbeat_at, worker, posting, depends_on, dependency_mode, node, enqueued_by, unique_key, \
    concurrency_key, progress";

const STATES: [&str; 6] = [
    "blocked",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
];

/// A job, as `pdoflow.jobs` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    /// UUIDv7: sorts by creation time.
    pub id: Uuid,
    /// Its job type.
    pub task: String,
    pub queue: String,
    pub priority: i32,
    #[schema(value_type = JobState)]
    pub state: String,
    /// Attempts made so far (a running job: the current one).
    pub attempt: i32,
    pub max_attempts: i32,
    #[schema(value_type = Value)]
    pub args: RawJson,
    /// Its result, once it has ended.
    #[schema(value_type = Option<Value>)]
    pub result: Option<RawJson>,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
    pub posting: Option<Uuid>,
    pub depends_on: Option<Vec<Uuid>>,
    #[schema(value_type = Option<DependencyMode>)]
    pub dependency_mode: Option<String>,
    /// Its name in the DAG it was submitted with.
    pub node: Option<String>,
    /// The role that enqueued it.
    pub enqueued_by: Option<String>,
    pub unique_key: Option<String>,
    pub concurrency_key: Option<String>,
    /// The latest progress report of its current (or last) attempt.
    #[schema(value_type = Option<Value>)]
    pub progress: Option<RawJson>,
}

impl Job {
    pub fn from_row(row: &Row) -> Result<Job, Problem> {
        let read = |error: tokio_postgres::Error| {
            Problem::internal(&format!("reading a job: {}", sql_error::describe(&error)))
        };
        Ok(Job {
            id: row.try_get(0).map_err(read)?,
            task: row.try_get(1).map_err(read)?,
            queue: row.try_get(2).map_err(read)?,
            priority: row.try_get(3).map_err(read)?,
            state: row.try_get(4).map_err(read)?,
            attempt: row.try_get(5).map_err(read)?,
            max_attempts: row.try_get(6).map_err(read)?,
            args: row.try_get(7).map_err(read)?,
            result: row.try_get(8).map_err(read)?,
            last_error: row.try_get(9).map_err(read)?,
            run_at: row.try_get(10).map_err(read)?,
            created_at: row.try_get(11).map_err(read)?,
            started_at: row.try_get(12).map_err(read)?,
            finished_at: row.try_get(13).map_err(read)?,
            lease_expires_at: row.try_get(14).map_err(read)?,
            heartbeat_at: row.try_get(15).map_err(read)?,
            worker: row.try_get(16).map_err(read)?,
            posting: row.try_get(17).map_err(read)?,
            depends_on: row.try_get(18).map_err(read)?,
            dependency_mode: row.try_get(19).map_err(read)?,
            node: row.try_get(20).map_err(read)?,
            enqueued_by: row.try_get(21).map_err(read)?,
            unique_key: row.try_get(22).map_err(read)?,
            concurrency_key: row.try_get(23).map_err(read)?,
            progress: row.try_get(24).map_err(read)?,
        })
    }

    fn ended(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// Reads job `id` in `session`; 404 JobNotFound when there is none.
pub async fn read_job(session: &mut Session, id: Uuid) -> Result<Job, Problem> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM pdoflow.jobs WHERE id = $1");
    let ctx = Ctx {
        job: Some(id),
        ..Ctx::default()
    };
    match session.row(&sql, &[&id], &ctx).await? {
        Some(row) => Job::from_row(&row),
        None => Err(Problem::job_not_found(id)),
    }
}

/// `all` or `any`: whether a job with parents waits for all of them to
/// succeed, or for one.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DependencyMode {
    All,
    Any,
}

impl DependencyMode {
    fn as_str(self) -> &'static str {
        match self {
            DependencyMode::All => "all",
            DependencyMode::Any => "any",
        }
    }
}

/// A job to submit. Only `task` is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// The job type (task) name.
    #[schema(value_type = Name)]
    pub task: String,
    /// Its arguments, any JSON value (default `{}`); checked against the job
    /// type's JSON Schema when it has one.
    pub args: Option<Value>,
    /// Default `default` (or the posting's queue).
    #[schema(value_type = Option<Name>)]
    pub queue: Option<String>,
    /// Higher runs first; default 0 (or the posting's priority).
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    #[serde(default, deserialize_with = "crate::json::opt_int32")]
    pub priority: Option<i32>,
    /// When it becomes due (RFC 3339); default now. Not with `delay`.
    pub run_at: Option<DateTime<Utc>>,
    /// Seconds from now until it becomes due. Not with `run_at`.
    #[schema(minimum = 0, maximum = 31536000000_f64)]
    pub delay: Option<f64>,
    /// Default 5; at most `pdoflow.max_attempts_limit` (1000 by default).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::json::opt_int32")]
    pub max_attempts: Option<i32>,
    /// The posting to put it in.
    pub posting: Option<Uuid>,
    /// Parent jobs it waits for.
    pub depends_on: Option<Vec<Uuid>>,
    /// Default `all`.
    pub dependency_mode: Option<DependencyMode>,
    /// While a job of this task holds the key, submitting again returns
    /// that job (200) instead of a new one.
    #[schema(value_type = Option<Key>)]
    pub unique_key: Option<String>,
    /// Seconds a succeeded job keeps its unique key (needs `unique_key`).
    #[schema(minimum = 0.000001, maximum = 31536000000_f64)]
    pub unique_for: Option<f64>,
    /// Key for the queue's per-key running limit.
    #[schema(value_type = Option<Key>)]
    pub concurrency_key: Option<String>,
}

impl NewJob {
    /// The checks the SQL API cannot make for what only HTTP has.
    fn check(&self, pointer: &str) -> Result<(), Problem> {
        if self.run_at.is_some() && self.delay.is_some() {
            return Err(Problem::invalid_body(
                format!("{pointer}/delay"),
                "give run_at or delay, not both",
            ));
        }
        seconds(&format!("{pointer}/delay"), self.delay)?;
        positive_seconds(&format!("{pointer}/unique_for"), self.unique_for)?;
        Ok(())
    }

    /// The element of `pdoflow.enqueue_many(jobs jsonb)`'s document, with
    /// `delay` counted from `now`, the transaction's time.
    fn document(&self, now: DateTime<Utc>) -> Value {
        let mut object = Map::new();
        object.insert("task".into(), Value::from(self.task.clone()));
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(key.into(), value);
            }
        };
        put("args", self.args.clone());
        put("queue", self.queue.clone().map(Value::from));
        put("priority", self.priority.map(Value::from));
        let run_at = match (self.run_at, self.delay) {
            (Some(run_at), _) => Some(run_at),
            (None, Some(delay)) => Some(now + chrono::Duration::microseconds((delay * 1e6) as i64)),
            (None, None) => None,
        };
        put("run_at", run_at.map(|at| Value::from(at.to_rfc3339())));
        put("max_attempts", self.max_attempts.map(Value::from));
        put(
            "posting",
            self.posting.map(|id| Value::from(id.to_string())),
        );
        put(
            "depends_on",
            self.depends_on
                .as_ref()
                .map(|ids| Value::from(ids.iter().map(ToString::to_string).collect::<Vec<_>>())),
        );
        put(
            "dependency_mode",
            self.dependency_mode.map(|mode| Value::from(mode.as_str())),
        );
        put("unique_key", self.unique_key.clone().map(Value::from));
        put(
            "unique_for",
            self.unique_for
                .map(|seconds| Value::from(format!("{seconds} seconds"))),
        );
        put(
            "concurrency_key",
            self.concurrency_key.clone().map(Value::from),
        );
        Value::Object(object)
    }
}

const JOB_FIELDS: &[(&str, &str)] = &[
    ("task", "/task"),
    ("args", "/args"),
    ("queue", "/queue"),
    ("priority", "/priority"),
    ("run_at", "/run_at"),
    ("max_attempts", "/max_attempts"),
    ("posting", "/posting"),
    ("depends_on", "/depends_on"),
    ("dependency_mode", "/dependency_mode"),
    ("unique_key", "/unique_key"),
    ("unique_for", "/unique_for"),
    ("concurrency_key", "/concurrency_key"),
];

/// Submit a job.
///
/// 201 with the new job; 200 with the existing job when its `unique_key`
/// is held by a job of the same task.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = NewJob,
    responses(
        (status = 201, description = "The new job", body = Job,
            headers(("Location" = String, description = "/v1/jobs/{id}"))),
        (status = 200, description = "The job that holds the unique key", body = Job),
        (status = 409, description = "A dependency that can never be met, a cancelled posting", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value the SQL API refuses (`pointer` names it), or args that do not match the job type's schema (SchemaViolation)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    role: Role,
    Body(job): Body<NewJob>,
) -> Result<Response, Problem> {
    job.check("")?;
    let ctx = Ctx {
        fields: JOB_FIELDS,
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, &role).await?;
    let depends_on = job.depends_on.clone();
    let mode = job.dependency_mode.map(DependencyMode::as_str);
    let row = session
        .row(
            "SELECT pdoflow.enqueue(
                 task => $1::text,
                 args => coalesce($2::jsonb, '{}'::jsonb),
                 queue => coalesce($3::text, 'default'),
                 priority => coalesce($4::int4, 0),
                 run_at => coalesce($5::timestamptz, now() + pg_catalog.make_interval(secs => $6::float8)),
                 max_attempts => coalesce($7::int4, 5),
                 posting => $8::uuid,
                 depends_on => $9::uuid[],
                 dependency_mode => coalesce($10::text, 'all'),
                 unique_key => $11::text,
                 unique_for => pg_catalog.make_interval(secs => $12::float8),
                 concurrency_key => $13::text)",
            &[
                &job.task,
                &job.args,
                &job.queue,
                &job.priority,
                &job.run_at,
                &job.delay,
                &job.max_attempts,
                &job.posting,
                &depends_on,
                &mode,
                &job.unique_key,
                &job.unique_for,
                &job.concurrency_key,
            ],
            &ctx,
        )
        .await?;
    let id: Uuid = row
        .and_then(|row| row.try_get(0).ok())
        .ok_or_else(|| Problem::internal("pdoflow.enqueue returned no id"))?;
    // A job made by this transaction was created at its now(); one that
    // holds the unique key was made before. Read with the commit, in one
    // round trip.
    let row = session
        .row_and_commit(
            &format!("SELECT {JOB_COLUMNS}, created_at = now() FROM pdoflow.jobs WHERE id = $1"),
            &[&id],
            &ctx,
        )
        .await?
        .ok_or_else(|| Problem::internal("the job just enqueued is not in pdoflow.jobs"))?;
    let created: bool = row.try_get(25).unwrap_or(true);
    let job = Job::from_row(&row)?;
    Ok(if created {
        created_job(&job)
    } else {
        json(StatusCode::OK, &job)
    })
}

fn created_job(job: &Job) -> Response {
    created(format!("/v1/jobs/{}", job.id), job)
}

/// Several jobs to submit at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJobs {
    /// Objects, each read as a `NewJob` by `json::element`.
    #[schema(value_type = Vec<NewJob>)]
    pub jobs: Vec<Map<String, Value>>,
}

/// The ids of submitted jobs, in the order of the request.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobIds {
    pub ids: Vec<Uuid>,
}

/// Submit many jobs in one transaction.
///
/// All or nothing: the whole list is checked before anything is written.
/// An element whose `unique_key` is held gets the holder's id.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs", request_body = NewJobs,
    responses(
        (status = 201, description = "Their ids, in input order", body = JobIds),
        (status = 409, description = "A dependency that can never be met, a cancelled posting", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value refused: `pointer` is `/jobs/<i>/<field>`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_batch(
    State(state): State<Arc<AppState>>,
    role: Role,
    Body(batch): Body<NewJobs>,
) -> Result<Response, Problem> {
    let jobs = batch
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| {
            let pointer = format!("/jobs/{index}");
            let job: NewJob = crate::json::element(job, &pointer)?;
            job.check(&pointer)?;
            Ok(job)
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let ctx = Ctx {
        fields: &[("jobs", "/jobs")],
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, &role).await?;
    let now = if jobs.iter().any(|job| job.delay.is_some()) {
        let row = session.row("SELECT now()", &[], &ctx).await?;
        row.and_then(|row| row.try_get::<_, DateTime<Utc>>(0).ok())
            .unwrap_or_else(Utc::now)
    } else {
        Utc::now()
    };
    let document = Value::from(jobs.iter().map(|job| job.document(now)).collect::<Vec<_>>());
    let rows = session
        .rows(
            "SELECT id FROM pdoflow.enqueue_many($1::jsonb)",
            &[&document],
            &ctx,
        )
        .await?;
    let ids = rows
        .iter()
        .map(|row| row.try_get::<_, Uuid>(0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Problem::internal(&sql_error::describe(&error)))?;
    session.commit().await?;
    Ok(json(StatusCode::CREATED, &JobIds { ids }))
}

/// Filters and page of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// `blocked`, `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[param(value_type = Option<JobState>)]
    pub state: Option<String>,
    #[param(pattern = r"^[^\x00]*$")]
    pub queue: Option<String>,
    /// The job type.
    #[param(pattern = r"^[^\x00]*$")]
    pub task: Option<String>,
    /// A posting id.
    #[param(value_type = Option<Uuid>)]
    pub posting: Option<String>,
    /// Jobs per page, 1 to 1000 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<Job>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List jobs, newest first.
///
/// Pages are stable while jobs are added: the cursor names the last job
/// shown, and the next page holds the jobs older than it.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobFilter),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 422, description = "A bad query parameter (`parameter` names it)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    role: Role,
    Query(filter): Query<JobFilter>,
) -> Result<Response, Problem> {
    if let Some(state) = &filter.state {
        if !STATES.contains(&state.as_str()) {
            return Err(Problem::invalid_parameter(
                "state",
                format!("state must be one of {}, got {state:?}", STATES.join(", ")),
            ));
        }
    }
    let posting = match &filter.posting {
        None => None,
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| {
            Problem::invalid_parameter("posting", format!("posting must be a UUID, got {raw:?}"))
        })?),
    };
    let limit = page_limit(filter.limit.as_deref())?;
    let cursor = decode_cursor(filter.cursor.as_deref())?;
    let fetch = limit + 1;

    // Only the filters given, so that each combination gets a plan of its own.
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM pdoflow.jobs WHERE true");
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let mut condition = |sql: &mut String, column: &str, cast: &str, value| {
        params.push(value);
        sql.push_str(&format!(" AND {column} = ${}::{cast}", params.len()));
    };
    if let Some(value) = &filter.state {
        condition(&mut sql, "state", "text", value);
    }
    if let Some(value) = &filter.queue {
        condition(&mut sql, "queue", "text", value);
    }
    if let Some(value) = &filter.task {
        condition(&mut sql, "task", "text", value);
    }
    if let Some(value) = &posting {
        condition(&mut sql, "posting", "uuid", value);
    }
    if let Some(value) = &cursor {
        params.push(value);
        sql.push_str(&format!(" AND id < ${}::uuid", params.len()));
    }
    params.push(&fetch);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}::int8", params.len()));

    let rows = Session::run(&state.pool, &role, &sql, &params, &Ctx::default()).await?;
    let mut items = rows
        .iter()
        .map(Job::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|job| encode_cursor(job.id))
    } else {
        None
    };
    Ok(json(StatusCode::OK, &JobPage { items, next_cursor }))
}

/// `wait=N` of `Prefer` headers (RFC 7240): whole seconds.
fn preferred_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let token = preference.split(';').next()?.trim();
            let (name, value) = token.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .next()
}

/// Get a job; with `Prefer: wait=N`, long-poll until it has ended.
///
/// With `Prefer: wait=N` (N whole seconds, capped by the server's
/// `--max-wait`), the answer comes as soon as the job has ended
/// (succeeded, failed or cancelled), or after N seconds with its state
/// then; `Preference-Applied: wait=<N used>` says so.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id"),
           ("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds for the job to end")),
    responses(
        (status = 200, description = "The job", body = Job,
            headers(("Preference-Applied" = String, description = "`wait=<seconds>` when the wait was honoured"),
                    ("Vary" = String, description = "Prefer"))),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let wait = preferred_wait(&headers)
        .map(|seconds| Duration::from_secs(seconds).min(state.config.max_wait));
    let job = match wait {
        None => read_as(&state, &role, id).await?,
        Some(wait) => {
            let deadline = Instant::now() + wait;
            // Registered before the first read: an end between the read
            // and the wait is then not missed.
            let mut waiter = state.hub.watch(id);
            let job = read_as(&state, &role, id).await?;
            if job.ended() || wait.is_zero() {
                job
            } else {
                let mut stopping = state.stopping.clone();
                waiter.ended(deadline, &mut stopping).await;
                drop(waiter);
                read_as(&state, &role, id).await?
            }
        }
    };
    let mut response = json(StatusCode::OK, &job);
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Prefer"));
    if let Some(wait) = wait {
        if let Ok(value) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
            headers.insert("preference-applied", value);
        }
    }
    Ok(response)
}

async fn read_as(state: &AppState, role: &Role, id: Uuid) -> Result<Job, Problem> {
    let mut session = Session::begin(&state.pool, role).await?;
    let job = read_job(&mut session, id).await?;
    session.commit().await?;
    Ok(job)
}

/// Cancel a job.
///
/// A queued, blocked or running job ends `cancelled` (a running job's
/// worker is not interrupted, but its claim can no longer finish it).
/// Cancelling a cancelled job again is a 200; one that ended otherwise is
/// a 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, cancelled", body = Job),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has ended already (InvalidTaskTransition)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    change(
        &state,
        &role,
        &id,
        "SELECT pdoflow.cancel($1::uuid)",
        |job| {
            (job.state != "cancelled")
                .then(|| format!("the job has already ended: it {}", job.state))
        },
    )
    .await
}

/// Retry a failed or cancelled job.
///
/// It is queued again, due now. A job that is still active (409), or that
/// succeeded (409), cannot be retried.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, queued (or blocked) again", body = Job),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not failed or cancelled (InvalidTaskTransition), or its unique key is held (Conflict)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    change(
        &state,
        &role,
        &id,
        "SELECT pdoflow.retry($1::uuid)",
        |job| {
            Some(format!(
                "the job is {}: only failed or cancelled jobs can be retried",
                job.state
            ))
        },
    )
    .await
}

/// Calls `sql` (cancel or retry) on job `id`; when it returns false,
/// `refusal` says why, or nothing when the job is where it was asked to be.
async fn change(
    state: &AppState,
    role: &Role,
    id: &str,
    sql: &str,
    refusal: impl Fn(&Job) -> Option<String>,
) -> Result<Response, Problem> {
    let id = job_id(id)?;
    let ctx = Ctx {
        job: Some(id),
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, role).await?;
    let changed: bool = session
        .row(sql, &[&id], &ctx)
        .await?
        .and_then(|row| row.try_get(0).ok())
        .unwrap_or(false);
    let job = read_job(&mut session, id).await?;
    session.commit().await?;
    if !changed {
        if let Some(reason) = refusal(&job) {
            return Err(Problem::transition(id, None, reason));
        }
    }
    Ok(json(StatusCode::OK, &job))
}
