//! One round of the background sweeper in one database: the steps of
//! `pdoflow.sweep()`, each batch in its own short transaction.
//!
//! The work itself is SQL (`sql/api/sweep.sql`), called by name: the sweeper
//! runs whatever the installed version of the extension defines.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::announcements;
use super::transaction::{self, Failure};

/// Rows one batch may change: small enough that a batch commits in
/// milliseconds and holds its row locks no longer.
const BATCH_SIZE: i64 = 1_000;
/// Batches of expired claims one round may take back before it moves on.
const MAX_LEASE_BATCHES: u32 = 100;
/// Batches of old finished jobs one round may delete. A large backlog (just
/// after retention was lowered, say) is worked off over many rounds, while
/// leases and due jobs keep being served every round.
const MAX_DELETE_BATCHES: u32 = 10;
/// A failure that repeats every round is logged again after this long.
const REPEAT_WARNING_AFTER: Duration = Duration::from_secs(60);

/// What the sweeper knows about its database between rounds.
pub struct Sweeper {
    database: String,
    /// Whether the extension was installed at the last look; `None` before
    /// the first. Changes are logged once, not every round.
    installed: Option<bool>,
    /// The failure logged last, when, and how many rounds have failed since
    /// the last round that succeeded.
    failing: Option<Failing>,
}

struct Failing {
    message: String,
    logged_at: Instant,
    rounds: u64,
}

impl Sweeper {
    pub fn new(database: String) -> Self {
        Self {
            database,
            installed: None,
            failing: None,
        }
    }

    /// Runs one round. Errors are logged; the next round tries again.
    pub fn run_round(&mut self) {
        // No settings needed to look: an idle database costs one query a round.
        let installed = in_transaction(
            "looking for the extension",
            c"pdoflow sweeper: looking for the extension",
            extension_installed,
        );
        let outcome = installed.and_then(|installed| {
            self.note_installed(installed);
            if installed {
                self.sweep()
            } else {
                Ok(())
            }
        });
        match outcome {
            Err((step, failure)) => self.report_failure(step, failure),
            Ok(()) => {
                if let Some(failing) = self.failing.take() {
                    log!(
                        "pdoflow sweeper: sweeping database \"{}\" again after {} failed rounds",
                        self.database,
                        failing.rounds
                    );
                }
            }
        }
    }

    fn note_installed(&mut self, installed: bool) {
        if self.installed == Some(installed) {
            return;
        }
        let database = &self.database;
        match (self.installed, installed) {
            (_, true) => log!("pdoflow sweeper: sweeping database \"{database}\""),
            (None, false) => log!(
                "pdoflow sweeper: extension \"pdoflow\" is not installed in database \
                 \"{database}\"; waiting for CREATE EXTENSION pdoflow"
            ),
            (Some(_), false) => log!(
                "pdoflow sweeper: extension \"pdoflow\" was dropped from database \
                 \"{database}\"; waiting for CREATE EXTENSION pdoflow"
            ),
        }
        self.installed = Some(installed);
    }

    /// The steps of one round, in the order `pdoflow.sweep()` runs them.
    fn sweep(&self) -> Result<(), (&'static str, Failure)> {
        let mut requeued = 0;
        let mut failed = 0;
        for _ in 0..MAX_LEASE_BATCHES {
            let (batch_requeued, batch_failed) = step(
                "taking back expired claims",
                c"pdoflow sweeper: taking back expired claims",
                || {
                    update_two(&format!(
                        "SELECT requeued, failed FROM pdoflow._expire_leases({BATCH_SIZE})"
                    ))
                },
            )?;
            requeued += batch_requeued;
            failed += batch_failed;
            if batch_requeued + batch_failed < BATCH_SIZE {
                break;
            }
            pg_sys::check_for_interrupts!();
        }
        if requeued + failed > 0 {
            log!(
                "pdoflow sweeper: took back {} expired claims in database \"{}\": \
                 {requeued} queued again, {failed} failed for want of attempts",
                requeued + failed,
                self.database
            );
        }

        let notified = step(
            "announcing due jobs",
            c"pdoflow sweeper: announcing due jobs",
            || update_one("SELECT pdoflow._notify_due_jobs()"),
        )?;
        if notified > 0 {
            debug1!("pdoflow sweeper: announced due jobs in {notified} queues");
        }

        let mut deleted = 0;
        for _ in 0..MAX_DELETE_BATCHES {
            let batch = step(
                "deleting old finished jobs",
                c"pdoflow sweeper: deleting old finished jobs",
                || update_one(&format!("SELECT pdoflow._delete_finished({BATCH_SIZE})")),
            )?;
            deleted += batch;
            if batch < BATCH_SIZE {
                break;
            }
            pg_sys::check_for_interrupts!();
        }
        if deleted > 0 {
            debug1!("pdoflow sweeper: deleted {deleted} finished jobs past pdoflow.retention");
        }

        let gone = step(
            "marking silent workers gone",
            c"pdoflow sweeper: marking silent workers gone",
            || update_one("SELECT pdoflow._sweep_workers()"),
        )?;
        if gone > 0 {
            log!(
                "pdoflow sweeper: marked {gone} workers gone in database \"{}\" \
                 (silent for pdoflow.worker_timeout)",
                self.database
            );
        }
        Ok(())
    }

