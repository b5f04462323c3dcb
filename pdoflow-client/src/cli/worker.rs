//! `pdoflow-run worker`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::builtin;
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::task::TaskRegistry;
use crate::worker::{SweepMode, Worker, WorkerConfig};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queues to work, comma-separated (default: every queue).
    #[arg(long, value_delimiter = ',', env = "PDOFLOW_QUEUES")]
    pub queues: Option<Vec<String>>,
    /// Claim only these tasks, comma-separated (default: every task; jobs of
    /// tasks without a handler here then fail).
    #[arg(long, value_delimiter = ',', env = "PDOFLOW_TASKS")]
    pub tasks: Option<Vec<String>>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 100, env = "PDOFLOW_CONCURRENCY")]
    pub concurrency: usize,
    /// Exit once no job is available or running in the queues.
    #[arg(long)]
    pub burst: bool,
    /// Name recorded on claims and in pdoflow.workers (default: host-pid).
    #[arg(long, env = "PDOFLOW_WORKER_NAME")]
    pub name: Option<String>,
    /// Lease of each claim; renewed while the job runs.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, env = "PDOFLOW_LEASE")]
    pub lease: Duration,
    /// Longest a job may run ("0s": no limit).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, env = "PDOFLOW_JOB_TIMEOUT")]
    pub job_timeout: Duration,
    /// Poll this often when no announcement arrives.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "PDOFLOW_POLL_INTERVAL")]
    pub poll_interval: Duration,
    /// Time running jobs get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "PDOFLOW_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
    /// Run pdoflow.sweep() from this worker: auto (when no background
    /// sweeper covers the database), always or never.
    #[arg(long, value_enum, default_value_t = SweepMode::Auto, env = "PDOFLOW_SWEEP")]
    pub sweep: SweepMode,
    /// How often this worker sweeps, when it does.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, env = "PDOFLOW_SWEEP_INTERVAL")]
    pub sweep_interval: Duration,
    /// Where the shell task writes job output (default ~/.local/state/pdoflow/logs).
    #[arg(long, env = "PDOFLOW_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
}

pub async fn run(
    settings: ConnectionSettings,
    mut registry: TaskRegistry,
    args: WorkerArgs,
) -> Result<()> {
    // Watch signals before anything is claimed.
    let stop = super::shutdown_signal()?;
    builtin::register_builtins(
        &mut registry,
        args.log_dir.unwrap_or_else(builtin::default_log_dir),
    )?;
    let defaults = WorkerConfig::default();
    let config = WorkerConfig {
        name: args.name.unwrap_or(defaults.name),
        queues: args.queues,
        tasks: args.tasks,
        concurrency: args.concurrency,
        lease: args.lease,
        job_timeout: (!args.job_timeout.is_zero()).then_some(args.job_timeout),
        poll_interval: args.poll_interval,
        shutdown_grace: args.shutdown_grace,
        burst: args.burst,
        sweep: args.sweep,
        sweep_interval: args.sweep_interval,
    };
    let source = settings.source.clone();
    let worker = Worker::new(settings, registry, config)?;
    let report = worker.run(stop).await.map_err(|error| match error {
        Error::Postgres(_) => Error::Config(format!(
            "cannot connect to the database ({source}): {error}"
        )),
        other => other,
    })?;
    tracing::info!(
        succeeded = report.succeeded,
        failed = report.failed,
        released = report.released,
        "worker stopped"
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExecuteJobArgs {
    /// The queued job to run.
    pub id: uuid::Uuid,
    /// Lease of the claim; renewed while the job runs.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Longest the job may run ("0s": no limit).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub job_timeout: Duration,
    /// Where the shell task writes job output.
    #[arg(long, env = "PDOFLOW_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
}

/// `execute-job ID`: runs one queued job here, through the normal claim,
/// heartbeat and finish path; exit 0 if it succeeded.
pub async fn execute(
    settings: ConnectionSettings,
    mut registry: TaskRegistry,
    args: ExecuteJobArgs,
) -> Result<()> {
    builtin::register_builtins(
        &mut registry,
        args.log_dir.unwrap_or_else(builtin::default_log_dir),
    )?;
    let client = super::connect(&settings).await?;
    let worker = format!("execute-job-{}", crate::worker::default_worker_name());
    let timeout = (!args.job_timeout.is_zero()).then_some(args.job_timeout);
    let job = crate::worker::execute_job(&client, &registry, args.id, &worker, args.lease, timeout)
        .await?;
    match job.error {
        None => {
            println!("job {} succeeded (attempt {})", job.id, job.attempt);
            if let Some(result) = job.result {
                println!("{result}");
            }
            Ok(())
        }
        Some(error) => Err(Error::Invalid(format!(
            "job {} failed (attempt {}, now {}): {error}",
            job.id, job.attempt, job.state
        ))),
    }
}
