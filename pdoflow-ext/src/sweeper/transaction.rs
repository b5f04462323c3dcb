//! Runs one piece of the sweeper's work in its own transaction.
//!
//! A background worker has no top-level error handler to roll back for it: an
//! ERROR that escaped would end the process. Here an error aborts only the
//! transaction it happened in and comes back as a value, so one failed round
//! is logged and the next round starts clean.

use std::ffi::CStr;
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::PgSqlErrorCode;

/// Why a piece of work failed: an error PostgreSQL raised, or an SPI misuse.
pub struct Failure {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
}

impl From<CaughtError> for Failure {
    fn from(error: CaughtError) -> Self {
        let report = match &error {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        Self {
            code: report.sql_error_code(),
            message: report.message().to_owned(),
            detail: report.detail().map(str::to_owned),
        }
    }
}

impl From<pgrx::spi::Error> for Failure {
    fn from(error: pgrx::spi::Error) -> Self {
        Self {
            code: PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            message: error.to_string(),
            detail: None,
        }
    }
}

/// Runs `body` in a new transaction with a snapshot, committing when it
/// returns and rolling back when it raises. `activity` is what
/// `pg_stat_activity.query` shows meanwhile.
pub fn run<R>(activity: &CStr, body: impl FnOnce() -> R) -> Result<R, Failure> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, activity.as_ptr());
    }
    let body = AssertUnwindSafe(body);
    let outcome = PgTryBuilder::new(move || {
        let value = body();
        // Committing can fail too (a full NOTIFY queue, for one): keep it
        // inside the try so that such an error also rolls back.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
            // Counts this transaction's changes for autovacuum (at most once
            // a second; the wait between rounds forces the rest out).
            pg_sys::pgstat_report_stat(false);
        }
        Ok(value)
    })
    .catch_others(|error| Err(Failure::from(error)))
    .execute();
    if outcome.is_err() {
        // Releases locks, snapshots, SPI connections and memory of the failed
        // transaction; the error state itself was flushed by PgTryBuilder.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()) };
    outcome
}
