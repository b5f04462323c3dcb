//! The waiting room: shared memory where sessions in `pdoflow.await_result`
//! say which job they wait for (and sessions in `pdoflow.await_ended` that
//! they wait for any job of their database), so that the transaction that
//! ends it can set their latch when it commits.
//!
//! One slot per process, indexed by its PGPROC number, written only by its
//! owner; wakers read the slots without a lock (a waiter woken for nothing
//! looks at its job again and goes back to sleep). A count of waiting slots
//! lets a finishing transaction skip all of this when nobody waits. Only
//! usable when pdoflow is in shared_preload_libraries.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};

use crate::backend;

/// Processes that can wait: PGPROC numbers from 0 up to this. A process
/// with a higher number waits by looking again every
/// `super::UNREGISTERED_POLL` instead.
const SLOTS: usize = 4096;

struct Slot {
    waiting: AtomicBool,
    /// The job waited for; the nil UUID: any job of `database`
    /// (`pdoflow.await_ended`).
    job: [AtomicU64; 2],
    database: AtomicU32,
    /// Set by a waker before it sets the latch, for a waiter to tell its
    /// wake from the latch's other uses.
    woken: AtomicBool,
}

pub struct Room {
    slots: [Slot; SLOTS],
    /// The highest PGPROC number that ever waited: wakers look no further.
    highest: AtomicI32,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            slots: std::array::from_fn(|_| Slot {
                waiting: AtomicBool::new(false),
                job: [AtomicU64::new(0), AtomicU64::new(0)],
                database: AtomicU32::new(0),
                woken: AtomicBool::new(false),
            }),
            highest: AtomicI32::new(-1),
        }
    }
}

// SAFETY: plain atomics without pointers, the same in every process.
unsafe impl PGRXSharedMemory for Room {}

static ROOM: PgLwLock<Room> = unsafe { PgLwLock::new(c"pdoflow_waiters") };
/// Slots waiting now (a waker's quick look).
static WAITING: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"pdoflow_waiting") };
/// Set in the postmaster when the room was requested; backends inherit it.
static READY: AtomicBool = AtomicBool::new(false);

/// Requests the room's shared memory; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(ROOM);
    pg_shmem_init!(WAITING);
    READY.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn halves(job: &[u8; 16]) -> [u64; 2] {
    let (high, low) = job.split_at(8);
    [
        u64::from_be_bytes(high.try_into().unwrap_or_default()),
        u64::from_be_bytes(low.try_into().unwrap_or_default()),
    ]
}

/// This process's PGPROC number, if it has a slot.
fn my_slot() -> Option<usize> {
    backend::procno().filter(|slot| *slot < SLOTS)
}

/// A registration in the room, taken back when dropped (also when an error
/// or a cancel unwinds the wait).
pub struct Registration {
    slot: usize,
}

/// Says that this process waits for `job`; `None` when the room is not
/// there (pdoflow not preloaded) or this process has no slot.
pub fn register(job: &[u8; 16]) -> Option<Registration> {
    if !READY.load(Ordering::Relaxed) {
        return None;
    }
    let slot = my_slot()?;
    clear_at_exit();
    let room = ROOM.share();
    let place = &room.slots[slot];
    let [high, low] = halves(job);
    place.job[0].store(high, Ordering::SeqCst);
    place.job[1].store(low, Ordering::SeqCst);
    place.database.store(backend::database(), Ordering::SeqCst);
    place.woken.store(false, Ordering::SeqCst);
    if !place.waiting.swap(true, Ordering::SeqCst) {
        WAITING.get().fetch_add(1, Ordering::SeqCst);
    }
    room.highest
        .fetch_max(i32::try_from(slot).unwrap_or(i32::MAX), Ordering::SeqCst);
    Some(Registration { slot })
}

fn unregister(slot: usize) {
    let room = ROOM.share();
    if room.slots[slot].waiting.swap(false, Ordering::SeqCst) {
        WAITING.get().fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registration {
    /// Whether a job's end woke this waiter since the last call (or its
    /// registration); a latch set for anything else does not count.
    pub fn take_woken(&self) -> bool {
        ROOM.share().slots[self.slot]
            .woken
            .swap(false, Ordering::SeqCst)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        unregister(self.slot);
    }
}

/// A process that exits while it waits (terminated, say) frees its slot.
fn clear_at_exit() {
    thread_local! {
        static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if ARMED.get() {
        return;
    }
    #[pg_guard]
    unsafe extern "C-unwind" fn at_exit(_code: i32, _argument: pg_sys::Datum) {
        if let Some(slot) = my_slot() {
            unregister(slot);
        }
    }
    // SAFETY: registers a plain function that lives as long as the library.
    unsafe { pg_sys::before_shmem_exit(Some(at_exit), pg_sys::Datum::from(0)) };
    ARMED.set(true);
}

/// Whether anybody waits at all.
pub fn anybody_waiting() -> bool {
    READY.load(Ordering::Relaxed) && WAITING.get().load(Ordering::SeqCst) > 0
}

/// Says that this process waits for any job of its database to end.
pub fn register_any() -> Option<Registration> {
    register(&ANY_JOB)
}

/// The job a slot waiting for any job names.
const ANY_JOB: [u8; 16] = [0; 16];

/// Sets the latch of every process waiting for one of `jobs`, or for any
/// job of this database.
pub fn wake(jobs: &[[u8; 16]]) {
    if !anybody_waiting() {
        return;
    }
    let wanted: Vec<[u64; 2]> = jobs.iter().map(halves).collect();
    let any = halves(&ANY_JOB);
    let database = backend::database();
    let room = ROOM.share();
    let highest = usize::try_from(room.highest.load(Ordering::SeqCst)).unwrap_or(0);
    for (procno, slot) in room.slots.iter().enumerate().take(highest + 1) {
        if !slot.waiting.load(Ordering::SeqCst) {
            continue;
        }
        let job = [
            slot.job[0].load(Ordering::SeqCst),
            slot.job[1].load(Ordering::SeqCst),
        ];
        let for_any =
            job == any && slot.database.load(Ordering::SeqCst) == database && !jobs.is_empty();
        if for_any || wanted.contains(&job) {
            slot.woken.store(true, Ordering::SeqCst);
            backend::set_latch(procno);
        }
    }
}
