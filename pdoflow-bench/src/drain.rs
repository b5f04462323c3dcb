//! `drain`: jobs queued beforehand, worked by `pdoflow-run worker --burst`
//! (a separate process, as in production) until none is left; with the
//! defaults, and with the best settings docs/benchmarks.md documents.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::db;
use crate::raw::Ceilings;
use crate::report;
use crate::workers;
use crate::Bench;

/// The fastest settings measured on a 2-core machine (docs/benchmarks.md):
/// large claims, finishes batched on a connection of their own.
pub const BEST_SETTINGS: &[&str] = &["worker", "--burst", "--concurrency", "1000"];
pub const DEFAULT_SETTINGS: &[&str] = &["worker", "--burst"];

pub async fn run(bench: &Bench, ceilings: &mut Ceilings) -> Result<()> {
    let jobs = bench.drain_jobs;
    report::scenario(
        "drain",
        &format!("{jobs} queued noop jobs worked by pdoflow-run until none is left"),
    );
    let ceiling = ceilings.claim_delete(bench).await?;
    for (label, arguments) in [
        ("defaults", DEFAULT_SETTINGS),
        ("best settings", BEST_SETTINGS),
    ] {
        let rate = drain_once(bench, jobs, arguments, &[]).await?;
        report::figure(
            &format!("settings: {label}"),
            format!("pdoflow-run {}", arguments.join(" ")),
        );
        report::rate(&format!("drain, {label}"), rate, "jobs", Some(ceiling));
    }
    Ok(())
}

/// Queues `jobs` noops (after running the statements `setup`), runs
/// pdoflow-run with `arguments` until it exits, checks every job
/// succeeded, and returns jobs per second.
pub async fn drain_once(
    bench: &Bench,
    jobs: u64,
    arguments: &[&str],
    setup: &[&str],
) -> Result<f64> {
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    for statement in setup {
        db.batch_execute(statement)
            .await
            .with_context(|| format!("running {statement}"))?;
    }
    db::enqueue_noops(&db, "noop", "default", jobs).await?;
    db.batch_execute("VACUUM ANALYZE pdoflow.active_jobs")
        .await?;
    let started = Instant::now();
    let status = workers::pdoflow_run(bench, arguments)
        .status()
        .await
        .with_context(|| format!("running {}", bench.pdoflow_run.display()))?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("pdoflow-run {} exited with {status}", arguments.join(" "));
    }
    let succeeded = db::finished_count(&db, "succeeded").await?;
    if succeeded as u64 != jobs {
        bail!("pdoflow-run left work undone: {succeeded} of {jobs} jobs succeeded");
    }
    report::figure(
        &format!("pdoflow-run {}", arguments.join(" ")),
        format!("{jobs} jobs in {}", report::millis(elapsed)),
    );
    Ok(jobs as f64 / elapsed.as_secs_f64())
}
