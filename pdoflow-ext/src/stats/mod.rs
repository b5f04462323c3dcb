//! Cumulative counters per queue: the view `pdoflow.stats` (declared in
//! sql/api/stats.sql), as `pg_stat_*` keep theirs.
//!
//! The functions that change jobs say what they did (`_count_jobs`,
//! `_count_ended`, and `count` from Rust); a transaction keeps its counts
//! here and adds them to the shared table (`table.rs`) when it commits, so
//! rolled-back work (a savepoint's included) is never counted and the hot
//! path takes the table's lock once per transaction, not per job.
//!
//! What counts as what:
//! - `enqueued`: jobs added (a unique key's existing job is not);
//! - `claimed`: claims started (`claim`, `claim_job`);
//! - `succeeded`, `failed`, `cancelled`: jobs that ended so, whichever way;
//! - `retried`: jobs queued again for another attempt: after a failed
//!   attempt, an expired lease with attempts left, or `pdoflow.retry`;
//! - `leases_expired`: claims the sweeper took back.
//!
//! The counts live as long as the server: a restart (or crash) starts them
//! at zero, as Prometheus counters expect.

pub mod table;

use std::cell::{Cell, RefCell};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use crate::backend::database;
use table::{Counts, Event, EVENTS};

/// Counts of this transaction not yet committed: per queue and
/// subtransaction level.
struct Pending {
    queue: String,
    level: i32,
    counts: Counts,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

fn register_callbacks() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: registers plain functions that live as long as the library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
    }
    REGISTERED.set(true);
}

fn nest_level() -> i32 {
    // SAFETY: reads the current transaction's nesting depth.
    unsafe { pg_sys::GetCurrentTransactionNestLevel() }
}

/// Counts `n` jobs of `queue` for `event`, once this transaction commits.
pub fn count(event: Event, queue: &str, n: u64) {
    if !table::ready() || n == 0 {
        return;
    }
    register_callbacks();
    let level = nest_level();
    PENDING.with_borrow_mut(|pending| {
        match pending
            .iter_mut()
            .find(|p| p.level == level && p.queue == queue)
        {
            Some(found) => found.counts[event.index()] += n,
            None => {
                let mut counts = [0; EVENTS];
                counts[event.index()] = n;
                pending.push(Pending {
                    queue: queue.to_owned(),
                    level,
                    counts,
                });
            }
        }
    });
}

fn event(name: &str) -> Event {
    match Event::parse(name) {
        Some(event) => event,
        None => error!("pdoflow: unknown statistics event {name:?}"),
    }
}

/// `pdoflow._count_jobs(event, queues, n)`: counts `n` jobs for `event` per
/// element of `queues` (one element per job, or one queue for `n` jobs).
/// The arrays are read in place (no copy per element): claims and finishes
/// call this for every batch.
#[pg_extern(volatile, parallel_unsafe, name = "_count_jobs")]
fn count_jobs(event_name: &str, queues: Option<pgrx::Array<'_, &str>>, n: default!(i64, 1)) {
    if !table::ready() {
        return;
    }
    let event = event(event_name);
    let n = u64::try_from(n).unwrap_or(0);
    for queue in queues.iter().flat_map(|queues| queues.iter()).flatten() {
        count(event, queue, n);
    }
}

/// `pdoflow._count_ended(queues, states)`: counts jobs that ended, each in
/// its end state (`succeeded`, `failed` or `cancelled`).
#[pg_extern(volatile, parallel_unsafe, name = "_count_ended")]
fn count_ended(queues: Option<pgrx::Array<'_, &str>>, states: Option<pgrx::Array<'_, &str>>) {
    if !table::ready() {
        return;
    }
    let (Some(queues), Some(states)) = (queues, states) else {
        return;
    };
    for (queue, state) in queues.iter().zip(states.iter()) {
        if let (Some(queue), Some(state)) = (queue, state) {
            count(event(state), queue, 1);
        }
    }
}

/// `pdoflow._stats()`: the rows of `pdoflow.stats` for this database.
// pgrx reads the columns from this signature: a type alias would hide them.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe, name = "_stats")]
fn stats() -> TableIterator<
    'static,
    (
        name!(queue, Option<String>),
        name!(enqueued, i64),
        name!(claimed, i64),
        name!(succeeded, i64),
        name!(failed, i64),
        name!(retried, i64),
        name!(cancelled, i64),
        name!(leases_expired, i64),
        name!(stats_reset, Option<TimestampWithTimeZone>),
    ),
> {
    let count =
        |counts: &Counts, event: Event| i64::try_from(counts[event.index()]).unwrap_or(i64::MAX);
    let rows: Vec<_> = table::rows(database())
        .into_iter()
        .map(|(queue, counts, reset_at)| {
            (
                queue,
                count(&counts, Event::Enqueued),
                count(&counts, Event::Claimed),
                count(&counts, Event::Succeeded),
                count(&counts, Event::Failed),
                count(&counts, Event::Retried),
                count(&counts, Event::Cancelled),
                count(&counts, Event::LeasesExpired),
                reset_at.and_then(|at| TimestampWithTimeZone::try_from(at).ok()),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// `pdoflow._reset_stats(queue)`: zeroes the counters of `queue`, or drops
/// every queue's of this database (NULL). At once, not at commit: as
/// `pg_stat_reset`, a reset is not transactional.
#[pg_extern(volatile, parallel_unsafe, name = "_reset_stats")]
fn reset_stats(queue: Option<&str>) {
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    table::reset(database(), queue, now);
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _argument: *mut std::ffi::c_void,
) {
    match event {
        // A prepared transaction is counted when it is prepared: whoever
        // commits it later has none of its counts.
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            let done = PENDING.with(RefCell::take);
            if done.is_empty() {
                return;
            }
            let mut merged: Vec<(String, Counts)> = Vec::with_capacity(done.len());
            for pending in done {
                match merged.iter_mut().find(|(queue, _)| *queue == pending.queue) {
                    Some((_, counts)) => counts
                        .iter_mut()
                        .zip(pending.counts)
                        .for_each(|(total, added)| *total += added),
                    None => merged.push((pending.queue, pending.counts)),
                }
            }
            table::add(database(), &merged);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => {
            PENDING.with(RefCell::take);
        }
        _ => {}
    }
}

/// A savepoint rolled back drops what was counted in it; one released
/// hands its counts to its parent.
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _subtransaction: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _argument: *mut std::ffi::c_void,
) {
    let level = nest_level();
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            PENDING.with_borrow_mut(|pending| pending.retain(|p| p.level < level));
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            PENDING.with_borrow_mut(|pending| {
                pending
                    .iter_mut()
                    .filter(|p| p.level >= level)
                    .for_each(|p| p.level = level - 1);
            });
        }
        _ => {}
    }
}
