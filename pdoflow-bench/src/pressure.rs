//! `pressure`: pdoflow while something holds the xmin horizon, worked the
//! way a plain-SQL worker in any language works it (claim a batch of 10,
//! finish it in a second transaction), with a producer keeping the queue
//! `BACKLOG` jobs deep.
//!
//! Phases, one after the other on the same workers and producer:
//! - **warm-up**: not measured. The phases after the first minute run with
//!   a history table of millions of jobs and checkpoints under way, and ran
//!   5-15% slower than a first minute on an empty database whether or not
//!   anything held the horizon (docs/benchmarks.md, 0.8.0): the reference
//!   is taken at that steady state;
//! - **clean**: nothing holds the horizon; the reference rate;
//! - **held xid**: another session runs `BEGIN; SELECT txid_current();` and
//!   stays idle in that transaction;
//! - **after the xid**: the first phase after that transaction commits;
//! - **RR reader**: a REPEATABLE READ transaction runs a query in a loop,
//!   which holds the horizon with its snapshot alone (no xid);
//! - **recovery**: after the reader commits.
//!
//! Every 5 s it prints the completion rate, the queue depth, claim latency,
//! the hot relations' size and dead rows, and the age of the oldest xmin;
//! at the end each phase's rate and claim p99 against the clean phase's, and
//! how long after each commit the rate was back to 0.9 of clean.
//!
//! Run it with the cluster's autovacuum settings as most users have them
//! (`scripts/bench.sh` resets `autovacuum_naptime` to its default for it).
//! `--pressure-system pgq` runs PgQ through the same phases as a reference
//! point (`pgq.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::db;
use crate::pgq;
use crate::report;
use crate::Bench;

/// Jobs kept waiting ahead of the workers.
pub const BACKLOG: u64 = 20_000;
/// Jobs per enqueue_many of the producer.
pub const PRODUCER_BATCH: i32 = 500;
/// Jobs per claim.
const CLAIM_BATCH: i32 = 10;
/// The rate is back once a second's completions reach this share of clean.
const RECOVERED: f64 = 0.9;

/// How long each phase lasts.
pub struct Phases {
    pub warmup: Duration,
    pub clean: Duration,
    pub hold: Duration,
    pub recovery: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    WarmUp,
    Clean,
    HeldXid,
    AfterXid,
    Reader,
    Recovery,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::WarmUp => "warm-up",
            Phase::Clean => "clean",
            Phase::HeldXid => "held xid",
            Phase::AfterXid => "after the xid",
            Phase::Reader => "RR reader",
            Phase::Recovery => "recovery",
        }
    }
}

/// The queue under pressure.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum System {
    Pdoflow,
    /// PgQ (`postgresql-15-pgq3`), the reference point (`pgq.rs`).
    Pgq,
}

/// What the workers and the producer share.
#[derive(Default)]
pub struct Counters {
    pub produced: AtomicU64,
    pub completed: AtomicU64,
    pub stop: AtomicBool,
    /// Claim latencies since the sampler last took them.
    pub claims: Mutex<Vec<Duration>>,
}

impl Counters {
    /// Whether another PRODUCER_BATCH would put more than BACKLOG waiting.
    pub fn backlog_full(&self) -> bool {
        let waiting = self
            .produced
            .load(Ordering::Relaxed)
            .saturating_sub(self.completed.load(Ordering::Relaxed));
        waiting + PRODUCER_BATCH as u64 > BACKLOG
    }
}

/// One second of the run.
struct Second {
    phase: Phase,
    /// Seconds since the phase began.
    into_phase: u64,
    completed: u64,
    claims: Vec<Duration>,
}

