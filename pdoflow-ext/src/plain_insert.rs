//! Inserting a plain queued job into `pdoflow.active_jobs` without the
//! executor, the way COPY inserts its rows: form the row, insert it into the
//! heap, add its index entries.
//!
//! Single-job enqueue is one INSERT per call, and PostgreSQL's executor
//! spends as long setting that INSERT up and tearing it down (revalidating
//! the kept plan, building its nodes and projections, closing it) as it
//! spends inserting. Here only the work that every insert needs remains:
//! the table and its indexes are opened (with descriptions the session keeps:
//! `kept_indexes.rs`), NOT NULL and any CHECK constraint are enforced
//! (`ExecConstraints`), and `ExecInsertIndexTuples` keeps every index,
//! partial or not, as an INSERT would.
//!
//! Only a table exactly as pdoflow made it is written this way. A trigger,
//! a rule or row security on it, or a column added, dropped or retyped, and
//! [`insert`] declines: the caller then takes the general path, an SQL
//! INSERT that honours all of them. So it does in a read-only transaction
//! (which SQL's INSERT refuses) and while a module checks every statement's
//! permissions (sepgsql, pgaudit's object audit: `ExecutorCheckPerms_hook`).

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::IntoDatum;

use crate::kept_indexes;

/// A queued job with no posting and no parents: the row enqueue writes.
pub struct PlainJob<'a> {
    pub id: pgrx::Uuid,
    pub task: &'a str,
    pub queue: &'a str,
    pub priority: i32,
    pub max_attempts: i32,
    /// The jsonb argument as enqueue received it.
    pub args: pg_sys::Datum,
    pub run_at: pg_sys::TimestampTz,
    pub created_at: pg_sys::TimestampTz,
    /// The calling role's name (`task_grants::calling_role`).
    pub enqueued_by: &'a str,
}

/// What a column of a plain job's row holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Value {
    Id,
    RunAt,
    CreatedAt,
    Priority,
    /// 0: not started yet.
    NoAttempt,
    MaxAttempts,
    /// The state 'queued'.
    Queued,
    Queue,
    Task,
    Args,
    EnqueuedBy,
    Null,
}

/// `active_jobs`' columns in table order, as sql/schema.sql creates them,
/// with what a plain job holds in each.
const COLUMNS: [(&str, pg_sys::Oid, Value); 21] = [
    ("id", pg_sys::UUIDOID, Value::Id),
    ("posting", pg_sys::UUIDOID, Value::Null),
    ("run_at", pg_sys::TIMESTAMPTZOID, Value::RunAt),
    ("created_at", pg_sys::TIMESTAMPTZOID, Value::CreatedAt),
    ("started_at", pg_sys::TIMESTAMPTZOID, Value::Null),
    ("heartbeat_at", pg_sys::TIMESTAMPTZOID, Value::Null),
    ("lease_expires_at", pg_sys::TIMESTAMPTZOID, Value::Null),
    ("priority", pg_sys::INT4OID, Value::Priority),
    ("attempt", pg_sys::INT4OID, Value::NoAttempt),
    ("max_attempts", pg_sys::INT4OID, Value::MaxAttempts),
    ("parents_pending", pg_sys::INT4OID, Value::Null),
    ("state", pg_sys::TEXTOID, Value::Queued),
    ("queue", pg_sys::TEXTOID, Value::Queue),
    ("task", pg_sys::TEXTOID, Value::Task),
    ("worker", pg_sys::TEXTOID, Value::Null),
    ("dependency_mode", pg_sys::TEXTOID, Value::Null),
    ("node", pg_sys::TEXTOID, Value::Null),
    ("last_error", pg_sys::TEXTOID, Value::Null),
    ("depends_on", pg_sys::UUIDARRAYOID, Value::Null),
    ("args", pg_sys::JSONBOID, Value::Args),
    ("enqueued_by", pg_sys::TEXTOID, Value::EnqueuedBy),
];

/// Inserts `job` as a queued row of `pdoflow.active_jobs`. False, with
/// nothing written, when the table is not the one this module knows (see
/// the module comment); the caller then inserts through SQL.
pub fn insert(job: &PlainJob) -> bool {
    if !executor_adds_nothing() {
        return false;
    }
    let Some(relid) = active_jobs_oid() else {
        return false;
    };
    // SAFETY: the relation stays open and locked for the whole insert; every
    // allocation below lives in the executor state's memory, freed at the
    // end (or with the transaction when an ERROR leaves early).
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        if !written_directly(rel) || !may_insert(relid) {
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            return false;
        }
        let estate = pg_sys::CreateExecutorState();
        let caller_context = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);

        let result_rel = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            .cast::<pg_sys::ResultRelInfo>();
        // Range table index 0: no range table, as for COPY's partitions; the
        // table's owner (this SECURITY DEFINER function) needs no checks.
        pg_sys::InitResultRelInfo(result_rel, rel, 0, std::ptr::null_mut(), 0);
        kept_indexes::open(result_rel);

        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        fill(slot, job);
        pg_sys::ExecStoreVirtualTuple(slot);
        pg_sys::ExecConstraints(result_rel, slot, estate);
        pg_sys::simple_table_tuple_insert(rel, slot);
        let recheck = pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        pg_sys::list_free(recheck);

        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::ExecCloseIndices(result_rel);
        pg_sys::MemoryContextSwitchTo(caller_context);
        pg_sys::FreeExecutorState(estate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        // As after an SQL statement in a function: what follows in this
        // transaction sees the row.
        pg_sys::CommandCounterIncrement();
    }
    true
}

