//! Claim floors: where each priority level's claimable jobs begin, so that
//! a claim starts its index scan there instead of at the start of the level.
//!
//! Why. A claim turns a queued row into a running one, and a finish deletes
//! it; each leaves an entry in the claim index pointing at a version no
//! longer queued. Vacuum removes those entries, and an index scan that finds
//! one dead to every snapshot marks it so the next scans step over it cheaply.
//! While a long transaction (or a REPEATABLE READ snapshot) holds the xmin
//! horizon, neither can happen, and every claim used to visit every entry
//! claimed since the horizon was taken: claims slowed down as the hold went
//! on. Even without a held horizon, the marked entries stay in the scan's
//! path until vacuum runs (by default once a minute). Starting each level's
//! scan at its floor skips all of them (docs/architecture.md, "Claim floors").
//!
//! What a floor promises. For a *domain* (every queue, or one queue, as a
//! claim asks) and a priority *level* in it, the floor is a key (due time,
//! id) such that no job of that level below it is claimable, save those
//! whose claimability was *posted* after the floor was read. Who moves them:
//!
//! - **Posts lower them.** A transaction that made jobs queued (enqueue,
//!   retry, release, a lease taken back, a posting resumed, parents ended)
//!   notes each queue and level with its lowest key (`_note_queued`: called
//!   by the inserts, and by a trigger for updates to 'queued'); after it
//!   commits, the keys are posted, and each floor above one goes down to it.
//! - **Claims raise them.** A claim reads a level's floor (with its version
//!   and post count), takes jobs from there, and then, in a new snapshot,
//!   looks for the first queued row (due or not, locked or not) from the
//!   floor. The floor may rise to that row, or to the first job taken if
//!   that comes first, provided the floor was not lowered meanwhile and no
//!   post since was lower. Rows other transactions lock (a claim or a cancel
//!   that may yet roll back) are still queued in that snapshot, so the floor
//!   never passes them; nor does it pass the claim's own jobs. What this
//!   transaction itself claimed or cancelled earlier is not queued in that
//!   snapshot, and a rollback would make it queued again: so a raise is
//!   applied only when the transaction commits (none after a subtransaction
//!   rolled back).
//! - **Learning lists the levels.** A domain is used only once every level
//!   that may hold a claimable job has an entry: the first claim of a domain
//!   lists the levels holding queued jobs (`_learn_claim_levels`) while posts
//!   already add levels; until then, and whenever the table is full, claims
//!   scan every level from its start as before.
//!
//! Only in READ COMMITTED: a claim in an older snapshot would not see jobs
//! posted before it read the floors. Floors live in shared memory
//! (`table.rs`) and start empty at every server start. Rows written into
//! `pdoflow.active_jobs` other than through pdoflow's functions (a data-only
//! restore, a hand-made INSERT) are not posted: `pdoflow.forget_claim_floors()`
//! makes claims scan from the start again.

pub mod table;

use std::cell::{Cell, RefCell};

use pgrx::prelude::*;

use crate::api::isolation::read_committed;
use table::{Key, Scope};

/// A level's lowest newly queued key in one queue, noted by this transaction.
struct Note {
    queue: String,
    priority: i32,
    key: Key,
}

/// What a claim in this transaction found out, applied once it commits:
/// before that, a rollback could make queued again what the transaction's
/// earlier statements claimed, cancelled or paused, below where a later
/// claim saw no queued row.
enum Finding {
    Raise {
        queue: Option<String>,
        priority: i32,
        version: u64,
        posts: u64,
        key: Key,
    },
    Learnt {
        queue: Option<String>,
        attempt: u64,
        priorities: Vec<i32>,
    },
}

thread_local! {
    /// `None` outside a transaction that queued jobs.
    static NOTES: RefCell<Option<Vec<Note>>> = const { RefCell::new(None) };
    /// This transaction's findings, for after its commit.
    static FINDINGS: RefCell<Vec<Finding>> = const { RefCell::new(Vec::new()) };
    /// Whether this session registered its transaction callbacks.
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Registers `at_transaction_end` and `at_subtransaction_end`, once per
/// session: callbacks registered per transaction would cost single-job
/// enqueue an allocation or three every time.
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

fn key(run_at: TimestampWithTimeZone, id: pgrx::Uuid) -> Key {
    Key {
        run_at: run_at.into(),
        id: *id.as_bytes(),
    }
}

fn key_parts(key: Key) -> (TimestampWithTimeZone, pgrx::Uuid) {
    // Every i64 is a valid timestamptz (the ends are ±infinity).
    let run_at = TimestampWithTimeZone::try_from(key.run_at)
        .unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity());
    (run_at, pgrx::Uuid::from_bytes(key.id))
}

