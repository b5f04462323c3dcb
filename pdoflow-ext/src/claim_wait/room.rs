//! The claimers' waiting room: shared memory where sessions in
//! `pdoflow.claim(..., wait)` say which database and queues they wait for,
//! so that whoever makes jobs claimable there can set their latch.
//!
//! One slot per process, indexed by its PGPROC number, written only by its
//! owner; wakers read the slots without a lock (a claimer woken for nothing
//! claims, finds nothing and sleeps again). Queues are kept as a 64-bit
//! mask of their names' hashes: two queues may share a bit, which only
//! wakes a claimer for nothing. A count of waiting slots lets every waker
//! skip the room when nobody waits.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};

use crate::backend;

/// Processes that can wait: PGPROC numbers from 0 up to this. A process
/// with a higher number polls instead (`super::UNREGISTERED_POLL`).
const SLOTS: usize = 4096;

/// Every queue.
pub const EVERY_QUEUE: u64 = u64::MAX;

struct Slot {
    waiting: AtomicBool,
    database: AtomicU32,
    queues: AtomicU64,
}

pub struct Room {
    slots: [Slot; SLOTS],
    highest: AtomicI32,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            slots: std::array::from_fn(|_| Slot {
                waiting: AtomicBool::new(false),
                database: AtomicU32::new(0),
                queues: AtomicU64::new(0),
            }),
            highest: AtomicI32::new(-1),
        }
    }
}

// SAFETY: plain atomics without pointers, the same in every process.
unsafe impl PGRXSharedMemory for Room {}

static ROOM: PgLwLock<Room> = unsafe { PgLwLock::new(c"pdoflow_claimers") };
static WAITING: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"pdoflow_claimers_waiting") };
static READY: AtomicBool = AtomicBool::new(false);

/// Requests the room's shared memory; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(ROOM);
    pg_shmem_init!(WAITING);
    READY.store(true, Ordering::Relaxed);
}

/// The bit of `queue` in a mask.
pub fn queue_bit(queue: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    queue.hash(&mut hasher);
    1u64 << (hasher.finish() % 64)
}

/// This process's slot: its PGPROC number, if below SLOTS.
fn my_slot() -> Option<usize> {
    backend::procno().filter(|slot| *slot < SLOTS)
}

/// Says that this process waits for jobs of the `queues` mask; false when
/// the room is not there or this process has no slot.
pub fn enter(queues: u64) -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    let Some(slot) = my_slot() else {
        return false;
    };
    clear_at_exit();
    let room = ROOM.share();
    let place = &room.slots[slot];
    place.database.store(backend::database(), Ordering::SeqCst);
    place.queues.store(queues, Ordering::SeqCst);
    if !place.waiting.swap(true, Ordering::SeqCst) {
        WAITING.get().fetch_add(1, Ordering::SeqCst);
    }
    room.highest
        .fetch_max(i32::try_from(slot).unwrap_or(i32::MAX), Ordering::SeqCst);
    true
}

/// This process waits no more.
pub fn leave() {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    if let Some(slot) = my_slot() {
        let room = ROOM.share();
        if room.slots[slot].waiting.swap(false, Ordering::SeqCst) {
            WAITING.get().fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn clear_at_exit() {
    thread_local! {
        static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if ARMED.get() {
        return;
    }
    #[pg_guard]
    unsafe extern "C-unwind" fn at_exit(_code: i32, _argument: pg_sys::Datum) {
        leave();
    }
    // SAFETY: registers a plain function that lives as long as the library.
    unsafe { pg_sys::before_shmem_exit(Some(at_exit), pg_sys::Datum::from(0)) };
    ARMED.set(true);
}

/// Sets the latch of every process of this database waiting for `queue`.
pub fn wake(queue: &str) {
    if !READY.load(Ordering::Relaxed) || WAITING.get().load(Ordering::SeqCst) == 0 {
        return;
    }
    let bit = queue_bit(queue);
    let database = backend::database();
    let room = ROOM.share();
    let highest = usize::try_from(room.highest.load(Ordering::SeqCst)).unwrap_or(0);
    for (procno, slot) in room.slots.iter().enumerate().take(highest + 1) {
        if slot.waiting.load(Ordering::SeqCst)
            && slot.database.load(Ordering::SeqCst) == database
            && slot.queues.load(Ordering::SeqCst) & bit != 0
        {
            backend::set_latch(procno);
        }
    }
}
