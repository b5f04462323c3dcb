//! The floor table: shared memory holding, per database, claim domain and
//! priority level, the key below which no job of that level is claimable.
//! `mod.rs` says what the floors mean and who moves them; this file only
//! keeps them. Usable only when pdoflow is in shared_preload_libraries.
//!
//! A *domain* is what a claim scans: every queue (`claim(queues => NULL)`)
//! or one queue. A *level* is one priority within a domain. A domain is
//! `Learning` while a claim finds out which levels hold queued jobs and
//! `Complete` once every level that may hold a claimable job has an entry.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::backend;

/// Domains kept, over all databases.
const DOMAINS: usize = 64;
/// Priority levels kept per domain; a domain with more claims from the start.
const LEVELS: usize = 16;
/// Keys of the latest posts a level remembers, for raises that overlap them.
const RECENT: usize = 32;
/// Longest queue name (bytes) a domain can be kept for; claims from longer
/// names scan from the start.
pub const QUEUE_NAME_MAX: usize = 63;

/// A job's place in its level's claim order: due time, then id (the claim
/// index's order after the priority). Ordered as PostgreSQL orders the
/// columns: timestamps as integers (±infinity at the ends), uuids bytewise.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Key {
    pub run_at: i64,
    pub id: [u8; 16],
}

impl Key {
    /// Before every job.
    pub const FIRST: Key = Key {
        run_at: i64::MIN,
        id: [0; 16],
    };
    /// After every job: the floor of a level known to hold no claimable job.
    pub const LAST: Key = Key {
        run_at: i64::MAX,
        id: [0xff; 16],
    };
}

/// Which queues a domain covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Every,
    Queue(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DomainState {
    Unused,
    /// A claim is listing the levels; `u64` names that claim's attempt.
    Learning(u64),
    Complete,
    /// More levels than fit: claims scan from the start, and do not try to
    /// learn again, until the floors are forgotten or the server restarts.
    Overflowed,
}

#[derive(Clone, Copy)]
struct Domain {
    database: u32,
    state: DomainState,
    every: bool,
    name_length: u8,
    name: [u8; QUEUE_NAME_MAX],
    level_count: u8,
    levels: [Level; LEVELS],
}

impl Domain {
    const UNUSED: Domain = Domain {
        database: 0,
        state: DomainState::Unused,
        every: false,
        name_length: 0,
        name: [0; QUEUE_NAME_MAX],
        level_count: 0,
        levels: [Level::UNUSED; LEVELS],
    };

    fn levels(&self) -> &[Level] {
        &self.levels[..usize::from(self.level_count)]
    }

    fn level_index(&self, priority: i32) -> Option<usize> {
        self.levels()
            .iter()
            .position(|level| level.priority == priority)
    }

    fn is(&self, database: u32, scope: Scope) -> bool {
        self.state != DomainState::Unused
            && self.database == database
            && match scope {
                Scope::Every => self.every,
                Scope::Queue(queue) => {
                    !self.every && &self.name[..usize::from(self.name_length)] == queue.as_bytes()
                }
            }
    }
}

/// One priority level of one domain.
#[derive(Clone, Copy)]
struct Level {
    priority: i32,
    floor: Key,
    /// Stamped (from `Table::stamps`) when the level was made and whenever
    /// its floor went down: a raise computed from an older floor, or for a
    /// level since forgotten and made again, may no longer hold.
    version: u64,
    /// Counts posts; the latest RECENT keys are in `recent`.
    posts: u64,
    recent: [Key; RECENT],
}

impl Level {
    const UNUSED: Level = Level {
        priority: 0,
        floor: Key::FIRST,
        version: 0,
        posts: 0,
        recent: [Key::FIRST; RECENT],
    };
}

#[derive(Clone, Copy)]
pub struct Table {
    domains: [Domain; DOMAINS],
    /// Names each Learning attempt.
    attempts: u64,
    /// Levels' versions.
    stamps: u64,
    /// Databases whose floors cannot be trusted until the server restarts
    /// (a PREPAREd transaction queued jobs): at most this many are noted;
    /// more disable floors everywhere.
    untrusted: [u32; 8],
    untrusted_everywhere: bool,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            domains: [Domain::UNUSED; DOMAINS],
            attempts: 0,
            stamps: 0,
            untrusted: [0; 8],
            untrusted_everywhere: false,
        }
    }
}

