//! The sweeper's second duty: announcing the queues that committed
//! enqueues left on the announcement board (see `crate::announce`), one
//! NOTIFY per queue, from a transaction that does not wait for the WAL flush
//! (the session's `synchronous_commit` is off).

use std::cell::Cell;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::spi::Spi;

use super::round;
use crate::announce::{self, board::Pending};

/// Every queue with a job waiting, found by skipping through the per-queue
/// claim index: used when more queues got work than the board holds.
const ANNOUNCE_EVERY_QUEUE: &str = "
    WITH RECURSIVE waiting(queue) AS (
        (SELECT j.queue FROM pdoflow.active_jobs AS j
         WHERE j.state = 'queued' ORDER BY j.queue LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue FROM pdoflow.active_jobs AS j
                WHERE j.state = 'queued' AND j.queue > w.queue ORDER BY j.queue LIMIT 1)
        FROM waiting AS w WHERE w.queue IS NOT NULL)
    SELECT count(pg_catalog.pg_notify('pdoflow', w.queue)) FROM waiting AS w
    WHERE w.queue IS NOT NULL";

/// The least time between two of the sweeper's announcing transactions.
/// A wake-up after a quiet spell is answered at once; while producers keep
/// committing, what they leave meanwhile goes out together when the gap
/// ends. Each announcing transaction costs the sweeper, and every listener,
/// a wake-up: at 10,000 enqueues/s a 0.5 ms gather sent one per 6.6 jobs.
const MIN_GAP: Duration = Duration::from_millis(2);

thread_local! {
    static LAST_SENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sends what is on the board, if anything, once MIN_GAP has passed since
/// the last announcement (sleeping for the rest of it if needed).
pub fn send_waiting() {
    if !announce::board::waiting() {
        return;
    }
    if let Some(since) = LAST_SENT.get().map(|last| last.elapsed()) {
        if since < MIN_GAP {
            std::thread::sleep(MIN_GAP - since);
        }
    }
    if let Some(pending) = announce::board::take() {
        send(pending);
        LAST_SENT.set(Some(Instant::now()));
    }
}

fn send(pending: Pending) {
    let sent = round::in_transaction(
        "announcing new jobs",
        c"pdoflow: announcing new jobs",
        || {
            for queue in &pending.queues {
                announce::notify_now(queue);
            }
            if pending.overflow {
                Spi::get_one::<i64>(ANNOUNCE_EVERY_QUEUE)?;
            }
            Ok(())
        },
    );
    if let Err((step, failure)) = sent {
        warning!("pdoflow sweeper: {step} failed: {}", failure.message);
    }
}
