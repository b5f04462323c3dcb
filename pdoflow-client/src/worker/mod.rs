//! The worker runtime: claims jobs in batches from its queues, runs up to
//! `concurrency` of them at once, finishes them in batches, and keeps going
//! through handler panics, timeouts and lost connections.
//!
//! One loop owns the claiming connection; handlers run in tasks of their own
//! and report back on a channel. The loop hands each outcome to the finisher
//! (`finisher.rs`), which stores them in batches on a second connection, so
//! that a busy worker's claim and finish commits overlap. Each turn of the
//! loop: reconnect if needed, heartbeat claims whose lease is a third gone,
//! send the progress reports that are due (`progress.rs`), claim as many
//! jobs as there are free slots, then sleep until a job ends, pdoflow
//! announces work (LISTEN), a handler reports progress, a heartbeat is due or
//! the poll interval passes.
//!
//! Without LISTEN (`WorkerConfig::no_listen`, or by itself when LISTEN
//! fails, as behind a pooler in transaction mode), a loop with free slots
//! spends that sleep in a claim that waits inside the database
//! (`claim(..., wait => ...)`, at most `CLAIM_WAIT_CHUNK` at a time, and
//! never past the next heartbeat, progress report or sweep), which returns
//! as soon as jobs become available. Jobs that end meanwhile go to the
//! finisher at once; progress reports made meanwhile go out when it returns.
//!
//! Shutdown (the future given to `run` completes): stop claiming, let running
//! jobs finish within `shutdown_grace`, then abort the rest and release their
//! claims so other workers can take them at once.

mod execution;
mod finisher;
mod granted;
mod listener;
pub mod metrics;
pub(crate) mod progress;
mod shards;
mod single;

pub use progress::DEFAULT_PROGRESS_INTERVAL;
pub use shards::run_shards;
pub use single::{execute_job, ExecutedJob};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::client::{ClaimRequest, ClaimedJob, Client, SweepReport};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::task::TaskRegistry;
use execution::Done;
use finisher::{Ended, Finisher};
use progress::{Pace, ProgressBoard, ProgressSlot, Sent};

/// How a worker runs. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Recorded on claims and in `pdoflow.workers` (default: host-pid).
    pub name: String,
    /// The queues to claim from; `None`: every queue.
    pub queues: Option<Vec<String>>,
    /// The tasks to claim; `None`: every task (jobs of tasks without a
    /// handler here then fail). Each must be registered.
    pub tasks: Option<Vec<String>>,
    /// Jobs run at once (default 100).
    pub concurrency: usize,
    /// Lease of each claim (default 60 s); renewed while the job runs.
    pub lease: Duration,
    /// Longest a job may run before it fails (default 30 min); `None`: no limit.
    pub job_timeout: Option<Duration>,
    /// Fallback poll when no announcement arrives (default 5 s).
    pub poll_interval: Duration,
    /// Time running jobs get to finish at shutdown (default 30 s).
    pub shutdown_grace: Duration,
    /// Stop once no job is available or running in the queues.
    pub burst: bool,
    /// Whether this worker runs `pdoflow.sweep()` itself (default: when no
    /// background sweeper covers the database).
    pub sweep: SweepMode,
    /// How often it sweeps when it does (default 1 s).
    pub sweep_interval: Duration,
    /// The least time between two progress reports of one job sent to the
    /// database (default 1 s): `JobContext::progress` calls in between only
    /// replace the report waiting to be sent.
    pub progress_interval: Duration,
    /// Learn of new jobs without LISTEN (default false): an idle worker
    /// claims with a wait inside the database, in chunks of about a second
    /// (`CLAIM_WAIT_CHUNK`), and picks up a new job within milliseconds.
    /// For connection poolers in transaction mode (PgBouncer), where
    /// notifications do not reach a session. Each such claim holds one of
    /// the worker's connections while it waits. A worker whose LISTEN
    /// fails switches to this by itself.
    pub no_listen: bool,
}

