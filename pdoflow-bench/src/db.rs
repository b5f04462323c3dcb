//! Connections, clean slates and the timed concurrent loop every
//! "N clients for T seconds" figure comes from.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::{Client, NoTls, Statement};

/// Opens a plain connection; its driver runs in a task of its own.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "benchmark connection ended");
        }
    });
    Ok(client)
}

/// Empties pdoflow's tables (and the plain-SQL table) so that every scenario
/// starts from the same state, then lets vacuum see the empty tables.
pub async fn reset(db: &Client) -> Result<()> {
    // One statement per call: VACUUM cannot share a transaction.
    for statement in [
        "TRUNCATE pdoflow.active_jobs, pdoflow.finished_jobs, pdoflow.postings, pdoflow.workers, \
         pdoflow.queue_controls, bench_raw_jobs",
        "VACUUM ANALYZE pdoflow.active_jobs, pdoflow.finished_jobs, bench_raw_jobs",
    ] {
        execute_retrying_deadlocks(db, statement)
            .await
            .with_context(|| format!("resetting the benchmark tables: {statement}"))?;
    }
    Ok(())
}

/// Runs `statement`, again if PostgreSQL broke a deadlock by cancelling it:
/// the TRUNCATE locks the tables in its own order, and the sweeper (a
/// retention delete, say) may hold one of them and wait for another.
async fn execute_retrying_deadlocks(
    db: &Client,
    statement: &str,
) -> Result<(), tokio_postgres::Error> {
    let mut attempts = 0;
    loop {
        match db.batch_execute(statement).await {
            Err(error)
                if attempts < 5
                    && error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                attempts += 1;
                tracing::debug!(%error, statement, "deadlock while resetting; again");
            }
            result => return result,
        }
    }
}

/// Creates the plain-SQL queue table the ceilings are measured on: what a
/// hand-written queue keeps (one claim index, no history, no bookkeeping).
pub async fn prepare(db: &Client) -> Result<()> {
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pdoflow;
         CREATE TABLE IF NOT EXISTS bench_raw_jobs (
             id bigserial PRIMARY KEY,
             priority int NOT NULL DEFAULT 0,
             state text NOT NULL DEFAULT 'queued',
             task text NOT NULL,
             args jsonb NOT NULL DEFAULT '{}',
             created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX IF NOT EXISTS bench_raw_jobs_claim_idx
             ON bench_raw_jobs (priority DESC, id) WHERE state = 'queued';",
    )
    .await
    .context("creating pdoflow and the plain-SQL table")
}

/// What a timed loop did: operations (transactions, batches) and the rows
/// they moved, over the elapsed time.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub operations: u64,
    pub rows: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    pub fn operations_per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }
}

/// One client of a timed loop: its connection and its statements, prepared
/// once (as pgbench's `-M prepared` does) so that each step is one round trip.
pub struct Session {
    pub db: Client,
    pub statements: Vec<Statement>,
}

/// Runs `step` in a loop on `clients` connections at once for `duration`,
/// each connection with `statements` prepared (and `setup` run first). Each
/// step returns how many rows it moved; 0 means there was nothing left to do
/// and that client stops.
pub async fn timed_clients<F, Fut>(
    url: &str,
    clients: usize,
    duration: Duration,
    setup: &str,
    statements: &[&str],
    step: F,
) -> Result<Throughput>
where
    F: Fn(Arc<Session>, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<u64>> + Send,
{
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        let db = connect(url).await?;
        db.batch_execute(setup)
            .await
            .with_context(|| format!("running {setup}"))?;
        let mut prepared = Vec::with_capacity(statements.len());
        for statement in statements {
            prepared.push(
                db.prepare(statement)
                    .await
                    .with_context(|| format!("preparing {statement}"))?,
            );
        }
        connections.push(Arc::new(Session {
            db,
            statements: prepared,
        }));
    }
    let operations = Arc::new(AtomicU64::new(0));
    let rows = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (index, db) in connections.into_iter().enumerate() {
        let (step, operations, rows, stop) =
            (step.clone(), operations.clone(), rows.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let moved = step(db.clone(), index).await?;
                if moved == 0 {
                    break;
                }
                operations.fetch_add(1, Ordering::Relaxed);
                rows.fetch_add(moved, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    for task in tasks {
        task.await.context("a benchmark client panicked")??;
    }
    let elapsed = started.elapsed();
    stopper.abort();
    Ok(Throughput {
        operations: operations.load(Ordering::Relaxed),
        rows: rows.load(Ordering::Relaxed),
        elapsed,
    })
}

/// Runs `statement` once and returns how long it took.
pub async fn timed_statement(db: &Client, statement: &str) -> Result<Duration> {
    let started = Instant::now();
    db.batch_execute(statement)
        .await
        .with_context(|| format!("running {statement}"))?;
    Ok(started.elapsed())
}

/// Queues `count` `task` jobs with empty arguments in bulk, 100,000 per
/// statement.
pub async fn enqueue_noops(db: &Client, task: &str, queue: &str, count: u64) -> Result<()> {
    let mut left = count;
    while left > 0 {
        let batch = left.min(100_000);
        db.execute(
            "SELECT count(*) FROM pdoflow.enqueue_many($1, array_fill('{}'::jsonb, ARRAY[$2::int]), queue => $3)",
            &[&task, &(batch as i32), &queue],
        )
        .await
        .context("enqueueing the benchmark jobs")?;
        left -= batch;
    }
    Ok(())
}

/// Jobs that ended in `state` so far.
pub async fn finished_count(db: &Client, state: &str) -> Result<i64> {
    Ok(db
        .query_one(
            "SELECT count(*) FROM pdoflow.finished_jobs WHERE state = $1",
            &[&state],
        )
        .await?
        .get(0))
}