fn scope(queue: Option<&str>) -> Scope<'_> {
    match queue {
        Some(queue) => Scope::Queue(queue),
        None => Scope::Every,
    }
}

/// Notes that this transaction queued jobs of `queue` at `priority`, the
/// lowest at (`run_at`, `id`) (a nil id: any job due from `run_at`). Posted
/// after the commit.
pub fn note_queued(queue: &str, priority: i32, run_at: pg_sys::TimestampTz, id: [u8; 16]) {
    let noted = Key { run_at, id };
    register_callbacks();
    NOTES.with(|notes| {
        let mut notes = notes.borrow_mut();
        let notes = notes.get_or_insert_with(Vec::new);
        match notes
            .iter_mut()
            .find(|note| note.priority == priority && note.queue == queue)
        {
            Some(note) => note.key = note.key.min(noted),
            None => notes.push(Note {
                queue: queue.to_owned(),
                priority,
                key: noted,
            }),
        }
    });
}

/// At the end of every transaction of a session that once noted jobs.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _argument: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            post_notes();
            apply_findings();
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => {
            drop_notes();
            drop_findings();
        }
        pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            distrust();
            drop_findings();
        }
        _ => {}
    }
}

/// A rolled back subtransaction may make queued again what the findings
/// assumed claimed: they are dropped (its notes stay: posting them only
/// lowers floors).
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _subtransaction: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _argument: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        drop_findings();
    }
}

fn apply_findings() {
    for finding in FINDINGS.with(|findings| std::mem::take(&mut *findings.borrow_mut())) {
        match finding {
            Finding::Raise {
                queue,
                priority,
                version,
                posts,
                key,
            } => table::raise(scope(queue.as_deref()), priority, version, posts, key),
            Finding::Learnt {
                queue,
                attempt,
                priorities,
            } => table::finish_learning(scope(queue.as_deref()), attempt, &priorities),
        }
    }
}

fn drop_findings() {
    FINDINGS.with(|findings| findings.borrow_mut().clear());
}

fn find(finding: Finding) {
    register_callbacks();
    FINDINGS.with(|findings| findings.borrow_mut().push(finding));
}

/// After the commit: the jobs are visible, their keys go to the floors,
/// and claims waiting for their queues wake if they are due.
fn post_notes() {
    if let Some(notes) = NOTES.with(|notes| notes.borrow_mut().take()) {
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        for note in notes {
            table::post(&note.queue, note.priority, note.key);
            if note.key.run_at <= now {
                crate::claim_wait::wake(&note.queue);
            }
        }
    }
}

/// A rolled back transaction queued nothing.
fn drop_notes() {
    NOTES.with(|notes| notes.borrow_mut().take());
}

/// A PREPAREd transaction's jobs become visible whenever it is committed,
/// from a session that knows nothing of them: if this one queued jobs, this
/// database's floors are not trusted again until the server restarts.
fn distrust() {
    if NOTES.with(|notes| notes.borrow_mut().take()).is_some() {
        table::distrust_database();
    }
}

/// `pdoflow._note_queued(queue, priority, run_at, id)`: see `note_queued`;
/// a NULL id stands for the lowest.
#[pg_extern(volatile, parallel_unsafe, name = "_note_queued")]
fn note_queued_sql(
    queue: &str,
    priority: i32,
    run_at: TimestampWithTimeZone,
    id: Option<pgrx::Uuid>,
) {
    let id = id.map_or([0; 16], |id| *id.as_bytes());
    note_queued(queue, priority, run_at.into(), id);
}

/// `pdoflow._claim_levels(wanted)`: the levels a claim from `wanted` (NULL:
/// every queue) scans, highest priority first, each with every queue's
/// floor; one row with `known` false when the floors are not known (not
/// learnt yet, no shared memory, not READ COMMITTED): scan from the start.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe, name = "_claim_levels")]
fn claim_levels(
    wanted: Option<Vec<Option<String>>>,
) -> TableIterator<
    'static,
    (
        name!(known, bool),
        name!(priority, Option<i32>),
        name!(queues, Option<Vec<Option<String>>>),
        name!(floor_run_ats, Option<Vec<TimestampWithTimeZone>>),
        name!(floor_ids, Option<Vec<pgrx::Uuid>>),
        name!(versions, Option<Vec<i64>>),
        name!(posts, Option<Vec<i64>>),
    ),