pub async fn run(bench: &Bench, phases: &Phases, system: System) -> Result<()> {
    let clients = bench.clients;
    let workers = match system {
        System::Pdoflow => {
            format!("claim(10) + finish_many from {clients} plain-SQL workers")
        }
        System::Pgq => {
            "PgQ: insert_event, one consumer of whole batches, a tick every 50 ms".to_owned()
        }
    };
    report::scenario(
        "pressure",
        &format!(
            "{workers}, queue kept {BACKLOG} deep; warm-up {} (not measured), \
             clean {}, then an xid held {}, then a REPEATABLE READ reader for {}, {} after each",
            humantime::format_duration(phases.warmup),
            humantime::format_duration(phases.clean),
            humantime::format_duration(phases.hold),
            humantime::format_duration(phases.hold),
            humantime::format_duration(phases.recovery),
        ),
    );
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    if system == System::Pgq {
        pgq::setup(&db).await?;
    }
    let naptime: String = db
        .query_one("SELECT current_setting('autovacuum_naptime')", &[])
        .await?
        .get(0);
    report::figure("autovacuum_naptime", naptime);

    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    match system {
        System::Pdoflow => {
            tasks.push(tokio::spawn(produce(bench.url.clone(), counters.clone())));
            for index in 0..clients {
                tasks.push(tokio::spawn(work(
                    bench.url.clone(),
                    counters.clone(),
                    index,
                )));
            }
        }
        System::Pgq => {
            tasks.push(tokio::spawn(pgq::produce(
                bench.url.clone(),
                counters.clone(),
            )));
            tasks.push(tokio::spawn(pgq::consume(
                bench.url.clone(),
                counters.clone(),
            )));
            tasks.push(tokio::spawn(pgq::tick(bench.url.clone(), counters.clone())));
        }
    }
    let sizes = match system {
        System::Pdoflow => ACTIVE_JOBS_SIZES,
        System::Pgq => pgq::SIZES,
    };

    let schedule = [
        (Phase::WarmUp, phases.warmup),
        (Phase::Clean, phases.clean),
        (Phase::HeldXid, phases.hold),
        (Phase::AfterXid, phases.recovery),
        (Phase::Reader, phases.hold),
        (Phase::Recovery, phases.recovery),
    ];
    let mut seconds = Vec::new();
    let mut holder: Option<Holder> = None;
    println!(
        "  {:>5} {:<14} {:>9} {:>8} {:>9} {:>9}  {:<34} {:>9}",
        "t",
        "phase",
        "jobs/s",
        "depth",
        "claim p50",
        "claim p99",
        "hot tables (table+indexes, dead)",
        "xmin age"
    );
    let started = Instant::now();
    let mut next_tick = started;
    let mut completed_before = 0;
    for (phase, length) in schedule {
        if let Some(previous) = holder.take() {
            previous.finish().await?;
        }
        holder = match phase {
            Phase::HeldXid => Some(Holder::xid(&bench.url).await?),
            Phase::Reader => Some(Holder::reader(&bench.url).await?),
            _ => None,
        };
        let phase_started = Instant::now();
        let mut into_phase = 0;
        while phase_started.elapsed() < length {
            next_tick += Duration::from_secs(1);
            tokio::time::sleep_until(next_tick.into()).await;
            let completed = counters.completed.load(Ordering::Relaxed);
            let claims = std::mem::take(&mut *lock(&counters.claims));
            into_phase += 1;
            seconds.push(Second {
                phase,
                into_phase,
                completed: completed - completed_before,
                claims,
            });
            completed_before = completed;
            if seconds.len() % 5 == 0 {
                let last = &seconds[seconds.len() - 5..];
                print_sample(&db, sizes, started.elapsed(), last, &counters).await?;
            }
            // Workers and the producer end only on an error: stop, and
            // awaiting them below says which.
            if tasks.iter().any(|task| task.is_finished()) {
                break;
            }
        }
        if tasks.iter().any(|task| task.is_finished()) {
            break;
        }
    }
    if let Some(previous) = holder.take() {
        previous.finish().await?;
    }
    counters.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.context("a pressure task panicked")??;
    }
    summarize(&seconds);
    db::reset(&db).await?;
    Ok(())
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps the queue BACKLOG deep with enqueue_many of PRODUCER_BATCH.
async fn produce(url: String, counters: Arc<Counters>) -> Result<()> {
    let db = db::connect(&url).await?;
    let enqueue = db
        .prepare("SELECT count(*) FROM pdoflow.enqueue_many('bench_pressure', array_fill('{}'::jsonb, ARRAY[$1::int]))")
        .await?;
    while !counters.stop.load(Ordering::Relaxed) {
        if counters.backlog_full() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        db.query_one(&enqueue, &[&PRODUCER_BATCH])
            .await
            .context("the producer's enqueue_many")?;
        counters
            .produced
            .fetch_add(PRODUCER_BATCH as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// A plain-SQL worker: claim up to CLAIM_BATCH, finish them, again.
async fn work(url: String, counters: Arc<Counters>, index: usize) -> Result<()> {
    let db = db::connect(&url).await?;
    let claim = db
        .prepare("SELECT id, attempt FROM pdoflow.claim($1, NULL, $2)")
        .await?;
    let finish = db
        .prepare("SELECT count(*) FROM pdoflow.finish_many($1, $2)")
        .await?;
    let worker = format!("pressure-{index}");
    while !counters.stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let rows = db
            .query(&claim, &[&CLAIM_BATCH, &worker])
            .await
            .context("a worker's claim")?;
        lock(&counters.claims).push(asked.elapsed());
        if rows.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
        let attempts: Vec<i32> = rows.iter().map(|row| row.get(1)).collect();
        db.query_one(&finish, &[&ids, &attempts])
            .await
            .context("a worker's finish_many")?;
        counters
            .completed
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// A session that holds the xmin horizon until `finish`.
enum Holder {
    /// Idle in a transaction that has an xid.
    Xid(Client),
    /// A REPEATABLE READ transaction querying in a loop until `stop`.
    Reader {
        stop: Arc<AtomicBool>,
        looping: tokio::task::JoinHandle<Result<Client>>,
    },
}

impl Holder {
    /// `BEGIN; SELECT txid_current();`, then idle in that transaction.
    async fn xid(url: &str) -> Result<Self> {
        let db = db::connect(url).await?;
        db.batch_execute("BEGIN; SELECT txid_current();")
            .await
            .context("opening the transaction that holds an xid")?;
        Ok(Holder::Xid(db))
    }

    /// A REPEATABLE READ transaction running a small query every 100 ms.
    async fn reader(url: &str) -> Result<Self> {
        let db = db::connect(url).await?;
        db.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await
            .context("opening the REPEATABLE READ reader")?;
        let stop = Arc::new(AtomicBool::new(false));
        let looping = {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    db.query_one("SELECT count(*) FROM pdoflow.workers", &[])
                        .await
                        .context("the REPEATABLE READ reader's query")?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(db)
            })
        };
        Ok(Holder::Reader { stop, looping })
    }

    async fn finish(self) -> Result<()> {
        let db = match self {
            Holder::Xid(db) => db,
            Holder::Reader { stop, looping } => {
                stop.store(true, Ordering::Relaxed);
                looping.await.context("the reader panicked")??
            }
        };
        db.batch_execute("COMMIT")
            .await
            .context("committing the horizon holder")?;
        Ok(())
    }
}

/// pdoflow's hot relation, and the age of the oldest xmin.
const ACTIVE_JOBS_SIZES: &str = "
    SELECT pg_relation_size('pdoflow.active_jobs'), pg_indexes_size('pdoflow.active_jobs'),
           coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                     WHERE relid = 'pdoflow.active_jobs'::regclass), 0),
           coalesce((SELECT max(age(backend_xmin)) FROM pg_stat_activity), 0)";

