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
//! INSERT that honours all of them.

use std::ffi::CStr;

use pgrx::pg_sys;

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
}

/// `active_jobs`' columns in table order, as sql/schema.sql creates them.
const COLUMNS: [(&str, pg_sys::Oid); 20] = [
    ("id", pg_sys::UUIDOID),
    ("posting", pg_sys::UUIDOID),
    ("run_at", pg_sys::TIMESTAMPTZOID),
    ("created_at", pg_sys::TIMESTAMPTZOID),
    ("started_at", pg_sys::TIMESTAMPTZOID),
    ("heartbeat_at", pg_sys::TIMESTAMPTZOID),
    ("lease_expires_at", pg_sys::TIMESTAMPTZOID),
    ("priority", pg_sys::INT4OID),
    ("attempt", pg_sys::INT4OID),
    ("max_attempts", pg_sys::INT4OID),
    ("parents_pending", pg_sys::INT4OID),
    ("state", pg_sys::TEXTOID),
    ("queue", pg_sys::TEXTOID),
    ("task", pg_sys::TEXTOID),
    ("worker", pg_sys::TEXTOID),
    ("dependency_mode", pg_sys::TEXTOID),
    ("node", pg_sys::TEXTOID),
    ("last_error", pg_sys::TEXTOID),
    ("depends_on", pg_sys::UUIDARRAYOID),
    ("args", pg_sys::JSONBOID),
];

/// Inserts `job` as a queued row of `pdoflow.active_jobs`. False, with
/// nothing written, when the table is not the one this module knows (see
/// the module comment); the caller then inserts through SQL.
pub fn insert(job: &PlainJob) -> bool {
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
            .all(|(attribute, (name, type_oid))| as_created(attribute, name, type_oid))
}

/// Whether `attribute` is the column `name` of type `type_oid` as
/// sql/schema.sql creates it, with nothing an INSERT would compute for it.
unsafe fn as_created(
    attribute: &pg_sys::FormData_pg_attribute,
    name: &str,
    type_oid: pg_sys::Oid,
) -> bool {
    // A default on a column left NULL would be SQL's to apply.
    let default_applies = attribute.atthasdef && !WRITTEN.contains(&name);
    !attribute.attisdropped
        && !default_applies
        && attribute.attidentity == 0
        && attribute.attgenerated == 0
        && attribute.atttypmod == -1
        && attribute.atttypid == type_oid
        && CStr::from_ptr(attribute.attname.data.as_ptr()).to_bytes() == name.as_bytes()
}

/// The columns [`fill`] writes; the others are NULL.
const WRITTEN: [&str; 10] = [
    "id",
    "run_at",
    "created_at",
    "priority",
    "attempt",
    "max_attempts",
    "state",
    "queue",
    "task",
    "args",
];

/// Puts `job` into the empty `slot`, column by column as in [`COLUMNS`].
///
/// # Safety
/// `slot` is a fresh slot of `active_jobs`, allocated in the current memory
/// context, which also receives the values.
unsafe fn fill(slot: *mut pg_sys::TupleTableSlot, job: &PlainJob) {
    let values = std::slice::from_raw_parts_mut((*slot).tts_values, COLUMNS.len());
    let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, COLUMNS.len());
    nulls.fill(true);
    let mut set = |index: usize, value: pg_sys::Datum| {
        values[index] = value;
        nulls[index] = false;
    };
    set(const { column("id") }, uuid_datum(&job.id));
    set(const { column("run_at") }, pg_sys::Datum::from(job.run_at));
    set(
        const { column("created_at") },
        pg_sys::Datum::from(job.created_at),
    );
    set(
        const { column("priority") },
        pg_sys::Datum::from(job.priority),
    );
    set(const { column("attempt") }, pg_sys::Datum::from(0_i32));
    set(
        const { column("max_attempts") },
        pg_sys::Datum::from(job.max_attempts),
    );
    set(const { column("state") }, text_datum("queued"));
    set(const { column("queue") }, text_datum(job.queue));
    set(const { column("task") }, text_datum(job.task));
    set(const { column("args") }, job.args);
}

/// The index of `name` in [`COLUMNS`]; evaluated at compile time, where an
/// unknown name fails the build.
const fn column(name: &str) -> usize {
    let mut index = 0;
    while index < COLUMNS.len() {
        if same(COLUMNS[index].0.as_bytes(), name.as_bytes()) {
            return index;
        }
        index += 1;
    }
    panic!("not a column of active_jobs")
}

const fn same(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut index = 0;
    while index < left.len() {
        if left[index] != right[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// A uuid Datum (a pointer to its 16 bytes) in the current memory context.
unsafe fn uuid_datum(id: &pgrx::Uuid) -> pg_sys::Datum {
    let bytes = pg_sys::palloc(16).cast::<u8>();
    std::ptr::copy_nonoverlapping(id.as_bytes().as_ptr(), bytes, 16);
    pg_sys::Datum::from(bytes)
}

/// A text Datum in the current memory context.
unsafe fn text_datum(value: &str) -> pg_sys::Datum {
    // Lengths come from text arguments, so they fit in an int.
    let length = i32::try_from(value.len()).unwrap_or(i32::MAX);
    pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
        value.as_ptr().cast(),
        length,
    ))
}
