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
pub(crate) const MIN_GAP: Duration = Duration::from_millis(2);

/// The gap while producers commit faster than BUSY_RATE. At 12,000 single-job
/// enqueues a second, 450 announcing transactions a second (a 2 ms gap) cost
/// the producers 4-5% of their rate; 100 cost nothing measurable
/// (docs/benchmarks.md, 0.9.0). At such rates workers are busy claiming and
/// the announcements hardly wake anyone.
pub(crate) const BUSY_GAP: Duration = Duration::from_millis(10);

/// Commits a second (posting to the board) from which the gap is BUSY_GAP.
/// High enough that a steady few hundred jobs a second, whose commits now
/// and then come close together, keep the short gap: at 200 a second, eight
/// commits within 2 ms are about a one-in-a-hundred-million event.
const BUSY_RATE: u128 = 4_000;

thread_local! {
    static LAST_SENT: Cell<Option<Instant>> = const { Cell::new(None) };
    static GAP: Cell<Duration> = const { Cell::new(MIN_GAP) };
}

/// Sends what is on the board, if anything, once the gap has passed since
/// the last announcement (sleeping for the rest of it if needed).
pub fn send_waiting() {
    if !announce::board::waiting() {
        return;
    }
    let last_sent = LAST_SENT.get();
    if let Some(since) = last_sent.map(|last| last.elapsed()) {
        let gap = GAP.get();
        if since < gap {
            std::thread::sleep(gap - since);
        }
    }
    if let Some(pending) = announce::board::take() {
        GAP.set(gap_after(
            pending.commits,
            last_sent.map(|last| last.elapsed()),
        ));
        send(pending);
        LAST_SENT.set(Some(Instant::now()));
    }
}

/// The gap after an announcement of `commits` transactions that committed
/// over `window` (the time since the previous announcement).
pub(crate) fn gap_after(commits: u32, window: Option<Duration>) -> Duration {
    match window {
        Some(window) if u128::from(commits) * 1_000_000_000 >= BUSY_RATE * window.as_nanos() => {
            BUSY_GAP
        }
        _ => MIN_GAP,
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
