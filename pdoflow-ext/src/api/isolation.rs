//! The API functions that need READ COMMITTED.
//!
//! Functions that end jobs or change postings (finish, finish_many, release,
//! cancel, retry, set_posting_status, delete_posting, sweep) lock rows and
//! then decide from what is committed by then: a finish must see the child a
//! producer enqueued while the finish waited for the parent's lock, or that
//! child stays blocked forever. Under REPEATABLE READ or SERIALIZABLE every
//! statement reads the transaction's first snapshot, taken before those
//! locks, so these functions refuse to run there rather than decide from a
//! stale view. Enqueueing, claiming and heartbeats lock or insert only what
//! their snapshot shows and are correct at every level (a row changed since
//! the snapshot makes PostgreSQL raise a serialization failure, 40001).

// See checks.rs: an ErrorReport keeps its SQLSTATE only when returned as is.
#![allow(clippy::result_large_err)]

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Whether the current transaction runs in READ COMMITTED (or READ
/// UNCOMMITTED, which PostgreSQL runs as READ COMMITTED): each statement
/// then reads what is committed when it starts.
pub fn read_committed() -> bool {
    // SAFETY: reads the current transaction's isolation level.
    let level = unsafe { pg_sys::XactIsoLevel };
    u32::try_from(level).is_ok_and(|level| level <= pg_sys::XACT_READ_COMMITTED)
}

/// `pdoflow._require_read_committed(function_name)`: raises 25001 when the
/// current transaction is not READ COMMITTED (or READ UNCOMMITTED, which
/// PostgreSQL runs as READ COMMITTED).
#[pg_extern(volatile, parallel_safe, name = "_require_read_committed")]
fn require_read_committed(function_name: &str) -> Result<(), ErrorReport> {
    if read_committed() {
        return Ok(());
    }
    // SAFETY: reads the current transaction's isolation level.
    let name = match u32::try_from(unsafe { pg_sys::XactIsoLevel }) {
        Ok(pg_sys::XACT_SERIALIZABLE) => "SERIALIZABLE",
        _ => "REPEATABLE READ",
    };
    Err(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
        format!("{function_name} cannot run in a {name} transaction"),
        "pdoflow",
    )
    .set_detail(format!(
        "{function_name} locks jobs and then decides from what is committed by then; \
         a {name} transaction reads one snapshot taken before those locks and would miss \
         jobs enqueued meanwhile (a child of a finished job could stay blocked forever)."
    ))
    .set_hint(
        "Call it in a READ COMMITTED transaction: outside the REPEATABLE READ or SERIALIZABLE \
         one, or start the transaction with BEGIN ISOLATION LEVEL READ COMMITTED.",
    ))
}