/// When a worker sweeps (takes back expired claims, announces due jobs,
/// prunes history) itself, as River's leader does, rather than rely on the
/// extension's background sweeper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SweepMode {
    /// Only where no background sweeper works (not preloaded, or the
    /// database is not in `pdoflow.database`).
    #[default]
    Auto,
    /// Always, next to any background sweeper (harmless, just redundant).
    Always,
    /// Never.
    Never,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            name: default_worker_name(),
            queues: None,
            tasks: None,
            concurrency: 100,
            lease: Duration::from_secs(60),
            job_timeout: Some(Duration::from_secs(30 * 60)),
            poll_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            burst: false,
            sweep: SweepMode::Auto,
            sweep_interval: Duration::from_secs(1),
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            no_listen: false,
        }
    }
}

/// `<host>-<pid>`: unique per process on a network of workers.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What a worker did before it stopped.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    pub succeeded: u64,
    pub failed: u64,
    /// Claims handed back at shutdown.
    pub released: u64,
}

/// Longest a single claim asks for (the extension's default
/// `pdoflow.max_claim`; a lower server setting is read at connection).
const CLAIM_BATCH_MAX: i32 = 1_000;
/// Bounds on the durations a worker accepts, so that time arithmetic cannot
/// overflow and a zero poll cannot spin.
const SHORTEST_POLL: Duration = Duration::from_millis(10);
const LONGEST_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest an idle claim waits inside the database without LISTEN
/// (`WorkerConfig::no_listen`): also the longest a shutdown waits for it.
/// (At most half the `statement_timeout`, where one is set.)
pub const CLAIM_WAIT_CHUNK: Duration = Duration::from_secs(1);
/// The shortest wait `claim` takes.
const SHORTEST_CLAIM_WAIT: Duration = Duration::from_millis(1);

/// A job being run.
struct Running {
    attempt: i32,
    abort: AbortHandle,
    /// When the next heartbeat is due.
    renew_at: Instant,
    /// Its handler's progress reports, and when the next goes out.
    progress: Arc<ProgressSlot>,
    pace: Pace,
}