/// Whether an INSERT statement would check nothing beyond what [`insert`]
/// does: the transaction may write, and no module checks each statement's
/// permissions.
fn executor_adds_nothing() -> bool {
    // SAFETY: reads (copies) the transaction's read-only flag and a hook
    // pointer, which only this backend's own code changes.
    let (read_only, permissions_hook) =
        unsafe { (pg_sys::XactReadOnly, pg_sys::ExecutorCheckPerms_hook) };
    !read_only && permissions_hook.is_none()
}

/// `pdoflow.active_jobs`' oid; None while the extension is being dropped.
fn active_jobs_oid() -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups by name; both return InvalidOid when missing.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"pdoflow".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return None;
        }
        let table = pg_sys::get_relname_relid(c"active_jobs".as_ptr(), schema);
        (table != pg_sys::InvalidOid).then_some(table)
    }
}

/// Whether the current user (the table's owner, in enqueue) may insert, as
/// the executor would check; if not, the SQL path raises the error.
unsafe fn may_insert(relid: pg_sys::Oid) -> bool {
    pg_sys::pg_class_aclcheck(
        relid,
        pg_sys::GetUserId(),
        pg_sys::AclMode::from(pg_sys::ACL_INSERT),
    ) == pg_sys::AclResult::ACLCHECK_OK
}

/// Whether an insert without the executor does all an SQL INSERT would:
/// a plain table with the columns of [`COLUMNS`], and nothing (trigger, rule,
/// row security) that an INSERT statement would run besides.
///
/// # Safety
/// `rel` is open.
unsafe fn written_directly(rel: pg_sys::Relation) -> bool {
    let class = &*(*rel).rd_rel;
    if class.relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char
        || class.relispartition
        || class.relhasrules
        || class.relrowsecurity
        || !(*rel).trigdesc.is_null()
    {
        return false;
    }
    let descriptor = (*rel).rd_att;
    let attributes = (*descriptor)
        .attrs
        .as_slice(usize::try_from((*descriptor).natts).unwrap_or(0));
    attributes.len() == COLUMNS.len()
        && attributes
            .iter()
            .zip(COLUMNS)
            .all(|(attribute, (name, type_oid, value))| {
                as_created(attribute, name, type_oid, value)
            })
}

/// Whether `attribute` is the column `name` of type `type_oid` as
/// sql/schema.sql creates it, with nothing an INSERT would compute for it.
unsafe fn as_created(
    attribute: &pg_sys::FormData_pg_attribute,
    name: &str,
    type_oid: pg_sys::Oid,
    value: Value,
) -> bool {
    // A default on a column left NULL would be SQL's to apply.
    let default_applies = attribute.atthasdef && value == Value::Null;
    !attribute.attisdropped
        && !default_applies
        && attribute.attidentity == 0
        && attribute.attgenerated == 0
        && attribute.atttypmod == -1
        && attribute.atttypid == type_oid
        && CStr::from_ptr(attribute.attname.data.as_ptr()).to_bytes() == name.as_bytes()
}

/// Puts `job` into the empty `slot`, column by column as in [`COLUMNS`].
///
/// # Safety
/// `slot` is a fresh slot of `active_jobs`, allocated in the current memory
/// context, which also receives the values.
unsafe fn fill(slot: *mut pg_sys::TupleTableSlot, job: &PlainJob) {
    let values = std::slice::from_raw_parts_mut((*slot).tts_values, COLUMNS.len());
    let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, COLUMNS.len());
    for (index, &(_, _, value)) in COLUMNS.iter().enumerate() {
        let datum = match value {
            Value::Id => job.id.into_datum(),
            Value::RunAt => job.run_at.into_datum(),
            Value::CreatedAt => job.created_at.into_datum(),
            Value::Priority => job.priority.into_datum(),
            Value::NoAttempt => 0_i32.into_datum(),
            Value::MaxAttempts => job.max_attempts.into_datum(),
            Value::Queued => "queued".into_datum(),
            Value::Queue => job.queue.into_datum(),
            Value::Task => job.task.into_datum(),
            Value::Args => Some(job.args),
            Value::EnqueuedBy => job.enqueued_by.into_datum(),
            Value::Null => None,
        };
        values[index] = datum.unwrap_or(pg_sys::Datum::from(0));
        nulls[index] = datum.is_none();
    }
}
