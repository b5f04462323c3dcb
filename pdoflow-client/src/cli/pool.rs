//! `pdoflow-run pool --processes N`: N worker processes under one supervisor
//! (the original pdoflow's ClusterPool). A process that dies is started
//! again; one that keeps dying soon after its start waits longer each time
//! (1 s, doubling, at most 60 s). With `--burst`, a process that exits 0
//! (nothing left to do) is not restarted; without it, every exit is. SIGINT or SIGTERM is passed on
//! to every process, and the pool exits once they have all stopped.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;

use clap::Args;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::process::Command;
use tokio::time::Instant;

use super::worker::WorkerArgs;
use crate::backoff::Backoff;
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};

/// A process that lived at least this long had not been crash-looping.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Worker processes to run.
    #[arg(long, default_value_t = 2, env = "PDOFLOW_PROCESSES")]
    pub processes: usize,
    /// Every `worker` option applies to each process.
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Runs the pool; `databases` are those its workers work (one, or each
/// `--shard`), checked once here.
pub async fn run(databases: Vec<ConnectionSettings>, args: PoolArgs) -> Result<()> {
    if args.processes == 0 || args.processes > 1_000 {
        return Err(Error::Invalid(format!(
            "--processes must be from 1 to 1000, got {}",
            args.processes
        )));
    }
    if let (Some(address), true) = (args.worker.metrics_listen, args.processes > 1) {
        return Err(Error::Invalid(format!(
            "--metrics-listen {address}: the {} worker processes of a pool cannot share one address; \
             run them as separate `pdoflow-run worker --metrics-listen` processes, one address each",
            args.processes
        )));
    }
    // Each worker would refuse to start, over and over: say it once.
    for settings in &databases {
        super::worker::check_shell_grant(settings, &args.worker.shell).await?;
    }
    // Watch signals before the first process starts.
    let stop = super::shutdown_signal()?;
    tokio::pin!(stop);
    let burst = args.worker.burst;
    let worker_args = worker_command_line(std::env::args_os().skip(1).collect());
    let program = std::env::current_exe().map_err(|error| {
        Error::Invalid(format!(
            "cannot find this program to start workers: {error}"
        ))
    })?;
    let start = |slot: usize| -> std::io::Result<(u32, ExitFuture)> {
        let mut child = Command::new(&program).args(&worker_args).spawn()?;
        let pid = child.id().unwrap_or(0);
        let started = Instant::now();
        tracing::info!(slot, pid, "worker process started");
        let exit: ExitFuture = Box::pin(async move {
            let status = child.wait().await;
            Exit {
                slot,
                started,
                status,
            }
        });
        Ok((pid, exit))
    };

    let mut pids = vec![0u32; args.processes];
    let mut backoffs =
        vec![Backoff::new(Duration::from_secs(1), MAX_RESTART_DELAY); args.processes];
    let mut running = FuturesUnordered::new();
    let mut restarts = FuturesUnordered::new();
    let restart_later = |slot: usize, delay: Duration| async move {
        tokio::time::sleep(delay).await;
        slot
    };
    for slot in 0..args.processes {
        restarts.push(restart_later(slot, Duration::ZERO));
    }
    let mut stopping = false;
    loop {
        if running.is_empty() && (stopping || restarts.is_empty()) {
            tracing::info!("all worker processes stopped");
            return Ok(());
        }
        tokio::select! {
            Some(exit) = running.next() => {
                let Exit { slot, started, status } = exit;
                pids[slot] = 0;
                let finished = matches!(&status, Ok(status) if status.success());
                if stopping || (burst && finished) {
                    tracing::info!(slot, "worker process ended");
                    continue;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoffs[slot].reset();
                }
                let delay = backoffs[slot].next_delay();
                match status {
                    Ok(status) => tracing::warn!(slot, %status, restart_in = ?delay, "worker process died"),
                    Err(error) => tracing::warn!(slot, %error, restart_in = ?delay, "worker process lost"),
                }
                restarts.push(restart_later(slot, delay));
            }
            Some(slot) = restarts.next(), if !stopping => {
                match start(slot) {
                    Ok((pid, exit)) => {
                        pids[slot] = pid;
                        running.push(exit);
                    }
                    Err(error) => {
                        let delay = backoffs[slot].next_delay();
                        tracing::warn!(slot, %error, retry_in = ?delay, "cannot start a worker process");
                        restarts.push(restart_later(slot, delay));
                    }
                }
            }
            () = &mut stop, if !stopping => {
                stopping = true;
                tracing::info!("stopping every worker process");
                for pid in pids.iter().filter(|pid| **pid != 0) {
                    if let Ok(pid) = libc::pid_t::try_from(*pid) {
                        // SAFETY: kill(2) on a process this one started and still waits for.
                        unsafe { libc::kill(pid, libc::SIGTERM) };
                    }
                }
            }
        }
    }
}

/// Completes when a worker process ends.
type ExitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Exit> + Send>>;

struct Exit {
    slot: usize,
    started: Instant,
    status: std::io::Result<ExitStatus>,
}

/// This program's own command line with `pool` turned into `worker` and the
/// pool's own option removed: every other option reaches the workers as given.
fn worker_command_line(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    let mut replaced = false;
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if !replaced && text == "pool" {
            out.push(OsString::from("worker"));
            replaced = true;
        } else if replaced && text == "--processes" {
            iter.next();
        } else if replaced && text.starts_with("--processes=") {
            continue;
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::worker_command_line;

    #[test]
    fn the_pool_command_line_becomes_a_worker_command_line() {
        let args = |list: &[&str]| {
            list.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            worker_command_line(args(&[
                "--database-url",
                "u",
                "pool",
                "--processes",
                "3",
                "--queues",
                "a,b"
            ])),
            args(&["--database-url", "u", "worker", "--queues", "a,b"])
        );
        assert_eq!(
            worker_command_line(args(&["pool", "--processes=4", "--burst"])),
            args(&["worker", "--burst"])
        );
        // Global options reach the workers wherever they stand.
        assert_eq!(
            worker_command_line(args(&[
                "--lock-timeout",
                "10s",
                "pool",
                "--statement-timeout=2m",
                "--processes",
                "2",
            ])),
            args(&["--lock-timeout", "10s", "worker", "--statement-timeout=2m"])
        );
    }
}
