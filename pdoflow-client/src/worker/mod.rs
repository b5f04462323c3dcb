//! The worker runtime: claims jobs in batches from its queues, runs up to
//! `concurrency` of them at once, finishes them in batches, and keeps going
//! through handler panics, timeouts and lost connections.
//!
//! One loop owns the database connection; handlers run in tasks of their own
//! and report back on a channel. Each turn of the loop: reconnect if needed,
//! finish what ended, heartbeat claims whose lease is a third gone, claim as
//! many jobs as there are free slots, then sleep until a job ends, pdoflow
//! announces work (LISTEN), a heartbeat is due or the poll interval passes.
//!
//! Shutdown (the future given to `run` completes): stop claiming, let running
//! jobs finish within `shutdown_grace`, then abort the rest and release their
//! claims so other workers can take them at once.

mod execution;
mod listener;
mod single;

pub use single::{execute_job, ExecutedJob};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::{ClaimedJob, Client, Outcome};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::task::TaskRegistry;
use execution::Done;

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
    /// Jobs run at once (default 10).
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            name: default_worker_name(),
            queues: None,
            tasks: None,
            concurrency: 10,
            lease: Duration::from_secs(60),
            job_timeout: Some(Duration::from_secs(30 * 60)),
            poll_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            burst: false,
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

/// A job being run.
struct Running {
    attempt: i32,
    abort: AbortHandle,
    /// When the next heartbeat is due.
    renew_at: Instant,
}

/// A worker: a task registry, connection settings and a `WorkerConfig`.
pub struct Worker {
    settings: ConnectionSettings,
    registry: Arc<TaskRegistry>,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(
        settings: ConnectionSettings,
        registry: TaskRegistry,
        config: WorkerConfig,
    ) -> Result<Worker> {
        if config.concurrency == 0 {
            return Err(Error::Invalid("concurrency must be at least 1".into()));
        }
        if config.lease < Duration::from_secs(1) {
            return Err(Error::Invalid("the lease must be at least 1 second".into()));
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
        Ok(Worker {
            settings,
            registry: Arc::new(registry),
            config,
        })
    }

    /// Runs until `shutdown` completes (then stops gracefully), or, in burst
    /// mode, until the queues are empty. Fails only if the first connection
    /// cannot be made: later connection losses are retried.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        let first = Client::connect_with(&self.settings.config).await?;
        first.register_worker(&self.config.name).await?;
        tracing::info!(
            worker = %self.config.name,
            queues = %self.config.queues.as_ref().map_or("(all)".to_owned(), |queues| queues.join(",")),
            concurrency = self.config.concurrency,
            tasks = %self.registry.names().collect::<Vec<_>>().join(","),
            database = %self.settings.source,
            "worker started"
        );
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listener::listen(
            self.settings.config.clone(),
            self.config.queues.clone(),
            wake.clone(),
        ));
        let mut state = Loop {
            worker: &self,
            db: Some(first),
            running: HashMap::new(),
            finished: Vec::new(),
            report: WorkerReport::default(),
            done: mpsc::unbounded_channel(),
            wake,
            stopping_since: None,
        };
        let outcome = state.run(shutdown).await;
        listener.abort();
        outcome
    }
}

/// The worker loop's state.
struct Loop<'a> {
    worker: &'a Worker,
    db: Option<Client>,
    running: HashMap<Uuid, Running>,
    /// Jobs that ended and still need their finish.
    finished: Vec<(Uuid, i32, Outcome)>,
    report: WorkerReport,
    done: (mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>),
    wake: Arc<Notify>,
    stopping_since: Option<Instant>,
}

