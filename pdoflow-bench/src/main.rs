//! pdoflow-bench: the performance figures of docs/benchmarks.md, one
//! subcommand per scenario, each printing its figures, the settings it ran
//! with and, where one applies, the ratio to the plain-SQL ceiling measured
//! on the same cluster in the same run. `make bench` runs `all` on a tuned
//! throwaway cluster. It empties pdoflow's tables: never point it at a
//! database whose jobs matter.

mod claim;
mod dag;
mod db;
mod drain;
mod enqueue;
mod http;
mod latency;
mod limits;
mod memory;
mod pgq;
mod pressure;
mod raw;
mod report;
mod sharded;
mod sustained;
mod workers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pdoflow-bench",
    about = "Benchmarks pdoflow against the plain-SQL ceiling"
)]
struct Cli {
    /// The database to benchmark in. Its pdoflow tables are emptied.
    #[arg(long, env = "PDOFLOW_BENCH_DATABASE_URL")]
    database_url: String,
    /// Length of each timed run (enqueue, claim, raw, latency).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Connections of the concurrent scenarios.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Jobs of the drain scenario.
    #[arg(long, default_value_t = 100_000)]
    drain_jobs: u64,
    /// Jobs of the sustained scenario.
    #[arg(long, default_value_t = 2_000_000)]
    sustained_jobs: u64,
    /// How long the sustained scenario's idle transaction stays open.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_hold: Duration,
    /// The pressure scenario's warm-up before its clean phase, not measured:
    /// the clean reference is then taken at the steady state the later
    /// phases run in (a history table of millions of jobs, checkpoints).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pressure_warmup: Duration,
    /// The pressure scenario's clean phase.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pressure_clean: Duration,
    /// How long the pressure scenario holds the horizon, once with an xid
    /// and once with a REPEATABLE READ reader.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pressure_hold: Duration,
    /// The pressure scenario's phase after each holder commits.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pressure_recovery: Duration,
    /// The queue the pressure scenario runs: pdoflow, or PgQ as a reference.
    #[arg(long, value_enum, default_value = "pdoflow")]
    pressure_system: pressure::System,
    /// Jobs per second of the latency scenario.
    #[arg(long, default_value_t = 200.0)]
    latency_rate: f64,
    /// Rounds of the enqueue scenario. With more than one, each round's
    /// figures are against the mean of the raw INSERT runs just before and
    /// just after it, and the medians close the scenario: ratios that drift
    /// less with the machine than one raw run at the start gives.
    #[arg(long, default_value_t = 1)]
    enqueue_rounds: usize,
    /// The pdoflow-run binary (default: next to this one).
    #[arg(long)]
    pdoflow_run: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Every scenario below but pressure, in this order.
    All,
    /// The plain-SQL ceiling: INSERT, bulk INSERT, SKIP LOCKED claim + DELETE.
    Raw,
    /// enqueue_many of 100,000 jobs in one statement.
    Bulk,
    /// One enqueue per transaction from --clients connections, per notify mode.
    Enqueue,
    /// claim(10) + finish_many through SQL from --clients connections.
    Claim,
    /// --drain-jobs queued jobs worked by pdoflow-run worker --burst.
    Drain,
    /// Enqueue-commit to handler-start latency at --latency-rate jobs/s.
    Latency,
    /// Drain with and without a max_running limit; a 1,000/s rate limit.
    Limits,
    /// submit_dag of 1000-node DAGs.
    Dag,
    /// pdoflow-run's resident memory at concurrency 100.
    Memory,
    /// --sustained-jobs through enqueue, work and finish, then again with a
    /// session idle in transaction for --idle-hold.
    Sustained,
    /// The HTTP API (pdoflow-run serve) beside SQL: submits, HTTP workers'
    /// claim and finish, 1,000 long-polls held at once.
    Http,
    /// Plain-SQL workers while a session holds an xid, then while a
    /// REPEATABLE READ reader runs: rate, claim latency, table sizes.
    Pressure,
    /// PL/Proxy over four shard databases against a direct call: enqueue,
    /// claim and finish (needs PL/Proxy: scripts/plproxy.sh).
    Sharded,
}

