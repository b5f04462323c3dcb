//! Flow control: the counts behind queue limits (sql/api/queue_controls.sql
//! holds the rules; docs/architecture.md, "Flow control", the argument).
//!
//! A limit must hold across every worker, so each claim must know how many
//! of the queue's jobs run now, including those that other claims are
//! starting at this moment. Counting rows cannot see uncommitted claims,
//! and a row every claim updates serialises them (others' global limits
//! halved their throughput that way). So the counts live in shared memory
//! (`counts.rs`), with the table as the source they are rebuilt from:
//!
//! - **Claims take slots.** A claim of a queue with `max_running` takes
//!   slots before it picks jobs, gives back at once those it did not use,
//!   and gives back the rest if its transaction rolls back. A job started
//!   under a limit is marked (`active_jobs.controlled`): it holds a slot.
//! - **Stops free them.** A trigger notes every marked running job that
//!   stops running (finished, failed, cancelled, released, its lease taken
//!   back); its slot is freed when that transaction commits, and only then.
//! - **Counts rebuild.** After a restart, or when the limits change, the
//!   first claim counts the queue's marked running jobs, locking them
//!   (FOR SHARE), so that it waits for every transaction that is stopping
//!   one. Frees that arrive while the queue is not counted are dropped: the
//!   count does not see those jobs running. Slots given back from an older
//!   count are dropped too (each count has a generation).
//! - **Rates** are a GCRA limiter per queue: claims take tokens before they
//!   pick jobs and give back those they did not use; a rollback gives them
//!   back too. The limiter starts afresh after a restart.
//!
//! Transactions that took slots or stopped limited jobs cannot be PREPAREd:
//! whoever commits them later would not free or keep the slots.

pub mod counts;

use std::cell::{Cell, RefCell};

use pgrx::datum::TryFromDatumError;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::backend::database;
use counts::{Rate, Slots};

/// Slots taken by this transaction, for a rollback to give back.
struct TakenSlots {
    queue: String,
    generation: u64,
    slots: i64,
    level: i32,
}

/// Rate tokens taken by this transaction, for a rollback to give back.
struct TakenTokens {
    queue: String,
    generation: u64,
    tokens: i64,
    rate: Rate,
    level: i32,
}

#[derive(Default)]
struct Pending {
    slots: Vec<TakenSlots>,
    tokens: Vec<TakenTokens>,
    /// Queues of marked running jobs this transaction stopped.
    freed: Vec<(String, i32)>,
    /// Counts this transaction started and has not finished.
    counting: Vec<(String, u64, i32)>,
    /// Queues whose limits this transaction changed (true: removed).
    changed: Vec<(String, bool)>,
    /// Whether this transaction wrote `pdoflow.queue_controls`.
    controls_written: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
            && self.tokens.is_empty()
            && self.freed.is_empty()
            && self.counting.is_empty()
            && self.changed.is_empty()
            && !self.controls_written
    }
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
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

fn pending<R>(change: impl FnOnce(&mut Pending) -> R) -> R {
    register_callbacks();
    PENDING.with(|pending| change(&mut pending.borrow_mut()))
}

fn require_shared_memory() {
    if !counts::ready() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "queue limits need pdoflow in shared_preload_libraries",
            "Add pdoflow to shared_preload_libraries in postgresql.conf and restart the server."
        );
    }
}

fn table_full(queue: &str) -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!(
            "cannot enforce the limits of queue \"{queue}\": the server keeps the counts of at most {} limited queues",
            counts::ENTRIES
        ),
        "Remove the limits of queues that no longer need them (pdoflow.set_queue_limits with NULLs)."
    );
}

