//! The count table: shared memory holding, per database and limited queue,
//! how many of the queue's running slots are taken and where its rate
//! limiter stands. `mod.rs` says who changes them and why the counts stay
//! exact; this file only keeps them. Usable only when pdoflow is in
//! shared_preload_libraries.
//!
//! One lock guards the table. Every operation holds it for a handful of
//! comparisons and a copy, no I/O: a claim of a limited queue takes it once
//! or twice, a finishing transaction once after its commit. Without the
//! table (pdoflow not preloaded) every operation is a no-op: commits that
//! end marked jobs or change controls must not touch a lock that was
//! never made.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};

use crate::backend::database;

/// Limited queues kept, over all databases.
pub const ENTRIES: usize = 1024;
/// Longest queue name in bytes (128 characters of up to 4 bytes).
const NAME_MAX: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq)]
enum CountState {
    /// Not counted since the server started or the limits changed.
    NeedsCount,
    /// A claim is counting the running jobs; `u64` names its attempt.
    Counting(u64),
    Counted,
}

#[derive(Clone, Copy)]
struct Entry {
    used: bool,
    database: u32,
    name_length: u16,
    name: [u8; NAME_MAX],
    /// Stamped when the entry was made or reset: what a reservation gives
    /// back must have been taken from the same count.
    generation: u64,
    state: CountState,
    /// Slots taken: running jobs that hold one, and claims in progress.
    running: i64,
    /// The rate limiter's theoretical arrival time (GCRA), in nanoseconds
    /// since the PostgreSQL epoch; 0 when unused.
    arrival_ns: i64,
}

impl Entry {
    const UNUSED: Entry = Entry {
        used: false,
        database: 0,
        name_length: 0,
        name: [0; NAME_MAX],
        generation: 0,
        state: CountState::NeedsCount,
        running: 0,
        arrival_ns: 0,
    };

    fn is(&self, database: u32, queue: &str) -> bool {
        self.used
            && self.database == database
            && &self.name[..usize::from(self.name_length)] == queue.as_bytes()
    }
}

pub struct Table {
    entries: [Entry; ENTRIES],
    /// Source of generations and counting attempts.
    stamps: u64,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            entries: [Entry::UNUSED; ENTRIES],
            stamps: 0,
        }
    }
}

// SAFETY: plain data without pointers, the same in every process.
unsafe impl PGRXSharedMemory for Table {}

static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"pdoflow_flow_counts") };
/// Moves on whenever a transaction that changed `pdoflow.queue_controls`
/// (in any database) commits: sessions then read the controls again.
static CONTROLS_GENERATION: PgAtomic<AtomicU64> =
    unsafe { PgAtomic::new(c"pdoflow_controls_generation") };
/// Set in the postmaster when the table was requested; backends inherit it.
static READY: AtomicBool = AtomicBool::new(false);

/// Requests the table's shared memory; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(TABLE);
    pg_shmem_init!(CONTROLS_GENERATION);
    READY.store(true, Ordering::Relaxed);
}

pub fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}

/// The controls' generation now; `None` without shared memory.
pub fn controls_generation() -> Option<u64> {
    ready().then(|| CONTROLS_GENERATION.get().load(Ordering::SeqCst))
}

/// After a commit that changed the controls.
pub fn controls_changed() {
    if ready() {
        CONTROLS_GENERATION.get().fetch_add(1, Ordering::SeqCst);
    }
}

/// The entry of `queue`, made if needed; `None` when the table is full.
fn entry<'t>(table: &'t mut Table, queue: &str) -> Option<&'t mut Entry> {
    let database = database();
    let index = match table.entries.iter().position(|e| e.is(database, queue)) {
        Some(index) => index,
        None => {
            let free = table.entries.iter().position(|e| !e.used)?;
            table.stamps += 1;
            let made = &mut table.entries[free];
            *made = Entry::UNUSED;
            made.used = true;
            made.database = database;
            made.name_length = u16::try_from(queue.len()).ok()?;
            made.name[..queue.len()].copy_from_slice(queue.as_bytes());
            made.generation = table.stamps;
            free
        }
    };
    Some(&mut table.entries[index])
}

fn existing<'t>(table: &'t mut Table, queue: &str) -> Option<&'t mut Entry> {
    let database = database();
    table.entries.iter_mut().find(|e| e.is(database, queue))
}

/// What a reservation of running slots found.
pub enum Slots {
    /// This many slots taken from the count of that generation.
    Taken { slots: i64, generation: u64 },
    /// The queue's running jobs must be counted first.
    NeedsCount,
    /// No room for another limited queue.
    TableFull,
}

/// Takes up to `want` of the `max_running` slots of `queue`.
pub fn take_slots(queue: &str, want: i64, max_running: i64) -> Slots {
    if !ready() {
        return Slots::TableFull;
    }
    if queue.len() > NAME_MAX {
        return Slots::TableFull;
    }
    let mut table = TABLE.exclusive();
    let Some(entry) = entry(&mut table, queue) else {
        return Slots::TableFull;
    };
    if entry.state != CountState::Counted {
        return Slots::NeedsCount;
    }
    let slots = want.min(max_running - entry.running).max(0);
    entry.running += slots;
    Slots::Taken {
        slots,
        generation: entry.generation,
    }
}