// SAFETY: plain data without pointers, the same in every process.
unsafe impl PGRXSharedMemory for Table {}

static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"pdoflow_claim_floors") };
/// Set in the postmaster when the table was requested; backends inherit it.
static READY: AtomicBool = AtomicBool::new(false);

/// Requests the table's shared memory; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(TABLE);
    READY.store(true, Ordering::Relaxed);
}

/// A level as a claim reads it.
pub struct LevelFloor {
    pub priority: i32,
    pub floor: Key,
    pub version: u64,
    pub posts: u64,
}

impl Table {
    fn trusted(&self, database: u32) -> bool {
        !self.untrusted_everywhere && !self.untrusted.contains(&database)
    }

    fn domain_index(&self, database: u32, scope: Scope) -> Option<usize> {
        self.domains
            .iter()
            .position(|domain| domain.is(database, scope))
    }

    /// Forgets a domain and its levels.
    fn drop_domain(&mut self, domain: usize) {
        self.domains[domain] = Domain::UNUSED;
    }

    /// Gives up on a domain with more levels than fit.
    fn overflow(&mut self, domain: usize) {
        let domain = &mut self.domains[domain];
        domain.state = DomainState::Overflowed;
        domain.level_count = 0;
    }

    fn stamp(&mut self) -> u64 {
        self.stamps += 1;
        self.stamps
    }

    /// The level's index in its domain, made if missing (with `floor`);
    /// None when the domain has no room.
    fn level_or_new(&mut self, domain: usize, priority: i32, floor: Key) -> Option<usize> {
        if let Some(index) = self.domains[domain].level_index(priority) {
            return Some(index);
        }
        let index = usize::from(self.domains[domain].level_count);
        if index == LEVELS {
            return None;
        }
        let version = self.stamp();
        let domain = &mut self.domains[domain];
        domain.levels[index] = Level {
            priority,
            floor,
            version,
            ..Level::UNUSED
        };
        domain.level_count += 1;
        Some(index)
    }

    /// Notes a post at `key` on a level; lowers its floor when before it.
    fn post_to(&mut self, domain: usize, index: usize, key: Key) {
        let stamp = self.stamp();
        let level = &mut self.domains[domain].levels[index];
        level.posts += 1;
        level.recent[(level.posts % RECENT as u64) as usize] = key;
        if key < level.floor {
            level.floor = key;
            level.version = stamp;
        }
    }
}

/// The levels of a complete domain of this database that may hold claimable
/// jobs, in no order; None when the domain is not complete.
pub fn levels(scope: Scope) -> Option<Vec<LevelFloor>> {
    if !READY.load(Ordering::Relaxed) {
        return None;
    }
    let database = backend::database();
    let table = TABLE.share();
    if !table.trusted(database) {
        return None;
    }
    let domain = table.domain_index(database, scope)?;
    if table.domains[domain].state != DomainState::Complete {
        return None;
    }
    let levels: Vec<LevelFloor> = table.domains[domain]
        .levels()
        .iter()
        .filter(|level| level.floor != Key::LAST)
        .map(|level| LevelFloor {
            priority: level.priority,
            floor: level.floor,
            version: level.version,
            posts: level.posts,
        })
        .collect();
    Some(levels)
}

/// Starts listing a domain's levels: from now on posts for it are kept.
/// Returns the attempt's name for `finish_learning`, or None when there is
/// nothing to learn: the domain is complete, has more levels than fit, or
/// the table has no room (claims then scan from the start).
pub fn start_learning(scope: Scope) -> Option<u64> {
    if !READY.load(Ordering::Relaxed) {
        return None;
    }
    if let Scope::Queue(queue) = scope {
        if queue.len() > QUEUE_NAME_MAX {
            return None;
        }
    }
    let database = backend::database();
    let mut table = TABLE.exclusive();
    if !table.trusted(database) {
        return None;
    }
    let index = match table.domain_index(database, scope) {
        Some(index) => index,
        None => {
            let index = table
                .domains
                .iter()
                .position(|domain| domain.state == DomainState::Unused)?;
            let mut domain = Domain {
                database,
                every: scope == Scope::Every,
                ..Domain::UNUSED
            };
            if let Scope::Queue(queue) = scope {
                domain.name[..queue.len()].copy_from_slice(queue.as_bytes());
                domain.name_length = queue.len() as u8;
            }
            table.domains[index] = domain;
            index
        }
    };
    if matches!(
        table.domains[index].state,
        DomainState::Complete | DomainState::Overflowed
    ) {
        return None; // known already, or never will be
    }
    table.attempts += 1;
    let attempt = table.attempts;
    table.domains[index].state = DomainState::Learning(attempt);
    Some(attempt)
}