/// `pdoflow._take_running_slots(queue, want, max_running)`: takes up to
/// `want` running slots of `queue`; NULL when its running jobs must be
/// counted first (`_start_running_count`).
#[pg_extern(volatile, parallel_unsafe, name = "_take_running_slots")]
fn take_running_slots(queue: &str, want: i32, max_running: i32) -> Option<i32> {
    require_shared_memory();
    match counts::take_slots(queue, want.into(), max_running.into()) {
        Slots::NeedsCount => None,
        Slots::TableFull => table_full(queue),
        Slots::Taken { slots, generation } => {
            if slots > 0 {
                pending(|p| {
                    p.slots.push(TakenSlots {
                        queue: queue.to_owned(),
                        generation,
                        slots,
                        level: nest_level(),
                    })
                });
            }
            Some(i32::try_from(slots).unwrap_or(0))
        }
    }
}

/// `pdoflow._give_back_running_slots(queue, slots)`: slots this
/// transaction took for `queue` and did not use.
#[pg_extern(volatile, parallel_unsafe, name = "_give_back_running_slots")]
fn give_back_running_slots(queue: &str, slots: i32) {
    let mut left = i64::from(slots);
    pending(|p| {
        for taken in p.slots.iter_mut().rev().filter(|t| t.queue == queue) {
            if left <= 0 {
                break;
            }
            let back = left.min(taken.slots);
            counts::give_back_slots(database(), queue, taken.generation, back);
            taken.slots -= back;
            left -= back;
        }
        p.slots.retain(|t| t.slots > 0);
    });
}

/// `pdoflow._start_running_count(queue)`: starts counting the running jobs
/// of `queue`; NULL when another claim counts them, or they are counted.
#[pg_extern(volatile, parallel_unsafe, name = "_start_running_count")]
fn start_running_count(queue: &str) -> Option<i64> {
    require_shared_memory();
    let attempt = counts::start_count(queue)?;
    pending(|p| p.counting.push((queue.to_owned(), attempt, nest_level())));
    i64::try_from(attempt).ok()
}

/// `pdoflow._finish_running_count(queue, attempt, running)`.
#[pg_extern(volatile, parallel_unsafe, name = "_finish_running_count")]
fn finish_running_count(queue: &str, attempt: i64, running: i64) {
    let attempt = u64::try_from(attempt).unwrap_or(0);
    counts::finish_count(queue, attempt, running);
    pending(|p| {
        p.counting
            .retain(|(q, a, _)| !(q.as_str() == queue && *a == attempt))
    });
}

/// The limiter of `rate` claims per `per`: see sql/api/queue_controls.sql
/// for the burst.
fn limiter(rate: i32, per: &Interval) -> Rate {
    let per_ns = per.as_micros() * 1_000;
    let rate = i128::from(rate.max(1));
    let interval_ns = i64::try_from((per_ns / rate).max(1)).unwrap_or(i64::MAX);
    // A tenth of a second's worth of claims, at least one.
    let burst = i64::try_from((rate * 100_000_000 / per_ns.max(1)).max(1)).unwrap_or(1);
    Rate { interval_ns, burst }
}

fn now_ns() -> i64 {
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    now.saturating_mul(1_000)
}

/// `pdoflow._take_rate_tokens(queue, want, rate, per)`: how many of `want`
/// claims the queue's rate limit allows now.
#[pg_extern(volatile, parallel_unsafe, name = "_take_rate_tokens")]
fn take_rate_tokens(queue: &str, want: i32, rate: i32, per: Interval) -> i32 {
    require_shared_memory();
    let limit = limiter(rate, &per);
    let Some((tokens, generation)) = counts::take_tokens(queue, want.into(), limit, now_ns())
    else {
        table_full(queue)
    };
    if tokens > 0 {
        pending(|p| {
            p.tokens.push(TakenTokens {
                queue: queue.to_owned(),
                generation,
                tokens,
                rate: limit,
                level: nest_level(),
            })
        });
    }
    i32::try_from(tokens).unwrap_or(0)
}

