//! `latency`: how long a job waits between its enqueue's commit and its
//! handler's start, at a steady rate, with an idle worker woken by
//! LISTEN/NOTIFY (its poll interval is far longer than any figure here),
//! and with one in `--no-listen` mode, woken inside its waiting claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use pdoflow_client::{JobContext, Task, TaskError, TaskRegistry, WorkerConfig};
use serde_json::Value;
use uuid::Uuid;

use crate::db;
use crate::report;
use crate::workers::InProcess;
use crate::Bench;

const QUEUE: &str = "latency";

/// Records when each job's handler started.
struct Stamp(Arc<Mutex<HashMap<Uuid, Instant>>>);

impl Task for Stamp {
    const NAME: &'static str = "bench_latency";
    type Args = Value;
    type Output = Value;

    async fn run(&self, _args: Value, job: JobContext) -> Result<Value, TaskError> {
        let now = Instant::now();
        if let Ok(mut started) = self.0.lock() {
            started.insert(job.id, now);
        }
        Ok(Value::Null)
    }
}

pub async fn run(bench: &Bench) -> Result<()> {
    let rate = bench.latency_rate;
    report::scenario(
        "latency",
        &format!(
            "enqueue committed -> handler started, {rate} jobs/s for {}, one idle pdoflow worker (defaults) woken by NOTIFY, or by its waiting claim",
            humantime::format_duration(bench.duration)
        ),
    );
    for (mode, no_listen) in [("coalesced", false), ("direct", false), ("coalesced", true)] {
        let samples = measure(bench, mode, no_listen).await?;
        let jobs = samples.len();
        let wakeups = if no_listen {
            "waiting claims (--no-listen)"
        } else {
            "LISTEN"
        };
        report::figure(
            &format!("pdoflow.notify = {mode}, {wakeups}: {jobs} jobs"),
            format!(
                "p50 {}  p90 {}  p99 {}  max {}",
                report::millis(report::percentile(&samples, 50.0)),
                report::millis(report::percentile(&samples, 90.0)),
                report::millis(report::percentile(&samples, 99.0)),
                report::millis(samples.last().copied().unwrap_or_default()),
            ),
        );
    }
    Ok(())
}

/// Enqueues at the steady rate with `mode` notifications, to a worker that
/// LISTENs or (`no_listen`) waits in its claims; returns the sorted
/// latencies.
async fn measure(bench: &Bench, mode: &str, no_listen: bool) -> Result<Vec<Duration>> {
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    let started = Arc::new(Mutex::new(HashMap::new()));
    let mut registry = TaskRegistry::new();
    registry.register(Stamp(started.clone()))?;
    let config = WorkerConfig {
        name: "bench-latency".into(),
        queues: Some(vec![QUEUE.into()]),
        no_listen,
        ..WorkerConfig::default()
    };
    let worker = InProcess::start(bench, registry, config)?;
    // Let the worker connect and LISTEN before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    db.batch_execute(&format!("SET pdoflow.notify = '{mode}'"))
        .await?;
    let enqueue = db
        .prepare(&format!(
            "SELECT pdoflow.enqueue('bench_latency', '{{}}', queue => '{QUEUE}')"
        ))
        .await?;
    let mut committed = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / bench.latency_rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let until = Instant::now() + bench.duration;
    while Instant::now() < until {
        ticks.tick().await;
        let id: Uuid = db.query_one(&enqueue, &[]).await?.get(0);
        committed.insert(id, Instant::now());
    }
    // Give the last jobs time to start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.lock().map_or(0, |started| started.len()) < committed.len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await?;

    let started = started
        .lock()
        .map_err(|_| anyhow::anyhow!("the latency records were poisoned"))?;
    let mut samples: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| {
            started
                .get(id)
                .map(|start| start.saturating_duration_since(*at))
        })
        .collect();
    if samples.len() < committed.len() {
        anyhow::bail!(
            "only {} of {} jobs started within 10 s of the last enqueue",
            samples.len(),
            committed.len()
        );
    }
    samples.sort();
    Ok(samples)
}
