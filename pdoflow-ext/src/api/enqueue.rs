//! `pdoflow.enqueue`: one job.
//!
//! Every job's task is first checked against its grants (`task_grants.rs`).
//! Most jobs have no posting, no parents and no args schema to check (the
//! session's copy of the registrations says so: `registered_tasks.rs`). For
//! them this function is the whole enqueue: it checks the input, makes the
//! id, takes its unique key if it has a new one, inserts the row with one
//! kept plan, and notes the queue for announcement. Everything else goes to the PL/pgSQL
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

use pgrx::datum::{AnyElement, DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError};

use crate::announce;
use crate::api::ids;
use crate::api::kept_plan;
use crate::claim_floors;
use crate::flow_control;
use crate::input::checks;
use crate::input::rules;
use crate::stats;
use crate::tasks::registered_tasks;
use crate::tasks::task_grants;

const GENERAL: &str =
    "SELECT pdoflow._enqueue_general($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const GENERAL_TYPES: [pg_sys::Oid; 12] = [
    pg_sys::TEXTOID,
    pg_sys::JSONBOID,
    pg_sys::TEXTOID,
    pg_sys::INT4OID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::INT4OID,
    pg_sys::UUIDOID,
    pg_sys::UUIDARRAYOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::INTERVALOID,
    pg_sys::TEXTOID,
];

thread_local! {
    static GENERAL_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
    static PLAIN_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
    static TAKE_KEY_PLAN: OnceCell<pgrx::spi::OwnedPreparedStatement> = const { OnceCell::new() };
}

/// `pdoflow.enqueue(task, args, queue, priority, run_at, max_attempts,
/// posting, depends_on, dependency_mode, unique_key, unique_for,
/// concurrency_key)`: adds one
/// job, returns its id (or, for a unique key that is held, the holder's).
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
    unique_key: Option<&str>,
    unique_for: Option<Interval>,
    concurrency_key: Option<&str>,
) -> Result<Option<pgrx::Uuid>, ErrorReport> {
    if let Some(key) = concurrency_key {
        rules::unique_key("concurrency_key", key)?;
    }
    checks::enqueue_input(
        task,
        args.as_ref().map(AnyElement::datum),
        queue,
        priority,
        run_at,
        max_attempts,
        (unique_key, unique_for),
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
        // The checks refused NULLs in these already.
        if let (true, Some(task), Some(queue), Some(priority), Some(max_attempts)) =
            (plain, task, queue, priority, max_attempts)
        {
            if !registered_tasks::needs_look(&rules) {
                let job = PlainJob {
                    id: ids::new_id(),
                    task,
                    args,
                    queue,
                    priority,
                    run_at,
                    max_attempts,
                    unique_key,
                    concurrency_key,
                };
                // A unique key that is free is taken here; one that is held
                // (or released and to be taken over) goes the general way.
                let free = match unique_key {
                    Some(key) => take_free_key(client, task, key, job.id, unique_for)?,
                    None => true,
                };
                if free {
                    return Ok(Ok(Some(insert_plain(client, job)?)));
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
                unique_key.into(),
                unique_for.into(),
                concurrency_key.into(),
            ],
        )?;
        Ok(Ok(table.first().get_one::<pgrx::Uuid>()?))
    })
    .map_err(internal)?
}

/// Takes a unique key that no job has held yet (or that the sweeper forgot)
/// for the new job `id`: what `pdoflow._take_unique_keys`
/// (sql/api/unique_keys.sql) does first, as one statement with a kept plan.
/// A session inserting the same key at once makes this wait for its
/// commit. Returns false when the key has a row already.
const TAKE_KEY: &str = "INSERT INTO pdoflow.unique_keys (task, unique_key, job, unique_for)
                        VALUES ($1, $2, $3, $4) ON CONFLICT (task, unique_key) DO NOTHING
                        RETURNING true";

const TAKE_KEY_TYPES: [pg_sys::Oid; 4] = [
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::UUIDOID,
    pg_sys::INTERVALOID,
];