/// What every scenario needs to know.
pub struct Bench {
    pub url: String,
    pub duration: Duration,
    pub clients: usize,
    pub drain_jobs: u64,
    pub sustained_jobs: u64,
    pub latency_rate: f64,
    pub enqueue_rounds: usize,
    pub pdoflow_run: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_setup();
    let cli = Cli::parse();
    if cli.clients == 0
        || cli.latency_rate <= 0.0
        || cli.drain_jobs == 0
        || cli.enqueue_rounds == 0
        || cli.sustained_jobs < 10
    {
        bail!("--clients, --latency-rate, --drain-jobs and --enqueue-rounds must be positive, --sustained-jobs at least 10");
    }
    let pdoflow_run = match cli.pdoflow_run {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating this program")?
            .with_file_name("pdoflow-run"),
    };
    let bench = Bench {
        url: cli.database_url,
        duration: cli.duration,
        clients: cli.clients,
        drain_jobs: cli.drain_jobs,
        sustained_jobs: cli.sustained_jobs,
        latency_rate: cli.latency_rate,
        enqueue_rounds: cli.enqueue_rounds,
        pdoflow_run,
    };
    let command: Vec<String> = std::env::args()
        .map(|argument| match argument.starts_with("postgres") {
            true => "URL".to_owned(),
            false => argument,
        })
        .collect();
    let setup = db::connect(&bench.url).await?;
    db::prepare(&setup).await?;
    report::settings(&setup, &command.join(" ")).await?;

    let mut ceilings = raw::Ceilings::default();
    let every = [
        Scenario::Raw,
        Scenario::Bulk,
        Scenario::Enqueue,
        Scenario::Claim,
        Scenario::Drain,
        Scenario::Latency,
        Scenario::Limits,
        Scenario::Dag,
        Scenario::Memory,
        Scenario::Sustained,
        Scenario::Http,
        Scenario::Sharded,
    ];
    let chosen = match cli.scenario {
        Scenario::All => every.to_vec(),
        one => vec![one],
    };
    for scenario in chosen {
        match scenario {
            Scenario::All => {}
            Scenario::Raw => raw::run(&bench, &mut ceilings).await?,
            Scenario::Bulk => enqueue::bulk(&bench, &mut ceilings).await?,
            Scenario::Enqueue => enqueue::single(&bench, &mut ceilings).await?,
            Scenario::Claim => claim::run(&bench, &mut ceilings).await?,
            Scenario::Drain => drain::run(&bench, &mut ceilings).await?,
            Scenario::Latency => latency::run(&bench).await?,
            Scenario::Limits => limits::run(&bench).await?,
            Scenario::Dag => dag::run(&bench).await?,
            Scenario::Memory => memory::run(&bench).await?,
            Scenario::Http => http::run(&bench).await?,
            Scenario::Sharded => sharded::run(&bench).await?,
            Scenario::Sustained => {
                sustained::run(&bench, None).await?;
                let idle = sustained::IdleTransaction {
                    at: 0.3,
                    hold: cli.idle_hold,
                };
                sustained::run(&bench, Some(idle)).await?;
            }
            Scenario::Pressure => {
                let phases = pressure::Phases {
                    warmup: cli.pressure_warmup,
                    clean: cli.pressure_clean,
                    hold: cli.pressure_hold,
                    recovery: cli.pressure_recovery,
                };
                pressure::run(&bench, &phases, cli.pressure_system).await?;
            }
        }
    }
    Ok(())
}

/// Warnings from the in-process workers go to stderr; figures to stdout.
fn tracing_setup() {
    let filter = std::env::var("PDOFLOW_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}
