//! Claims that wait: `pdoflow.claim(..., wait)` sleeps on its latch while
//! no job is available, instead of the worker polling or LISTENing.
//!
//! The claim enters the waiting room (`room.rs`) before it looks for jobs,
//! so that nothing made claimable after its look goes unnoticed: every
//! waker sets the latch, and a latch set before the sleep ends it at once.
//! Wakers: the commit of a transaction that queued due jobs (the claim
//! floors' posts, `claim_floors::post_notes`), the sweeper announcing
//! delayed jobs that fell due, and commits that free running slots or
//! change a queue's controls (`flow_control`). A claim throttled by a rate
//! limit sleeps until the limiter allows the next claim.
//!
//! The SQL side (the loop around the claim) is in sql/api/claim.sql.

pub mod room;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use crate::backend;

/// How long a claimer sleeps at most between two looks when nobody wakes
/// it: a safety net only (jobs written by hand into the table wake nobody).
const SAFETY_LOOK: Duration = Duration::from_secs(5);
/// How often a claimer looks when it cannot enter the room (pdoflow not in
/// shared_preload_libraries, or too many processes): then it does poll.
const UNREGISTERED_POLL: Duration = Duration::from_millis(50);

thread_local! {
    /// Whether this process is in the room.
    static ENTERED: Cell<bool> = const { Cell::new(false) };
    /// Queues whose claimers this transaction wakes when it commits.
    static AT_COMMIT: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

fn register_callback() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: registers a plain function that lives as long as the library.
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    REGISTERED.set(true);
}

/// Wakes this database's claimers waiting for `queue`, now.
pub fn wake(queue: &str) {
    room::wake(queue);
}

/// `pdoflow._wake_claimers(queue)`: wakes the claimers waiting for `queue`
/// now (for jobs already committed, such as delayed jobs that fell due).
#[pg_extern(volatile, parallel_unsafe, name = "_wake_claimers")]
fn wake_claimers(queue: &str) {
    wake(queue);
}

/// `pdoflow._wake_claimers_at_commit(queue)`: wakes them once this
/// transaction commits (a queue resumed, say).
#[pg_extern(volatile, parallel_unsafe, name = "_wake_claimers_at_commit")]
fn wake_claimers_at_commit(queue: &str) {
    register_callback();
    AT_COMMIT.with(|queues| queues.borrow_mut().push(queue.to_owned()));
}

/// `pdoflow._claim_wait_enter(queues)`: this session waits for jobs of
/// `queues` (NULL: every queue) from now on.
#[pg_extern(volatile, parallel_unsafe, name = "_claim_wait_enter")]
fn claim_wait_enter(queues: Option<Vec<Option<String>>>) {
    let mask = match queues {
        None => room::EVERY_QUEUE,
        Some(queues) => queues
            .iter()
            .flatten()
            .fold(0, |mask, queue| mask | room::queue_bit(queue)),
    };
    register_callback();
    ENTERED.set(room::enter(mask));
}

/// `pdoflow._claim_wait_leave()`.
#[pg_extern(volatile, parallel_unsafe, name = "_claim_wait_leave")]
fn claim_wait_leave() {
    if ENTERED.replace(false) {
        room::leave();
    }
}

/// `pdoflow._claim_wait_sleep(until)`: sleeps until woken or `until`,
/// whichever comes first; raises on cancel, statement_timeout or
/// termination.
#[pg_extern(volatile, parallel_unsafe, name = "_claim_wait_sleep")]
fn claim_wait_sleep(until: TimestampWithTimeZone) {
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let left_micros = (pg_sys::TimestampTz::from(until) - now).max(0);
    let cap = if ENTERED.get() {
        SAFETY_LOOK
    } else {
        UNREGISTERED_POLL
    };
    let pause = Duration::from_micros(u64::try_from(left_micros).unwrap_or(0)).min(cap);
    backend::sleep_on_latch(pause);
}

/// A claim that ends by an error leaves the room; a commit wakes the
/// claimers it promised to.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _argument: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            claim_wait_leave();
            for queue in AT_COMMIT.with(RefCell::take) {
                wake(&queue);
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            claim_wait_leave();
            AT_COMMIT.with(RefCell::take);
        }
        _ => {}
    }
}
