//! Waiting for a job's result inside the database: `pdoflow.await_result`.
//!
//! A session that waits registers the job in the waiting room
//! (`waiters.rs`), looks at the job with a fresh snapshot, and sleeps on its
//! latch. Every path that ends jobs goes through `pdoflow._move_to_history`
//! (sql/api/history.sql), which notes the ended jobs here; when that
//! transaction commits, the latches of their waiters are set. So a waiter
//! wakes within a context switch of the commit, through PgBouncer in
//! transaction mode too, where LISTEN cannot be used.
//!
//! The SQL declaration is in sql/api/results.sql.

// pgrx raises a returned `ErrorReport` with its own SQLSTATE and hint only when
// it is returned as is.
#![allow(clippy::result_large_err)]

mod await_ended;
pub mod waiters;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use pgrx::datum::{Interval, JsonB, TimestampWithTimeZone};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::api::isolation;
use crate::backend;
use crate::input::rules;

/// How often a waiter looks at its job again without being woken: a safety
/// net only (a job removed by hand from the tables wakes nobody).
pub(crate) const SAFETY_LOOK: Duration = Duration::from_secs(5);
/// How often a waiter looks when it cannot register (pdoflow not in
/// shared_preload_libraries): then it does poll.
pub(crate) const UNREGISTERED_POLL: Duration = Duration::from_millis(50);

const LOOK: &str = "SELECT j.state, j.result, j.last_error, j.finished_at, j.progress
                    FROM pdoflow.jobs AS j WHERE j.id OPERATOR(pg_catalog.=) $1";

thread_local! {
    /// The jobs this transaction ended while somebody waited; `None`
    /// outside such a transaction.
    static ENDED: RefCell<Option<Vec<[u8; 16]>>> = const { RefCell::new(None) };
    /// Whether this session registered `at_transaction_end`.
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

type Outcome = (
    Option<String>,
    Option<JsonB>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<JsonB>,
);

/// `pdoflow.await_result(id, timeout)`: the job's state, result, last error,
/// end time and progress, as soon as it has ended or when `timeout` passed.
// pgrx reads the columns from this signature: a type alias would hide them.
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn await_result(
    id: Option<pgrx::Uuid>,
    timeout: Option<Interval>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(state, Option<String>),
            name!(result, Option<JsonB>),
            name!(last_error, Option<String>),
            name!(finished_at, Option<TimestampWithTimeZone>),
            name!(progress, Option<JsonB>),
        ),
    >,
    ErrorReport,
> {
    let id = rules::present("id", id, None)?;
    let deadline = wait_deadline(
        "pdoflow.await_result",
        timeout,
        "It looks at the job again each time it is woken; a transaction that reads one \
         snapshot would never see the job end.",
    )?;
    let registration = waiters::register(id.as_bytes());
    let pause = if registration.is_some() {
        SAFETY_LOOK
    } else {
        UNREGISTERED_POLL
    };
    loop {
        // Registered before this look: a job that ends after the look's
        // snapshot sets the latch, which the sleep below then finds set.
        let outcome = look(id)?.ok_or_else(|| {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("job {id} does not exist"),
                "pdoflow",
            )
            .set_hint("It was never enqueued, or retention removed it after it ended.")
        })?;
        let ended = matches!(
            outcome.0.as_deref(),
            Some("succeeded" | "failed" | "cancelled")
        );
        let left = deadline.saturating_duration_since(Instant::now());
        if ended || left.is_zero() {
            drop(registration);
            return Ok(TableIterator::once(outcome));
        }
        backend::sleep_on_latch(left.min(pause));
    }
}

/// When a wait of `timeout` ends, after the checks every wait makes: a
/// timeout given and not negative, and READ COMMITTED (`why` says what a
/// single snapshot would break for `function`).
pub(crate) fn wait_deadline(
    function: &str,
    timeout: Option<Interval>,
    why: &'static str,
) -> Result<Instant, ErrorReport> {
    let timeout = rules::present(
        "timeout",
        timeout,
        Some("Pass interval '0' to look without waiting."),
    )?;
    let micros = timeout.as_micros();
    if micros < 0 {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timeout must not be negative, got {timeout}"),
            "pdoflow",
        ));
    }
    if !isolation::read_committed() {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("{function} cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
            "pdoflow",
        )
        .set_detail(why)
        .set_hint("Call it outside that transaction, or in a READ COMMITTED one."));
    }
    Ok(Instant::now() + Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// The job as committed now (a fresh snapshot: READ COMMITTED).
fn look(id: pgrx::Uuid) -> Result<Option<Outcome>, ErrorReport> {
    Spi::connect_mut(|client| {
        let rows = client.update(LOOK, Some(1), &[id.into()])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok(Some((
            row.get::<String>(1)?,
            row.get::<JsonB>(2)?,
            row.get::<String>(3)?,
            row.get::<TimestampWithTimeZone>(4)?,
            row.get::<JsonB>(5)?,
        )))
    })
    .map_err(|error: pgrx::spi::SpiError| {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("pdoflow.await_result: {error}"),
            "pdoflow",
        )
    })
}

/// `pdoflow._jobs_ended(ids)`: notes jobs this transaction ended, for their
/// waiters to be woken when it commits. Whether anybody waits is asked only
/// then: a session that starts waiting after this call, but looks at its
/// job before the commit, must still be woken.
#[pg_extern(volatile, parallel_unsafe, name = "_jobs_ended")]
fn jobs_ended(ids: Option<Vec<Option<pgrx::Uuid>>>) {
    let Some(ids) = ids else {
        return;
    };
    register_callback();
    ENDED.with(|ended| {
        ended
            .borrow_mut()
            .get_or_insert_with(Vec::new)
            .extend(ids.into_iter().flatten().map(|id| *id.as_bytes()));
    });
}

fn register_callback() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: registers a plain function that lives as long as the library.
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    REGISTERED.set(true);
}

/// After the commit, when the ended jobs are visible, their waiters wake.
/// A waiter registers before it looks at its job, so one whose look missed
/// this commit is registered by now (`waiters::wake` costs one atomic load
/// when nobody waits).
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _argument: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            if let Some(jobs) = ENDED.with(RefCell::take) {
                waiters::wake(&jobs);
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            ENDED.with(RefCell::take);
        }
        _ => {}
    }
}
