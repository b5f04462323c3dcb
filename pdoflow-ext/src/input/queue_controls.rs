//! The input of the flow-control functions (sql/api/queue_controls.sql) and
//! of `claim`'s wait, checked before anything is written.

// pgrx raises a returned `ErrorReport` with its own SQLSTATE and hint only when
// it is returned as is.
#![allow(clippy::result_large_err)]

use pgrx::datum::Interval;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::input::errors::InputError;
use crate::input::rules::{at_least, at_most, keys_per_job, name, present};

type Checked = Result<(), ErrorReport>;

/// The most running jobs a limit may allow (the most any server could run).
pub const MAX_RUNNING_LIMIT: i64 = 1_000_000;
/// The most claims a rate may allow per period.
pub const RATE_LIMIT: i64 = 1_000_000_000;
const MICROS_PER_MILLI: i128 = 1_000;
const MICROS_PER_HOUR: i128 = 3_600 * 1_000_000;
const MICROS_PER_YEAR: i128 = 366 * 24 * MICROS_PER_HOUR;

fn queue(value: Option<&str>) -> Result<(), InputError> {
    name("queue", present("queue", value, None)?)
}

/// `pdoflow._check_queue_name(queue)`: pause_queue's and resume_queue's.
#[pg_extern(stable, parallel_safe, name = "_check_queue_name")]
fn check_queue_name(queue_name: Option<&str>) -> Checked {
    queue(queue_name)?;
    Ok(())
}

fn limit(param: &str, value: Option<i32>, hint: &'static str) -> Result<(), InputError> {
    if let Some(value) = value {
        if value < 1 {
            return Err(InputError::NotInRange {
                param: param.to_owned(),
                value: value.to_string(),
                range: "at least 1 (NULL removes the limit)",
                hint: Some(hint),
            });
        }
        at_most(param, value.into(), MAX_RUNNING_LIMIT, None)?;
    }
    Ok(())
}

/// `pdoflow._check_queue_limits(queue, max_running, rate, per)`.
#[pg_extern(stable, parallel_safe, name = "_check_queue_limits")]
fn check_queue_limits(
    queue_name: Option<&str>,
    max_running: Option<i32>,
    rate: Option<i32>,
    per: Option<Interval>,
) -> Checked {
    queue(queue_name)?;
    limit(
        "max_running",
        max_running,
        "To stop claims of the queue altogether, use pdoflow.pause_queue.",
    )?;
    if (max_running.is_some() || rate.is_some()) && !crate::flow_control::counts::ready() {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "queue limits need pdoflow in shared_preload_libraries",
            "pdoflow",
        )
        .set_hint(
            "Add pdoflow to shared_preload_libraries in postgresql.conf and restart the server; \
             pause_queue and set_key_limit work without it.",
        ));
    }
    if let Some(rate) = rate {
        at_least("rate", rate.into(), 1)?;
        at_most("rate", rate.into(), RATE_LIMIT, None)?;
        let per = present("per", per, Some("Omit per for a rate per second."))?;
        let micros = per.as_micros();
        if !(MICROS_PER_MILLI..=MICROS_PER_YEAR).contains(&micros) {
            return Err(InputError::NotInRange {
                param: "per".into(),
                value: per.to_string(),
                range: "between 1 millisecond and 1 year",
                hint: None,
            }
            .into());
        }
    }
    Ok(())
}

/// `pdoflow._check_key_limit(queue, max_running)`.
#[pg_extern(stable, parallel_safe, name = "_check_key_limit")]
fn check_key_limit(queue_name: Option<&str>, max_running: Option<i32>) -> Checked {
    queue(queue_name)?;
    limit(
        "max_running",
        max_running,
        "To hold back every job of a key, cancel them or pause the queue.",
    )?;
    Ok(())
}

/// `pdoflow._check_claim_wait(wait)`: 0, or from 1 ms to 1 hour.
#[pg_extern(stable, parallel_safe, name = "_check_claim_wait")]
fn check_claim_wait(wait: Option<Interval>) -> Checked {
    let wait = present(
        "wait",
        wait,
        Some("Pass '0' for a claim that does not wait."),
    )?;
    let micros = wait.as_micros();
    if micros != 0 && !(MICROS_PER_MILLI..=MICROS_PER_HOUR).contains(&micros) {
        return Err(InputError::NotInRange {
            param: "wait".into(),
            value: wait.to_string(),
            range: "0 or between 1 millisecond and 1 hour",
            hint: Some("A waiting claim keeps its statement's snapshot: wait in chunks of seconds, and claim again."),
        }
        .into());
    }
    Ok(())
}

/// `pdoflow._check_concurrency_keys(keys, jobs)`: the concurrency keys of
/// `enqueue_many(task, args jsonb[], ...)`, one per job or none.
#[pg_extern(stable, parallel_safe, name = "_check_concurrency_keys")]
fn check_concurrency_keys(keys: Option<Vec<Option<String>>>, jobs: Option<i32>) -> Checked {
    let Some(keys) = keys else {
        return Ok(());
    };
    let jobs = usize::try_from(jobs.unwrap_or(0)).unwrap_or(0);
    keys_per_job("concurrency_keys", &keys, jobs)?;
    Ok(())
}
