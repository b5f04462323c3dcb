//! The counters' table: shared memory holding, per database and queue, how
//! many jobs were enqueued, claimed, ... since the server started (or the
//! counters were reset). `mod.rs` says when counts are added; this file
//! only keeps them. Usable only when pdoflow is in
//! shared_preload_libraries; without it every operation is a no-op.
//!
//! One lock guards the table. An entry is found by hashing its database
//! and queue name (open addressing, linear probing), so a committing
//! transaction holds the lock for a hash and a few comparisons per queue
//! it touched. Entries are never moved while in use; resetting a
//! database's counters frees its entries and rebuilds the table when freed
//! places would slow the search.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

/// What is counted, in the order of the view's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Enqueued,
    Claimed,
    Succeeded,
    Failed,
    Retried,
    Cancelled,
    LeasesExpired,
}

pub const EVENTS: usize = 7;

impl Event {
    pub fn parse(name: &str) -> Option<Event> {
        Some(match name {
            "enqueued" => Event::Enqueued,
            "claimed" => Event::Claimed,
            "succeeded" => Event::Succeeded,
            "failed" => Event::Failed,
            "retried" => Event::Retried,
            "cancelled" => Event::Cancelled,
            "leases_expired" => Event::LeasesExpired,
            _ => return None,
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

pub type Counts = [u64; EVENTS];

/// Places in the table, over all databases (a power of two).
pub const ENTRIES: usize = 2048;
/// Places kept for the overflow rows (one per database): the counts of
/// queues that found the table full.
const OVERFLOW_RESERVE: usize = 64;
/// Longest queue name in bytes (128 characters of up to 4 bytes).
const NAME_MAX: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Free,
    /// Freed by a reset: searches go on past it.
    Freed,
    Used,
}

#[derive(Clone, Copy)]
struct Entry {
    place: Place,
    database: u32,
    /// The overflow row of its database (no name).
    overflow: bool,
    name_length: u16,
    name: [u8; NAME_MAX],
    counts: Counts,
    /// When its counts were last reset; 0 when never.
    reset_at: pg_sys::TimestampTz,
}

impl Entry {
    const FREE: Entry = Entry {
        place: Place::Free,
        database: 0,
        overflow: false,
        name_length: 0,
        name: [0; NAME_MAX],
        counts: [0; EVENTS],
        reset_at: 0,
    };

    fn is(&self, key: &Key<'_>) -> bool {
        self.place == Place::Used
            && self.database == key.database
            && self.overflow == key.queue.is_none()
            && &self.name[..usize::from(self.name_length)] == key.queue.unwrap_or("").as_bytes()
    }
}

struct Key<'q> {
    database: u32,
    /// `None`: the database's overflow row.
    queue: Option<&'q str>,
}

impl Key<'_> {
    fn home(&self) -> usize {
        let mut hasher = DefaultHasher::new();
        self.database.hash(&mut hasher);
        self.queue.hash(&mut hasher);
        (hasher.finish() as usize) & (ENTRIES - 1)
    }
}

pub struct Table {
    entries: [Entry; ENTRIES],
    used: usize,
    freed: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            entries: [Entry::FREE; ENTRIES],
            used: 0,
            freed: 0,
        }
    }
}

// SAFETY: plain data without pointers, the same in every process.
unsafe impl PGRXSharedMemory for Table {}

static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"pdoflow_stats") };
/// Set in the postmaster when the table was requested; backends inherit it.
static READY: AtomicBool = AtomicBool::new(false);

/// Requests the table's shared memory; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(TABLE);
    READY.store(true, Ordering::Relaxed);
}

pub fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}

impl Table {
    /// The place of `key`: where it is, or where it would go.
    fn find(&self, key: &Key<'_>) -> (Option<usize>, Option<usize>) {
        let home = key.home();
        let mut first_open = None;
        for step in 0..ENTRIES {
            let index = (home + step) & (ENTRIES - 1);
            let entry = &self.entries[index];
            match entry.place {
                Place::Used if entry.is(key) => return (Some(index), None),
                Place::Used => {}
                Place::Freed => {
                    first_open.get_or_insert(index);
                }
                Place::Free => return (None, first_open.or(Some(index))),
            }
        }
        (None, first_open)
    }