/// `pdoflow._give_back_rate_tokens(queue, tokens)`: tokens this transaction
/// took for `queue` and did not use.
#[pg_extern(volatile, parallel_unsafe, name = "_give_back_rate_tokens")]
fn give_back_rate_tokens(queue: &str, tokens: i32) {
    let mut left = i64::from(tokens);
    pending(|p| {
        for taken in p.tokens.iter_mut().rev().filter(|t| t.queue == queue) {
            if left <= 0 {
                break;
            }
            let back = left.min(taken.tokens);
            counts::give_back_tokens(database(), queue, taken.generation, back, taken.rate);
            taken.tokens -= back;
            left -= back;
        }
        p.tokens.retain(|t| t.tokens > 0);
    });
}

/// `pdoflow._next_claim_allowed(queue, rate, per)`: when the queue's rate
/// limit next allows a claim (now or earlier: now).
#[pg_extern(volatile, parallel_unsafe, name = "_next_claim_allowed")]
fn next_claim_allowed(queue: &str, rate: i32, per: Interval) -> TimestampWithTimeZone {
    let now = now_ns();
    let at = if counts::ready() {
        counts::next_token_ns(queue, limiter(rate, &per), now)
    } else {
        now
    };
    let micros = at / 1_000 + i64::from(at % 1_000 != 0);
    TimestampWithTimeZone::try_from(micros)
        .unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity())
}

/// `pdoflow._running_slots(queue)`: slots of `queue` taken now, NULL when
/// not counted (nothing claimed under its limits since they were set or
/// the server started).
#[pg_extern(volatile, parallel_safe, name = "_running_slots")]
fn running_slots(queue: &str) -> Option<i64> {
    if !counts::ready() {
        return None;
    }
    counts::running(queue)
}

/// `pdoflow._queue_limits_changed(queue, removed)`: once this transaction
/// commits, the queue's slots are counted again and its rate limiter
/// starts afresh (or, removed, forgotten).
#[pg_extern(volatile, parallel_unsafe, name = "_queue_limits_changed")]
fn queue_limits_changed(queue: &str, removed: bool) {
    pending(|p| p.changed.push((queue.to_owned(), removed)));
}

/// `pdoflow._forget_flow_counts()`: a new install starts without counts.
#[pg_extern(volatile, parallel_unsafe, name = "_forget_flow_counts")]
fn forget_flow_counts() {
    if counts::ready() {
        counts::forget_database();
    }
}

/// Trigger on `pdoflow.active_jobs` for marked running jobs that stop
/// running (sql/api/queue_controls.sql): notes their slot, freed when the
/// transaction commits.
#[pg_trigger]
fn _running_slot_freed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, TryFromDatumError> {
    if let Some(old) = trigger.old() {
        if let Some(queue) = old.get_by_name::<String>("queue")? {
            pending(|p| p.freed.push((queue, nest_level())));
        }
    }
    Ok(trigger.new().or_else(|| trigger.old()))
}

/// Statement trigger on `pdoflow.queue_controls` (whatever writes it: the
/// API, a restore, a hand-made change): once the transaction commits,
/// sessions read the controls again (`is_controlled`).
#[pg_trigger]
fn _queue_controls_written<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, TryFromDatumError> {
    pending(|p| p.controls_written = true);
    Ok(None)
}

/// The queues with controls, as this session last read them, and the
/// generation it read them at.
struct ControlledQueues {
    generation: u64,
    queues: Vec<String>,
}

thread_local! {
    static CONTROLLED: RefCell<Option<ControlledQueues>> = const { RefCell::new(None) };
}

const CONTROLLED_QUEUES: &str =
    "SELECT c.queue::text FROM pdoflow.queue_controls AS c WHERE c.released_at IS NULL";