impl Loop<'_> {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<WorkerReport> {
        let config = &self.worker.config;
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        let mut reconnect_delay = Duration::from_millis(250);
        loop {
            if self.db.as_ref().is_none_or(Client::is_closed) {
                self.db = None;
                match Client::connect_with(&self.worker.settings.config).await {
                    Ok(client) => {
                        tracing::info!("reconnected to the database");
                        self.db = Some(client);
                        reconnect_delay = Duration::from_millis(250);
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?reconnect_delay, "cannot reach the database");
                        let retry_at = Instant::now() + reconnect_delay;
                        reconnect_delay = (reconnect_delay * 2).min(Duration::from_secs(30));
                        if self.stopping_since.is_some() && self.running.is_empty() {
                            // Nothing left to do but finish; keep trying until the grace ends.
                            if self.grace_over() {
                                tracing::warn!(
                                    unfinished = self.finished.len(),
                                    "stopping without the database"
                                );
                                return Ok(self.report.clone());
                            }
                        }
                        self.wait(retry_at, &mut shutdown, &mut shutdown_seen).await;
                        continue;
                    }
                }
            }
            if let Err(error) = self.turn().await {
                if error.is_connection_lost() {
                    tracing::warn!(%error, "lost the database connection");
                    self.db = None;
                    continue;
                }
                return Err(error);
            }
            if self.stopping_since.is_some() {
                if self.running.is_empty() && self.finished.is_empty() {
                    return Ok(self.report.clone());
                }
                if self.grace_over() {
                    self.release_all().await;
                    if self.finished.is_empty() {
                        return Ok(self.report.clone());
                    }
                }
            }
            if config.burst
                && self.stopping_since.is_none()
                && self.running.is_empty()
                && self.finished.is_empty()
            {
                let db = self
                    .db
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("no connection".into()))?;
                match db.has_pending_jobs(config.queues.as_deref()).await {
                    Ok(false) => {
                        tracing::info!("no jobs left in the queues (--burst): stopping");
                        return Ok(self.report.clone());
                    }
                    Ok(true) => {}
                    Err(error) if error.is_connection_lost() => {
                        self.db = None;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            let next_heartbeat = self.running.values().map(|job| job.renew_at).min();
            let mut until = Instant::now() + config.poll_interval;
            if let Some(at) = next_heartbeat {
                until = until.min(at);
            }
            if let Some(since) = self.stopping_since {
                until = until.min(since + config.shutdown_grace);
            }
            self.wait(until, &mut shutdown, &mut shutdown_seen).await;
        }
    }

    fn grace_over(&self) -> bool {
        self.stopping_since
            .is_some_and(|since| since.elapsed() >= self.worker.config.shutdown_grace)
    }

    /// Sleeps until `until`, a job ends, work is announced or shutdown is asked.
    async fn wait(
        &mut self,
        until: Instant,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        shutdown_seen: &mut bool,
    ) {
        tokio::select! {
            Some(done) = self.done.1.recv() => self.record(done),
            () = self.wake.notified() => {}
            () = tokio::time::sleep_until(until) => {}
            () = shutdown.as_mut(), if !*shutdown_seen => {
                *shutdown_seen = true;
                tracing::info!(running = self.running.len(), grace = ?self.worker.config.shutdown_grace,
                               "stopping: no new claims; waiting for running jobs");
                self.stopping_since = Some(Instant::now());
            }
        }
        // Collect everything else that ended meanwhile, to finish in one batch.
        while let Ok(done) = self.done.1.try_recv() {
            self.record(done);
        }
    }

    fn record(&mut self, done: Done) {
        if self.running.remove(&done.id).is_some() {
            self.finished.push((done.id, done.attempt, done.outcome));
        }
    }

    /// One turn: finish, heartbeat, claim.
    async fn turn(&mut self) -> Result<()> {
        let config = &self.worker.config;
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        if !self.finished.is_empty() {
            let results = db.finish_many(&self.finished).await?;
            for (finished, (_, _, outcome)) in results.iter().zip(&self.finished) {
                match (&finished.rejected, outcome) {
                    (Some(reason), _) => {
                        tracing::warn!(job = %finished.id, %reason, "finish rejected")
                    }
                    (None, Ok(_)) => {
                        self.report.succeeded += 1;
                        tracing::debug!(job = %finished.id, "succeeded");
                    }
                    (None, Err(error)) => {
                        self.report.failed += 1;
                        tracing::warn!(job = %finished.id, attempt = finished.attempt,
                                       state = finished.state.as_deref().unwrap_or("?"), %error, "job failed");
                    }
                }
            }
            self.finished.clear();
        }

        let now = Instant::now();
        let due: Vec<(Uuid, i32)> = self
            .running
            .iter()
            .filter(|(_, job)| job.renew_at <= now)
            .map(|(id, job)| (*id, job.attempt))
            .collect();
        for (id, attempt) in due {
            match db.heartbeat(id, attempt, config.lease).await {
                Ok(_) => {
                    if let Some(job) = self.running.get_mut(&id) {
                        job.renew_at = Instant::now() + config.lease / 3;
                    }
                }
                Err(error)
                    if error.sqlstate() == Some("55000") || error.sqlstate() == Some("22023") =>
                {
                    // Cancelled, or taken back: its result would be rejected.
                    tracing::warn!(job = %id, %error, "claim lost; stopping the job");
                    if let Some(job) = self.running.remove(&id) {
                        job.abort.abort();
                    }
                }
                Err(error) => return Err(error),
            }
        }

        let free = config.concurrency.saturating_sub(self.running.len());
        if self.stopping_since.is_none() && free > 0 {
            let claimed = db
                .claim(
                    free as i32,
                    config.queues.as_deref(),
                    config.tasks.as_deref(),
                    &config.name,
                    config.lease,
                )
                .await?;
            for job in claimed {
                self.start(job);
            }
        }
        Ok(())
    }

    fn start(&mut self, job: ClaimedJob) {
        let config = &self.worker.config;
        tracing::debug!(job = %job.id, task = %job.task, attempt = job.attempt, "running");
        let (id, attempt) = (job.id, job.attempt);
        let abort = execution::start(
            job,
            &self.worker.registry,
            config.job_timeout,
            self.done.0.clone(),
        );
        self.running.insert(
            id,
            Running {
                attempt,
                abort,
                renew_at: Instant::now() + config.lease / 3,
            },
        );
    }

    /// Grace is over: abort what still runs and hand the claims back.
    async fn release_all(&mut self) {
        let running: Vec<(Uuid, Running)> = self.running.drain().collect();
        for (id, job) in running {
            job.abort.abort();
            let released = match self.db.as_ref() {
                Some(db) => db.release(id, job.attempt).await,
                None => Err(Error::Invalid("no connection".into())),
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
        // Anything that ended meanwhile still gets finished.
        while let Ok(done) = self.done.1.try_recv() {
            self.finished.push((done.id, done.attempt, done.outcome));
        }
        if let Some(db) = self.db.as_ref() {
            if !self.finished.is_empty() {
                if let Err(error) = db.finish_many(&self.finished).await {
                    tracing::warn!(%error, "could not finish the last jobs; their leases will expire");
                }
            }
        }
        self.finished.clear();
    }
}
