//! `pdoflow.enqueue`: one job.
//!
//! Every job's task is first checked against its grants (`task_grants.rs`).
//! Most jobs have no posting, no parents and no args schema to check (the
//! session's copy of the registrations says so: `registered_tasks.rs`). For
//! them this function is the whole enqueue: it checks the input, makes the
//! id, writes the row without the executor (`plain_insert.rs`), and notes
//! the queue for announcement. Everything else goes to the PL/pgSQL
//! `pdoflow._enqueue_general` (sql/api/enqueue.sql), which locks postings and
//! parents and checks args against their task's schema; so does a plain job
//! when a DBA's trigger, rule or column on `active_jobs` needs SQL's INSERT,
//! or when the transaction is read-only (SQL's INSERT refuses it).
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
use crate::plain_insert;
use crate::registered_tasks;
use crate::task_grants;

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
        let rules = match task {
            Some(task) => registered_tasks::rules(client, task)?,
            None => Default::default(),
        };
        if let Some(task) = task {
            if let Err(refused) = task_grants::check(task, &rules.grantees) {
                return Ok(Err(refused));
            }
        }
        if let (true, Some(task)) = (plain, task) {
            if !registered_tasks::needs_look(&rules) {
                if let Some(id) =
                    insert_plain(task, args.as_ref(), queue, priority, run_at, max_attempts)
                {
                    return Ok(Ok(Some(id)));
                }
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
        Ok(Ok(table.first().get_one::<pgrx::Uuid>()?))
    })
    .map_err(internal)?
}

/// Inserts a plain job without SQL (`plain_insert.rs`) and notes its queue
/// for announcement; None when the input or the table asks for the general
/// path.
fn insert_plain(
    task: &str,
    args: Option<&AnyElement>,
    queue: Option<&str>,
    priority: Option<i32>,
    run_at: Option<TimestampWithTimeZone>,
    max_attempts: Option<i32>,
) -> Option<pgrx::Uuid> {
    // The checks refused these NULLs already; the general path reports them.
    let (Some(args), Some(queue), Some(priority), Some(max_attempts)) =
        (args, queue, priority, max_attempts)
    else {
        return None;
    };
    let now = transaction_start();
    let run_at = run_at.map_or(now, pg_sys::TimestampTz::from);
    let enqueued_by = task_grants::role_name(task_grants::calling_role());
    let job = plain_insert::PlainJob {
        id: ids::new_id(),
        task,
        queue,
        priority,
        max_attempts,
        args: args.datum(),
        run_at,
        created_at: now,
        enqueued_by: &enqueued_by,
    };
    if !plain_insert::insert(&job) {
        return None;
    }
    if run_at <= now {
        announce::announce(queue);
    }
    Some(job.id)
}

/// now(): the current transaction's start time.
fn transaction_start() -> pg_sys::TimestampTz {
    // SAFETY: reads a timestamp the transaction set when it started.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// An argument of this call handed on as it came: `oid` is its declared type.
fn passed_through(value: Option<AnyElement>, oid: pg_sys::Oid) -> DatumWithOid<'static> {
    match value {
        // SAFETY: the datum is an argument of this call, alive until it returns.
        Some(value) => unsafe { DatumWithOid::new(value, oid) },
        None => DatumWithOid::null_oid(oid),
    }
}

/// An SPI failure that is not an SQL error (those propagate as they are).
fn internal(error: SpiError) -> ErrorReport {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("pdoflow.enqueue: {error}"),
        "pdoflow",
    )
}