async fn print_sample(
    db: &Client,
    sizes: &str,
    at: Duration,
    seconds: &[Second],
    counters: &Counters,
) -> Result<()> {
    let completed: u64 = seconds.iter().map(|second| second.completed).sum();
    let mut claims: Vec<Duration> = seconds
        .iter()
        .flat_map(|second| second.claims.iter().copied())
        .collect();
    claims.sort();
    let depth = counters
        .produced
        .load(Ordering::Relaxed)
        .saturating_sub(counters.completed.load(Ordering::Relaxed));
    let row = db
        .query_one(sizes, &[])
        .await
        .context("sampling the hot relations")?;
    let mb = |bytes: i64| format!("{:.1} MB", bytes as f64 / 1_048_576.0);
    let last = &seconds[seconds.len() - 1];
    println!(
        "  {:>4}s {:<14} {:>9.0} {:>8} {:>9} {:>9}  {:<34} {:>9}",
        at.as_secs(),
        last.phase.name(),
        completed as f64 / seconds.len() as f64,
        depth,
        report::millis(report::percentile(&claims, 50.0)),
        report::millis(report::percentile(&claims, 99.0)),
        format!(
            "{} + {}, {} dead",
            mb(row.get(0)),
            mb(row.get(1)),
            row.get::<_, i64>(2)
        ),
        row.get::<_, i32>(3),
    );
    Ok(())
}

/// Each phase against clean, and how long the rate took to come back.
fn summarize(seconds: &[Second]) {
    let of = |phase: Phase| -> Vec<&Second> {
        seconds
            .iter()
            .filter(|second| second.phase == phase)
            .collect()
    };
    let rate = |picked: &[&Second]| -> f64 {
        match picked.len() {
            0 => 0.0,
            n => picked.iter().map(|second| second.completed).sum::<u64>() as f64 / n as f64,
        }
    };
    let p99 = |picked: &[&Second]| -> Duration {
        let mut claims: Vec<Duration> = picked
            .iter()
            .flat_map(|second| second.claims.iter().copied())
            .collect();
        claims.sort();
        report::percentile(&claims, 99.0)
    };
    // The clean rate leaves out the first seconds, when the queue fills.
    let clean: Vec<&Second> = of(Phase::Clean)
        .into_iter()
        .filter(|second| second.into_phase > 5)
        .collect();
    let clean_rate = rate(&clean);
    let clean_p99 = p99(&clean);
    println!();
    for phase in [
        Phase::Clean,
        Phase::HeldXid,
        Phase::AfterXid,
        Phase::Reader,
        Phase::Recovery,
    ] {
        let picked = if phase == Phase::Clean {
            clean.clone()
        } else {
            of(phase)
        };
        if picked.is_empty() {
            continue;
        }
        let phase_rate = rate(&picked);
        let phase_p99 = p99(&picked);
        report::figure(
            &format!("{} jobs/s, claim p99", phase.name()),
            format!(
                "{phase_rate:>8.0} ({:.2} of clean), {} ({:.1}x clean)",
                ratio(phase_rate, clean_rate),
                report::millis(phase_p99),
                ratio(phase_p99.as_secs_f64(), clean_p99.as_secs_f64()),
            ),
        );
    }
    for (phase, after) in [
        (Phase::AfterXid, "the xid"),
        (Phase::Recovery, "the reader"),
    ] {
        let back = of(phase)
            .iter()
            .find(|second| second.completed as f64 >= RECOVERED * clean_rate)
            .map(|second| second.into_phase);
        report::figure(
            &format!("back to {RECOVERED} of clean after {after} committed"),
            match back {
                Some(second) => format!("within {second} s"),
                None => "not in this phase".to_owned(),
            },
        );
    }
}

fn ratio(value: f64, reference: f64) -> f64 {
    if reference > 0.0 {
        value / reference
    } else {
        0.0
    }
}
