//! `pdoflow-run worker`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::builtin;
use crate::config::ConnectionSettings;
use crate::connect::SessionSettings;
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
    /// Send a running job's progress reports at most this often (reports in
    /// between replace the one waiting).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, env = "PDOFLOW_PROGRESS_INTERVAL")]
    pub progress_interval: Duration,
    /// Where the shell task writes job output (default ~/.local/state/pdoflow/logs).
    #[arg(long, env = "PDOFLOW_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// Learn of new jobs without LISTEN, for connection poolers in
    /// transaction mode (PgBouncer): an idle worker claims with a wait of
    /// about a second inside the database, which returns as soon as a job
    /// is available. Default: LISTEN, switching to this by itself when
    /// LISTEN fails.
    #[arg(
        long,
        env = "PDOFLOW_NO_LISTEN",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true
    )]
    pub no_listen: bool,
    /// Serve Prometheus metrics of this worker's handlers (durations per
    /// task, outcomes, jobs in flight) at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9187. Default: none.
    #[arg(long, value_name = "ADDR", env = "PDOFLOW_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Work several shard databases (each with pdoflow) instead of the one
    /// database: repeat --shard URL, or list the URLs in PDOFLOW_SHARDS
    /// separated by spaces. Each shard gets an equal share of
    /// --concurrency and a claim loop of its own; one that is down stops
    /// only its share.
    #[arg(
        long = "shard",
        value_name = "URL",
        env = "PDOFLOW_SHARDS",
        value_delimiter = ' '
    )]
    pub shards: Vec<String>,
    #[command(flatten)]
    pub shell: ShellArgs,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Run jobs of the built-in `shell` task, which executes the command its
    /// job names on this host. Needs a grant of task "shell" in the database
    /// (pdoflow.grant_task): whoever may enqueue it controls this host.
    #[arg(
        long,
        env = "PDOFLOW_ENABLE_SHELL",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true
    )]
    pub enable_shell: bool,
}

impl ShellArgs {
    /// The built-in tasks to register, with `shell` writing to `log_dir`
    /// (default: `builtin::default_log_dir`).
    fn builtins(&self, log_dir: Option<PathBuf>) -> builtin::Builtins {
        builtin::Builtins {
            shell: self.enable_shell,
            log_dir: log_dir.unwrap_or_else(builtin::default_log_dir),
        }
    }
}

/// With `--enable-shell`, refuses to go on unless task "shell" has at least
/// one grant in the database: turning shell on must come with a decision on
/// who may enqueue commands (docs/security.md).
pub(super) async fn check_shell_grant(
    settings: &ConnectionSettings,
    shell: &ShellArgs,
) -> Result<()> {
    if !shell.enable_shell {
        return Ok(());
    }
    shell_granted(&super::connect(settings).await?, &settings.source).await
}

/// Refuses to go on unless task "shell" has a grant (`check_shell_grant`),
/// on a connection the caller has; `source` names the settings.
async fn shell_granted(client: &crate::Client, source: &str) -> Result<()> {
    let granted = client
        .postgres()
        .query_one(
            "SELECT EXISTS (SELECT FROM pdoflow.task_grants WHERE task = $1)",
            &[&builtin::SHELL],
        )
        .await
        .map_err(|error| {
            Error::Config(format!(
                "--enable-shell: cannot read pdoflow.task_grants ({}); it needs pdoflow 0.4.0 or later \
                 and a role that may read it",
                crate::Error::from(error)
            ))
        })?
        .try_get::<_, bool>(0)?;
    if granted {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--enable-shell: task \"shell\" has no grant in this database ({source}), so any producer could \
         run commands on this host; first grant it to the roles that may, e.g. \
         SELECT pdoflow.grant_task('shell', 'ops')"
    )))
}

/// The worker's configuration from its command line.
fn worker_config(args: &WorkerArgs) -> WorkerConfig {
    let defaults = WorkerConfig::default();
    WorkerConfig {
        name: args.name.clone().unwrap_or(defaults.name),
        queues: args.queues.clone(),
        tasks: args.tasks.clone(),
        concurrency: args.concurrency,
        lease: args.lease,
        job_timeout: (!args.job_timeout.is_zero()).then_some(args.job_timeout),
        poll_interval: args.poll_interval,
        shutdown_grace: args.shutdown_grace,
        burst: args.burst,
        sweep: args.sweep,
        sweep_interval: args.sweep_interval,
        progress_interval: args.progress_interval,
        no_listen: args.no_listen,
    }
}

/// The settings of each `--shard` URL, with `session`'s settings.
pub(super) fn shard_settings(
    session: SessionSettings,
    urls: &[String],
) -> Result<Vec<ConnectionSettings>> {
    let mut shards = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        let source = format!("--shard {}", index + 1);
        let mut settings = ConnectionSettings::from_url(url, &source)?;
        crate::connect::check_tls(&settings.tls)
            .map_err(|error| Error::Config(format!("{source}: {error}")))?;
        super::refuse_standby_target(&settings)?;
        settings.session = session;
        shards.push(settings);
    }
    Ok(shards)
}

/// `worker`: works `databases`, the one database or, with `--shard`, each
/// shard (`worker::run_shards`).
pub async fn run(
    databases: Vec<ConnectionSettings>,
    mut registry: TaskRegistry,
    args: WorkerArgs,
) -> Result<()> {
    // Watch signals before anything is claimed.
    let stop = super::shutdown_signal()?;
    for settings in &databases {
        check_shell_grant(settings, &args.shell).await?;
    }
    if let Some(address) = args.metrics_listen {
        super::worker_metrics::serve(address)?;
    }
    let config = worker_config(&args);
    builtin::register_builtins(&mut registry, args.shell.builtins(args.log_dir))?;
    let report = match (args.shards.is_empty(), databases.first()) {
        (true, Some(settings)) => {
            let source = settings.source.clone();
            let worker = Worker::new(settings.clone(), registry, config)?;
            worker.run(stop).await.map_err(|error| match error {
                Error::Postgres(_) => Error::Config(format!(
                    "cannot connect to the database ({source}): {error}"
                )),
                other => other,
            })?
        }
        _ => crate::worker::run_shards(databases, registry, config, stop).await?,
    };
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
    #[command(flatten)]
    pub shell: ShellArgs,
}

/// `execute-job ID`: runs one queued job here, through the normal claim,
/// heartbeat and finish path; exit 0 if it succeeded.
pub async fn execute(
    settings: ConnectionSettings,
    mut registry: TaskRegistry,
    args: ExecuteJobArgs,
) -> Result<()> {
    let client = super::connect(&settings).await?;
    if args.shell.enable_shell {
        shell_granted(&client, &settings.source).await?;
    }
    builtin::register_builtins(&mut registry, args.shell.builtins(args.log_dir))?;
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
