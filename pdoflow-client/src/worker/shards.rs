//! One worker process over several shards: databases that each have
//! pdoflow, with no proxy in front (docs/scaling.md). Each shard gets a
//! worker loop of its own with an equal share of the concurrency (rounded
//! up), so a backlog on one shard never starves another, and each shard's
//! jobs are claimed in its own priority order. A shard that cannot be
//! reached stops only its own loop, which keeps trying to connect (with
//! backoff) while the others work; in burst mode it is given up after its
//! first failure and reported when the others are done.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Worker, WorkerConfig, WorkerReport};
use crate::backoff::Backoff;
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::task::TaskRegistry;

/// Works jobs of every shard in `shards` until `shutdown` completes (or, in
/// burst mode, until each shard has no job left), with `config`'s
/// concurrency split evenly between them. Returns the shards' reports
/// added up.
pub async fn run_shards(
    shards: Vec<ConnectionSettings>,
    registry: TaskRegistry,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerReport> {
    if shards.is_empty() {
        return Err(Error::Invalid("run_shards: no shard given".into()));
    }
    let share = config.concurrency.div_ceil(shards.len());
    let config = WorkerConfig {
        concurrency: share,
        ..config
    };
    // Settings a worker refuses are refused here, before anything starts.
    for settings in &shards {
        Worker::new(settings.clone(), registry.clone(), config.clone())?;
    }
    let (stop, stopping) = watch::channel(false);
    let mut loops = JoinSet::new();
    for settings in shards {
        loops.spawn(shard_loop(
            settings,
            registry.clone(),
            config.clone(),
            stopping.clone(),
        ));
    }
    tokio::pin!(shutdown);
    let mut report = WorkerReport::default();
    let mut unreachable = Vec::new();
    loop {
        tokio::select! {
            () = &mut shutdown, if !*stop.borrow() => {
                let _ = stop.send(true);
            }
            joined = loops.join_next() => match joined {
                None => break,
                Some(Ok(Ok(shard))) => add(&mut report, &shard),
                Some(Ok(Err(failure))) => unreachable.push(failure),
                Some(Err(panic)) => {
                    return Err(Error::Invalid(format!("a shard's worker loop failed: {panic}")))
                }
            },
        }
    }
    if unreachable.is_empty() {
        Ok(report)
    } else {
        Err(Error::Invalid(format!(
            "shards not worked: {}",
            unreachable.join("; ")
        )))
    }
}

fn add(total: &mut WorkerReport, shard: &WorkerReport) {
    total.succeeded += shard.succeeded;
    total.failed += shard.failed;
    total.released += shard.released;
}

/// One shard's worker, run again after each failure to start (its
/// database down or unreachable) until `stopping` says stop. Err (the
/// shard and why) only in burst mode, which does not wait for a shard.
async fn shard_loop(
    settings: ConnectionSettings,
    registry: TaskRegistry,
    config: WorkerConfig,
    mut stopping: watch::Receiver<bool>,
) -> std::result::Result<WorkerReport, String> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let worker = Worker::new(settings.clone(), registry.clone(), config.clone())
            .map_err(|error| format!("{}: {error}", settings.source))?;
        let mut stop = stopping.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        match worker.run(stopped).await {
            Ok(report) => return Ok(report),
            Err(error) if config.burst => return Err(format!("{}: {error}", settings.source)),
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    shard = %settings.source,
                    %error,
                    retry_in = ?delay,
                    "cannot work this shard; the others go on"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stopping.wait_for(|stop| *stop) => return Ok(WorkerReport::default()),
                }
            }
        }
    }
}
