//! The `pdoflow-run` command line, as a library function so that a binary
//! with handlers of its own is a few lines (see `examples/custom_worker.rs`):
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let registry = pdoflow_client::TaskRegistry::new(); // register your tasks here
//!     pdoflow_client::cli::main(registry)
//! }
//! ```

mod admin;
mod dag;
mod output;
mod pool;
mod postings;
mod progress;
mod queues;
mod schedules;
mod serve;
mod wait;
mod worker;
mod worker_metrics;

pub use wait::{EXIT_JOB_FAILED, EXIT_STILL_RUNNING};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConnectionSettings};
use crate::connect::SessionSettings;
use crate::error::Result;
use crate::task::TaskRegistry;

/// Run pdoflow jobs and manage the queue.
#[derive(Debug, Parser)]
#[command(name = "pdoflow-run", version, about)]
pub struct Cli {
    /// PostgreSQL connection URL (else PDOFLOW_DATABASE_URL, DATABASE_URL,
    /// then ~/.config/pdoflow/db.conf), with libpq's TLS parameters if need
    /// be: ?sslmode=verify-full&sslrootcert=ca.pem (else PGSSLMODE, ...).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// The db.conf file to read instead of ~/.config/pdoflow/db.conf.
    #[arg(long, global = true, env = "PDOFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// lock_timeout of every connection: a statement waiting longer for a
    /// lock fails, and is retried where that makes sense ("0s": no limit).
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration, env = "PDOFLOW_LOCK_TIMEOUT")]
    pub lock_timeout: Duration,
    /// statement_timeout of every connection ("0s": no limit).
    #[arg(long, global = true, default_value = "1m", value_parser = humantime::parse_duration, env = "PDOFLOW_STATEMENT_TIMEOUT")]
    pub statement_timeout: Duration,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "PDOFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `pdoflow_client=debug`.
    #[arg(long, global = true, default_value = "info", env = "PDOFLOW_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work jobs: run registered handlers until stopped (SIGINT/SIGTERM).
    Worker(worker::WorkerArgs),
    /// Run N worker processes, restarting any that die.
    Pool(pool::PoolArgs),
    /// Run one queued job here, in the foreground (for debugging).
    ExecuteJob(worker::ExecuteJobArgs),
    /// Wait until the queues have no queued or running job left, or (--job)
    /// until one job has ended.
    Wait(wait::WaitArgs),
    /// Enqueue one job.
    Enqueue(admin::EnqueueArgs),
    /// Job counts by queue and state.
    Status(admin::OutputArgs),
    /// List jobs, newest first, with filters.
    Jobs(admin::JobsArgs),
    /// Show, cancel or retry one job.
    Job {
        #[command(subcommand)]
        action: admin::JobAction,
    },
    /// Waiting, due, paused, blocked and running jobs per queue and priority.
    PriorityStats(admin::OutputArgs),
    /// List postings.
    Postings {
        #[command(subcommand)]
        action: postings::PostingsAction,
    },
    /// Create a posting, show or follow its status, pause, resume or cancel it.
    Posting {
        #[command(subcommand)]
        action: postings::PostingAction,
    },
    /// Submit a DAG workflow.
    Dag {
        #[command(subcommand)]
        action: dag::DagAction,
    },
    /// List, add, remove, pause or resume cron schedules.
    Schedules {
        #[command(subcommand)]
        action: schedules::SchedulesAction,
    },
    /// List queues with their controls and job counts; pause, resume or
    /// limit a queue.
    Queues {
        #[command(subcommand)]
        action: queues::QueuesAction,
    },
    /// Serve the HTTP API (docs/http-api.md) until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
}

