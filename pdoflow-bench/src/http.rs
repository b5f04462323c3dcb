//! `http`: the HTTP API (`pdoflow-run serve`) beside the SQL it wraps, in
//! one run: single-job submits over keep-alive connections against
//! `pdoflow.enqueue` from as many SQL connections; HTTP workers' claim and
//! finish against SQL `claim` + `finish`, shaped alike (claim 10, finish
//! each); and a thousand long-polls held at once, with the server's
//! database connections counted while they wait and the delay from the
//! finishing commit to each poll's return.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::db;
use crate::report;
use crate::workers::pdoflow_run;
use crate::Bench;

/// Keep-alive connections of the submit phase.
const SUBMIT_CONNECTIONS: usize = 32;
/// HTTP workers (and SQL sessions) of the claim phase.
const WORKERS: usize = 8;
/// Long-polls held at once.
const LONG_POLLS: usize = 1_000;
/// The role every request runs as (a member of pdoflow_admin).
const ROLE: &str = "pdoflow_bench_http";
/// The server's pool: as many connections as the submitters.
const POOL_SIZE: usize = SUBMIT_CONNECTIONS;

pub async fn run(bench: &Bench) -> Result<()> {
    report::scenario(
        "http",
        &format!(
            "pdoflow-run serve against SQL on the same cluster: submits from {SUBMIT_CONNECTIONS} keep-alive \
             connections, claim(10) + finish from {WORKERS} workers, {LONG_POLLS} long-polls"
        ),
    );
    let db = db::connect(&bench.url).await?;
    db.batch_execute(&format!(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                 CREATE ROLE {ROLE} NOLOGIN;
             END IF;
         END $$;
         GRANT pdoflow_admin TO {ROLE};"
    ))
    .await
    .context("creating the benchmark's role")?;
    let server = Server::start(bench).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(LONG_POLLS + SUBMIT_CONNECTIONS)
        .timeout(Duration::from_secs(120))
        .build()?;
    let api = Api {
        http,
        base: format!("http://{}", server.address),
        token: format!("Bearer {}", server.token),
    };

    // Submits: one job per request, against one enqueue per transaction.
    db::reset(&db).await?;
    let submitted = timed(SUBMIT_CONNECTIONS, bench.duration, {
        let api = api.clone();
        move |_| {
            let api = api.clone();
            async move {
                api.post("/v1/jobs", &json!({"task": "noop", "args": {"n": 1}}))
                    .await?;
                Ok(1)
            }
        }
    })
    .await?;
    db::reset(&db).await?;
    let enqueued = db::timed_clients(
        &bench.url,
        SUBMIT_CONNECTIONS,
        bench.duration,
        "",
        &["SELECT pdoflow.enqueue('noop', '{\"n\": 1}')"],
        |session, _| async move {
            session.db.execute(&session.statements[0], &[]).await?;
            Ok(1)
        },
    )
    .await?;
    let sql_rate = enqueued.rows_per_second();
    report::figure(
        "POST /v1/jobs (one job per request)",
        format!(
            "{:>10.0} jobs/s   ({:.2} of SQL enqueue from {SUBMIT_CONNECTIONS} connections, {sql_rate:.0}/s)",
            submitted.rows_per_second(),
            submitted.rows_per_second() / sql_rate
        ),
    );

    // Claims and finishes: claim 10, finish each, from WORKERS at once.
    db::reset(&db).await?;
    db::enqueue_noops(&db, "noop", "default", 300_000).await?;
    db.batch_execute("VACUUM ANALYZE pdoflow.active_jobs")
        .await?;
    let worked = timed(WORKERS, bench.duration, {
        let api = api.clone();
        move |index| {
            let api = api.clone();
            async move { http_claim_and_finish(&api, index).await }
        }
    })
    .await?;
    db::reset(&db).await?;
    db::enqueue_noops(&db, "noop", "default", 300_000).await?;
    db.batch_execute("VACUUM ANALYZE pdoflow.active_jobs")
        .await?;
    let sql_worked = db::timed_clients(
        &bench.url,
        WORKERS,
        bench.duration,
        "",
        &[
            "SELECT id, attempt FROM pdoflow.claim(10, NULL, $1)",
            "SELECT pdoflow.finish($1, $2, result => '{\"ok\": true}')",
        ],
        |session, index| async move {
            let worker = format!("bench-sql-{index}");
            let rows = session.db.query(&session.statements[0], &[&worker]).await?;
            for row in &rows {
                let (id, attempt): (Uuid, i32) = (row.get(0), row.get(1));
                session
                    .db
                    .execute(&session.statements[1], &[&id, &attempt])
                    .await?;
            }
            Ok(rows.len() as u64)
        },
    )
    .await?;
    let sql_rate = sql_worked.rows_per_second();
    report::figure(
        "HTTP workers: claim n=10, finish each",
        format!(
            "{:>10.0} jobs/s   ({:.2} of SQL claim(10) + finish from {WORKERS} sessions, {sql_rate:.0}/s)",
            worked.rows_per_second(),
            worked.rows_per_second() / sql_rate
        ),
    );

    // Long-polls: a thousand waits, then every job finished in one commit.
    db::reset(&db).await?;
    long_polls(bench, &api, &db).await?;
    db::reset(&db).await?;
    server.stop().await;
    Ok(())
}

