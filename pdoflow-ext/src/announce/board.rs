//! The announcement board: shared memory where committing sessions leave the
//! queues that got work, for the sweeper of their database to announce.
//!
//! One slot per database with a sweeper. A slot holds a small set of queue
//! names; when more distinct queues pile up between two wake-ups than fit,
//! the slot notes an overflow and the sweeper announces every queue that has
//! work instead. Only usable when pdoflow is in shared_preload_libraries.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::backend;

/// Databases with a sweeper that can coalesce announcements.
const SLOTS: usize = 32;
/// Distinct queues remembered per database between two wake-ups.
const QUEUES: usize = 32;
/// Longest queue name (bytes) kept on the board; longer names are announced
/// by the committing session itself.
pub const QUEUE_NAME_MAX: usize = 63;

struct Slot {
    /// The database's oid; 0 for a slot never used.
    database: u32,
    /// The sweeper's PGPROC number; -1 while no sweeper runs.
    procno: i32,
    /// Transactions that posted since the sweeper last took the slot
    /// (counted under the shared lock too, hence atomic).
    commits: AtomicU32,
    count: u8,
    overflow: bool,
    lengths: [u8; QUEUES],
    names: [[u8; QUEUE_NAME_MAX]; QUEUES],
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            database: 0,
            procno: -1,
            commits: AtomicU32::new(0),
            count: 0,
            overflow: false,
            lengths: [0; QUEUES],
            names: [[0; QUEUE_NAME_MAX]; QUEUES],
        }
    }

    fn name(&self, index: usize) -> &[u8] {
        &self.names[index][..usize::from(self.lengths[index])]
    }

    fn holds(&self, queue: &str) -> bool {
        (0..usize::from(self.count)).any(|index| self.name(index) == queue.as_bytes())
    }

    /// Whether announcing `queues` is already left to the sweeper, which
    /// was woken for what the slot holds.
    fn holds_all(&self, queues: &[String]) -> bool {
        self.overflow || (self.count > 0 && queues.iter().all(|queue| self.holds(queue)))
    }

    fn add(&mut self, queue: &str) {
        if self.holds(queue) {
            return;
        }
        let bytes = queue.as_bytes();
        let count = usize::from(self.count);
        if count == QUEUES || bytes.len() > QUEUE_NAME_MAX {
            self.overflow = true;
            return;
        }
        self.names[count][..bytes.len()].copy_from_slice(bytes);
        self.lengths[count] = bytes.len() as u8;
        self.count += 1;
    }
}

pub struct Board {
    slots: [Slot; SLOTS],
}

impl Board {
    /// The slot of `database`'s running sweeper.
    fn announcing(&self, database: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.database == database && slot.procno >= 0)
    }
}

impl Default for Board {
    fn default() -> Self {
        Board {
            slots: std::array::from_fn(|_| Slot::empty()),
        }
    }
}

// SAFETY: plain data without pointers, the same in every process.
unsafe impl PGRXSharedMemory for Board {}

static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"pdoflow_announcements") };
/// Set in the postmaster when the board was requested; backends inherit it.
static READY: AtomicBool = AtomicBool::new(false);

/// Requests the board's shared memory; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(BOARD);
    READY.store(true, Ordering::Relaxed);
}

/// This process's number (`backend::procno`), as a slot keeps it.
fn my_procno() -> i32 {
    backend::procno()
        .and_then(|procno| i32::try_from(procno).ok())
        .unwrap_or(-1)
}

/// What a sweeper takes off the board.
pub struct Pending {
    pub queues: Vec<String>,
    /// More queues got work than the board could hold: announce them all.
    pub overflow: bool,
    /// How many transactions posted since the sweeper last took the slot.
    pub commits: u32,
}

/// The calling sweeper takes the announcements of its database from now on.
/// False when every slot is taken (committing sessions then announce
/// themselves).
pub fn register_notifier() -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    let database = backend::database();
    let mut board = BOARD.exclusive();
    let index = board
        .slots
        .iter()
        .position(|slot| slot.database == database)
        .or_else(|| board.slots.iter().position(|slot| slot.procno < 0));
    let Some(index) = index else {
        return false;
    };
    let slot = &mut board.slots[index];
    if slot.database != database {
        *slot = Slot::empty();
        slot.database = database;
    }
    slot.procno = my_procno();
    drop(board);
    unsafe { pg_sys::before_shmem_exit(Some(unregister_notifier), pg_sys::Datum::from(0)) };
    true
}

/// At the sweeper's exit: nobody announces for its database until it is back.
#[pg_guard]
unsafe extern "C-unwind" fn unregister_notifier(_code: i32, _arg: pg_sys::Datum) {
    let procno = my_procno();
    let mut board = BOARD.exclusive();
    if let Some(slot) = board.slots.iter_mut().find(|slot| slot.procno == procno) {
        slot.procno = -1;
        slot.count = 0;
        slot.commits.store(0, Ordering::Relaxed);
        slot.overflow = false;
    }
}

/// Whether a sweeper (other than the caller) announces for this database.
pub fn notifier_running() -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    let (database, procno) = (backend::database(), my_procno());
    let board = BOARD.share();
    board
        .slots
        .iter()
        .any(|slot| slot.database == database && slot.procno >= 0 && slot.procno != procno)
}

/// Leaves `queues` on the board and wakes the sweeper; false if no sweeper
/// announces for this database any more. Runs after commit: must not raise.
pub fn post(queues: &[String]) -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    let database = backend::database();
    // While producers keep committing, their queues are nearly always on the
    // board already, waiting for the sweeper: a shared look suffices then,
    // and committing sessions do not queue for the lock one after another.
    {
        let board = BOARD.share();
        let Some(index) = board.announcing(database) else {
            return false;
        };
        let slot = &board.slots[index];
        slot.commits.fetch_add(1, Ordering::Relaxed);
        if slot.holds_all(queues) {
            return true;
        }
    }
    let procno = {
        let mut board = BOARD.exclusive();
        let Some(index) = board.announcing(database) else {
            return false;
        };
        let slot = &mut board.slots[index];
        // A slot with entries already woke its sweeper, which has not taken
        // them yet: no second wake-up (a signal) is needed.
        let woken = slot.count > 0 || slot.overflow;
        for queue in queues {
            slot.add(queue);
        }
        if woken {
            return true;
        }
        slot.procno
    };
    if let Ok(procno) = usize::try_from(procno) {
        backend::set_latch(procno);
    }
    true
}

/// Whether committing sessions left something for the calling sweeper.
pub fn waiting() -> bool {
    if !READY.load(Ordering::Relaxed) {
        return false;
    }
    let procno = my_procno();
    let board = BOARD.share();
    board
        .slots
        .iter()
        .any(|slot| slot.procno == procno && (slot.count > 0 || slot.overflow))
}

/// Takes what committing sessions left for the calling sweeper's database.
pub fn take() -> Option<Pending> {
    if !READY.load(Ordering::Relaxed) {
        return None;
    }
    let procno = my_procno();
    let mut board = BOARD.exclusive();
    let slot = board.slots.iter_mut().find(|slot| slot.procno == procno)?;
    if slot.count == 0 && !slot.overflow {
        return None;
    }
    let queues = (0..usize::from(slot.count))
        .map(|index| String::from_utf8_lossy(slot.name(index)).into_owned())
        .collect();
    let pending = Pending {
        queues,
        overflow: slot.overflow,
        commits: slot.commits.swap(0, Ordering::Relaxed),
    };
    slot.count = 0;
    slot.overflow = false;
    Some(pending)
}