fn take_free_key(
    client: &mut SpiClient<'_>,
    task: &str,
    key: &str,
    id: pgrx::Uuid,
    unique_for: Option<Interval>,
) -> Result<bool, SpiError> {
    let taken = kept_plan::execute(
        client,
        &TAKE_KEY_PLAN,
        TAKE_KEY,
        &TAKE_KEY_TYPES,
        &[task.into(), key.into(), id.into(), unique_for.into()],
    )?;
    Ok(!taken.is_empty())
}

/// A plain job's row: what `pdoflow._insert_jobs` (sql/api/enqueue.sql), the
/// one place that says what a new job holds, writes for a queued job with no
/// posting and no parents, as one statement with a kept plan (a call into
/// PL/pgSQL would cost this hot path a fifth of its time). The columns it
/// leaves out keep their defaults (state 'queued', attempt 0) or NULL. A
/// job of a paused or limited queue is marked `controlled`
/// (sql/api/queue_controls.sql), as the session's copy of the controls
/// says (`flow_control::is_controlled`: a subquery here cost single-job
/// enqueue a tenth of its rate).
/// `tests/tests/enqueue_row.rs` checks that both write the same row.
const PLAIN: &str = "INSERT INTO pdoflow.active_jobs (id, task, queue, priority, max_attempts, args, run_at, created_at, enqueued_by, unique_key, concurrency_key, controlled)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const PLAIN_TYPES: [pg_sys::Oid; 12] = [
    pg_sys::UUIDOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::INT4OID,
    pg_sys::INT4OID,
    pg_sys::JSONBOID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::BOOLOID,
];

/// A plain job, checked: no posting, no parents, no args schema.
struct PlainJob<'a> {
    id: pgrx::Uuid,
    task: &'a str,
    args: Option<AnyElement>,
    queue: &'a str,
    priority: i32,
    run_at: Option<TimestampWithTimeZone>,
    max_attempts: i32,
    /// Taken for this job already (`take_free_key`).
    unique_key: Option<&'a str>,
    concurrency_key: Option<&'a str>,
}

/// Inserts a plain job with one kept plan and notes its queue for
/// announcement and its key for the claim floors.
fn insert_plain(client: &mut SpiClient<'_>, job: PlainJob<'_>) -> Result<pgrx::Uuid, SpiError> {
    let PlainJob {
        id,
        task,
        args,
        queue,
        priority,
        run_at,
        max_attempts,
        unique_key,
        concurrency_key,
    } = job;
    let now = transaction_start();
    let due = run_at.map_or(now, pg_sys::TimestampTz::from);
    let enqueued_by = task_grants::calling_role_name();
    let controlled = flow_control::is_controlled(client, queue)?;
    kept_plan::execute(
        client,
        &PLAIN_PLAN,
        PLAIN,
        &PLAIN_TYPES,
        &[
            id.into(),
            task.into(),
            queue.into(),
            priority.into(),
            max_attempts.into(),
            passed_through(args, pg_sys::JSONBOID),
            timestamp(due),
            timestamp(now),
            enqueued_by.as_str().into(),
            unique_key.into(),
            concurrency_key.into(),
            controlled.into(),
        ],
    )?;
    claim_floors::note_queued(queue, priority, due, *id.as_bytes());
    stats::count(stats::table::Event::Enqueued, queue, 1);
    if due <= now {
        announce::announce(queue);
    }
    Ok(id)
}

/// now(): the current transaction's start time.
fn transaction_start() -> pg_sys::TimestampTz {
    // SAFETY: reads a timestamp the transaction set when it started.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// A timestamptz parameter.
fn timestamp(value: pg_sys::TimestampTz) -> DatumWithOid<'static> {
    // SAFETY: a timestamptz is an i64 passed by value, as an int8 is.
    unsafe { DatumWithOid::new(value, pg_sys::TIMESTAMPTZOID) }
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