    /// The entry of `key`, made if there is room for it.
    fn entry(&mut self, key: &Key<'_>) -> Option<&mut Entry> {
        let (found, open) = self.find(key);
        let index = match found {
            Some(index) => index,
            None => {
                let room = if key.queue.is_some() {
                    ENTRIES - OVERFLOW_RESERVE
                } else {
                    ENTRIES
                };
                if self.used >= room {
                    return None;
                }
                let index = open?;
                let queue = key.queue.unwrap_or("");
                if self.entries[index].place == Place::Freed {
                    self.freed -= 1;
                }
                self.entries[index] = Entry {
                    place: Place::Used,
                    database: key.database,
                    overflow: key.queue.is_none(),
                    name_length: u16::try_from(queue.len()).ok()?,
                    ..Entry::FREE
                };
                self.entries[index].name[..queue.len()].copy_from_slice(queue.as_bytes());
                self.used += 1;
                // A queue first counted after a reset of its database's
                // counters shows that reset's time.
                if key.queue.is_some() {
                    let overflow = Key {
                        database: key.database,
                        queue: None,
                    };
                    if let (Some(row), _) = self.find(&overflow) {
                        self.entries[index].reset_at = self.entries[row].reset_at;
                    }
                }
                index
            }
        };
        Some(&mut self.entries[index])
    }

    /// Puts every entry in use back at its hashed place, dropping the
    /// freed places that lengthen searches.
    fn rebuild(&mut self) {
        let kept: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.place == Place::Used)
            .copied()
            .collect();
        self.entries.iter_mut().for_each(|e| *e = Entry::FREE);
        self.used = 0;
        self.freed = 0;
        for entry in kept {
            let name = &entry.name[..usize::from(entry.name_length)];
            let name = std::str::from_utf8(name).unwrap_or("");
            let key = Key {
                database: entry.database,
                queue: (!entry.overflow).then_some(name),
            };
            if let Some(place) = self.entry(&key) {
                place.counts = entry.counts;
                place.reset_at = entry.reset_at;
            }
        }
    }
}

/// Adds a committed transaction's counts, per queue. A queue that finds
/// the table full is counted in its database's overflow row.
pub fn add(database: u32, counted: &[(String, Counts)]) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    for (queue, counts) in counted {
        let named = Key {
            database,
            queue: (queue.len() <= NAME_MAX).then_some(queue.as_str()),
        };
        let overflow = Key {
            database,
            queue: None,
        };
        let entry = match table.entry(&named) {
            Some(entry) => Some(entry),
            None => table.entry(&overflow),
        };
        if let Some(entry) = entry {
            for (total, added) in entry.counts.iter_mut().zip(counts) {
                *total = total.saturating_add(*added);
            }
        }
    }
}

/// One row of the view: queue (`None`: the overflow row), counts, and when
/// they were last reset.
pub type Row = (Option<String>, Counts, Option<pg_sys::TimestampTz>);

/// The rows of `database`, by queue name.
pub fn rows(database: u32) -> Vec<Row> {
    if !ready() {
        return Vec::new();
    }
    let table = TABLE.share();
    let mut rows: Vec<Row> = table
        .entries
        .iter()
        .filter(|e| e.place == Place::Used && e.database == database)
        // The overflow row shows only once it counted something.
        .filter(|e| !e.overflow || e.counts.iter().any(|count| *count > 0))
        .map(|e| {
            let name = String::from_utf8_lossy(&e.name[..usize::from(e.name_length)]).into_owned();
            (
                (!e.overflow).then_some(name),
                e.counts,
                (e.reset_at != 0).then_some(e.reset_at),
            )
        })
        .collect();
    drop(table);
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// Zeroes the counts of `queue` in `database` (stamped `at`), or frees
/// every entry of `database` when `queue` is `None`.
pub fn reset(database: u32, queue: Option<&str>, at: pg_sys::TimestampTz) {
    if !ready() {
        return;
    }
    let mut table = TABLE.exclusive();
    match queue {
        Some(queue) => {
            let key = Key {
                database,
                queue: Some(queue),
            };
            if let (Some(index), _) = table.find(&key) {
                let entry = &mut table.entries[index];
                entry.counts = [0; EVENTS];
                entry.reset_at = at;
            }
        }
        None => {
            // The queues' places are freed (queues that are gone leave the
            // table); the overflow row stays, zeroed, to keep the reset's
            // time for the queues counted from now on.
            let mut freed = 0;
            for entry in table.entries.iter_mut() {
                if entry.place == Place::Used && entry.database == database && !entry.overflow {
                    entry.place = Place::Freed;
                    freed += 1;
                }
            }
            table.used -= freed;
            table.freed += freed;
            if table.freed > ENTRIES / 4 {
                table.rebuild();
            }
            let overflow = Key {
                database,
                queue: None,
            };
            if let Some(row) = table.entry(&overflow) {
                row.counts = [0; EVENTS];
                row.reset_at = at;
            }
        }
    }
}
