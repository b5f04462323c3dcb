//! `sustained`: millions of jobs through enqueue -> work -> finish with the
//! default retention, reporting each tenth's throughput and the size of the
//! hot table and its indexes as it goes, so that slow decay (bloat, growing
//! scans) shows. Optionally with a session idle in transaction for a while,
//! which holds back vacuum.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pdoflow_client::{JobContext, Task, TaskError, TaskRegistry, WorkerConfig};
use serde_json::Value;
use tokio_postgres::Client;

use crate::db;
use crate::report;
use crate::workers::InProcess;
use crate::Bench;

/// Jobs queued ahead of the worker: enough that it never waits for the
/// producer, few enough that the hot table stays the size of real backlog.
const BACKLOG: u64 = 20_000;
const PRODUCER_BATCH: i32 = 1_000;

/// Counts the jobs it ran.
struct Count(Arc<AtomicU64>);

impl Task for Count {
    const NAME: &'static str = "bench_count";
    type Args = Value;
    type Output = Value;

    async fn run(&self, _args: Value, _job: JobContext) -> Result<Value, TaskError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Value::Null)
    }
}

/// A session holding a snapshot (and a transaction id) open: vacuum cannot
/// remove any row version that died after it began.
pub struct IdleTransaction {
    /// When, as a fraction of the jobs done, it begins.
    pub at: f64,
    pub hold: Duration,
}

pub async fn run(bench: &Bench, idle: Option<IdleTransaction>) -> Result<()> {
    let total = bench.sustained_jobs;
    let title = match &idle {
        None => "sustained".to_owned(),
        Some(idle) => format!(
            "sustained, with a session idle in transaction for {} from {:.0}% of the jobs",
            humantime::format_duration(idle.hold),
            idle.at * 100.0
        ),
    };
    report::scenario(
        &title,
        &format!(
            "{total} jobs through enqueue_many (batches of {PRODUCER_BATCH}, at most {BACKLOG} waiting) -> one pdoflow worker (defaults) -> finish"
        ),
    );
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    let done = Arc::new(AtomicU64::new(0));
    let mut registry = TaskRegistry::new();
    registry.register(Count(done.clone()))?;
    let config = WorkerConfig {
        name: "bench-sustained".into(),
        ..WorkerConfig::default()
    };
    let worker = InProcess::start(bench, registry, config)?;
    let mut producer = Some(tokio::spawn(produce(
        bench.url.clone(),
        total,
        done.clone(),
    )));

    report::figure(
        "tenth: jobs/s",
        "active_jobs heap + indexes, dead rows | finished_jobs",
    );
    let started = Instant::now();
    let mut slice_started = started;
    let mut rates = Vec::new();
    let mut holder: Option<tokio::task::JoinHandle<Result<()>>> = None;
    for tenth in 1..=10u64 {
        let target = total * tenth / 10;
        while done.load(Ordering::Relaxed) < target {
            if let Some(idle) = &idle {
                let reached = done.load(Ordering::Relaxed) as f64 / total as f64;
                if holder.is_none() && reached >= idle.at {
                    holder = Some(tokio::spawn(hold_snapshot(bench.url.clone(), idle.hold)));
                }
            }
            // A producer that failed ends the run with its error.
            if producer.as_ref().is_some_and(|task| task.is_finished()) {
                if let Some(task) = producer.take() {
                    task.await.context("the producer panicked")??;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = Instant::now();
        let rate = (total / 10) as f64 / (now - slice_started).as_secs_f64();
        slice_started = now;
        rates.push(rate);
        let sizes = sizes(&db).await?;
        report::figure(&format!("{:>3}%: {rate:>8.0} jobs/s", tenth * 10), sizes);
    }
    let elapsed = started.elapsed();
    worker.stop().await?;
    if let Some(task) = producer {
        task.await.context("the producer panicked")??;
    }
    if let Some(holder) = holder {
        holder.await.context("the idle session panicked")??;
    }
    report::figure(
        "overall",
        format!(
            "{total} jobs in {:.1} s = {:.0} jobs/s",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        ),
    );
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        report::figure("last tenth / first tenth", format!("{:.2}", last / first));
    }
    Ok(())
}

/// Enqueues `total` jobs in batches, keeping at most BACKLOG ahead of `done`.
async fn produce(url: String, total: u64, done: Arc<AtomicU64>) -> Result<()> {
    let db = db::connect(&url).await?;
    let enqueue = db
        .prepare("SELECT count(*) FROM pdoflow.enqueue_many('bench_count', array_fill('{}'::jsonb, ARRAY[$1::int]))")
        .await?;
    let mut produced = 0u64;
    while produced < total {
        if produced.saturating_sub(done.load(Ordering::Relaxed)) >= BACKLOG {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let batch = (total - produced).min(PRODUCER_BATCH as u64);
        db.query_one(&enqueue, &[&(batch as i32)]).await?;
        produced += batch;
    }
    Ok(())
}

/// Opens a transaction with a snapshot and an xid, holds it idle, commits.
async fn hold_snapshot(url: String, hold: Duration) -> Result<()> {
    let db = db::connect(&url).await?;
    db.batch_execute(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pdoflow.workers; SELECT txid_current();",
    )
    .await?;
    println!(
        "  (a session is now idle in transaction for {})",
        humantime::format_duration(hold)
    );
    tokio::time::sleep(hold).await;
    db.batch_execute("COMMIT").await?;
    println!("  (the idle transaction committed)");
    Ok(())
}

async fn sizes(db: &Client) -> Result<String> {
    let row = db
        .query_one(
            "SELECT pg_relation_size('pdoflow.active_jobs'), pg_indexes_size('pdoflow.active_jobs'),
                    coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                              WHERE relid = 'pdoflow.active_jobs'::regclass), 0),
                    pg_total_relation_size('pdoflow.finished_jobs')",
            &[],
        )
        .await?;
    let mb = |bytes: i64| format!("{:.1} MB", bytes as f64 / 1_048_576.0);
    Ok(format!(
        "{} + {}, {} dead | {}",
        mb(row.get(0)),
        mb(row.get(1)),
        row.get::<_, i64>(2),
        mb(row.get(3))
    ))
}