/// Completes the listing `attempt` began: `priorities` are the levels that
/// held queued jobs in a snapshot taken after it began. Their floors go to
/// the start (jobs found there may precede what posts brought meanwhile).
pub fn finish_learning(scope: Scope, attempt: u64, priorities: &[i32]) {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let database = backend::database();
    let mut table = TABLE.exclusive();
    let Some(domain) = table.domain_index(database, scope) else {
        return;
    };
    if table.domains[domain].state != DomainState::Learning(attempt) {
        return; // another claim began listing since; its list counts
    }
    for &priority in priorities {
        let stamp = table.stamp();
        match table.level_or_new(domain, priority, Key::FIRST) {
            Some(index) => {
                let level = &mut table.domains[domain].levels[index];
                level.floor = Key::FIRST;
                level.version = stamp;
            }
            None => {
                table.overflow(domain);
                return;
            }
        }
    }
    table.domains[domain].state = DomainState::Complete;
}

/// Jobs became claimable (committed) at `key` or after, in `queue` at
/// `priority`: lowers the floors of the domains that cover them.
pub fn post(queue: &str, priority: i32, key: Key) {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let database = backend::database();
    let mut table = TABLE.exclusive();
    for scope in [Scope::Every, Scope::Queue(queue)] {
        let Some(domain) = table.domain_index(database, scope) else {
            continue;
        };
        if table.domains[domain].state == DomainState::Overflowed {
            continue;
        }
        // A level new to a complete domain held no claimable job: its
        // floor starts at this key.
        match table.level_or_new(domain, priority, key) {
            Some(index) => table.post_to(domain, index, key),
            None => table.overflow(domain),
        }
    }
}

/// Raises a level's floor to `candidate` if it still holds: the level is
/// the one the claim read (`version`: not lowered nor made again since),
/// and none of the posts since (`posts` counted then) was before `candidate`.
pub fn raise(scope: Scope, priority: i32, version: u64, posts: u64, candidate: Key) {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let database = backend::database();
    let mut table = TABLE.exclusive();
    let Some(domain) = table.domain_index(database, scope) else {
        return;
    };
    if table.domains[domain].state != DomainState::Complete {
        return;
    }
    let Some(index) = table.domains[domain].level_index(priority) else {
        return;
    };
    let level = &mut table.domains[domain].levels[index];
    if level.version != version || level.posts < posts || level.posts - posts > RECENT as u64 {
        return;
    }
    let mut candidate = candidate;
    for seen in posts + 1..=level.posts {
        candidate = candidate.min(level.recent[(seen % RECENT as u64) as usize]);
    }
    level.floor = level.floor.max(candidate);
}

/// Forgets every floor of this database (a new install of the extension,
/// or jobs written other than through pdoflow's functions).
pub fn forget_database() {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let database = backend::database();
    let mut table = TABLE.exclusive();
    for domain in 0..DOMAINS {
        if table.domains[domain].database == database
            && table.domains[domain].state != DomainState::Unused
        {
            table.drop_domain(domain);
        }
    }
}

/// No floor of this database is trusted until the server restarts: a
/// PREPAREd transaction queued jobs that become visible whenever it is
/// committed, with nobody to post them then.
pub fn distrust_database() {
    if !READY.load(Ordering::Relaxed) {
        return;
    }
    let database = backend::database();
    let mut table = TABLE.exclusive();
    if table.untrusted.contains(&database) {
        return;
    }
    match table.untrusted.iter().position(|&noted| noted == 0) {
        Some(free) => table.untrusted[free] = database,
        None => table.untrusted_everywhere = true,
    }
}