/// Claims up to 10 jobs for worker `index` and finishes each; the jobs
/// finished.
async fn http_claim_and_finish(api: &Api, index: usize) -> Result<u64> {
    let claims = api
        .post(
            &format!("/v1/workers/bench-http-{index}/claim"),
            &json!({"n": 10, "lease": 60}),
        )
        .await?;
    let jobs = claims["jobs"].as_array().cloned().unwrap_or_default();
    for job in &jobs {
        let (Some(id), Some(attempt)) = (job["id"].as_str(), job["attempt"].as_i64()) else {
            bail!("a claim without id or attempt: {job}");
        };
        api.post(
            &format!("/v1/jobs/{id}/finish"),
            &json!({"attempt": attempt, "result": {"ok": true}}),
        )
        .await?;
    }
    Ok(jobs.len() as u64)
}

async fn long_polls(bench: &Bench, api: &Api, db: &tokio_postgres::Client) -> Result<()> {
    let ids: Vec<Uuid> = db
        .query(
            "SELECT id FROM pdoflow.enqueue_many('noop', array_fill('{}'::jsonb, ARRAY[$1::int]), queue => 'polled')",
            &[&(LONG_POLLS as i32)],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut polls = Vec::with_capacity(LONG_POLLS);
    for id in &ids {
        let api = api.clone();
        let id = *id;
        polls.push(tokio::spawn(async move {
            let response = api
                .http
                .get(format!("{}/v1/jobs/{id}", api.base))
                .header("Authorization", &api.token)
                .header("Prefer", "wait=60")
                .send()
                .await?;
            let returned = Instant::now();
            let status = response.status();
            let job: Value = response.json().await?;
            if !status.is_success() || job["state"] != "succeeded" {
                bail!("long-poll of job {id} returned {status}: {job}");
            }
            anyhow::Ok(returned)
        }));
    }
    // Every poll has had its first look by now; then count what the
    // server holds in the database while they all wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connections: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pdoflow-server%'",
            &[],
        )
        .await?
        .get(0);
    // Claim and finish every polled job in one transaction.
    let claims = db
        .query(
            "SELECT id, attempt FROM pdoflow.claim(1000, ARRAY['polled'])",
            &[],
        )
        .await?;
    let claimed: Vec<Uuid> = claims.iter().map(|row| row.get(0)).collect();
    let attempts: Vec<i32> = claims.iter().map(|row| row.get(1)).collect();
    if claimed.len() != LONG_POLLS {
        bail!("claimed {} of the {LONG_POLLS} polled jobs", claimed.len());
    }
    db.query(
        "SELECT * FROM pdoflow.finish_many($1, $2)",
        &[&claimed, &attempts],
    )
    .await?;
    let committed = Instant::now();
    let mut delays = Vec::with_capacity(LONG_POLLS);
    for poll in polls {
        let returned = poll.await.context("a long-poll panicked")??;
        delays.push(returned.saturating_duration_since(committed));
    }
    delays.sort();
    report::figure(
        &format!("{LONG_POLLS} long-polls held: server connections"),
        format!(
            "{connections} (pool of {POOL_SIZE} + the hub's 1; {} clients)",
            bench.clients
        ),
    );
    report::figure(
        "long-poll return after the finishing commit",
        format!(
            "p50 {}, p99 {}, max {}",
            report::millis(report::percentile(&delays, 0.50)),
            report::millis(report::percentile(&delays, 0.99)),
            report::millis(delays.last().copied().unwrap_or_default())
        ),
    );
    Ok(())
}

/// The API as a client sees it.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// POSTs `body` to `path`; the response's JSON, or an error naming its
    /// status and problem.
    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", &self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status}: {body}");
        }
        Ok(body)
    }
}

/// `pdoflow-run serve` on a free port, with a secret of its own.
struct Server {
    child: tokio::process::Child,
    address: String,
    token: String,
}

impl Server {
    async fn start(bench: &Bench) -> Result<Server> {
        let address = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.to_string()
        };
        let secret = format!("pdoflow-bench-{}", Uuid::now_v7());
        let child = pdoflow_run(
            bench,
            &[
                "serve",
                "--listen",
                &address,
                "--pool-size",
                &POOL_SIZE.to_string(),
            ],
        )
        .env("PDOFLOW_JWT_SECRET", &secret)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting pdoflow-run serve")?;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"role": ROLE}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?,
        )?;
        let ready = format!("http://{address}/readyz");
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(&ready).await {
                if response.status().is_success() {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("pdoflow-run serve was not ready at {address} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Server {
            child,
            address,
            token,
        })
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signals a child of this process by its id.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Runs `step` from `clients` tasks for `duration`; each step returns the
/// jobs it moved (0: nothing left, that task stops).
async fn timed<F, Fut>(clients: usize, duration: Duration, step: F) -> Result<db::Throughput>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let rows = Arc::new(AtomicU64::new(0));
    let operations = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let (step, rows, operations, stop) =
            (step.clone(), rows.clone(), operations.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let moved = step(index).await?;
                if moved == 0 {
                    break;
                }
                rows.fetch_add(moved, Ordering::Relaxed);
                operations.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.context("a benchmark client panicked")??;
    }
    Ok(db::Throughput {
        operations: operations.load(Ordering::Relaxed),
        rows: rows.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}