/// Gives back slots taken from the count of `generation` and not used.
pub fn give_back_slots(database: u32, queue: &str, generation: u64, slots: i64) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    if let Some(entry) = table
        .entries
        .iter_mut()
        .find(|e| e.is(database, queue) && e.generation == generation)
    {
        if entry.state == CountState::Counted {
            entry.running = (entry.running - slots).max(0);
        }
    }
}

/// Frees the slots of `jobs` running jobs that stopped (after their
/// transaction committed). Ignored while the queue is not counted: the
/// count, when it comes, does not see them running.
pub fn free_slots(database: u32, queue: &str, jobs: i64) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    if let Some(entry) = table.entries.iter_mut().find(|e| e.is(database, queue)) {
        if entry.state == CountState::Counted {
            entry.running = (entry.running - jobs).max(0);
        }
    }
}

/// Starts counting the running jobs of `queue`; `None` when it is counted
/// already or another claim is counting.
pub fn start_count(queue: &str) -> Option<u64> {
    if !ready() {
        return None;
    }
    let mut table = TABLE.exclusive();
    table.stamps += 1;
    let attempt = table.stamps;
    let entry = entry(&mut table, queue)?;
    if entry.state != CountState::NeedsCount {
        return None;
    }
    entry.state = CountState::Counting(attempt);
    Some(attempt)
}

/// Ends the count `attempt` with what it found.
pub fn finish_count(queue: &str, attempt: u64, running: i64) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    if let Some(entry) = existing(&mut table, queue) {
        if entry.state == CountState::Counting(attempt) {
            entry.running = running;
            entry.state = CountState::Counted;
        }
    }
}

/// A count that failed (its transaction rolled back) leaves the queue to be
/// counted again.
pub fn abandon_count(database: u32, queue: &str, attempt: u64) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    if let Some(entry) = table.entries.iter_mut().find(|e| e.is(database, queue)) {
        if entry.state == CountState::Counting(attempt) {
            entry.state = CountState::NeedsCount;
        }
    }
}

/// The queue's limits changed (`forget` when it has none left): its slots
/// are counted again, its rate limiter starts afresh.
pub fn reset(database: u32, queue: &str, forget: bool) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    table.stamps += 1;
    let generation = table.stamps;
    if let Some(entry) = table.entries.iter_mut().find(|e| e.is(database, queue)) {
        if forget {
            *entry = Entry::UNUSED;
        } else {
            entry.generation = generation;
            entry.state = CountState::NeedsCount;
            entry.running = 0;
            entry.arrival_ns = 0;
        }
    }
}

/// Forgets every entry of this database (a new install).
pub fn forget_database() {
    if !ready() {
        return;
    }
    let database = database();
    let mut table = TABLE.exclusive();
    for entry in table.entries.iter_mut().filter(|e| e.database == database) {
        *entry = Entry::UNUSED;
    }
}

/// A rate limiter: one claim every `interval_ns`, up to `burst` at once.
#[derive(Clone, Copy)]
pub struct Rate {
    pub interval_ns: i64,
    pub burst: i64,
}

/// Takes up to `want` claims from the rate limiter of `queue` at `now_ns`
/// (GCRA: the theoretical arrival time moves on one interval per claim and
/// may run ahead of now by at most `burst` intervals). Returns how many,
/// and the generation to give unused ones back to; `None` when the table
/// is full.
pub fn take_tokens(queue: &str, want: i64, rate: Rate, now_ns: i64) -> Option<(i64, u64)> {
    if !ready() {
        return None;
    }
    if queue.len() > NAME_MAX {
        return None;
    }
    let mut table = TABLE.exclusive();
    let entry = entry(&mut table, queue)?;
    let arrival = entry.arrival_ns.max(now_ns);
    let tolerance = rate.burst.saturating_mul(rate.interval_ns);
    let room = (now_ns.saturating_add(tolerance) - arrival) / rate.interval_ns;
    let tokens = want.min(room).max(0);
    entry.arrival_ns = arrival.saturating_add(tokens.saturating_mul(rate.interval_ns));
    Some((tokens, entry.generation))
}

/// Gives back claims taken from the rate limiter and not used.
pub fn give_back_tokens(database: u32, queue: &str, generation: u64, tokens: i64, rate: Rate) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    if let Some(entry) = table
        .entries
        .iter_mut()
        .find(|e| e.is(database, queue) && e.generation == generation)
    {
        entry.arrival_ns = entry
            .arrival_ns
            .saturating_sub(tokens.saturating_mul(rate.interval_ns));
    }
}

/// When the rate limiter of `queue` next allows a claim, in nanoseconds
/// since the PostgreSQL epoch (at or before `now_ns`: now).
pub fn next_token_ns(queue: &str, rate: Rate, now_ns: i64) -> i64 {
    if !ready() {
        return now_ns;
    }
    let mut table = TABLE.exclusive();
    match existing(&mut table, queue) {
        Some(entry) => entry
            .arrival_ns
            .saturating_sub(rate.burst.saturating_mul(rate.interval_ns))
            .saturating_add(rate.interval_ns)
            .max(now_ns),
        None => now_ns,
    }
}

/// The slots of `queue` taken now, when counted.
pub fn running(queue: &str) -> Option<i64> {
    if !ready() {
        return None;
    }
    let database = database();
    let table = TABLE.share();
    table
        .entries
        .iter()
        .find(|e| e.is(database, queue) && e.state == CountState::Counted)
        .map(|entry| entry.running)
}