> {
    let unknown = || TableIterator::new(vec![(false, None, None, None, None, None, None)]);
    if !read_committed() {
        return unknown();
    }
    let wanted: Vec<Option<String>> = match wanted {
        None => vec![None],
        Some(queues) => {
            let mut distinct: Vec<Option<String>> = Vec::new();
            for queue in queues.into_iter().flatten() {
                if !distinct
                    .iter()
                    .any(|known| known.as_deref() == Some(&queue))
                {
                    distinct.push(Some(queue));
                }
            }
            distinct
        }
    };
    // priority -> (queue, floor, version, posts) of each wanted queue
    let mut levels: Vec<(i32, Vec<(Option<String>, table::LevelFloor)>)> = Vec::new();
    for queue in &wanted {
        let Some(mut floors) = table::levels(scope(queue.as_deref())) else {
            return unknown();
        };
        with_own_notes(queue.as_deref(), &mut floors);
        for floor in floors {
            let at = match levels
                .iter()
                .position(|(priority, _)| *priority == floor.priority)
            {
                Some(at) => at,
                None => {
                    levels.push((floor.priority, Vec::new()));
                    levels.len() - 1
                }
            };
            levels[at].1.push((queue.clone(), floor));
        }
    }
    levels.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    let rows: Vec<_> = levels
        .into_iter()
        .map(|(priority, floors)| {
            let mut queues = Vec::with_capacity(floors.len());
            let mut run_ats = Vec::with_capacity(floors.len());
            let mut ids = Vec::with_capacity(floors.len());
            let mut versions = Vec::with_capacity(floors.len());
            let mut posts = Vec::with_capacity(floors.len());
            for (queue, floor) in floors {
                let (run_at, id) = key_parts(floor.floor);
                queues.push(queue);
                run_ats.push(run_at);
                ids.push(id);
                versions.push(floor.version as i64);
                posts.push(floor.posts as i64);
            }
            (
                true,
                Some(priority),
                Some(queues),
                Some(run_ats),
                Some(ids),
                Some(versions),
                Some(posts),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Lowers `floors` (of the domain of `queue`, None: every queue) to the jobs
/// this transaction queued itself: they are visible to its claims, but
/// posted only after its commit. A level the table lacks gets an entry no
/// raise matches (version 0).
fn with_own_notes(queue: Option<&str>, floors: &mut Vec<table::LevelFloor>) {
    NOTES.with(|notes| {
        let notes = notes.borrow();
        let Some(notes) = notes.as_ref() else {
            return;
        };
        for note in notes {
            if queue.is_some_and(|queue| queue != note.queue) {
                continue;
            }
            match floors
                .iter_mut()
                .find(|floor| floor.priority == note.priority)
            {
                Some(floor) => floor.floor = floor.floor.min(note.key),
                None => floors.push(table::LevelFloor {
                    priority: note.priority,
                    floor: note.key,
                    version: 0,
                    posts: 0,
                }),
            }
        }
    });
}

/// `pdoflow._raise_claim_floor(queue, priority, version, posts, run_at,
/// id)`: a claim's raise (see the module's doc), applied when the
/// transaction commits; ignored if the floor moved down meanwhile.
#[pg_extern(volatile, parallel_unsafe, name = "_raise_claim_floor")]
fn raise_claim_floor(
    queue: Option<&str>,
    priority: i32,
    version: i64,
    posts: i64,
    run_at: TimestampWithTimeZone,
    id: pgrx::Uuid,
) {
    if !read_committed() {
        return;
    }
    find(Finding::Raise {
        queue: queue.map(str::to_owned),
        priority,
        version: version as u64,
        posts: posts as u64,
        key: key(run_at, id),
    });
}

/// `pdoflow._start_learning_claim_levels(queue)`: begins listing the levels
/// of a domain (NULL: every queue); returns the attempt to hand to
/// `_finish_learning_claim_levels`, or NULL when floors cannot be used.
#[pg_extern(volatile, parallel_unsafe, name = "_start_learning_claim_levels")]
fn start_learning(queue: Option<&str>) -> Option<i64> {
    if !read_committed() {
        return None;
    }
    table::start_learning(scope(queue)).map(|attempt| attempt as i64)
}

/// `pdoflow._finish_learning_claim_levels(queue, attempt, priorities)`: the
/// levels that held queued jobs in a snapshot taken after the start; the
/// domain is complete once the transaction commits.
#[pg_extern(volatile, parallel_unsafe, name = "_finish_learning_claim_levels")]
fn finish_learning(queue: Option<&str>, attempt: i64, priorities: Vec<Option<i32>>) {
    find(Finding::Learnt {
        queue: queue.map(str::to_owned),
        attempt: attempt as u64,
        priorities: priorities.into_iter().flatten().collect(),
    });
}

/// `pdoflow.forget_claim_floors()`: claims in this database scan every level
/// from its start again (and learn the floors anew). For jobs written into
/// pdoflow.active_jobs other than through pdoflow's functions.
#[pg_extern(volatile, parallel_unsafe, name = "forget_claim_floors")]
fn forget_claim_floors() {
    table::forget_database();
}
