//! The finisher: stores the outcomes of ended jobs on a connection of its
//! own, so that finishing never holds up claiming and the two commits of a
//! busy worker overlap instead of queueing behind each other.
//!
//! Batches form by themselves: while one `finish_many` commits, the jobs that
//! end meanwhile wait, and the next call takes them all (up to the batch
//! limit). An idle worker's lone job is finished at once. A refused batch is
//! finished one claim at a time, so that one outcome the database cannot
//! store (an oversized result, say) does not hold back the others. So is a
//! batch that waited longer than the connection's lock_timeout: a job whose
//! row another transaction holds locked (a producer enqueueing a child of
//! it, in a transaction still open) is set aside and tried again a little
//! later, while the rest are stored.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::client::{Client, Finished, Outcome};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};

/// A job that ended: its claim and what it gave.
pub(super) type Ended = (Uuid, i32, Outcome);

/// How long claims whose jobs another transaction holds locked wait before
/// they are tried again: the first time, doubling while they stay locked.
const HELD_RETRY: Duration = Duration::from_secs(1);
const HELD_RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a retry of those claims waits for their locks: only briefly, so
/// that the outcomes arriving meanwhile are not held up.
const HELD_LOCK_TIMEOUT: &str = "SET lock_timeout = 100";

/// What the finisher and the worker loop share.
#[derive(Default)]
struct Shared {
    /// Outcomes handed over and not yet stored.
    pending: AtomicUsize,
    /// The last attempt to store failed (or no connection could be made):
    /// the worker should not claim more until storing works again.
    failing: AtomicBool,
    /// Signalled after every stored batch.
    progress: Notify,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

/// The handle the worker loop holds.
pub(super) struct Finisher {
    sender: Option<mpsc::UnboundedSender<Ended>>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Finisher {
    /// Starts finishing on connections made with `settings`, up to `batch`
    /// claims per call.
    pub fn start(settings: ConnectionSettings, batch: usize) -> Finisher {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(settings, receiver, shared.clone(), batch.max(1)));
        Finisher {
            sender: Some(sender),
            shared,
            task,
        }
    }

    /// Hands over an ended job's outcome.
    pub fn send(&self, ended: Ended) {
        if let Some(sender) = &self.sender {
            self.shared.pending.fetch_add(1, Ordering::SeqCst);
            if sender.send(ended).is_err() {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                tracing::error!("the finisher stopped; the job's lease will expire");
            }
        }
    }

