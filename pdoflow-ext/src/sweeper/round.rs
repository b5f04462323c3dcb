//! One round of the background sweeper in one database: the steps of
//! `pdoflow.sweep()`, each batch in its own short transaction.
//!
//! The work itself is SQL (`sql/api/sweep.sql`), called by name: the sweeper
//! runs whatever the installed version of the extension defines.
//!
//! The sweeper never waits long: every step's transaction runs under
//! `lock_timeout = pdoflow.sweep_lock_timeout`, a step that fails (a lock it
//! could not get in time, say) is logged and does not keep the other steps
//! from running, and an expired claim whose job cannot be ended in time is
//! left for the next round while the others are taken back.

use std::collections::HashMap;
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
/// Batches of due cron schedules one round may enqueue.
const MAX_SCHEDULE_BATCHES: u32 = 10;
/// A failure that repeats every round is logged again after this long.
const REPEAT_WARNING_AFTER: Duration = Duration::from_secs(60);
/// After a compaction that failed (its lock not granted in time, say), the
/// next waits this long, doubling up to COMPACTION_BACKOFF_MAX: every try
/// makes the table's users wait behind its lock request.
const COMPACTION_BACKOFF: Duration = Duration::from_secs(5);
const COMPACTION_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The compaction step's name, which its failures are logged under.
const COMPACTION_STEP: &str = "compacting active_jobs";