/// Whether `queue` has controls (paused or limited): enqueue's plain path
/// marks its jobs `controlled`. Read from the table only when the controls
/// changed since this session last looked (every time without shared
/// memory). A change that commits while a job is being enqueued may be
/// missed; claims and the sweeper repair that (sql/api/queue_controls.sql).
pub fn is_controlled(
    client: &mut pgrx::spi::SpiClient<'_>,
    queue: &str,
) -> Result<bool, pgrx::spi::SpiError> {
    let generation = counts::controls_generation();
    if let Some(generation) = generation {
        let known = CONTROLLED.with(|cached| {
            cached
                .borrow()
                .as_ref()
                .filter(|cached| cached.generation == generation)
                .map(|cached| cached.queues.iter().any(|q| q == queue))
        });
        if let Some(known) = known {
            return Ok(known);
        }
    }
    let mut queues = Vec::new();
    for row in client.select(CONTROLLED_QUEUES, None, &[])? {
        if let Some(name) = row.get::<String>(1)? {
            queues.push(name);
        }
    }
    let controlled = queues.iter().any(|q| q == queue);
    if let Some(generation) = generation {
        CONTROLLED.with(|cached| {
            *cached.borrow_mut() = Some(ControlledQueues { generation, queues });
        });
    }
    Ok(controlled)
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _argument: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            let touched = PENDING.with(|p| {
                let p = p.borrow();
                !p.slots.is_empty() || !p.freed.is_empty() || !p.counting.is_empty()
            });
            if touched {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "cannot PREPARE a transaction that claimed or ended jobs of a queue with max_running",
                    "Commit it directly: the running slots it took or freed are kept in this server's memory."
                );
            }
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            let done = PENDING.with(RefCell::take);
            if done.is_empty() {
                return;
            }
            if done.controls_written {
                counts::controls_changed();
            }
            let database = database();
            let mut woken: Vec<String> = Vec::new();
            for (queue, _) in done.freed {
                counts::free_slots(database, &queue, 1);
                if !woken.contains(&queue) {
                    woken.push(queue);
                }
            }
            for (queue, removed) in done.changed {
                counts::reset(database, &queue, removed);
                if !woken.contains(&queue) {
                    woken.push(queue);
                }
            }
            for (queue, attempt, _) in done.counting {
                counts::abandon_count(database, &queue, attempt);
            }
            for queue in &woken {
                crate::claim_wait::wake(queue);
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            let undone = PENDING.with(RefCell::take);
            undo(undone, database());
        }
        _ => {}
    }
}

/// Gives back what a rolled back (sub)transaction took.
fn undo(undone: Pending, database: u32) {
    for taken in undone.slots {
        counts::give_back_slots(database, &taken.queue, taken.generation, taken.slots);
    }
    for taken in undone.tokens {
        counts::give_back_tokens(
            database,
            &taken.queue,
            taken.generation,
            taken.tokens,
            taken.rate,
        );
    }
    for (queue, attempt, _) in undone.counting {
        counts::abandon_count(database, &queue, attempt);
    }
}

/// A subtransaction that rolls back gives back what it took and forgets
/// what it stopped; one that commits hands its share to its parent.
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
            let undone = PENDING.with(|p| {
                let mut p = p.borrow_mut();
                let (slots, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.slots)
                    .into_iter()
                    .partition(|t| t.level >= level);
                p.slots = kept;
                let (tokens, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.tokens)
                    .into_iter()
                    .partition(|t| t.level >= level);
                p.tokens = kept;
                let (counting, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.counting)
                    .into_iter()
                    .partition(|c| c.2 >= level);
                p.counting = kept;
                p.freed.retain(|f| f.1 < level);
                Pending {
                    slots,
                    tokens,
                    counting,
                    ..Pending::default()
                }
            });
            undo(undone, database());
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            PENDING.with(|p| {
                let mut p = p.borrow_mut();
                let parent = level - 1;
                p.slots
                    .iter_mut()
                    .filter(|t| t.level >= level)
                    .for_each(|t| t.level = parent);
                p.tokens
                    .iter_mut()
                    .filter(|t| t.level >= level)
                    .for_each(|t| t.level = parent);
                p.counting
                    .iter_mut()
                    .filter(|c| c.2 >= level)
                    .for_each(|c| c.2 = parent);
                p.freed
                    .iter_mut()
                    .filter(|f| f.1 >= level)
                    .for_each(|f| f.1 = parent);
            });
        }
        _ => {}
    }
}
