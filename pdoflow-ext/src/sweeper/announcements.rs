//! The sweeper's second duty: announcing the queues that committed
//! enqueues left on the announcement board (see `crate::announce`), one
//! NOTIFY per queue, from a transaction that does not wait for the WAL flush
//! (the session's `synchronous_commit` is off).

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

/// How long the sweeper lets announcements gather after the first wakes it.
pub const GATHER: std::time::Duration = std::time::Duration::from_micros(500);

/// Sends what is on the board now, if anything (between the steps of a
/// round; they gathered while the step ran).
pub fn send_waiting() {
    if let Some(pending) = announce::board::take() {
        send(pending);
    }
}

pub fn send(pending: Pending) {
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
