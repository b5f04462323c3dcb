//! What enqueue must know about a task before it inserts: whether it is
//! registered (and with an args schema), and which roles it is granted to
//! (`task_grants.rs`). Kept per session for `enqueue`'s fast path
//! (`enqueue.rs`), which must know whether a job's task needs a look (its
//! args checked, or its registration required) and whether the caller may
//! enqueue it. Asking `pdoflow.tasks` at every call cost about 8 µs of a
//! 100 µs enqueue.
//!
//! The copy is trusted only while no change to `pdoflow.tasks` or
//! `pdoflow.task_privileges` can be visible without it. A statement trigger
//! on each table marks every transaction that writes it; such a transaction,
//! in shared memory, counts itself "committing" from just before its commit
//! until just after (its rows become visible in between) and bumps a version
//! at both ends. A session uses its copy when nobody is committing and the
//! version is the one it read before loading the copy; it loads the copy in
//! READ COMMITTED only, with a snapshot taken after reading the version.
//! Otherwise (and without shared memory, when pdoflow is not preloaded) it
//! asks the tables. A transaction that writes them and is then PREPAREd for
//! two-phase commit counts as committing until the server restarts: the
//! copy is no longer used, which is slower but never wrong. After a
//! restart the count starts from zero while such a transaction may still
//! wait for its COMMIT PREPARED (which runs no trigger in the committing
//! session): no copy is kept while this database has prepared transactions.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError};
use pgrx::{pg_shmem_init, register_xact_callback, PgAtomic, PgXactCallbackEvent};

use crate::api::kept_plan;
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

/// What enqueue must know about one task.
#[derive(Clone, Debug, Default)]
pub struct TaskRules {
    /// Registered with an args schema (true) or without (false); `None`:
    /// not registered.
    pub registration: Option<bool>,
    /// The roles it is granted to; empty: open to every producer.
    pub grantees: Vec<pg_sys::Oid>,
}

/// What this session knows: the rules of every task that has any.
struct Copy {
    version: u64,
    tasks: HashMap<String, TaskRules>,
}

/// A task's rules, read from the tables (when no copy can be trusted).
const ONE_TASK: &str = "SELECT (SELECT t.args_schema IS NOT NULL FROM pdoflow.tasks AS t
                                WHERE t.name OPERATOR(pg_catalog.=) $1),
                               (SELECT pg_catalog.array_agg(p.grantee::pg_catalog.oid)
                                FROM pdoflow.task_privileges AS p
                                WHERE p.task OPERATOR(pg_catalog.=) $1)";
/// The same without grants: pdoflow's SQL is older than this library (an
/// ALTER EXTENSION pdoflow UPDATE has yet to run) and has no grants table.
const ONE_TASK_BEFORE_GRANTS: &str =
    "SELECT (SELECT t.args_schema IS NOT NULL FROM pdoflow.tasks AS t
                                              WHERE t.name OPERATOR(pg_catalog.=) $1),
                                             NULL::pg_catalog.oid[]";
/// Every task's rules, for a copy.
const ALL_TASKS: &str = "SELECT coalesce(t.name, g.task), t.name IS NOT NULL, t.args_schema IS NOT NULL, g.grantees
                         FROM pdoflow.tasks AS t
                         FULL JOIN (SELECT p.task, pg_catalog.array_agg(p.grantee::pg_catalog.oid) AS grantees
                                    FROM pdoflow.task_privileges AS p GROUP BY p.task) AS g
                           ON g.task OPERATOR(pg_catalog.=) t.name";
const ALL_TASKS_BEFORE_GRANTS: &str =
    "SELECT t.name, true, t.args_schema IS NOT NULL, NULL::pg_catalog.oid[]
                                       FROM pdoflow.tasks AS t";

thread_local! {
    static ONE_TASK_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
    static ONE_TASK_BEFORE_GRANTS_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
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
pub fn needs_look(rules: &TaskRules) -> bool {
    rules
        .registration
        .unwrap_or_else(|| REQUIRE_REGISTERED_TASKS.get())
}

/// What enqueue must know about `task`: from the session's copy when it can
/// be trusted, else from the tables.
pub fn rules(client: &mut SpiClient<'_>, task: &str) -> Result<TaskRules, SpiError> {
    if let Some(version) = trusted_version() {
        let known = COPY.with(|copy| {
            copy.borrow()
                .as_ref()
                .filter(|copy| copy.version == version)
                .map(|copy| copy.tasks.get(task).cloned().unwrap_or_default())
        });
        if let Some(rules) = known {
            return Ok(rules);
        }
        if let Some(tasks) = load(client)? {
            let rules = tasks.get(task).cloned().unwrap_or_default();
            COPY.with(|copy| *copy.borrow_mut() = Some(Copy { version, tasks }));
            return Ok(rules);
        }
    }
    // Without a trusted copy (pdoflow not preloaded: every call) one task's
    // rows, from a kept plan.
    let (plan, query) = if grants_table_exists() {
        (&ONE_TASK_PLAN, ONE_TASK)
    } else {
        (&ONE_TASK_BEFORE_GRANTS_PLAN, ONE_TASK_BEFORE_GRANTS)
    };
    let table = kept_plan::execute(client, plan, query, &[pg_sys::TEXTOID], &[task.into()])?;
    let row = table.first();
    Ok(TaskRules {
        registration: row.get::<bool>(1)?,
        grantees: row.get::<Vec<pg_sys::Oid>>(2)?.unwrap_or_default(),
    })
}

/// Whether `pdoflow.task_privileges` exists (see `ONE_TASK_BEFORE_GRANTS`).
fn grants_table_exists() -> bool {
    // SAFETY: catalog lookups by name; both return InvalidOid when missing.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"pdoflow".as_ptr(), true);
        schema != pg_sys::InvalidOid
            && pg_sys::get_relname_relid(c"task_privileges".as_ptr(), schema) != pg_sys::InvalidOid
    }
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

/// Every task's rules; `None` while a prepared transaction waits in this
/// database (see the module documentation). Runs a statement that may write
/// (for SPI), so that READ COMMITTED takes a new snapshot, after the version
/// was read.
fn load(client: &mut SpiClient<'_>) -> Result<Option<HashMap<String, TaskRules>>, SpiError> {
    let prepared = client
        .update(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_xacts AS x
                            WHERE x.database OPERATOR(pg_catalog.=) pg_catalog.current_database())",
            None,
            &[],
        )?
        .first()
        .get_one::<bool>()?;
    if prepared != Some(false) {
        return Ok(None);
    }
    let query = if grants_table_exists() {
        ALL_TASKS
    } else {
        ALL_TASKS_BEFORE_GRANTS
    };
    let mut tasks = HashMap::new();
    for row in client.update(query, None, &[])? {
        let Some(name) = row.get::<String>(1)? else {
            continue;
        };
        let registered = row.get::<bool>(2)?.unwrap_or(false);
        let has_schema = row.get::<bool>(3)?.unwrap_or(false);
        tasks.insert(
            name,
            TaskRules {
                registration: registered.then_some(has_schema),
                grantees: row.get::<Vec<pg_sys::Oid>>(4)?.unwrap_or_default(),
            },
        );
    }
    Ok(Some(tasks))
}

/// `AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW` and `AFTER TRUNCATE
/// ... FOR EACH STATEMENT` on `pdoflow.tasks` and `pdoflow.task_privileges`,
/// enabled ALWAYS: marks this transaction as one that changes registrations
/// or grants. Declared in sql/api/tasks.sql as `pdoflow._tasks_changed()`.
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
