//! Progress reports of running jobs (`JobContext::progress`), sent to the
//! database at most once per job per `WorkerConfig::progress_interval`.
//!
//! A handler may report as often as it likes, from a hot loop too: a
//! report only replaces the value waiting in the job's slot, and only the
//! first report after a send announces itself on the board, which wakes the
//! worker. The worker sends the slot's latest value once the job's interval
//! since its last send has passed, on the claiming connection, as it sends
//! heartbeats (a report renews the lease, too). When the job ends, the value
//! still waiting is sent before its outcome goes to the finisher, so that a
//! job keeps the last thing its handler reported.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};

/// The worker's default `progress_interval`.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Where the slots of one worker announce that they hold a new report.
#[derive(Debug, Default)]
pub(crate) struct ProgressBoard {
    /// Jobs whose slot got a report since the worker last took its value.
    announced: Mutex<Vec<Uuid>>,
    wake: Notify,
}

impl ProgressBoard {
    pub fn new() -> Arc<ProgressBoard> {
        Arc::new(ProgressBoard::default())
    }

    /// A slot for the reports of job `id`.
    pub fn slot(self: &Arc<Self>, id: Uuid) -> Arc<ProgressSlot> {
        Arc::new(ProgressSlot {
            id,
            board: self.clone(),
            state: Mutex::default(),
        })
    }

    /// Completes once a slot has announced a report (at once if one did
    /// since the last call).
    pub async fn announced(&self) {
        self.wake.notified().await;
    }

    /// The jobs that announced reports since the last call.
    pub fn take_announced(&self) -> Vec<Uuid> {
        std::mem::take(&mut *lock(&self.announced))
    }

    fn announce(&self, id: Uuid) {
        lock(&self.announced).push(id);
        self.wake.notify_one();
    }
}

/// The latest report of one running job, until the worker sends it.
#[derive(Debug)]
pub(crate) struct ProgressSlot {
    id: Uuid,
    board: Arc<ProgressBoard>,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Reported and not sent yet.
    latest: Option<Value>,
    /// On the board since the worker last took the value.
    announced: bool,
    /// The job ended (or lost its claim): reports are dropped.
    closed: bool,
}

impl ProgressSlot {
    /// Keeps `value` as the job's latest report, replacing one not sent yet.
    pub fn report(&self, value: Value) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        state.latest = Some(value);
        if !state.announced {
            state.announced = true;
            drop(state);
            self.board.announce(self.id);
        }
    }

    /// The report to send now; the next report announces itself again.
    pub fn take(&self) -> Option<Value> {
        let mut state = lock(&self.state);
        state.announced = false;
        state.latest.take()
    }

    /// Puts back a report that could not be sent for a passing reason,
    /// unless a newer one came meanwhile.
    pub fn put_back(&self, value: Value) {
        let mut state = lock(&self.state);
        if !state.closed && state.latest.is_none() {
            state.latest = Some(value);
        }
    }

    /// The job ended or lost its claim: later reports are dropped. Returns
    /// the report not sent yet, if any.
    pub fn close(&self) -> Option<Value> {
        let mut state = lock(&self.state);
        state.closed = true;
        state.latest.take()
    }
}

/// A poisoned lock only means a handler panicked while reporting: the value
/// inside is still a whole one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When the worker sends a job's next report: its interval after the last
/// send.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pace {
    /// When the report waiting in the slot goes out; `None`: none waits.
    pub due: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Pace {
    /// The slot announced a report at `now`.
    pub fn announced(&mut self, now: Instant, interval: Duration) {
        if self.due.is_none() {
            let due = self
                .last_sent
                .map_or(now, |sent| (sent + interval).max(now));
            self.due = Some(due);
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| due <= now)
    }

    /// A report went out (or was given up) at `now`: the next waits an
    /// interval.
    pub fn sent(&mut self, now: Instant) {
        self.due = None;
        self.last_sent = Some(now);
    }

    /// Sending failed for a passing reason: try again at the next turn.
    pub fn retry(&mut self, now: Instant) {
        self.due = Some(now);
    }
}

/// What became of a report the worker sent.
pub(crate) enum Sent {
    Stored,
    /// The claim is no longer current (cancelled, taken back): the job
    /// should stop, as a failed heartbeat stops it.
    ClaimLost(Error),
    /// The database refused this value (too large, say): dropped.
    Refused(Error),
}

/// Sends `value` as the progress of claim (`id`, `attempt`). Errors that
/// say "not now" (a lost connection, a timeout) are returned, for the
/// caller to keep the value and retry.
pub(crate) async fn send(db: &Client, id: Uuid, attempt: i32, value: &Value) -> Result<Sent> {
    let value = super::execution::without_nul_value(value.clone());
    match db.progress(id, attempt, &value).await {
        Ok(()) => Ok(Sent::Stored),
        // object_not_in_prerequisite_state: not the current claim;
        // invalid_parameter_value: no such job (anymore).
        Err(error) if matches!(error.sqlstate(), Some("55000" | "22023")) => {
            Ok(Sent::ClaimLost(error))
        }
        // A data exception or a program limit (pdoflow.max_payload_bytes).
        Err(error)
            if error
                .sqlstate()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("54")) =>
        {
            Ok(Sent::Refused(error))
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reports_replace_each_other_and_announce_once_per_take() {
        let board = ProgressBoard::new();
        let id = Uuid::from_u128(1);
        let slot = board.slot(id);
        for done in 0..10_000 {
            slot.report(json!({ "done": done }));
        }
        assert_eq!(board.take_announced(), [id]);
        assert_eq!(slot.take(), Some(json!({"done": 9_999})));
        assert_eq!(slot.take(), None);
        slot.report(json!(1));
        slot.report(json!(2));
        assert_eq!(board.take_announced(), [id], "announced again after a take");
        slot.put_back(json!(0));
        assert_eq!(
            slot.close(),
            Some(json!(2)),
            "a newer report is not replaced"
        );
        slot.report(json!(3));
        assert_eq!(slot.take(), None, "closed");
        assert!(board.take_announced().is_empty());
    }

    #[test]
    fn a_report_waits_for_the_interval_after_the_last_send() {
        let interval = Duration::from_secs(1);
        let start = Instant::now();
        let mut pace = Pace::default();
        pace.announced(start, interval);
        assert!(pace.is_due(start), "the first report goes at once");
        pace.sent(start);
        let later = start + Duration::from_millis(300);
        pace.announced(later, interval);
        assert!(!pace.is_due(later));
        assert!(pace.is_due(start + interval));
        pace.announced(start + Duration::from_millis(500), interval);
        assert_eq!(pace.due, Some(start + interval), "the first due time holds");
    }
}
