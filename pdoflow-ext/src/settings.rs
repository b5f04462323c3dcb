//! The `pdoflow.*` configuration parameters (GUCs).
//!
//! All are superuser-settable (`ALTER SYSTEM`, `postgresql.conf`,
//! `ALTER DATABASE ... SET`), so an application role cannot loosen them.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Base delay before the first retry of a failed job, in milliseconds.
pub static RETRY_BACKOFF_BASE_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Longest delay between retries, in milliseconds.
pub static RETRY_BACKOFF_MAX_MS: GucSetting<i32> = GucSetting::<i32>::new(3_600_000);
/// Largest `n` a single `pdoflow.claim(n)` may ask for.
pub static MAX_CLAIM: GucSetting<i32> = GucSetting::<i32>::new(1_000);

pub fn register() {
    GucRegistry::define_int_guc(
        c"pdoflow.retry_backoff_base",
        c"Delay before the first retry of a failed job.",
        c"Retry n waits about retry_backoff_base * 2^(n-1), capped at \
          pdoflow.retry_backoff_max, minus up to 25% random jitter.",
        &RETRY_BACKOFF_BASE_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.retry_backoff_max",
        c"Longest delay between two attempts of a failed job.",
        c"Caps the exponential backoff of pdoflow.retry_backoff_base.",
        &RETRY_BACKOFF_MAX_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.max_claim",
        c"Largest number of jobs one pdoflow.claim() call may take.",
        c"Bounds the rows locked and returned by a single claim.",
        &MAX_CLAIM,
        1,
        100_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Reject misspelt pdoflow.* settings instead of keeping them as placeholders.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pdoflow".as_ptr()) };
}