/// What the sweeper knows about its database between rounds.
pub struct Sweeper {
    database: String,
    /// Whether the extension was installed at the last look; `None` before
    /// the first. Changes are logged once, not every round.
    installed: Option<bool>,
    /// Per step that failed in a row: the failure logged last, when, and
    /// in how many rounds it failed since it last succeeded.
    failing: HashMap<&'static str, Failing>,
    /// After failed compactions: no new try before this, and the pause
    /// after the next failure.
    compaction_backoff: Option<(Instant, Duration)>,
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
            failing: HashMap::new(),
            compaction_backoff: None,
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
        let failures = match installed {
            Err(failure) => vec![failure],
            Ok(installed) => {
                self.note_installed(installed);
                if installed {
                    self.sweep()
                } else {
                    Vec::new()
                }
            }
        };
        let failed: Vec<&'static str> = failures.iter().map(|(step, _)| *step).collect();
        for (step, failure) in failures {
            self.report_failure(step, failure);
        }
        let database = &self.database;
        // A compaction waiting after failures has not worked again yet.
        let compaction_paused = self.compaction_backoff.is_some();
        self.failing.retain(|step, failing| {
            let still = failed.contains(step) || (*step == COMPACTION_STEP && compaction_paused);
            if !still {
                log!(
                    "pdoflow sweeper: {step} in database \"{database}\" works again after {} failed rounds",
                    failing.rounds
                );
            }
            still
        });
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
    /// A step that fails does not stop the ones after it; the failures come
    /// back, tagged with their step.
    fn sweep(&mut self) -> Vec<(&'static str, Failure)> {
        let mut failures = Vec::new();
        let mut requeued = 0;
        let mut failed = 0;
        let mut skipped = 0;
        for _ in 0..MAX_LEASE_BATCHES {
            let batch = step(
                "taking back expired claims",
                c"pdoflow sweeper: taking back expired claims",
                || expire_leases(BATCH_SIZE),
            );
            let (batch_requeued, batch_failed, batch_skipped) = match batch {
                Ok(counts) => counts,
                Err(failure) => {
                    failures.push(failure);
                    break;
                }
            };
            requeued += batch_requeued;
            failed += batch_failed;
            skipped += batch_skipped;
            // A batch with claims left for later is the last: the next one
            // would pick the same claims first.
            if batch_requeued + batch_failed + batch_skipped < BATCH_SIZE || batch_skipped > 0 {
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
        if skipped > 0 {
            // The count goes in the detail: the message stays the same from
            // round to round, so that the warning is not repeated each time.
            let failure = Failure {
                code: PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                message: "expired claims could not be taken back within \
                          pdoflow.sweep_lock_timeout: ending their jobs has to wait for locks \
                          that other transactions hold"
                    .to_owned(),
                detail: Some(format!(
                    "{skipped} claims were left for the next round. A producer that enqueues \
                     jobs depending on those jobs' children holds such locks until it commits; \
                     see idle_in_transaction_session_timeout."
                )),
            };
            failures.push(("ending jobs with expired claims", failure));
        }

        let mut scheduled = 0;
        for _ in 0..MAX_SCHEDULE_BATCHES {
            match step(
                "enqueueing due cron schedules",
                c"pdoflow sweeper: enqueueing due cron schedules",
                || {
                    update_one_since(
                        "pdoflow._run_due_schedules(integer)",
                        &format!("SELECT pdoflow._run_due_schedules({BATCH_SIZE})"),
                    )
                },
            ) {
                Ok(batch) => {
                    scheduled += batch;
                    if batch < BATCH_SIZE {
                        break;
                    }
                }
                Err(failure) => {
                    failures.push(failure);
                    break;
                }
            }
            pg_sys::check_for_interrupts!();
        }
        if scheduled > 0 {
            debug1!("pdoflow sweeper: enqueued {scheduled} jobs of cron schedules");
        }

        match step(
            "announcing due jobs",
            c"pdoflow sweeper: announcing due jobs",
            || update_one("SELECT pdoflow._notify_due_jobs()"),
        ) {
            Ok(notified) if notified > 0 => {
                debug1!("pdoflow sweeper: announced due jobs in {notified} queues");
            }
            Ok(_) => {}
            Err(failure) => failures.push(failure),
        }

        match step(
            "releasing removed queue controls",
            c"pdoflow sweeper: releasing removed queue controls",
            || update_one("SELECT pdoflow._release_queue_controls()"),
        ) {
            Ok(released) if released > 0 => {
                debug1!("pdoflow sweeper: released the controls of {released} queues");
            }
            Ok(_) => {}
            Err(failure) => failures.push(failure),
        }

        let mut deleted = 0;
        for _ in 0..MAX_DELETE_BATCHES {
            match step(
                "deleting old finished jobs",
                c"pdoflow sweeper: deleting old finished jobs",
                || update_one(&format!("SELECT pdoflow._delete_finished({BATCH_SIZE})")),
            ) {
                Ok(batch) => {
                    deleted += batch;
                    if batch < BATCH_SIZE {
                        break;
                    }
                }
                Err(failure) => {
                    failures.push(failure);
                    break;
                }
            }
            pg_sys::check_for_interrupts!();
        }
        if deleted > 0 {
            debug1!("pdoflow sweeper: deleted {deleted} finished jobs past pdoflow.retention");
        }
        for _ in 0..MAX_DELETE_BATCHES {
            match step(
                "forgetting released unique keys",
                c"pdoflow sweeper: forgetting released unique keys",
                || {
                    update_one_since(
                        "pdoflow._forget_released_unique_keys(integer)",
                        &format!("SELECT pdoflow._forget_released_unique_keys({BATCH_SIZE})"),
                    )
                },
            ) {
                Ok(batch) if batch == BATCH_SIZE => {}
                Ok(_) => break,
                Err(failure) => {
                    failures.push(failure);
                    break;
                }
            }
            pg_sys::check_for_interrupts!();
        }

        match step(
            "marking silent workers gone",
            c"pdoflow sweeper: marking silent workers gone",
            || update_one("SELECT pdoflow._sweep_workers()"),
        ) {
            Ok(gone) if gone > 0 => log!(
                "pdoflow sweeper: marked {gone} workers gone in database \"{}\" \
                 (silent for pdoflow.worker_timeout)",
                self.database
            ),
            Ok(_) => {}
            Err(failure) => failures.push(failure),
        }

        if let Some(failure) = self.compact() {
            failures.push(failure);
        }
        failures
    }

    /// The compaction step, unless failed ones made it wait. Only a
    /// compaction done ends the backoff: one skipped (no need, or a lock
    /// holder) leaves it as it is, so that failures between skips keep
    /// doubling the pause.
    fn compact(&mut self) -> Option<(&'static str, Failure)> {
        if let Some((until, _)) = self.compaction_backoff {
            if Instant::now() < until {
                return None;
            }
        }
        match step(
            COMPACTION_STEP,
            c"pdoflow sweeper: compacting active_jobs",
            compact_active_jobs,
        ) {
            Ok(Some(compaction)) => {
                log!(
                    "pdoflow sweeper: compacted pdoflow.active_jobs in database \"{}\" from {} MB \
                     to {} MB (with its indexes), keeping its {} jobs: dead rows that vacuum could \
                     not remove filled it",
                    self.database,
                    compaction.bytes_before / (1024 * 1024),
                    compaction.bytes_after / (1024 * 1024),
                    compaction.jobs
                );
                self.compaction_backoff = None;
            }
            Ok(None) => {}
            Err(failure) => {
                let pause = self
                    .compaction_backoff
                    .map_or(COMPACTION_BACKOFF, |(_, pause)| {
                        (pause * 2).min(COMPACTION_BACKOFF_MAX)
                    });
                self.compaction_backoff = Some((Instant::now() + pause, pause));
                return Some(failure);
            }
        }
        None
    }

    /// Logs a failed step as a WARNING: the first time, when the message
    /// changes, and every REPEAT_WARNING_AFTER while it persists. Not at all
    /// when the step failed because the extension was just dropped: a DROP
    /// EXTENSION racing a round is expected, not an error.
    fn report_failure(&mut self, step: &'static str, failure: Failure) {
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
        let previous = self.failing.get(step);
        let rounds = previous.map_or(0, |failing| failing.rounds) + 1;
        let repeated = previous.is_some_and(|failing| {
            failing.message == message && now - failing.logged_at < REPEAT_WARNING_AFTER
        });
        if repeated {
            if let Some(failing) = self.failing.get_mut(step) {
                failing.rounds = rounds;
            }
            return;
        }
        self.failing.insert(
            step,
            Failing {
                message: message.clone(),
                logged_at: now,
                rounds,
            },
        );
        let hint = if step == COMPACTION_STEP {
            format!(
                "The sweeper tries again after {} s, doubling the pause up to {} s while \
                 compactions fail, and repeats this warning once a minute while the failure lasts.",
                COMPACTION_BACKOFF.as_secs(),
                COMPACTION_BACKOFF_MAX.as_secs()
            )
        } else {
            "The sweeper tries again every pdoflow.sweep_interval, and repeats this \
             warning once a minute while the failure lasts."
                .to_owned()
        };
        let mut report = ErrorReport::new(failure.code, message, "pdoflow sweeper").set_hint(hint);
        if let Some(detail) = failure.detail {
            report = report.set_detail(detail);
        }
        report.report(PgLogLevel::WARNING);
    }
}

/// Runs one step of the sweep in its own transaction, under the database's
/// current `ALTER DATABASE ... SET pdoflow.*` values and with
/// `lock_timeout = pdoflow.sweep_lock_timeout`. Then sends what committed
/// enqueues left to announce meanwhile: a long round (many batches of
/// expired leases or old jobs) must not hold announcements back.
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
/// this database with `ALTER DATABASE ... SET`, then the lock timeout. PostgreSQL applies those once,
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
                              'pdoflow.retry_backoff_base', 'pdoflow.retry_backoff_max',
                              'pdoflow.sweep_lock_timeout', 'pdoflow.compaction_threshold',
                              'pdoflow.compaction_max_jobs')
               AND (db.value IS NOT NULL OR s.source = 'database')",
            None,
            &[],
        )?;
        client.update(
            "SELECT pg_catalog.set_config('lock_timeout',
                        pg_catalog.current_setting('pdoflow.sweep_lock_timeout'), true)",
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

