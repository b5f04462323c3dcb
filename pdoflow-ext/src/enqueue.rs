//! `pdoflow.enqueue`: one job.
//!
//! Most jobs have no posting, no parents and no args schema to check (the
//! session's copy of the registrations says so: `registered_tasks.rs`). For
//! them this function is the whole enqueue: it checks the input, makes the
//! id, inserts the row with one statement whose plan the session keeps, and
//! notes the queue for announcement. Everything else goes to the PL/pgSQL
//! `pdoflow._enqueue_general` (sql/api/enqueue.sql), which locks postings and
//! parents and checks args against their task's schema.
//!
//! Single-job enqueue is the hot path of every producer; as PL/pgSQL it
//! spent as long around its INSERT (checks, helper calls) as in it. The SQL
//! declaration, with the binding defaults, is in sql/api/enqueue.sql.

// pgrx raises a returned `ErrorReport` with its own SQLSTATE and hint only when
// it is returned as is.
#![allow(clippy::result_large_err)]

use std::cell::OnceCell;

use pgrx::datum::{AnyElement, DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiError;

use crate::announce;
use crate::checks;
use crate::ids;
use crate::kept_plan;
use crate::registered_tasks;

/// Inserts a plain queued job.
const PLAIN_INSERT: &str = "
    INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, pg_catalog.now()), pg_catalog.now())";

const PLAIN_INSERT_TYPES: [pg_sys::Oid; 7] = [
    pg_sys::UUIDOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::INT4OID,
    pg_sys::INT4OID,
    pg_sys::JSONBOID,
    pg_sys::TIMESTAMPTZOID,
];

const GENERAL: &str = "SELECT pdoflow._enqueue_general($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const GENERAL_TYPES: [pg_sys::Oid; 9] = [
    pg_sys::TEXTOID,
    pg_sys::JSONBOID,
    pg_sys::TEXTOID,
    pg_sys::INT4OID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::INT4OID,
    pg_sys::UUIDOID,
    pg_sys::UUIDARRAYOID,
    pg_sys::TEXTOID,
];

thread_local! {
    static PLAIN_INSERT_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
    static GENERAL_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
}

/// `pdoflow.enqueue(task, args, queue, priority, run_at, max_attempts,
/// posting, depends_on, dependency_mode)`: adds one job, returns its id.
/// `args` is jsonb and `depends_on` uuid[] (declared in SQL); they pass
/// through untouched.
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn enqueue(
    task: Option<&str>,
    args: Option<AnyElement>,
    queue: Option<&str>,
    priority: Option<i32>,
    run_at: Option<TimestampWithTimeZone>,
    max_attempts: Option<i32>,
    posting: Option<pgrx::Uuid>,
    depends_on: Option<AnyElement>,
    dependency_mode: Option<&str>,
) -> Result<Option<pgrx::Uuid>, ErrorReport> {
    checks::enqueue_input(
        task,
        args.as_ref().map(AnyElement::datum),
        queue,
        priority,
        run_at,
        max_attempts,
    )?;
    let plain = posting.is_none() && depends_on.is_none() && dependency_mode == Some("all");
    Spi::connect_mut(|client| {
        if let (true, Some(task)) = (plain, task) {
            if !registered_tasks::needs_look(client, task)? {
                let id = ids::new_id();
                kept_plan::execute(
                    client,
                    &PLAIN_INSERT_PLAN,
                    PLAIN_INSERT,
                    &PLAIN_INSERT_TYPES,
                    &[
                        id.into(),
                        task.into(),
                        queue.into(),
                        priority.into(),
                        max_attempts.into(),
                        passed_through(args, pg_sys::JSONBOID),
                        run_at.into(),
                    ],
                )?;
                if let (true, Some(queue)) = (is_due(run_at), queue) {
                    announce::announce(queue);
                }
                return Ok(Some(id));
            }
        }
        let table = kept_plan::execute(
            client,
            &GENERAL_PLAN,
            GENERAL,
            &GENERAL_TYPES,
            &[
                task.into(),
                passed_through(args, pg_sys::JSONBOID),
                queue.into(),
                priority.into(),
                run_at.into(),
                max_attempts.into(),
                posting.into(),
                passed_through(depends_on, pg_sys::UUIDARRAYOID),
                dependency_mode.into(),
            ],
        )?;
        table.first().get_one::<pgrx::Uuid>()
    })
    .map_err(internal)
}

/// An argument of this call handed on as it came: `oid` is its declared type.
fn passed_through(value: Option<AnyElement>, oid: pg_sys::Oid) -> DatumWithOid<'static> {
    match value {
        // SAFETY: the datum is an argument of this call, alive until it returns.
        Some(value) => unsafe { DatumWithOid::new(value, oid) },
        None => DatumWithOid::null_oid(oid),
    }
}

/// Runs now: no run_at, or one not in the future.
fn is_due(run_at: Option<TimestampWithTimeZone>) -> bool {
    // SAFETY: reads the current transaction's start time, which now() is.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    run_at.is_none_or(|at| pg_sys::TimestampTz::from(at) <= now)
}

/// An SPI failure that is not an SQL error (those propagate as they are).
fn internal(error: SpiError) -> ErrorReport {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("pdoflow.enqueue: {error}"),
        "pdoflow",
    )
}
