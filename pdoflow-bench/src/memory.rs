//! `memory`: the resident memory of a `pdoflow-run worker` running 100 jobs
//! at once (`sleep` jobs, so that all 100 are in flight together).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::db;
use crate::report;
use crate::workers;
use crate::Bench;

const CONCURRENCY: usize = 100;
const JOBS: i32 = 1_000;

pub async fn run(bench: &Bench) -> Result<()> {
    report::scenario(
        "memory",
        &format!("pdoflow-run worker --concurrency {CONCURRENCY}, {JOBS} sleep jobs of 500 ms"),
    );
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    db.execute(
        "SELECT count(*) FROM pdoflow.enqueue_many('sleep', array_fill('{\"ms\": 500}'::jsonb, ARRAY[$1::int]), queue => 'memory')",
        &[&JOBS],
    )
    .await?;
    let concurrency = CONCURRENCY.to_string();
    let arguments = [
        "worker",
        "--queues",
        "memory",
        "--concurrency",
        &concurrency,
        "--shutdown-grace",
        "1s",
    ];
    let mut child = workers::pdoflow_run(bench, &arguments)
        .spawn()
        .with_context(|| format!("starting {}", bench.pdoflow_run.display()))?;
    let pid = child.id().context("pdoflow-run exited at once")?;
    let mut busiest = 0i64;
    let mut rss_when_busiest = 0u64;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let running: i64 = db
            .query_one(
                "SELECT count(*) FROM pdoflow.active_jobs WHERE state = 'running'",
                &[],
            )
            .await?
            .get(0);
        let rss = status_kib(pid, "VmRSS:")?;
        if running >= busiest {
            busiest = running;
            rss_when_busiest = rss;
        }
    }
    let peak = status_kib(pid, "VmHWM:")?;
    // SIGTERM: the worker stops claiming and hands back what still runs.
    // SAFETY: kill(2) on the child's pid, which has not been reaped yet.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
        bail!("cannot signal pdoflow-run ({pid})");
    }
    let status = child.wait().await?;
    report::figure("settings", format!("pdoflow-run {}", arguments.join(" ")));
    report::figure(
        "claims open at once, most seen (running + being finished)",
        format!("{busiest} (concurrency {CONCURRENCY})"),
    );
    report::figure(
        "resident memory then (VmRSS)",
        format!("{:.1} MB", rss_when_busiest as f64 / 1024.0),
    );
    report::figure(
        "peak resident memory (VmHWM)",
        format!("{:.1} MB", peak as f64 / 1024.0),
    );
    if !status.success() {
        bail!("pdoflow-run exited with {status} after SIGTERM");
    }
    db::reset(&db).await?;
    Ok(())
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