/// A worker: a task registry, connection settings and a `WorkerConfig`.
pub struct Worker {
    settings: ConnectionSettings,
    registry: Arc<TaskRegistry>,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(
        mut settings: ConnectionSettings,
        registry: TaskRegistry,
        config: WorkerConfig,
    ) -> Result<Worker> {
        if config.concurrency == 0 || config.concurrency > 100_000 {
            return Err(Error::Invalid(format!(
                "concurrency must be from 1 to 100000, got {}",
                config.concurrency
            )));
        }
        let within = |name: &str, value: Duration, min: Duration| {
            if value < min || value > LONGEST_DURATION {
                return Err(Error::Invalid(format!(
                    "{name} must be from {} to 7 days, got {}",
                    humantime::format_duration(min),
                    humantime::format_duration(value)
                )));
            }
            Ok(())
        };
        within("the lease", config.lease, Duration::from_secs(1))?;
        within("the poll interval", config.poll_interval, SHORTEST_POLL)?;
        within("the shutdown grace", config.shutdown_grace, Duration::ZERO)?;
        within("the sweep interval", config.sweep_interval, SHORTEST_POLL)?;
        within(
            "the progress interval",
            config.progress_interval,
            SHORTEST_POLL,
        )?;
        if let Some(timeout) = config.job_timeout {
            within("the job timeout", timeout, Duration::from_millis(1))?;
        }
        if let Some(queues) = &config.queues {
            if queues.is_empty() {
                return Err(Error::Invalid(
                    "give at least one queue, or none for every queue".into(),
                ));
            }
        }
        if let Some(tasks) = &config.tasks {
            if tasks.is_empty() {
                return Err(Error::Invalid(
                    "give at least one task, or none for every task".into(),
                ));
            }
            if let Some(unknown) = tasks.iter().find(|task| !registry.contains(task)) {
                return Err(Error::Invalid(format!(
                    "task {unknown:?} has no handler in this worker (it runs: {})",
                    registry.names().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        // A half-open connection (a vanished server, a cut network) must
        // fail within seconds, not after the kernel's two-hour keepalive.
        settings
            .config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));
        Ok(Worker {
            settings,
            registry: Arc::new(registry),
            config,
        })
    }

    /// Runs until `shutdown` completes (then stops gracefully), or, in burst
    /// mode, until the queues are empty. Fails if the first connection cannot
    /// be made or pdoflow is not installed; later failures are retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        let first = Client::connect_with_settings(&self.settings).await?;
        first
            .register_worker(&self.config.name)
            .await
            .map_err(|error| match is_fatal(&error) {
                true => Error::Invalid(format!("pdoflow is not usable in this database: {error}")),
                false => error,
            })?;
        let claim_batch = max_claim(&first).await;
        let sweeps = match self.config.sweep {
            SweepMode::Always => true,
            SweepMode::Never => false,
            SweepMode::Auto => match first.background_sweeper_missing().await {
                Ok(Some(reason)) => {
                    tracing::info!(%reason, interval = ?self.config.sweep_interval,
                                   "no background sweeper in this database: this worker sweeps");
                    true
                }
                Ok(None) => false,
                Err(error) => {
                    tracing::warn!(%error, "cannot tell whether a background sweeper runs; this worker sweeps");
                    true
                }
            },
        };
        tracing::info!(
            worker = %self.config.name,
            queues = %self.config.queues.as_ref().map_or("(all)".to_owned(), |queues| queues.join(",")),
            concurrency = self.config.concurrency,
            tasks = %self.registry.names().collect::<Vec<_>>().join(","),
            database = %self.settings.source,
            wakeups = if self.config.no_listen { "waiting claims" } else { "LISTEN" },
            "worker started"
        );
        let wake = Arc::new(Notify::new());
        let waiting_claims = Arc::new(AtomicBool::new(self.config.no_listen));
        let listener = (!self.config.no_listen).then(|| {
            tokio::spawn(listener::listen(
                self.settings.clone(),
                self.config.queues.clone(),
                wake.clone(),
                waiting_claims.clone(),
            ))
        });
        let mut state = Loop {
            worker: &self,
            db: Some(first),
            claim_batch,
            running: HashMap::new(),
            finisher: Finisher::start(self.settings.clone(), claim_batch as usize),
            report: WorkerReport::default(),
            done: mpsc::unbounded_channel(),
            wake,
            waiting_claims,
            claim_wait_unsupported: false,
            progress_board: ProgressBoard::new(),
            progress_due: HashSet::new(),
            ending: Vec::new(),
            stopping_since: None,
            next_sweep: sweeps.then(Instant::now),
        };
        let outcome = state.run(shutdown).await;
        if let Some(listener) = listener {
            listener.abort();
        }
        // Outcomes whose last progress report could not be sent (no
        // database) are stored without it rather than lost.
        for (ended, _) in std::mem::take(&mut state.ending) {
            state.finisher.send(ended);
        }
        // Store what ended: within what is left of the grace when stopping
        // (at least a second, else every outcome still queued would be lost),
        // briefly after a fatal error (the database is unusable anyway).
        let within = match (&outcome, state.stopping_since) {
            (Ok(_), Some(since)) => (since + self.config.shutdown_grace)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
            (Ok(_), None) => self.config.shutdown_grace.max(Duration::from_secs(1)),
            (Err(_), _) => Duration::from_secs(1),
        };
        state.finisher.close(within).await;
        let (succeeded, failed) = state.finisher.counts();
        outcome.map(|report| WorkerReport {
            succeeded,
            failed,
            ..report
        })
    }
}

/// The server's `pdoflow.max_claim`, capped at CLAIM_BATCH_MAX.
async fn max_claim(client: &Client) -> i32 {
    let setting = client
        .postgres()
        .query_one("SELECT current_setting('pdoflow.max_claim', true)", &[])
        .await
        .ok()
        .and_then(|row| row.get::<_, Option<String>>(0))
        .and_then(|value| value.parse::<i32>().ok());
    setting.unwrap_or(CLAIM_BATCH_MAX).clamp(1, CLAIM_BATCH_MAX)
}

/// A claim of up to `free_slots` jobs (within the server's claim limit
/// `claim_batch`) as `worker` is configured, without a wait.
fn claim_request(worker: &Worker, free_slots: usize, claim_batch: i32) -> ClaimRequest<'_> {
    let config = &worker.config;
    ClaimRequest {
        n: i32::try_from(free_slots)
            .unwrap_or(i32::MAX)
            .min(claim_batch),
        queues: config.queues.as_deref(),
        tasks: config.tasks.as_deref(),
        worker: &config.name,
        lease: config.lease,
        wait: None,
    }
}

/// Stops a job whose claim is no longer current (cancelled, or taken
/// back): its result would be rejected anyway.
fn claim_lost(running: &mut HashMap<Uuid, Running>, id: Uuid, error: &Error) {
    tracing::warn!(job = %id, %error, "claim lost; stopping the job");
    if let Some(job) = running.remove(&id) {
        job.progress.close();
        job.abort.abort();
    }
}

/// Errors that no retry can fix: pdoflow is missing from the database.
fn is_fatal(error: &Error) -> bool {
    // undefined_function, invalid_schema_name, undefined_table
    matches!(error.sqlstate(), Some("42883" | "3F000" | "42P01"))
}

/// The worker loop's state.
struct Loop<'a> {
    worker: &'a Worker,
    db: Option<Client>,
    claim_batch: i32,
    running: HashMap<Uuid, Running>,
    /// Stores the outcomes of the jobs that ended.
    finisher: Finisher,
    report: WorkerReport,
    done: (mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>),
    wake: Arc<Notify>,
    /// Set when idle claims wait inside the database instead of sleeping
    /// until LISTEN wakes the loop: from the start with `no_listen`, or by
    /// the listener once LISTEN failed.
    waiting_claims: Arc<AtomicBool>,
    /// The extension has no claim `wait` (older than pdoflow 0.11.0): the
    /// loop polls instead.
    claim_wait_unsupported: bool,
    /// Where the running jobs' progress reports announce themselves.
    progress_board: Arc<ProgressBoard>,
    /// The running jobs with a report waiting to be sent (`Pace::due` set):
    /// looked through each turn instead of every running job, which at a
    /// concurrency of 1,000 cost the drain 8%.
    progress_due: HashSet<Uuid>,
    /// Jobs that ended with a progress report not sent yet: their outcomes
    /// go to the finisher once it is.
    ending: Vec<(Ended, Value)>,
    stopping_since: Option<Instant>,
    /// When this worker sweeps next; `None` if it does not sweep.
    next_sweep: Option<Instant>,
}