/// Parses the command line, runs the command and returns the exit code:
/// 0 on success, 1 on failure (with a one-line error), 2 for usage errors;
/// `wait --job` also 3 (`EXIT_STILL_RUNNING`) and 4 (`EXIT_JOB_FAILED`).
pub fn main(registry: TaskRegistry) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    if let Err(error) = init_logging(cli.log_format, &cli.log_level) {
        eprintln!(
            "pdoflow-run: --log-level {:?}: {error} (see --help)",
            cli.log_level
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pdoflow-run: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, registry)) {
        Ok(code) => code,
        Err(error) => {
            // One line, whatever the error carries (a command's stderr, say).
            let text = error.to_string();
            let one_line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect();
            eprintln!("pdoflow-run: {}", one_line.join(" | "));
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` print as clap formats them; a usage mistake
/// becomes one line on stderr and exit code 2.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || matches!(
        error.kind(),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = error.print();
        return if error.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    eprintln!(
        "pdoflow-run: {} (see --help)",
        usage_line(&error.render().to_string())
    );
    ExitCode::from(2)
}

/// Clap's message in one line: its first paragraph, which for a missing
/// argument goes on over indented lines that name it.
fn usage_line(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let line = paragraph.join(" ");
    match line.strip_prefix("error: ") {
        Some(rest) => rest.to_owned(),
        None if line.is_empty() => "invalid command line".to_owned(),
        None => line,
    }
}

impl Command {
    /// Whether the command only reads, and so may run on a standby
    /// (`target_session_attrs=prefer-standby`, `standby`, `read-only`).
    /// Waiting counts as writing: a standby never sees a job end.
    fn only_reads(&self) -> bool {
        match self {
            Command::Status(_) | Command::Jobs(_) | Command::PriorityStats(_) => true,
            Command::Job { action } => matches!(
                action,
                admin::JobAction::Show { .. } | admin::JobAction::Attempts { .. }
            ),
            Command::Postings { action } => matches!(action, postings::PostingsAction::List(_)),
            Command::Posting { action } => {
                matches!(action, postings::PostingAction::Status { .. })
            }
            Command::Schedules { action } => {
                matches!(action, schedules::SchedulesAction::List(_))
            }
            Command::Queues { action } => matches!(action, queues::QueuesAction::List(_)),
            Command::Worker(_)
            | Command::Pool(_)
            | Command::ExecuteJob(_)
            | Command::Wait(_)
            | Command::Enqueue(_)
            | Command::Dag { .. }
            | Command::Serve(_) => false,
        }
    }
}

/// Fails when `settings` want a standby: for a command that writes (or
/// waits for jobs to end, which only the primary sees).
pub(crate) fn refuse_standby_target(settings: &ConnectionSettings) -> Result<()> {
    if settings.target.may_write() {
        return Ok(());
    }
    Err(crate::Error::Config(format!(
        "{}: target_session_attrs={} wants a standby, and this command writes (or \
         waits for jobs to end, which only the primary sees); use read-write (or \
         leave it out) here, and keep standby targets for the commands that only \
         read: status, jobs, job show|attempts, priority-stats, postings list, \
         posting status, schedules list, queues list",
        settings.source, settings.target
    )))
}

/// Runs a parsed command line; returns the exit code of a command that ran
/// to its end (`SUCCESS`, but for `wait --job`, whose code says how the job
/// ended).
pub async fn run(cli: Cli, registry: TaskRegistry) -> Result<ExitCode> {
    let session = SessionSettings {
        lock_timeout: cli.lock_timeout,
        statement_timeout: cli.statement_timeout,
    };
    let only_reads = cli.command.only_reads();
    let settings = || -> Result<ConnectionSettings> {
        session.check()?;
        let mut settings = config::resolve(cli.database_url.as_deref(), cli.config.as_deref())?;
        if !only_reads {
            refuse_standby_target(&settings)?;
        }
        settings.session = session;
        Ok(settings)
    };
    let done = match cli.command {
        Command::Worker(args) if !args.shards.is_empty() => {
            session.check()?;
            let shards = worker::shard_settings(session, &args.shards)?;
            worker::run(shards, registry, args).await
        }
        Command::Worker(args) => worker::run(vec![settings()?], registry, args).await,
        Command::Pool(args) if !args.worker.shards.is_empty() => {
            session.check()?;
            let shards = worker::shard_settings(session, &args.worker.shards)?;
            pool::run(shards, args).await
        }
        Command::Pool(args) => pool::run(vec![settings()?], args).await,
        Command::ExecuteJob(args) => worker::execute(settings()?, registry, args).await,
        Command::Wait(args) => return wait::wait(&settings()?, args).await,
        Command::Enqueue(args) => admin::enqueue(&settings()?, args).await,
        Command::Status(args) => admin::status(&settings()?, args).await,
        Command::Jobs(args) => admin::jobs(&settings()?, args).await,
        Command::Job { action } => admin::job(&settings()?, action).await,
        Command::PriorityStats(args) => admin::priority_stats(&settings()?, args).await,
        Command::Postings { action } => postings::postings(&settings()?, action).await,
        Command::Posting { action } => postings::posting(&settings()?, action).await,
        Command::Dag { action } => dag::dag(&settings()?, action).await,
        Command::Schedules { action } => schedules::schedules(&settings()?, action).await,
        Command::Queues { action } => queues::queues(&settings()?, action).await,
        Command::Serve(args) => serve::run(settings()?, cli.config.as_deref(), args).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat, filter: &str) -> std::result::Result<(), String> {
    // A panicking handler fails its job; its report goes to the log like
    // everything else (and stays one JSON object per line in JSON mode).
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "panic: {message}");
    }));
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| error.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// Watches SIGINT and SIGTERM from now on (so that a signal during start-up
/// is not lost) and returns a future that completes on the first of them.
pub(crate) fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let watch = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|error| crate::Error::Invalid(format!("cannot watch {name}: {error}")))
    };
    let mut interrupt = watch(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = watch(SignalKind::terminate(), "SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// Connects for an admin command, naming where the settings came from on failure.
async fn connect(settings: &ConnectionSettings) -> Result<crate::Client> {
    crate::Client::connect_with_settings(settings)
        .await
        .map_err(|error| {
            crate::Error::Config(format!(
                "cannot connect to the database ({}): {error}",
                settings.source
            ))
        })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use uuid::Uuid;

    use super::{postings, queues, schedules, Cli, Command};
    use crate::job::DependencyMode;
    use crate::posting::PostingState;

    const A: &str = "00000000-0000-7000-8000-00000000000a";
    const B: &str = "00000000-0000-7000-8000-00000000000b";
    const C: &str = "00000000-0000-7000-8000-00000000000c";

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn session_timeouts_are_global_with_defaults() {
        let parsed = Cli::try_parse_from(["pdoflow-run", "status"]).unwrap();
        assert_eq!(parsed.lock_timeout, crate::connect::DEFAULT_LOCK_TIMEOUT);
        assert_eq!(
            parsed.statement_timeout,
            crate::connect::DEFAULT_STATEMENT_TIMEOUT
        );
        let parsed = Cli::try_parse_from([
            "pdoflow-run",
            "worker",
            "--lock-timeout",
            "250ms",
            "--statement-timeout",
            "0s",
        ])
        .unwrap();
        assert_eq!(parsed.lock_timeout, std::time::Duration::from_millis(250));
        assert_eq!(parsed.statement_timeout, std::time::Duration::ZERO);
    }

    #[test]
    fn parents_are_repeated_or_comma_separated() {
        let parsed = Cli::try_parse_from([
            "pdoflow-run",
            "enqueue",
            "--task",
            "t",
            "--depends-on",
            &format!("{A},{B}"),
            "--depends-on",
            C,
            "--dependency-mode",
            "any",
            "--posting",
            A,
        ]);
        let Ok(Cli {
            command: Command::Enqueue(args),
            ..
        }) = parsed
        else {
            panic!("not an enqueue: {parsed:?}");
        };
        let expected: Vec<Uuid> = [A, B, C].iter().map(|id| id.parse().unwrap()).collect();
        assert_eq!(args.depends_on, expected);
        assert_eq!(args.dependency_mode, Some(DependencyMode::Any));
        assert_eq!(args.posting, A.parse().ok());
    }

    #[test]
    fn a_dependency_mode_needs_parents_and_statuses_are_named() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&[
            "pdoflow-run",
            "enqueue",
            "--task",
            "t",
            "--dependency-mode",
            "any"
        ])
        .is_err());
        assert!(parse(&["pdoflow-run", "posting", "set-status", A, "stopped"]).is_err());
        assert!(parse(&["pdoflow-run", "posting", "status", A, "--timeout", "1s"]).is_err());
        let parsed = parse(&["pdoflow-run", "posting", "set-status", A, "paused"]);
        assert!(
            matches!(
                parsed,
                Ok(Cli {
                    command: Command::Posting {
                        action: postings::PostingAction::SetStatus {
                            status: PostingState::Paused,
                            ..
                        }
                    },
                    ..
                })
            ),
            "{parsed:?}"
        );
    }

    #[test]
    fn a_usage_mistake_is_one_line_naming_what_is_missing() {
        let error = Cli::try_parse_from(["pdoflow-run", "schedules", "add", "x", "--task", "t"])
            .expect_err("--cron is missing");
        let line = super::usage_line(&error.render().to_string());
        assert_eq!(
            line,
            "the following required arguments were not provided: --cron <CRON>"
        );
    }

    #[test]
    fn unique_jobs_schedules_and_job_waits_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let parsed = parse(&[
            "pdoflow-run",
            "enqueue",
            "--task",
            "t",
            "--unique-key",
            "k",
            "--unique-for",
            "1h",
        ]);
        let Ok(Cli {
            command: Command::Enqueue(args),
            ..
        }) = parsed
        else {
            panic!("not an enqueue: {parsed:?}");
        };
        assert_eq!(args.unique_key.as_deref(), Some("k"));
        assert_eq!(args.unique_for, Some(std::time::Duration::from_secs(3600)));
        assert!(
            parse(&[
                "pdoflow-run",
                "enqueue",
                "--task",
                "t",
                "--unique-for",
                "1h"
            ])
            .is_err(),
            "--unique-for needs --unique-key"
        );

        let parsed = parse(&["pdoflow-run", "wait", "--job", A, "--timeout", "90s"]);
        let Ok(Cli {
            command: Command::Wait(args),
            ..
        }) = parsed
        else {
            panic!("not a wait: {parsed:?}");
        };
        assert_eq!(args.job, A.parse().ok());
        assert_eq!(args.timeout, Some(std::time::Duration::from_secs(90)));
        assert!(parse(&["pdoflow-run", "wait", "--job", A, "--queues", "a"]).is_err());
        assert!(parse(&["pdoflow-run", "wait", "--json"]).is_err());

        let parsed = parse(&[
            "pdoflow-run",
            "schedules",
            "add",
            "nightly",
            "--cron",
            "*/5 * * * *",
            "--task",
            "report",
            "--priority",
            "-1",
            "--no-catch-up",
        ]);
        let Ok(Cli {
            command:
                Command::Schedules {
                    action: schedules::SchedulesAction::Add(args),
                },
            ..
        }) = parsed
        else {
            panic!("not a schedules add: {parsed:?}");
        };
        assert_eq!(
            (args.name.as_str(), args.cron.as_str(), args.priority),
            ("nightly", "*/5 * * * *", Some(-1))
        );
        assert!(args.no_catch_up);
        assert_eq!(args.args, serde_json::json!({}));

        let parsed = parse(&["pdoflow-run", "worker", "--progress-interval", "250ms"]);
        assert!(
            matches!(&parsed, Ok(Cli { command: Command::Worker(args), .. })
                if args.progress_interval == std::time::Duration::from_millis(250)),
            "{parsed:?}"
        );
    }

    #[test]
    fn queue_commands_parse() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let limit = |args: &[&str]| match parse(args) {
            Ok(Cli {
                command:
                    Command::Queues {
                        action: queues::QueuesAction::Limit(limit),
                    },
                ..
            }) => limit,
            other => panic!("not a queues limit: {other:?}"),
        };
        let both = limit(&[
            "pdoflow-run",
            "queues",
            "limit",
            "mail",
            "--max-running",
            "5",
            "--rate",
            "10",
            "--per",
            "1m",
        ]);
        assert_eq!(
            (both.queue.as_str(), both.max_running, both.rate, both.per),
            (
                "mail",
                Some(5),
                Some(10),
                std::time::Duration::from_secs(60)
            )
        );
        let neither = limit(&["pdoflow-run", "queues", "limit", "mail"]);
        assert_eq!((neither.max_running, neither.rate), (None, None));
        // A limit below 1 reaches the server, which says why it is wrong.
        let negative = limit(&[
            "pdoflow-run",
            "queues",
            "limit",
            "mail",
            "--max-running",
            "-1",
        ]);
        assert_eq!(negative.max_running, Some(-1));
        assert!(
            parse(&["pdoflow-run", "queues", "limit", "mail", "--per", "2s"]).is_err(),
            "--per needs --rate"
        );

        let key_limit = |args: &[&str]| match parse(args) {
            Ok(Cli {
                command:
                    Command::Queues {
                        action: queues::QueuesAction::KeyLimit(limit),
                    },
                ..
            }) => Ok((limit.max_running, limit.clear)),
            Ok(other) => panic!("not a queues key-limit: {other:?}"),
            Err(error) => Err(error),
        };
        assert_eq!(
            key_limit(&["pdoflow-run", "queues", "key-limit", "mail", "2"]).ok(),
            Some((Some(2), false))
        );
        assert_eq!(
            key_limit(&["pdoflow-run", "queues", "key-limit", "mail", "--clear"]).ok(),
            Some((None, true))
        );
        assert_eq!(
            key_limit(&["pdoflow-run", "queues", "key-limit", "mail", "0"]).ok(),
            Some((Some(0), false))
        );
        assert!(key_limit(&["pdoflow-run", "queues", "key-limit", "mail"]).is_err());
        assert!(
            key_limit(&["pdoflow-run", "queues", "key-limit", "mail", "2", "--clear"]).is_err()
        );
        assert!(parse(&["pdoflow-run", "queues", "list", "--json"]).is_ok());
        assert!(parse(&["pdoflow-run", "queues", "pause"]).is_err());
    }

    #[test]
    fn no_listen_is_a_worker_and_pool_flag() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(
            matches!(parse(&["pdoflow-run", "worker"]), Ok(Cli { command: Command::Worker(args), .. }) if !args.no_listen)
        );
        assert!(
            matches!(parse(&["pdoflow-run", "worker", "--no-listen"]), Ok(Cli { command: Command::Worker(args), .. }) if args.no_listen)
        );
        assert!(
            matches!(parse(&["pdoflow-run", "pool", "--no-listen"]), Ok(Cli { command: Command::Pool(args), .. }) if args.worker.no_listen)
        );
        assert!(
            matches!(parse(&["pdoflow-run", "worker", "--no-listen=false"]), Ok(Cli { command: Command::Worker(args), .. }) if !args.no_listen)
        );
    }
}