/// What a compaction of active_jobs did.
struct Compaction {
    jobs: i64,
    bytes_before: i64,
    bytes_after: i64,
}

/// `pdoflow.compact_active_jobs()`, which decides itself whether the table
/// needs it; `None` when it did not compact, or when the installed version
/// of the extension (before its ALTER EXTENSION UPDATE) has no compaction.
fn compact_active_jobs() -> SpiResult<Option<Compaction>> {
    Spi::connect_mut(|client| {
        let installed = client
            .select(
                "SELECT pg_catalog.to_regprocedure('pdoflow.compact_active_jobs(boolean, interval)') IS NOT NULL",
                Some(1),
                &[],
            )?
            .first()
            .get_one::<bool>()?;
        if installed != Some(true) {
            return Ok(None);
        }
        let outcome = client.update(
            "SELECT jobs, bytes_before, bytes_after FROM pdoflow.compact_active_jobs() WHERE compacted",
            Some(1),
            &[],
        )?;
        if outcome.is_empty() {
            return Ok(None);
        }
        let row = outcome.first();
        Ok(Some(Compaction {
            jobs: row.get::<i64>(1)?.unwrap_or(0),
            bytes_before: row.get::<i64>(2)?.unwrap_or(0),
            bytes_after: row.get::<i64>(3)?.unwrap_or(0),
        }))
    })
}

/// Runs a statement that changes data and returns one bigint.
fn update_one(query: &str) -> SpiResult<i64> {
    Spi::connect_mut(|client| {
        let table = client.update(query, Some(1), &[])?;
        Ok(table.first().get_one::<i64>()?.unwrap_or(0))
    })
}

/// `update_one` for a step that came with a later version of the
/// extension: 0 until `ALTER EXTENSION pdoflow UPDATE` brings `function`.
fn update_one_since(function: &str, query: &str) -> SpiResult<i64> {
    let installed = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
        &[function.into()],
    )?;
    if installed != Some(true) {
        return Ok(0);
    }
    update_one(query)
}

/// One batch of `pdoflow._expire_leases`: (queued again, failed, left for
/// later). Until `ALTER EXTENSION pdoflow UPDATE` runs, a database has the
/// previous version's function, which returns only the first two.
fn expire_leases(batch_size: i64) -> SpiResult<(i64, i64, i64)> {
    Spi::connect_mut(|client| {
        let table = client.update(
            &format!("SELECT * FROM pdoflow._expire_leases({batch_size})"),
            Some(1),
            &[],
        )?;
        let columns = table.columns()?;
        let row = table.first();
        let count = |column: usize| -> SpiResult<i64> {
            if column > columns {
                return Ok(0);
            }
            Ok(row.get::<i64>(column)?.unwrap_or(0))
        };
        Ok((count(1)?, count(2)?, count(3)?))
    })
}