impl Loop<'_> {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        let config = &self.worker.config;
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        loop {
            if self.stopping_since.is_some() && self.grace_over() && self.db.is_none() {
                // No database to hand claims back to: their leases will expire.
                self.abort_all();
                tracing::warn!(
                    running = self.running.len(),
                    "stopping without the database; unfinished claims will be taken back when their leases expire"
                );
                return Ok(self.report.clone());
            }
            if self.db.as_ref().is_none_or(Client::is_closed) {
                self.db = None;
                match Client::connect_with_settings(&self.worker.settings).await {
                    Ok(client) => {
                        tracing::info!("reconnected to the database");
                        self.db = Some(client);
                        backoff.reset();
                    }
                    Err(error) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(%error, retry_in = ?delay, "cannot reach the database");
                        let retry_at = self.capped(Instant::now() + delay);
                        self.wait(retry_at, &mut shutdown, &mut shutdown_seen).await;
                        continue;
                    }
                }
            }
            match self.turn().await {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    if let Some(retry_at) = self.after_failure(error, &mut backoff)? {
                        self.wait(retry_at, &mut shutdown, &mut shutdown_seen).await;
                    }
                    continue;
                }
            }
            if self.stopping_since.is_some() {
                if self.running.is_empty() {
                    return Ok(self.report.clone());
                }
                if self.grace_over() {
                    self.release_all().await;
                    return Ok(self.report.clone());
                }
            }
            if config.burst
                && self.stopping_since.is_none()
                && self.running.is_empty()
                && self.finisher.pending() == 0
            {
                if let Some(db) = self.db.as_ref() {
                    match db
                        .has_pending_jobs(config.queues.as_deref(), config.tasks.as_deref())
                        .await
                    {
                        Ok(false) => {
                            tracing::info!("no jobs left in the queues (--burst): stopping");
                            return Ok(self.report.clone());
                        }
                        Ok(true) => {}
                        Err(error) if error.is_connection_lost() => {
                            self.db = None;
                            continue;
                        }
                        Err(error) => tracing::warn!(%error, "cannot check for pending jobs"),
                    }
                }
            }
            let next_heartbeat = self.running.values().map(|job| job.renew_at).min();
            let next_progress = self
                .progress_due
                .iter()
                .filter_map(|id| self.running.get(id).and_then(|job| job.pace.due))
                .min();
            let mut until = Instant::now() + config.poll_interval;
            for at in [next_heartbeat, next_progress, self.next_sweep]
                .into_iter()
                .flatten()
            {
                until = until.min(at);
            }
            let until = self.capped(until);
            if !self.claims_wait() {
                self.wait(until, &mut shutdown, &mut shutdown_seen).await;
                continue;
            }
            if let Err(error) = self
                .wait_claiming(until, &mut shutdown, &mut shutdown_seen)
                .await
            {
                if let Some(retry_at) = self.after_failure(error, &mut backoff)? {
                    self.wait(retry_at, &mut shutdown, &mut shutdown_seen).await;
                }
            }
        }
    }

    /// What the loop does after a step failed: `Err` when pdoflow is not
    /// usable (the worker stops), `None` to reconnect at once when the
    /// connection is lost, else the time to try again at, backing off.
    fn after_failure(&mut self, error: Error, backoff: &mut Backoff) -> Result<Option<Instant>> {
        if is_fatal(&error) {
            self.abort_all();
            return Err(Error::Invalid(format!(
                "pdoflow is not usable in this database: {error}"
            )));
        }
        if error.is_connection_lost() {
            tracing::warn!(%error, "lost the database connection");
            self.db = None;
            return Ok(None);
        }
        // A statement timeout, a deadlock, a refused value: log, back off,
        // and try again rather than abandon the jobs.
        let delay = backoff.next_delay();
        tracing::warn!(%error, retry_in = ?delay, "a worker step failed");
        Ok(Some(self.capped(Instant::now() + delay)))
    }

    /// Whether the loop's sleep is to be a claim that waits in the database:
    /// in waiting-claim mode, with a free slot, while claiming, with the
    /// finisher keeping up, no last progress report waiting and no burst
    /// about to end.
    fn claims_wait(&self) -> bool {
        let burst_ending =
            self.worker.config.burst && self.running.is_empty() && self.finisher.pending() > 0;
        self.waiting_claims.load(Ordering::Acquire)
            && !self.claim_wait_unsupported
            && self.db.is_some()
            && self.stopping_since.is_none()
            && self.free_slots() > 0
            && !self.finisher_full()
            && self.ending.is_empty()
            && !burst_ending
    }

    /// How long one idle claim may wait: `CLAIM_WAIT_CHUNK`, at most half
    /// the session's `statement_timeout` (which would cancel it).
    fn claim_wait_chunk(&self) -> Duration {
        let timeout = self.worker.settings.session.statement_timeout;
        if timeout.is_zero() {
            CLAIM_WAIT_CHUNK
        } else {
            CLAIM_WAIT_CHUNK.min(timeout / 2)
        }
    }

    /// The claim and sleep of waiting-claim mode: a claim of the free slots
    /// that waits inside the database until jobs become available, or until
    /// `until` (the next heartbeat, progress report, sweep or poll), at most
    /// a chunk; a claim that does not wait when `until` is less than a
    /// millisecond away. Jobs that end meanwhile are recorded; shutdown is
    /// noted, and the claim is still awaited (at most a chunk), since it may
    /// have claimed jobs: those are handed back at once.
    async fn wait_claiming(
        &mut self,
        until: Instant,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        shutdown_seen: &mut bool,
    ) -> Result<()> {
        let wait = until
            .saturating_duration_since(Instant::now())
            .min(self.claim_wait_chunk());
        let worker = self.worker;
        let request = ClaimRequest {
            wait: (wait >= SHORTEST_CLAIM_WAIT).then_some(wait),
            ..claim_request(worker, self.free_slots(), self.claim_batch)
        };
        let mut ended = Vec::new();
        let claimed = {
            let Some(db) = self.db.as_ref() else {
                return Ok(());
            };
            let claim = db.claim(request);
            tokio::pin!(claim);
            loop {
                tokio::select! {
                    claimed = &mut claim => break claimed,
                    Some(done) = self.done.1.recv() => ended.push(done),
                    () = shutdown.as_mut(), if !*shutdown_seen => {
                        *shutdown_seen = true;
                        tracing::info!(running = self.running.len(), grace = ?worker.config.shutdown_grace,
                                       "stopping: no new claims; waiting for running jobs");
                        self.stopping_since = Some(Instant::now());
                    }
                }
            }
        };
        for done in ended {
            self.record(done);
        }
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) if error.sqlstate() == Some("42883") => {
                // undefined_function: a claim without `wait` (pdoflow
                // before 0.11.0); the plain claims of each turn still work.
                tracing::warn!(%error, poll_interval = ?worker.config.poll_interval,
                               "this pdoflow has no claims that wait (it needs 0.11.0 or later): polling instead");
                self.claim_wait_unsupported = true;
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if self.stopping_since.is_some() {
            self.hand_back(claimed).await;
        } else {
            self.start_claimed(claimed).await?;
        }
        // Collect everything else that ended meanwhile, to finish in one batch.
        self.collect_ended();
        self.note_progress_reports();
        Ok(())
    }

    /// Releases claims made as the worker began to stop, without running them.
    async fn hand_back(&mut self, claimed: Vec<ClaimedJob>) {
        let Some(db) = self.db.as_ref() else {
            return;
        };
        for job in claimed {
            match db.release(job.id, job.attempt).await {
                Ok(_) => tracing::debug!(job = %job.id, "claimed while stopping: released"),
                Err(error) => {
                    tracing::warn!(job = %job.id, %error, "could not release; its lease will expire")
                }
            }
        }
    }

    fn grace_over(&self) -> bool {
        self.stopping_since
            .is_some_and(|since| since.elapsed() >= self.worker.config.shutdown_grace)
    }

    /// `until`, or the end of the shutdown grace if that comes first.
    fn capped(&self, until: Instant) -> Instant {
        match self.stopping_since {
            Some(since) => until.min(since + self.worker.config.shutdown_grace),
            None => until,
        }
    }

    /// Sleeps until `until`, a job ends, work is announced or shutdown is asked.
    async fn wait(
        &mut self,
        mut until: Instant,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        shutdown_seen: &mut bool,
    ) {
        // Outcomes waiting to be stored matter when they hold up claiming
        // (too many) or the end of a burst (any).
        let await_finisher = self.finisher_full()
            || (self.worker.config.burst && self.running.is_empty() && self.finisher.pending() > 0);
        loop {
            tokio::select! {
                Some(done) = self.done.1.recv() => self.record(done),
                () = self.wake.notified() => {}
                () = self.progress_board.announced() => {
                    // A report that must wait for its interval is no reason
                    // for a turn (and a claim) now: wait on until it is due.
                    let due = self.note_progress_reports();
                    if let Some(due) = due.filter(|due| *due > Instant::now()) {
                        until = self.capped(until.min(due));
                        continue;
                    }
                }
                () = self.finisher.progressed(), if await_finisher => {}
                () = tokio::time::sleep_until(until) => {}
                () = shutdown.as_mut(), if !*shutdown_seen => {
                    *shutdown_seen = true;
                    tracing::info!(running = self.running.len(), grace = ?self.worker.config.shutdown_grace,
                                   "stopping: no new claims; waiting for running jobs");
                    self.stopping_since = Some(Instant::now());
                }
            }
            break;
        }
        // Collect everything else that ended meanwhile, to finish in one batch.
        self.collect_ended();
        self.note_progress_reports();
    }

    /// Schedules the sends of the progress reports announced since the last
    /// look, each at its job's interval after its previous send; returns
    /// the earliest of those.
    fn note_progress_reports(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let interval = self.worker.config.progress_interval;
        let mut earliest: Option<Instant> = None;
        for id in self.progress_board.take_announced() {
            if let Some(job) = self.running.get_mut(&id) {
                job.pace.announced(now, interval);
                if let Some(due) = job.pace.due {
                    self.progress_due.insert(id);
                    earliest = Some(earliest.map_or(due, |earliest| earliest.min(due)));
                }
            }
        }
        earliest
    }

    /// Claim no more until the finisher catches up: storing fails (its
    /// outcomes' claims are no longer heartbeated, so their leases run out),
    /// or more outcomes wait than two claims' worth (one less halves the
    /// drain rate at high concurrency: claiming then waits for every commit).
    fn finisher_full(&self) -> bool {
        let pending = self.finisher.pending();
        (pending > 0 && self.finisher.failing())
            || pending >= (self.claim_batch as usize).max(self.worker.config.concurrency) * 2
    }

    fn collect_ended(&mut self) {
        while let Ok(done) = self.done.1.try_recv() {
            self.record(done);
        }
    }

    /// Takes a job's outcome, if it belongs to the claim still running here
    /// (an outcome of an older attempt of the same job is stale). With a
    /// progress report still waiting, the outcome waits for it to be sent.
    fn record(&mut self, done: Done) {
        let current = self
            .running
            .get(&done.id)
            .is_some_and(|job| job.attempt == done.attempt);
        if !current {
            return;
        }
        let Some(job) = self.running.remove(&done.id) else {
            return;
        };
        let ended = (done.id, done.attempt, done.outcome);
        match job.progress.close() {
            Some(last) => self.ending.push((ended, last)),
            None => self.finisher.send(ended),
        }
    }

    /// One turn: last progress reports of ended jobs, heartbeats, progress
    /// reports, sweep, claim (in waiting-claim mode, the claim that waits
    /// right after the turn is the claim).
    async fn turn(&mut self) -> Result<()> {
        self.send_last_progress().await?;
        self.heartbeat_due().await?;
        self.send_progress_due().await?;
        self.sweep_if_due().await?;
        if !self.claims_wait()
            && self.stopping_since.is_none()
            && self.free_slots() > 0
            && !self.finisher_full()
        {
            self.claim_free_slots().await?;
        }
        Ok(())
    }

    /// Runs `pdoflow.sweep()` when this worker sweeps and it is time.
    async fn sweep_if_due(&mut self) -> Result<()> {
        let (Some(db), Some(due)) = (self.db.as_ref(), self.next_sweep) else {
            return Ok(());
        };
        if due > Instant::now() {
            return Ok(());
        }
        self.next_sweep = Some(Instant::now() + self.worker.config.sweep_interval);
        let report = match db.sweep().await {
            Ok(report) => report,
            Err(error) if error.is_connection_lost() || is_fatal(&error) => return Err(error),
            Err(error) => {
                // Sweeping is a service to the queue, not this worker's job:
                // a failure (no permission, say) must not stop its work.
                tracing::warn!(%error, retry_in = "1m", "sweeping failed");
                self.next_sweep = Some(Instant::now() + Duration::from_secs(60));
                return Ok(());
            }
        };
        if report != SweepReport::default() {
            tracing::info!(
                expired_requeued = report.expired_requeued,
                expired_failed = report.expired_failed,
                queues_notified = report.queues_notified,
                finished_deleted = report.finished_deleted,
                workers_gone = report.workers_gone,
                "swept"
            );
        }
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.worker
            .config
            .concurrency
            .saturating_sub(self.running.len())
    }

    /// The next claim: as many jobs as there are free slots, within the
    /// server's claim limit.
    fn claim_request(&self) -> ClaimRequest<'_> {
        claim_request(self.worker, self.free_slots(), self.claim_batch)
    }

    /// Renews the leases that are a third gone. A claim that is no longer
    /// current (cancelled, or taken back) stops its job: its result would be
    /// rejected anyway.
    async fn heartbeat_due(&mut self) -> Result<()> {
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let lease = self.worker.config.lease;
        let now = Instant::now();
        let due: Vec<(Uuid, i32)> = self
            .running
            .iter()
            .filter(|(_, job)| job.renew_at <= now)
            .map(|(id, job)| (*id, job.attempt))
            .collect();
        for (id, attempt) in due {
            match db.heartbeat(id, attempt, lease).await {
                Ok(_) => {
                    if let Some(job) = self.running.get_mut(&id) {
                        job.renew_at = Instant::now() + lease / 3;
                    }
                }
                Err(error) if matches!(error.sqlstate(), Some("55000" | "22023")) => {
                    claim_lost(&mut self.running, id, &error);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Sends the progress reports whose time has come, one call per job.
    async fn send_progress_due(&mut self) -> Result<()> {
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let now = Instant::now();
        // Jobs that ended since they reported are no longer waited for.
        let running = &self.running;
        self.progress_due.retain(|id| running.contains_key(id));
        let due: Vec<(Uuid, i32, Arc<ProgressSlot>)> = self
            .progress_due
            .iter()
            .filter_map(|id| self.running.get(id).map(|job| (*id, job)))
            .filter(|(_, job)| job.pace.is_due(now))
            .map(|(id, job)| (id, job.attempt, job.progress.clone()))
            .collect();
        for (id, attempt, slot) in due {
            // Sent, dropped or put back for a retry below: due again only
            // when the job reports again (or the retry says so).
            self.progress_due.remove(&id);
            let Some(value) = slot.take() else {
                if let Some(job) = self.running.get_mut(&id) {
                    job.pace.due = None;
                }
                continue;
            };
            let sent = progress::send(db, id, attempt, &value).await;
            let renewed = Instant::now() + self.worker.config.lease / 3;
            match sent {
                Ok(Sent::Stored) => {
                    if let Some(job) = self.running.get_mut(&id) {
                        job.pace.sent(Instant::now());
                        // A report renews the lease as a heartbeat does.
                        job.renew_at = job.renew_at.max(renewed);
                    }
                }
                Ok(Sent::ClaimLost(error)) => claim_lost(&mut self.running, id, &error),
                Ok(Sent::Refused(error)) => {
                    tracing::warn!(job = %id, %error, "a progress report was refused; dropped");
                    if let Some(job) = self.running.get_mut(&id) {
                        job.pace.sent(Instant::now());
                    }
                }
                Err(error) => {
                    slot.put_back(value);
                    if let Some(job) = self.running.get_mut(&id) {
                        job.pace.retry(Instant::now());
                        self.progress_due.insert(id);
                    }
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Sends the last progress report of each job that ended with one
    /// waiting, then hands its outcome to the finisher.
    async fn send_last_progress(&mut self) -> Result<()> {
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        while let Some(((id, attempt, outcome), last)) = self.ending.pop() {
            match progress::send(db, id, attempt, &last).await {
                Ok(Sent::Stored) => {}
                Ok(Sent::ClaimLost(error)) => {
                    tracing::debug!(job = %id, %error, "the last progress report came after the claim ended")
                }
                Ok(Sent::Refused(error)) => {
                    tracing::warn!(job = %id, %error, "the last progress report was refused; dropped")
                }
                Err(error) => {
                    self.ending.push(((id, attempt, outcome), last));
                    return Err(error);
                }
            }
            self.finisher.send((id, attempt, outcome));
        }
        Ok(())
    }

    async fn claim_free_slots(&mut self) -> Result<()> {
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let claimed = db.claim(self.claim_request()).await?;
        self.start_claimed(claimed).await
    }

    /// Runs the jobs just claimed (failing those of granted-only tasks that
    /// must not run).
    async fn start_claimed(&mut self, claimed: Vec<ClaimedJob>) -> Result<()> {
        if claimed.is_empty() {
            return Ok(());
        }
        // (Claimed on this connection a moment ago: it is there.)
        let Some(db) = self.db.as_ref() else {
            return Err(Error::Invalid(
                "no database connection to check the claimed jobs' grants".into(),
            ));
        };
        let mut refused = granted::refusals(db, &self.worker.registry, &claimed).await;
        for job in claimed {
            let refusal = refused.remove(&job.id);
            self.start(job, refusal);
        }
        Ok(())
    }

    /// Runs `job`, or with `refused`, fails it without running it.
    fn start(&mut self, job: ClaimedJob, refused: Option<String>) {
        let config = &self.worker.config;
        tracing::debug!(job = %job.id, task = %job.task, attempt = job.attempt, "running");
        let (id, attempt) = (job.id, job.attempt);
        let started = execution::start(
            job,
            &self.worker.registry,
            config.job_timeout,
            self.done.0.clone(),
            refused,
            &self.progress_board,
        );
        self.running.insert(
            id,
            Running {
                attempt,
                abort: started.abort,
                renew_at: Instant::now() + config.lease / 3,
                progress: started.progress,
                pace: Pace::default(),
            },
        );
    }

    /// Aborts every job still running.
    fn abort_all(&mut self) {
        for job in self.running.values() {
            job.abort.abort();
        }
    }

    /// Grace is over: abort what still runs, finish what ended meanwhile, and
    /// hand the other claims back.
    async fn release_all(&mut self) {
        self.abort_all();
        // An aborted job reports nothing; one that completed just before the
        // abort still reports, and is finished rather than released.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.collect_ended();
        let running: Vec<(Uuid, Running)> = self.running.drain().collect();
        for (id, job) in running {
            let released = match self.db.as_ref() {
                Some(db) => db.release(id, job.attempt).await,
                None => Err(Error::Invalid("no database connection".into())),
            };
            match released {
                Ok(true) => {
                    self.report.released += 1;
                    tracing::warn!(job = %id, "still running after the grace period: released");
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(job = %id, %error, "could not release; its lease will expire")
                }
            }
        }
    }
}