    /// Logs a failed step as a WARNING: the first time, when the message
    /// changes, and every REPEAT_WARNING_AFTER while it persists. Not at all
    /// when the step failed because the extension was just dropped: a DROP
    /// EXTENSION racing a round is expected, not an error.
    fn report_failure(&mut self, step: &str, failure: Failure) {
        if let Ok(Ok(false)) = transaction::run(
            c"pdoflow sweeper: looking for the extension",
            extension_installed,
        ) {
            debug1!(
                "pdoflow sweeper: {step} stopped by DROP EXTENSION: {}",
                failure.message
            );
            self.note_installed(false);
            return;
        }
        let message = format!(
            "pdoflow sweeper: {step} in database \"{}\" failed: {}",
            self.database, failure.message
        );
        let now = Instant::now();
        let rounds = self.failing.as_ref().map_or(0, |failing| failing.rounds) + 1;
        let repeated = self.failing.as_ref().is_some_and(|failing| {
            failing.message == message && now - failing.logged_at < REPEAT_WARNING_AFTER
        });
        if repeated {
            if let Some(failing) = &mut self.failing {
                failing.rounds = rounds;
            }
            return;
        }
        self.failing = Some(Failing {
            message: message.clone(),
            logged_at: now,
            rounds,
        });
        let mut report = ErrorReport::new(failure.code, message, "pdoflow sweeper").set_hint(
            "The sweeper tries again every pdoflow.sweep_interval, and repeats this \
             warning once a minute while the failure lasts.",
        );
        if let Some(detail) = failure.detail {
            report = report.set_detail(detail);
        }
        report.report(PgLogLevel::WARNING);
    }
}

/// Runs one step of the sweep in its own transaction, under the database's
/// current `ALTER DATABASE ... SET pdoflow.*` values. Then sends what
/// committed enqueues left to announce meanwhile: a long round (many
/// batches of expired leases or old jobs) must not hold announcements back.
fn step<T>(
    name: &'static str,
    activity: &'static CStr,
    body: impl FnOnce() -> SpiResult<T>,
) -> Result<T, (&'static str, Failure)> {
    let outcome = in_transaction(name, activity, || {
        apply_database_settings()?;
        body()
    });
    announcements::send_waiting();
    outcome
}

/// Runs `body` in its own transaction; a failure comes back tagged with
/// `name`.
pub(super) fn in_transaction<T>(
    name: &'static str,
    activity: &'static CStr,
    body: impl FnOnce() -> SpiResult<T>,
) -> Result<T, (&'static str, Failure)> {
    match transaction::run(activity, body) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err((name, error.into())),
        Err(failure) => Err((name, failure)),
    }
}

/// Applies, for the current transaction only, the pdoflow settings given to
/// this database with `ALTER DATABASE ... SET`. PostgreSQL applies those once,
/// when a process connects; read afresh here, a change reaches the sweeper
/// at its next step. A value that was set when the sweeper connected and has
/// since been RESET falls back to the configuration files' value (or the
/// built-in default). Server-level values themselves are re-read on SIGHUP.
fn apply_database_settings() -> SpiResult<()> {
    Spi::connect_mut(|client| {
        client.update(
            "WITH database_values AS (
                 SELECT split_part(c.entry, '=', 1) AS name,
                        substr(c.entry, strpos(c.entry, '=') + 1) AS value
                 FROM pg_catalog.pg_db_role_setting AS d
                 CROSS JOIN LATERAL unnest(d.setconfig) AS c(entry)
                 WHERE d.setrole = 0
                   AND d.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                        WHERE datname = pg_catalog.current_database())
             )
             SELECT pg_catalog.set_config(s.name, coalesce(
                        db.value,
                        (SELECT f.setting FROM pg_catalog.pg_file_settings AS f
                         WHERE f.name = s.name AND f.applied ORDER BY f.seqno DESC LIMIT 1),
                        s.boot_val), true)
             FROM pg_catalog.pg_settings AS s
             LEFT JOIN database_values AS db ON db.name = s.name
             WHERE s.name IN ('pdoflow.retention', 'pdoflow.worker_timeout',
                              'pdoflow.retry_backoff_base', 'pdoflow.retry_backoff_max')
               AND (db.value IS NOT NULL OR s.source = 'database')",
            None,
            &[],
        )?;
        Ok(())
    })
}

fn extension_installed() -> SpiResult<bool> {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pdoflow')",
    )
    .map(|found| found.unwrap_or(false))
}

/// Runs a statement that changes data and returns one bigint.
fn update_one(query: &str) -> SpiResult<i64> {
    Spi::connect_mut(|client| {
        let table = client.update(query, Some(1), &[])?;
        Ok(table.first().get_one::<i64>()?.unwrap_or(0))
    })
}

/// Runs a statement that changes data and returns two bigints.
fn update_two(query: &str) -> SpiResult<(i64, i64)> {
    Spi::connect_mut(|client| {
        let table = client.update(query, Some(1), &[])?;
        let (first, second) = table.first().get_two::<i64, i64>()?;
        Ok((first.unwrap_or(0), second.unwrap_or(0)))
    })
}
