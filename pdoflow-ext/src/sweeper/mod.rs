//! The background sweeper: one worker process per database named in
//! `pdoflow.database`, started by the postmaster when pdoflow is in
//! `shared_preload_libraries`. Every `pdoflow.sweep_interval` it runs a round
//! of `pdoflow.sweep()`'s work (see `round.rs`), in short transactions.
//!
//! Life cycle, as PostgreSQL expects of a background worker:
//! * SIGTERM (shutdown, `pg_terminate_backend`) ends it at the next interrupt
//!   check, even mid-statement; it exits too when the postmaster dies.
//! * SIGHUP (`pg_reload_conf()`) re-reads the configuration before the next round.
//! * If it dies (crash, SIGKILL, FATAL) the postmaster starts it again after
//!   `RESTART_DELAY`.
//! * In a database without the extension it idles, checking every round.

pub(crate) mod announcements;
mod round;
mod transaction;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder};
use pgrx::prelude::*;

use crate::{announce, settings};
use round::Sweeper;

/// What `pg_stat_activity.backend_type` shows for the sweeper processes.
const BACKEND_TYPE: &str = "pdoflow sweeper";
/// How long the postmaster waits before starting a sweeper that died.
const RESTART_DELAY: Duration = Duration::from_secs(5);

/// Set in the postmaster when it registered the sweepers; backends inherit it.
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Registers one sweeper per database in `pdoflow.database`. Only possible
/// while the postmaster loads shared_preload_libraries.
pub fn register_workers() {
    // pg_upgrade runs the server to restore databases, which must not have
    // a sweeper connected (it drops and re-creates them).
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    REGISTERED.store(true, Ordering::Relaxed);
    for database in settings::sweeper_databases() {
        if database.len() >= pg_sys::NAMEDATALEN as usize {
            warning!(
                "pdoflow.database: \"{database}\" is longer than a database name can be; \
                 no sweeper started for it"
            );
            continue;
        }
        BackgroundWorkerBuilder::new(&format!("{BACKEND_TYPE} {database}"))
            .set_type(BACKEND_TYPE)
            .set_library("pdoflow")
            .set_function("pdoflow_sweeper_main")
            .enable_spi_access()
            .set_restart_time(Some(RESTART_DELAY))
            .set_extra(&database)
            .load();
    }
}

/// PostgreSQL's signal handlers, called directly by the kernel: pgrx's
/// `pg_sys` wrappers of these are Rust functions and cannot be installed.
mod postgres {
    use std::ffi::c_int;

    use pgrx::pg_sys;

    extern "C-unwind" {
        pub fn die(signal: c_int);
        pub fn SignalHandlerForConfigReload(signal: c_int);
    }

    /// Installs `handler` for `signal` (PostgreSQL 18 renamed the backend's
    /// `pqsignal` to `pqsignal_be`).
    pub unsafe fn handle(signal: c_int, handler: unsafe extern "C-unwind" fn(c_int)) {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(signal, Some(handler));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(signal, Some(handler));
    }
}

/// Entry point of a sweeper process; the postmaster calls it by name.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pdoflow_sweeper_main(_arg: pg_sys::Datum) {
    unsafe {
        // PostgreSQL's own handlers: SIGTERM raises an interrupt that the
        // next CHECK_FOR_INTERRUPTS turns into a clean exit, even inside a
        // statement or a lock wait; SIGHUP asks for a configuration reload.
        postgres::handle(
            pg_sys::SIGHUP as i32,
            postgres::SignalHandlerForConfigReload,
        );
        postgres::handle(pg_sys::SIGTERM as i32, postgres::die);
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let database = BackgroundWorker::get_extra().to_owned();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    configure_session();
    if !announce::board::register_notifier() {
        log!("pdoflow sweeper of \"{database}\": no room on the announcement board; enqueues in this database notify directly");
    }

    let mut sweeper = Sweeper::new(database);
    loop {
        pg_sys::check_for_interrupts!();
        reload_configuration_if_asked();
        sweeper.run_round();
        wait_for_next_round();
    }
}

/// Session settings that no `ALTER DATABASE ... SET` may change: the
/// sweeper runs as a superuser and its SQL expects them.
fn configure_session() {
    set_option(c"application_name", c"pdoflow sweeper");
    // Losing a sweep's commit in a crash loses nothing: the next sweep finds
    // the same expired claims and old jobs again. Not waiting for the WAL
    // flush keeps the sweeper off the disk's few fsyncs per second.
    set_option(c"synchronous_commit", c"off");
    // Only trusted schemas: an object planted in public must not run as the
    // superuser every second.
    set_option(c"search_path", c"pg_catalog, pg_temp");
    // FOR UPDATE SKIP LOCKED, as the sweep uses it, needs read committed.
    set_option(c"default_transaction_isolation", c"read committed");
    set_option(c"default_transaction_read_only", c"off");
}

fn set_option(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    unsafe {
        pg_sys::SetConfigOption(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

fn reload_configuration_if_asked() {
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// Sleeps for `pdoflow.sweep_interval`. A SIGHUP ends the sleep at once (the
/// interval may have changed), SIGTERM ends the process, and so does the
/// postmaster's death; a committed enqueue's wake-up is answered with its
/// announcements; other wake-ups go back to sleep.
fn wait_for_next_round() {
    // Statistics of a background worker reach the cumulative statistics (and
    // so autovacuum) only when reported: the main loop of an ordinary backend
    // does this, a background worker must do it itself.
    unsafe { pg_sys::pgstat_report_stat(true) };
    let deadline = Instant::now()
        + Duration::from_millis(u64::from(settings::SWEEP_INTERVAL_MS.get().unsigned_abs()));
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return;
        }
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                remaining.as_millis().max(1) as _,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pg_sys::check_for_interrupts!();
        // Committed enqueues set the latch to have their queues announced.
        announcements::send_waiting();
        if unsafe { pg_sys::ConfigReloadPending } != 0 {
            return;
        }
    }
}

/// Why no background sweeper works in `database`, or NULL when one does.
/// `CREATE EXTENSION` shows the reason as a NOTICE.
#[pg_extern(stable, name = "_background_sweeper_missing")]
fn background_sweeper_missing(database: &str) -> Option<String> {
    if !REGISTERED.load(Ordering::Relaxed) {
        return Some("pdoflow is not in shared_preload_libraries".to_owned());
    }
    if !settings::sweeper_databases()
        .iter()
        .any(|name| name == database)
    {
        return Some(format!(
            "database \"{database}\" is not listed in pdoflow.database"
        ));
    }
    None
}
