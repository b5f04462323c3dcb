//! Which tasks are registered, and which of them have an args schema: kept
//! per session for `enqueue`'s fast path (`enqueue.rs`), which must know
//! whether a job's task needs a look (its args checked, or its registration
//! required) before it inserts. Asking `pdoflow.tasks` at every call cost
//! about 8 µs of a 100 µs enqueue.
//!
//! The copy is trusted only while no change to `pdoflow.tasks` can be
//! visible without it. A statement trigger on the table marks every
//! transaction that writes it; such a transaction, in shared memory, counts
//! itself "committing" from just before its commit until just after (its
//! rows become visible in between) and bumps a version at both ends. A
//! session uses its copy when nobody is committing and the version is the
//! one it read before loading the copy; it loads the copy in READ COMMITTED
//! only, with a snapshot taken after reading the version. Otherwise (and
//! without shared memory, when pdoflow is not preloaded) it asks the table.
//! A transaction that writes the table and is then PREPAREd for two-phase
//! commit counts as committing until the server restarts: the copy is no
//! longer used, which is slower but never wrong.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError};
use pgrx::{pg_shmem_init, register_xact_callback, PgAtomic, PgXactCallbackEvent};

use crate::kept_plan;
use crate::settings::REQUIRE_REGISTERED_TASKS;

/// Low 20 bits: transactions committing a change to `pdoflow.tasks` (more
/// than max_connections can reach); above them, a version bumped as each
/// starts and ends its commit. The whole word serves as the version.
static STATE: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"pdoflow_registered_tasks") };
const COMMITTING_MASK: u64 = (1 << 20) - 1;
const ONE_COMMITTING: u64 = 1;
const ONE_VERSION: u64 = 1 << 20;

/// Set in the postmaster when the shared state was requested.
static READY: AtomicBool = AtomicBool::new(false);

/// What this session knows: tasks by name, true when they have a schema.
struct Copy {
    version: u64,
    has_schema: HashMap<String, bool>,
}

thread_local! {
    static ONE_TASK_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
    static COPY: RefCell<Option<Copy>> = const { RefCell::new(None) };
    /// This transaction wrote `pdoflow.tasks`.
    static CHANGED_HERE: Cell<bool> = const { Cell::new(false) };
    /// This transaction counted itself committing.
    static COMMITTING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Requests the shared state; only while the postmaster loads
/// shared_preload_libraries.
pub fn init() {
    pg_shmem_init!(STATE);
    READY.store(true, Ordering::Relaxed);
}

/// Whether a job of `task` must go through `_enqueue_general`: its task has
/// an args schema, or is not registered while registration is required.
pub fn needs_look(client: &mut SpiClient<'_>, task: &str) -> Result<bool, SpiError> {
    let required = REQUIRE_REGISTERED_TASKS.get();
    if let Some(version) = trusted_version() {
        let known = COPY.with(|copy| {
            copy.borrow()
                .as_ref()
                .filter(|copy| copy.version == version)
                .map(|copy| copy.has_schema.get(task).copied())
        });
        let found = match known {
            Some(found) => found,
            None => {
                let has_schema = load(client)?;
                let found = has_schema.get(task).copied();
                COPY.with(|copy| {
                    *copy.borrow_mut() = Some(Copy {
                        version,
                        has_schema,
                    })
                });
                found
            }
        };
        return Ok(found.unwrap_or(required));
    }
    // Without a trusted copy (pdoflow not preloaded: every call) one task's
    // row, from a kept plan.
    let table = kept_plan::execute(
        client,
        &ONE_TASK_PLAN,
        "SELECT t.args_schema IS NOT NULL FROM pdoflow.tasks AS t WHERE t.name OPERATOR(pg_catalog.=) $1",
        &[pg_sys::TEXTOID],
        &[task.into()],
    )?;
    if table.is_empty() {
        return Ok(required);
    }
    Ok(table.first().get_one::<bool>()?.unwrap_or(required))
}

/// The version a copy loaded now may be kept under, or None when a copy
/// must not be used now.
fn trusted_version() -> Option<u64> {
    if !READY.load(Ordering::Relaxed) || CHANGED_HERE.with(Cell::get) {
        return None;
    }
    // SAFETY: reads the current transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        // Its snapshot is the transaction's: a copy loaded with it could
        // miss changes that later transactions see.
        return None;
    }
    let state = STATE.get().load(Ordering::SeqCst);
    (state & COMMITTING_MASK == 0).then_some(state)
}

/// Every registration. Runs a statement that may write (for SPI), so that
/// READ COMMITTED takes a new snapshot, after the version was read.
fn load(client: &mut SpiClient<'_>) -> Result<HashMap<String, bool>, SpiError> {
    let mut has_schema = HashMap::new();
    let table = client.update(
        "SELECT t.name, t.args_schema IS NOT NULL FROM pdoflow.tasks AS t",
        None,
        &[],
    )?;
    for row in table {
        if let (Some(name), Some(schema)) = (row.get::<String>(1)?, row.get::<bool>(2)?) {
            has_schema.insert(name, schema);
        }
    }
    Ok(has_schema)
}

/// `AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pdoflow.tasks FOR EACH
/// STATEMENT`: marks this transaction as one that changes registrations.
/// Declared in sql/api/tasks.sql as `pdoflow._tasks_changed()`.
#[pg_trigger(sql = false)]
fn tasks_changed<'a>(
    _trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByRust>>, pgrx::heap_tuple::PgHeapTupleError> {
    if !CHANGED_HERE.with(|changed| changed.replace(true)) {
        register_xact_callback(PgXactCallbackEvent::PreCommit, start_commit);
        register_xact_callback(PgXactCallbackEvent::Commit, end);
        register_xact_callback(PgXactCallbackEvent::Abort, end);
        register_xact_callback(PgXactCallbackEvent::PrePrepare, start_commit);
        register_xact_callback(PgXactCallbackEvent::Prepare, forget_prepared);
    }
    Ok(None)
}

/// Just before the commit makes the changes visible.
fn start_commit() {
    if READY.load(Ordering::Relaxed) && !COMMITTING_HERE.with(|here| here.replace(true)) {
        STATE
            .get()
            .fetch_add(ONE_VERSION + ONE_COMMITTING, Ordering::SeqCst);
    }
}

/// After the commit (the changes are visible) or the abort.
fn end() {
    if COMMITTING_HERE.with(|here| here.replace(false)) {
        // One committer fewer, and the version moves on.
        STATE
            .get()
            .fetch_add(ONE_VERSION - ONE_COMMITTING, Ordering::SeqCst);
    }
    CHANGED_HERE.with(|changed| changed.set(false));
}

/// A prepared transaction commits later, elsewhere: it stays counted as
/// committing (see the module's documentation).
fn forget_prepared() {
    COMMITTING_HERE.with(|here| here.set(false));
    CHANGED_HERE.with(|changed| changed.set(false));
}