    /// Outcomes not yet stored.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Whether storing outcomes currently fails.
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Ordering::SeqCst)
    }

    /// Completes after the next stored batch.
    pub async fn progressed(&self) {
        self.shared.progress.notified().await;
    }

    /// (succeeded, failed) stored so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.succeeded.load(Ordering::Relaxed),
            self.shared.failed.load(Ordering::Relaxed),
        )
    }

    /// Stores what is pending, waiting at most `within`; what is left then
    /// is abandoned (those leases expire and the jobs run again).
    pub async fn close(&mut self, within: Duration) {
        self.sender = None;
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
            let left = self.pending();
            if left > 0 {
                tracing::warn!(
                    unfinished = left,
                    "could not store every outcome in time; those claims will be taken back when their leases expire"
                );
            }
        }
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The finisher's loop: until the worker closes the channel and every
/// outcome handed over is stored.
async fn run(
    settings: ConnectionSettings,
    mut receiver: mpsc::UnboundedReceiver<Ended>,
    shared: Arc<Shared>,
    batch_limit: usize,
) {
    let mut db: Option<Client> = None;
    let mut batch: Vec<Ended> = Vec::new();
    // Claims set aside because their jobs were locked, and when to retry
    // them; they are retried on their own, never in a batch of new outcomes.
    let mut held: Vec<Ended> = Vec::new();
    let mut held_until = Instant::now();
    let mut held_backoff = Backoff::new(HELD_RETRY, HELD_RETRY_MAX);
    let mut retrying_held = false;
    let mut closed = false;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        if batch.is_empty() {
            if closed && held.is_empty() {
                return;
            }
            retrying_held = false;
            tokio::select! {
                received = receiver.recv(), if !closed => match received {
                    Some(ended) => batch.push(ended),
                    None => closed = true,
                },
                () = tokio::time::sleep_until(held_until), if !held.is_empty() => {
                    batch.append(&mut held);
                    retrying_held = true;
                }
            }
            if batch.is_empty() {
                continue;
            }
        }
        while !retrying_held && batch.len() < batch_limit {
            match receiver.try_recv() {
                Ok(ended) => batch.push(ended),
                Err(_) => break,
            }
        }
        if db.as_ref().is_none_or(Client::is_closed) {
            match Client::connect_with_settings(&settings).await {
                Ok(client) => db = Some(client),
                Err(error) => {
                    shared.failing.store(true, Ordering::SeqCst);
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?delay, "the finisher cannot reach the database");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
        }
        let Some(client) = db.as_ref() else {
            continue;
        };
        let outcome = if retrying_held {
            store_held(client, &mut batch, &shared, &settings).await
        } else {
            store(client, &mut batch, &shared).await
        };
        shared.progress.notify_one();
        match outcome {
            Ok(held_up) => {
                backoff.reset();
                shared.failing.store(false, Ordering::SeqCst);
                if held_up.is_empty() && held.is_empty() {
                    // Nothing waits for a lock any more: the next claim that
                    // does starts from the first delay again.
                    held_backoff.reset();
                }
                if !held_up.is_empty() {
                    let delay = held_backoff.next_delay();
                    tracing::info!(
                        claims = held_up.len(),
                        retry_in = ?delay,
                        "jobs locked by another transaction; their outcomes wait"
                    );
                    held.extend(held_up);
                    held_until = Instant::now() + delay;
                }
            }
            Err(error) => {
                // The connection is gone, or the database cannot take even
                // one claim just now (a deadlock, a timeout): keep what is
                // left of the batch and try again.
                shared.failing.store(true, Ordering::SeqCst);
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "finishing failed");
                if error.is_connection_lost() {
                    db = None;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Errors that say "not now" rather than "not this outcome": a lost
/// connection, a deadlock, a serialization failure, a statement or lock
/// timeout, pdoflow missing (`is_fatal`). Retried later instead of stored as
/// the job's failure.
fn transient(error: &Error) -> bool {
    error.is_connection_lost()
        || super::is_fatal(error)
        || matches!(
            error.sqlstate(),
            Some("40P01" | "40001" | "57014" | "55P03")
        )
}

/// A lock wait that ran into the connection's lock_timeout.
fn waits_for_lock(error: &Error) -> bool {
    error.sqlstate() == Some("55P03")
}

/// Finishes `batch` in one statement; if the database refuses it for a
/// reason of its own, or one of its jobs is locked by another transaction,
/// finishes the claims one by one. What was stored leaves `batch` (and
/// `pending`); the claims whose jobs are locked leave `batch` too and come
/// back, to be tried later; on an error the rest stays for the next try.
async fn store(db: &Client, batch: &mut Vec<Ended>, shared: &Shared) -> Result<Vec<Ended>> {
    match db.finish_many(batch).await {
        Ok(results) => {
            for (finished, (_, _, outcome)) in results.iter().zip(batch.iter()) {
                count(shared, finished, outcome);
            }
            shared.pending.fetch_sub(batch.len(), Ordering::SeqCst);
            batch.clear();
            Ok(Vec::new())
        }
        Err(error) if waits_for_lock(&error) => {
            if batch.len() == 1 {
                return Ok(std::mem::take(batch));
            }
            tracing::warn!(%error, "a job of the batch is locked by another transaction; finishing one by one");
            store_each(db, batch, shared).await
        }
        Err(error) if transient(&error) => Err(error),
        Err(error) => {
            tracing::warn!(%error, "finishing a batch failed; finishing one by one");
            while let Some(claim) = batch.first() {
                store_alone(db, claim, shared).await?;
                drop(batch.remove(0));
                shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(Vec::new())
        }
    }
}

/// Retries claims that were held up by locks, one by one, each waiting
/// only briefly for its lock (`HELD_LOCK_TIMEOUT`); returns those still held.
async fn store_held(
    db: &Client,
    batch: &mut Vec<Ended>,
    shared: &Shared,
    settings: &ConnectionSettings,
) -> Result<Vec<Ended>> {
    db.postgres().batch_execute(HELD_LOCK_TIMEOUT).await?;
    let stored = store_each(db, batch, shared).await;
    // The session's own lock_timeout again (the connection is dropped if
    // this fails).
    let restored = db
        .postgres()
        .batch_execute(&settings.session.statements(true)?)
        .await;
    let held_up = stored?;
    restored?;
    Ok(held_up)
}

/// Finishes `batch` one claim at a time. What was stored leaves `batch`; the
/// claims whose jobs are locked leave it too and come back; on another
/// error they go back into `batch` with the rest, for the next try.
async fn store_each(db: &Client, batch: &mut Vec<Ended>, shared: &Shared) -> Result<Vec<Ended>> {
    let mut held_up = Vec::new();
    while let Some(claim) = batch.first() {
        match store_alone(db, claim, shared).await {
            Ok(()) => {
                drop(batch.remove(0));
                shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            Err(error) if waits_for_lock(&error) => held_up.push(batch.remove(0)),
            Err(error) => {
                batch.append(&mut held_up);
                return Err(error);
            }
        }
    }
    Ok(held_up)
}

async fn store_alone(db: &Client, claim: &Ended, shared: &Shared) -> Result<()> {
    match db.finish_many(std::slice::from_ref(claim)).await {
        Ok(results) => {
            if let Some(finished) = results.first() {
                count(shared, finished, &claim.2);
            }
            Ok(())
        }
        Err(error) if transient(&error) => Err(error),
        Err(error) => {
            // Store the failure to store instead: the job still ends.
            let (id, attempt, _) = claim;
            let replacement = (
                *id,
                *attempt,
                Err(format!("the job's outcome could not be stored: {error}")),
            );
            let results = db.finish_many(std::slice::from_ref(&replacement)).await?;
            if let Some(finished) = results.first() {
                count(shared, finished, &replacement.2);
            }
            Ok(())
        }
    }
}

fn count(shared: &Shared, finished: &Finished, outcome: &Outcome) {
    match (&finished.rejected, outcome) {
        (Some(reason), _) => tracing::warn!(job = %finished.id, %reason, "finish rejected"),
        (None, Ok(_)) => {
            shared.succeeded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(job = %finished.id, "succeeded");
        }
        (None, Err(error)) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(job = %finished.id, attempt = finished.attempt,
                           state = finished.state.as_deref().unwrap_or("?"), %error, "job failed");
        }
    }
}
