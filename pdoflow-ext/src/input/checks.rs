//! SQL-callable input checks. Every PL/pgSQL API function calls one of these
//! before it touches a table, so bad input fails with a precise error (see
//! `errors.rs`) and nothing is half-written.

// pgrx raises a returned `ErrorReport` with its own SQLSTATE and hint only when
// it is returned as is; boxed, it would become a generic 22000 error.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::ffi::CString;

use crate::input::errors::InputError;
use crate::input::job_document::{self, Timestamp};
use crate::input::rules::{
    at_least, at_most, keys_per_job, max_attempts, name, one_of, payload, present,
    unique_for_needs_key, unique_key, Limits, DEPENDENCY_MODES, DEPENDENCY_MODES_TEXT,
    RUN_AT_MAX_YEARS,
};
use crate::settings::{MAX_ATTEMPTS_LIMIT, MAX_CLAIM, MAX_PAYLOAD_BYTES};
use pgrx::array::RawArray;
use pgrx::datum::{AnyArray, AnyElement, Array, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;

type Checked = Result<(), ErrorReport>;

const ARGS_NULL_HINT: &str = "Pass '{}' for a job without arguments.";

/// The superusers' limits, as set now.
pub fn current_limits() -> Limits {
    Limits {
        max_payload_bytes: usize::try_from(MAX_PAYLOAD_BYTES.get()).unwrap_or(usize::MAX),
        max_attempts: MAX_ATTEMPTS_LIMIT.get(),
    }
}

/// The size of a jsonb datum's value, uncompressed, without its header.
fn jsonb_size(datum: pg_sys::Datum) -> usize {
    // SAFETY: the datum is a non-NULL varlena (jsonb) argument of this call.
    let size = unsafe { pg_sys::toast_raw_datum_size(datum) };
    size.saturating_sub(pg_sys::VARHDRSZ)
}

/// The options every enqueue form shares.
fn job_options(
    task: Option<&str>,
    queue: Option<&str>,
    priority: Option<i32>,
    run_at: Option<TimestampWithTimeZone>,
    attempts: Option<i32>,
    limits: &Limits,
) -> Result<(), InputError> {
    name("task", present("task", task, None)?)?;
    name(
        "queue",
        present(
            "queue",
            queue,
            Some("Omit queue to use the queue named default."),
        )?,
    )?;
    present("priority", priority, None)?;
    if let Some(run_at) = run_at {
        finite("run_at", run_at)?;
        if too_far(run_at) {
            return Err(InputError::TooFarAway {
                param: "run_at".into(),
                value: run_at.to_string(),
                years: RUN_AT_MAX_YEARS,
            });
        }
    }
    max_attempts(
        "max_attempts",
        present("max_attempts", attempts, None)?,
        limits,
    )?;
    Ok(())
}

/// More than RUN_AT_MAX_YEARS after the transaction's start.
fn too_far(value: TimestampWithTimeZone) -> bool {
    // A Julian year, 365.25 days.
    const MICROS_PER_YEAR: i64 = 36_525 * 24 * 3_600 * 1_000_000 / 100;
    // SAFETY: reads the current transaction's start time.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    pg_sys::TimestampTz::from(value) - now > i64::from(RUN_AT_MAX_YEARS) * MICROS_PER_YEAR
}

fn is_finite(value: TimestampWithTimeZone) -> bool {
    !value.is_infinity() && !value.is_neg_infinity()
}

fn finite(param: &str, value: TimestampWithTimeZone) -> Result<(), InputError> {
    if !is_finite(value) {
        return Err(InputError::NotFinite {
            param: param.to_owned(),
            value: value.to_string(),
        });
    }
    Ok(())
}

fn positive(param: &str, value: Interval) -> Result<(), InputError> {
    if value.as_micros() <= 0 {
        return Err(InputError::NotPositive {
            param: param.to_owned(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// `_check_job`, which enqueue called until 0.3.0: the install script of
/// 0.1.0 (the oldest upgrades start from, tests/fixtures/) and the upgrade
/// scripts up to 0.3.0 still declare it, so the library keeps the function
/// they name. 0.3.0 drops it from the schema.
#[pg_extern(stable, parallel_safe, sql = false, name = "_check_job")]
fn check_job(
    task: Option<&str>,
    args: Option<AnyElement>,
    queue: Option<&str>,
    priority: Option<i32>,
    run_at: Option<TimestampWithTimeZone>,
    max_attempts: Option<i32>,
) -> Checked {
    enqueue_input(
        task,
        args.map(|args| args.datum()),
        queue,
        priority,
        run_at,
        max_attempts,
        (None, None),
    )
}

/// The input of `pdoflow.enqueue` (see `enqueue.rs`); `args` is its jsonb.
pub fn enqueue_input(
    task: Option<&str>,
    args: Option<pg_sys::Datum>,
    queue: Option<&str>,
    priority: Option<i32>,
    run_at: Option<TimestampWithTimeZone>,
    max_attempts: Option<i32>,
    unique: (Option<&str>, Option<Interval>),
) -> Checked {
    let limits = current_limits();
    job_options(task, queue, priority, run_at, max_attempts, &limits)?;
    let args = present("args", args, Some(ARGS_NULL_HINT))?;
    payload("args", jsonb_size(args), &limits)?;
    unique_options("unique_key", unique.0, "unique_for", unique.1)?;
    Ok(())
}

/// A job's unique key and how long it keeps it after succeeding (either
/// may be NULL; unique_for needs a key).
pub fn unique_options(
    key_param: &str,
    key: Option<&str>,
    for_param: &str,
    unique_for: Option<Interval>,
) -> Result<(), InputError> {
    if let Some(key) = key {
        unique_key(key_param, key)?;
    }
    if let Some(unique_for) = unique_for {
        positive(for_param, unique_for)?;
        unique_for_needs_key(for_param, key_param, key.is_some())?;
    }
    Ok(())
}

/// The unique keys of `pdoflow.enqueue_many(task, args jsonb[], ...)`: one
/// per job (`jobs` of them) or none, and the unique_for they share.
#[pg_extern(stable, parallel_safe, name = "_check_unique_keys")]
fn check_unique_keys(
    keys: Option<Vec<Option<String>>>,
    unique_for: Option<Interval>,
    jobs: Option<i32>,
) -> Checked {
    let Some(keys) = keys else {
        return Ok(unique_options(
            "unique_keys",
            None,
            "unique_for",
            unique_for,
        )?);
    };
    let jobs = usize::try_from(jobs.unwrap_or(0)).unwrap_or(0);
    keys_per_job("unique_keys", &keys, jobs)?;
    if let Some(unique_for) = unique_for {
        positive("unique_for", unique_for)?;
    }
    Ok(())
}

/// A `unique_for` string of a JSON document (`param` names it) as an
/// interval: positive, or an error naming the job.
#[pg_extern(stable, parallel_safe, name = "_unique_for")]
fn unique_for_value(text: Option<&str>, param: &str) -> Result<Option<Interval>, ErrorReport> {
    let Some(text) = text else {
        return Ok(None);
    };
    let Some(value) = parse_interval(text) else {
        return Err(InputError::BadInterval {
            param: param.to_owned(),
            value: text.to_owned(),
        }
        .into());
    };
    positive(param, value)?;
    Ok(Some(value))
}

/// Arguments of `pdoflow.enqueue_many(task, args jsonb[], ...)`.
#[pg_extern(stable, parallel_safe, name = "_check_job_batch")]
fn check_job_batch(
    task: Option<&str>,
    args: Option<AnyArray>,
    queue: Option<&str>,
    priority: Option<i32>,
    run_at: Option<TimestampWithTimeZone>,
    max_attempts: Option<i32>,
) -> Checked {
    let limits = current_limits();
    job_options(task, queue, priority, run_at, max_attempts, &limits)?;
    let args = present(
        "args",
        args,
        Some("Pass one jsonb value per job to create."),
    )?;
    let Some(args) = AnyArray::into::<Array<pg_sys::Datum>>(&args) else {
        return Ok(());
    };
    for (index, element) in args.iter().enumerate() {
        let param = format!("args[{}]", index + 1);
        let Some(element) = element else {
            return Err(InputError::Null {
                param,
                hint: Some(ARGS_NULL_HINT),
            }
            .into());
        };
        payload(&param, jsonb_size(element), &limits)?;
    }
    // SAFETY: `into_array_type` hands back the detoasted array this `Array` read.
    let dimensions = unsafe {
        std::ptr::NonNull::new(args.into_array_type().cast_mut())
            .map(|array| RawArray::from_ptr(array).dims().len())
            .unwrap_or(0)
    };
    if dimensions > 1 {
        return Err(InputError::MultiDimensional {
            param: "args".into(),
            dimensions: dimensions as i32,
        }
        .into());
    }
    Ok(())
}

/// The document of `pdoflow.enqueue_many(jobs jsonb)`, as text: checked
/// whole before any insert (see `job_document.rs`). True when some job joins
/// a posting or has parents.
#[pg_extern(stable, parallel_safe, name = "_check_job_list")]
fn check_job_list(jobs: Option<&str>) -> Result<bool, ErrorReport> {
    let jobs = present("jobs", jobs, Some("Pass a JSON array of job objects."))?;
    Ok(job_document::check(
        jobs,
        &judge_timestamp,
        &current_limits(),
    )?)
}

/// The report of `pdoflow.progress`: present, within pdoflow.max_payload_bytes.
#[pg_extern(stable, parallel_safe, name = "_check_progress")]
fn check_progress(progress: Option<AnyElement>) -> Checked {
    let progress = present(
        "progress",
        progress,
        Some("Pass a JSON value, such as '{\"done\": 10, \"total\": 100}'."),
    )?;
    payload("progress", jsonb_size(progress.datum()), &current_limits())?;
    Ok(())
}

/// The results of `pdoflow.finish_many`: each within pdoflow.max_payload_bytes.
#[pg_extern(stable, parallel_safe, name = "_check_results")]
fn check_results(results: Option<AnyArray>) -> Checked {
    let Some(results) = results
        .as_ref()
        .and_then(AnyArray::into::<Array<pg_sys::Datum>>)
    else {
        return Ok(());
    };
    let limits = current_limits();
    for (index, result) in results.iter().enumerate() {
        if let Some(result) = result {
            payload(
                &format!("results[{}]", index + 1),
                jsonb_size(result),
                &limits,
            )?;
        }
    }
    Ok(())
}

/// What a `run_at` string in a JSON document is, to PostgreSQL.
pub fn judge_timestamp(text: &str) -> Timestamp {
    match parse_timestamptz(text) {
        None => Timestamp::Invalid,
        Some(time) if !is_finite(time) => Timestamp::Infinite,
        Some(time) if too_far(time) => Timestamp::TooFar,
        Some(_) => Timestamp::Finite,
    }
}

/// Arguments of `pdoflow.create_posting` that have rules.
#[pg_extern(stable, parallel_safe, name = "_check_posting")]
fn check_posting(posting_name: Option<&str>, queue: Option<&str>) -> Checked {
    name(
        "name",
        present(
            "name",
            posting_name,
            Some("Give the posting a name people will recognise."),
        )?,
    )?;
    if let Some(queue) = queue {
        name("queue", queue)?;
    }
    Ok(())
}

/// A posting id passed to a posting function.
#[pg_extern(stable, parallel_safe, name = "_check_posting_ref")]
fn check_posting_ref(posting: Option<pgrx::Uuid>) -> Checked {
    present("posting", posting, None)?;
    Ok(())
}

const POSTING_STATUSES: &[&str] = &["active", "paused", "cancelled"];

/// Arguments of `pdoflow.set_posting_status`.
#[pg_extern(stable, parallel_safe, name = "_check_posting_status")]
fn check_posting_status(posting: Option<pgrx::Uuid>, status: Option<&str>) -> Checked {
    present("posting", posting, None)?;
    let status = present("status", status, None)?;
    one_of(
        "status",
        status,
        POSTING_STATUSES,
        "active, paused or cancelled",
    )?;
    Ok(())
}

/// `depends_on` and `dependency_mode` of the enqueue functions.
#[pg_extern(stable, parallel_safe, name = "_check_dependencies")]
fn check_dependencies(
    depends_on: Option<Vec<Option<pgrx::Uuid>>>,
    dependency_mode: Option<&str>,
) -> Checked {
    let mode = present(
        "dependency_mode",
        dependency_mode,
        Some("Omit dependency_mode for 'all' (every parent must succeed)."),
    )?;
    one_of(
        "dependency_mode",
        mode,
        DEPENDENCY_MODES,
        DEPENDENCY_MODES_TEXT,
    )?;
    if let Some(parents) = depends_on {
        if let Some(index) = parents.iter().position(Option::is_none) {
            return Err(InputError::Null {
                param: format!("depends_on[{}]", index + 1),
                hint: None,
            }
            .into());
        }
    }
    Ok(())
}

/// Parses `text` with PostgreSQL's own input function for a type
/// (`timestamptz_in`, `interval_in`), so JSON documents accept exactly what
/// a literal of that type accepts. `None` when PostgreSQL rejects it with a
/// data exception (SQLSTATE class 22).
fn parse_with<T: FromDatum>(
    input: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum,
    text: &str,
) -> Option<T> {
    let text = CString::new(text).ok()?;
    PgTryBuilder::new(|| unsafe {
        pgrx::direct_function_call::<T>(
            input,
            &[
                text.as_c_str().into_datum(),
                pg_sys::InvalidOid.into_datum(),
                (-1_i32).into_datum(),
            ],
        )
    })
    .catch_others(|error| match &error {
        CaughtError::PostgresError(report) if is_data_exception(report.sql_error_code()) => None,
        _ => error.rethrow(),
    })
    .execute()
}

fn parse_interval(text: &str) -> Option<Interval> {
    parse_with(pg_sys::interval_in, text)
}

fn parse_timestamptz(text: &str) -> Option<TimestampWithTimeZone> {
    parse_with(pg_sys::timestamptz_in, text)
}

/// SQLSTATE class 22. SQLSTATEs pack each character into 6 bits, first
/// character lowest.
fn is_data_exception(code: PgSqlErrorCode) -> bool {
    let code = code as i64;
    (code & 0x3F) == 2 && ((code >> 6) & 0x3F) == 2
}

/// A non-empty array of names (claim's `queues` and `tasks`); `empty_hint`
/// says what to pass instead of an empty array.
fn name_list(
    param: &str,
    names: &[Option<String>],
    empty_hint: &'static str,
) -> Result<(), InputError> {
    if names.is_empty() {
        return Err(InputError::EmptyArray {
            param: param.into(),
            hint: Some(empty_hint),
        });
    }
    for (index, value) in names.iter().enumerate() {
        let element = format!("{param}[{}]", index + 1);
        name(&element, present(&element, value.as_deref(), None)?)?;
    }
    Ok(())
}

/// Arguments of `pdoflow.claim`.
#[pg_extern(stable, parallel_safe, name = "_check_claim")]
fn check_claim(
    n: Option<i32>,
    queues: Option<Vec<Option<String>>>,
    worker: Option<&str>,
    lease: Option<Interval>,
    tasks: Option<Vec<Option<String>>>,
) -> Checked {
    let n = present("n", n, None)?;
    at_least("n", n.into(), 1)?;
    at_most(
        "n",
        n.into(),
        MAX_CLAIM.get().into(),
        Some("pdoflow.max_claim"),
    )?;
    if let Some(queues) = queues {
        name_list("queues", &queues, "Pass NULL to claim from every queue.")?;
    }
    if let Some(tasks) = tasks {
        name_list("tasks", &tasks, "Pass NULL to claim jobs of every task.")?;
    }
    if let Some(worker) = worker {
        name("worker", worker)?;
    }
    positive("lease", present("lease", lease, None)?)?;
    Ok(())
}

/// A claim reference `(id, attempt)` as passed to `finish` and `heartbeat`,
/// and `heartbeat`'s optional new lease.
#[pg_extern(stable, parallel_safe, name = "_check_job_claim")]
fn check_job_claim(
    id: Option<pgrx::Uuid>,
    attempt: Option<i32>,
    lease: Option<Interval>,
) -> Checked {
    present("id", id, None)?;
    at_least("attempt", present("attempt", attempt, None)?.into(), 1)?;
    if let Some(lease) = lease {
        positive("lease", lease)?;
    }
    Ok(())
}

/// Arguments of `pdoflow.finish_many`. `errors_count` and `results_count`
/// are the cardinalities of the optional `errors` and `results` arrays.
#[pg_extern(stable, parallel_safe, name = "_check_finish_batch")]
fn check_finish_batch(
    ids: Option<Vec<Option<pgrx::Uuid>>>,
    attempts: Option<Vec<Option<i32>>>,
    errors_count: Option<i32>,
    results_count: Option<i32>,
) -> Checked {
    let ids = present("ids", ids, None)?;
    let attempts = present("attempts", attempts, None)?;
    let same_length = |param: &str, length: usize| {
        if length == ids.len() {
            return Ok(());
        }
        Err(InputError::LengthMismatch {
            param: param.into(),
            length,
            other: "ids".into(),
            other_length: ids.len(),
        })
    };
    same_length("attempts", attempts.len())?;
    if let Some(count) = errors_count {
        same_length("errors", count as usize)?;
    }
    if let Some(count) = results_count {
        same_length("results", count as usize)?;
    }
    let mut seen = HashSet::with_capacity(ids.len());
    for (index, (id, attempt)) in ids.iter().zip(&attempts).enumerate() {
        let id = present(&format!("ids[{}]", index + 1), *id, None)?;
        let attempt = present(&format!("attempts[{}]", index + 1), *attempt, None)?;
        at_least(&format!("attempts[{}]", index + 1), attempt.into(), 1)?;
        if !seen.insert(*id) {
            return Err(InputError::Duplicate {
                param: "ids".into(),
                value: format!("job {id}"),
            }
            .into());
        }
    }
    Ok(())
}

/// A job id passed to `cancel` or `retry`.
#[pg_extern(stable, parallel_safe, name = "_check_job_id")]
fn check_job_id(id: Option<pgrx::Uuid>) -> Checked {
    present("id", id, None)?;
    Ok(())
}

/// The worker name passed to `register_worker`.
#[pg_extern(stable, parallel_safe, name = "_check_worker_name")]
fn check_worker_name(name_value: Option<&str>) -> Checked {
    name("name", present("name", name_value, None)?)?;
    Ok(())
}

/// The tasks a worker says it serves (`register_worker`): names, each
/// once; NULL (not stated) is allowed, a NULL element is not.
#[pg_extern(stable, parallel_safe, name = "_check_worker_tasks")]
fn check_worker_tasks(tasks: Option<Vec<Option<String>>>) -> Checked {
    let Some(tasks) = tasks else {
        return Ok(());
    };
    for (index, task) in tasks.iter().enumerate() {
        let param = format!("tasks[{}]", index + 1);
        let task = present(&param, task.as_deref(), None)?;
        name(&param, task)?;
        if tasks[..index]
            .iter()
            .flatten()
            .any(|earlier| earlier == task)
        {
            return Err(InputError::Duplicate {
                param: "tasks".to_owned(),
                value: task.to_owned(),
            }
            .into());
        }
    }
    Ok(())
}

/// The batch size passed to `sweep`.
#[pg_extern(stable, parallel_safe, name = "_check_sweep")]
fn check_sweep(batch_size: Option<i32>) -> Checked {
    let batch_size = present("batch_size", batch_size, None)?;
    at_least("batch_size", batch_size.into(), 1)?;
    at_most("batch_size", batch_size.into(), 1_000_000, None)?;
    Ok(())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn sqlstate_class_22_is_recognised() {
        assert!(is_data_exception(
            PgSqlErrorCode::ERRCODE_INVALID_DATETIME_FORMAT
        ));
        assert!(is_data_exception(
            PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW
        ));
        assert!(!is_data_exception(PgSqlErrorCode::ERRCODE_QUERY_CANCELED));
        assert!(!is_data_exception(PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY));
    }
}
