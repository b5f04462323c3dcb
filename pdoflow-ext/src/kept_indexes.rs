//! The descriptions of `active_jobs`' indexes that every inserted row needs
//! (PostgreSQL's `IndexInfo`, with each partial index's predicate compiled),
//! kept for the session by `plain_insert.rs`.
//!
//! `ExecOpenIndices` builds them at every INSERT statement, and compiling
//! the predicates of the table's partial indexes again for every job cost
//! about a tenth of single-job enqueue. They change only with the catalog:
//! an index created, dropped, made ready by CREATE INDEX CONCURRENTLY, the
//! table altered. Each of those sends a relation cache invalidation for the
//! table or the index, which a backend reads when it next locks the table;
//! a callback then marks the kept descriptions stale, and the next insert
//! builds them afresh, exactly as `ExecOpenIndices` would.

use std::cell::{Cell, RefCell};

use pgrx::pg_guard;
use pgrx::pg_sys;

/// The indexes of one table, as they were when last built.
struct Kept {
    table: pg_sys::Oid,
    /// Holds the descriptions and their compiled expressions.
    context: pg_sys::MemoryContext,
    indexes: Vec<(pg_sys::Oid, *mut pg_sys::IndexInfo)>,
}

thread_local! {
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
    /// Set when the catalog may have changed what `KEPT` describes.
    static STALE: Cell<bool> = const { Cell::new(true) };
    /// The table and index oids whose invalidation makes `KEPT` stale.
    static WATCHED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Opens the indexes of `result_rel`'s table for inserting, as
/// `ExecOpenIndices` does (`ExecCloseIndices` closes them), with
/// descriptions kept between calls.
///
/// # Safety
/// `result_rel` was initialised on the open, RowExclusiveLock-ed table; the
/// current memory context lives until the indexes are closed.
pub unsafe fn open(result_rel: *mut pg_sys::ResultRelInfo) {
    let table = (*(*result_rel).ri_RelationDesc).rd_id;
    watch_invalidations();
    loop {
        if STALE.get()
            || KEPT.with_borrow(|kept| kept.as_ref().map(|kept| kept.table)) != Some(table)
        {
            rebuild((*result_rel).ri_RelationDesc);
        }
        let (descriptors, infos, count) = KEPT.with_borrow(|kept| {
            let indexes = kept.as_ref().map_or(&[][..], |kept| &kept.indexes[..]);
            let descriptors = palloc_array::<pg_sys::Relation>(indexes.len());
            let infos = palloc_array::<*mut pg_sys::IndexInfo>(indexes.len());
            for (position, &(index, kept_info)) in indexes.iter().enumerate() {
                *descriptors.add(position) =
                    pg_sys::index_open(index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
                *infos.add(position) = for_this_insert(kept_info);
            }
            (descriptors, infos, indexes.len())
        });
        if STALE.get() {
            // An invalidation arrived while the indexes were being locked.
            for position in 0..count {
                pg_sys::index_close(
                    *descriptors.add(position),
                    pg_sys::RowExclusiveLock as pg_sys::LOCKMODE,
                );
            }
            continue;
        }
        (*result_rel).ri_NumIndices = i32::try_from(count).unwrap_or(i32::MAX);
        (*result_rel).ri_IndexRelationDescs = descriptors;
        (*result_rel).ri_IndexRelationInfo = infos;
        return;
    }
}

/// A copy of a kept description for one insert. Index access methods keep
/// per-insert state in `ii_AmCache` (GIN keeps its open index there), which
/// must not outlive the insert: the copy starts without it, in the
/// insert's memory.
unsafe fn for_this_insert(kept: *mut pg_sys::IndexInfo) -> *mut pg_sys::IndexInfo {
    let copy = palloc_array::<pg_sys::IndexInfo>(1);
    *copy = *kept;
    (*copy).ii_AmCache = std::ptr::null_mut();
    (*copy).ii_Context = pg_sys::CurrentMemoryContext;
    copy
}

/// Builds the descriptions of `rel`'s indexes, with their predicates and
/// expressions compiled, into a memory context of the session's own.
unsafe fn rebuild(rel: pg_sys::Relation) {
    let table = (*rel).rd_id;
    STALE.set(false);
    // An invalidation of the table while the indexes are read makes the
    // result stale at once.
    WATCHED.set(vec![table]);
    if let Some(old) = KEPT.take() {
        // Freed with the transaction rather than now: an insert further up
        // the stack (a CHECK constraint or index expression that enqueues)
        // may still be using it.
        pg_sys::MemoryContextSetParent(old.context, pg_sys::TopTransactionContext);
    }
    // Built under the transaction, so that an ERROR midway frees it; moved
    // under the session's memory once complete.
    let context = pg_sys::AllocSetContextCreateInternal(
        pg_sys::CurTransactionContext,
        c"pdoflow kept index descriptions".as_ptr(),
        pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
        pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
        pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
    );
    let caller_context = pg_sys::MemoryContextSwitchTo(context);
    // Owns the compiled expressions (in its query memory, under `context`).
    let estate = pg_sys::CreateExecutorState();
    let list = pg_sys::RelationGetIndexList(rel);
    let oids: Vec<pg_sys::Oid> = (0..pg_sys::list_length(list))
        .map(|position| pg_sys::list_nth_oid(list, position))
        .collect();
    // Locking each index below reads invalidations: one of an index read
    // already (CREATE INDEX CONCURRENTLY making it ready) must count too.
    WATCHED.set(std::iter::once(table).chain(oids.iter().copied()).collect());
    let mut indexes = Vec::new();
    for index in oids {
        let descriptor = pg_sys::index_open(index, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let info = pg_sys::BuildIndexInfo(descriptor);
        // Compiled once only when evaluating keeps nothing between rows;
        // otherwise ExecInsertIndexTuples compiles it for each insert.
        if !(*info).ii_Predicate.is_null() && keeps_no_state((*info).ii_Predicate) {
            (*info).ii_PredicateState = pg_sys::ExecPrepareQual((*info).ii_Predicate, estate);
        }
        if !(*info).ii_Expressions.is_null() && keeps_no_state((*info).ii_Expressions) {
            (*info).ii_ExpressionsState =
                pg_sys::ExecPrepareExprList((*info).ii_Expressions, estate);
        }
        pg_sys::index_close(descriptor, pg_sys::NoLock as pg_sys::LOCKMODE);
        indexes.push((index, info));
    }
    pg_sys::MemoryContextSwitchTo(caller_context);
    pg_sys::MemoryContextSetParent(context, pg_sys::TopMemoryContext);
    KEPT.set(Some(Kept {
        table,
        context,
        indexes,
    }));
}

/// Whether evaluating `expression` (an index's predicate or expressions)
/// keeps nothing from one row to the next, so that its compiled form may
/// serve every insert of the session: columns, constants, built-in
/// operators and functions, AND/OR/NOT, scalar IS [NOT] NULL and
/// binary-compatible casts. A whole-row reference, for one, caches the
/// row's descriptor in the memory of the insert that first evaluated it;
/// a user's function or a domain may change without touching the index.
unsafe fn keeps_no_state(expression: *mut pg_sys::List) -> bool {
    !has_stateful_node(expression.cast(), std::ptr::null_mut())
}

#[pg_guard]
unsafe extern "C-unwind" fn has_stateful_node(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    use pg_sys::NodeTag;
    if node.is_null() {
        return false;
    }
    let built_in = |oid: pg_sys::Oid| oid.to_u32() < pg_sys::FirstNormalObjectId;
    let stateless = match (*node).type_ {
        NodeTag::T_List | NodeTag::T_Const | NodeTag::T_BoolExpr | NodeTag::T_RelabelType => true,
        NodeTag::T_Var => {
            let var = node.cast::<pg_sys::Var>();
            (*var).varattno > 0 && (*var).varlevelsup == 0
        }
        NodeTag::T_OpExpr => built_in((*node.cast::<pg_sys::OpExpr>()).opno),
        NodeTag::T_FuncExpr => built_in((*node.cast::<pg_sys::FuncExpr>()).funcid),
        NodeTag::T_NullTest => !(*node.cast::<pg_sys::NullTest>()).argisrow,
        _ => false,
    };
    !stateless || pg_sys::expression_tree_walker(node, Some(has_stateful_node), context)
}

/// Registers the invalidation callback, once per session.
fn watch_invalidations() {
    if !CALLBACK_REGISTERED.replace(true) {
        // SAFETY: registers a function with a static lifetime.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0))
        };
    }
}

/// PostgreSQL's relation cache invalidation callback: `relid` changed
/// (InvalidOid: every relation may have).
#[pg_guard]
unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = relid == pg_sys::InvalidOid
        || WATCHED.with(|watched| {
            watched
                .try_borrow()
                .map_or(true, |oids| oids.contains(&relid))
        });
    if watched {
        STALE.set(true);
    }
}

/// `count` uninitialised elements of `T` in the current memory context.
unsafe fn palloc_array<T>(count: usize) -> *mut T {
    pg_sys::palloc(std::mem::size_of::<T>() * count.max(1)).cast::<T>()
}
