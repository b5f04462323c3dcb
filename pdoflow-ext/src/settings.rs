//! The `pdoflow.*` configuration parameters (GUCs).
//!
//! All are superuser-settable (`ALTER SYSTEM`, `postgresql.conf`,
//! `ALTER DATABASE ... SET`), so an application role cannot loosen them.

use std::ffi::CString;

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// Base delay before the first retry of a failed job, in milliseconds.
pub static RETRY_BACKOFF_BASE_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Longest delay between retries, in milliseconds.
pub static RETRY_BACKOFF_MAX_MS: GucSetting<i32> = GucSetting::<i32>::new(3_600_000);
/// Largest `n` a single `pdoflow.claim(n)` may ask for.
pub static MAX_CLAIM: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Largest size of a job's args or result, in bytes.
pub static MAX_PAYLOAD_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1_048_576);
/// Largest max_attempts a job may have.
pub static MAX_ATTEMPTS_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Whether enqueueing a task needs it registered with pdoflow.register_task.
pub static REQUIRE_REGISTERED_TASKS: GucSetting<bool> = GucSetting::<bool>::new(false);
/// How enqueueing announces work to LISTENing workers.
pub static NOTIFY: GucSetting<NotifyMode> = GucSetting::<NotifyMode>::new(NotifyMode::Coalesced);
/// The databases the background sweeper works in, comma-separated.
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// Pause between two rounds of the background sweeper, in milliseconds.
pub static SWEEP_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// How long finished jobs are kept, in seconds; 0 keeps them forever.
pub static RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3_600);
/// How long a worker may stay silent before it is marked gone, in seconds.
pub static WORKER_TIMEOUT_S: GucSetting<i32> = GucSetting::<i32>::new(60);
/// Longest the sweeper waits for a lock, in milliseconds.
pub static SWEEP_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Size of active_jobs with its indexes, in MB, from which the sweeper
/// compacts it (`sql/api/compaction.sql`); 0 never.
pub static COMPACTION_THRESHOLD_MB: GucSetting<i32> = GucSetting::<i32>::new(128);
/// Most live jobs a compaction copies (its lock is held for about 5 us each).
pub static COMPACTION_MAX_JOBS: GucSetting<i32> = GucSetting::<i32>::new(50_000);
/// This database's number among the shards of a sharded queue, written into
/// the last byte of every id it makes (`api/ids.rs`); -1: not a shard.
pub static SHARD: GucSetting<i32> = GucSetting::<i32>::new(-1);

/// The values of `pdoflow.notify` (see `announce`).
#[derive(PostgresGucEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyMode {
    /// After the commit, through the database's sweeper: one NOTIFY per
    /// queue for all the transactions that committed meanwhile.
    #[name = c"coalesced"]
    Coalesced,
    /// A NOTIFY in the enqueueing transaction itself.
    #[name = c"direct"]
    Direct,
    /// None: workers find jobs by polling.
    #[name = c"off"]
    Off,
}

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
        c"pdoflow.shard",
        c"This database's number among the shards of a sharded queue (-1: not a shard).",
        c"From 0 to 255. Every job and posting id made here then carries it in its last \
          byte, so that a proxy (PL/Proxy, docs/scaling.md) routes calls about a job or \
          posting to its shard; set it per database with ALTER DATABASE ... SET.",
        &SHARD,
        -1,
        255,
        GucContext::Suset,
        GucFlags::default(),
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
    GucRegistry::define_int_guc(
        c"pdoflow.max_payload_bytes",
        c"Largest size of a job's args, or of the result a finish stores.",
        c"Measured as the jsonb value's size (in JSON documents: the JSON text). \
          Larger payloads are refused with SQLSTATE 54000.",
        &MAX_PAYLOAD_BYTES,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.max_attempts_limit",
        c"Largest max_attempts a job may be given.",
        c"Bounds how often one job can be retried.",
        &MAX_ATTEMPTS_LIMIT,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pdoflow.require_registered_tasks",
        c"Refuse jobs of tasks not registered with pdoflow.register_task.",
        c"Off: any task name may be enqueued; registered tasks' args are checked \
          against their JSON Schema either way.",
        &REQUIRE_REGISTERED_TASKS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pdoflow.notify",
        c"How new work is announced to LISTENing workers: coalesced, direct or off.",
        c"coalesced: after the commit, by the database's sweeper, one NOTIFY per queue for \
          every transaction that committed meanwhile (direct where no sweeper runs); \
          direct: a NOTIFY in the enqueueing transaction, which serialises concurrent \
          commits; off: none, workers poll.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pdoflow.sweep_interval",
        c"Pause between two rounds of the pdoflow background sweeper.",
        c"Each round takes back expired claims, announces delayed jobs that fell \
          due and deletes finished jobs past pdoflow.retention.",
        &SWEEP_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.retention",
        c"How long finished jobs are kept before the sweeper deletes them.",
        c"Counted from the job's finished_at. 0 keeps finished jobs forever.",
        &RETENTION_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.worker_timeout",
        c"How long a worker may stay silent before pdoflow.workers marks it gone.",
        c"claim, heartbeat and register_worker count as signs of life. Expired \
          leases, not this setting, decide when a job is handed out again.",
        &WORKER_TIMEOUT_S,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.sweep_lock_timeout",
        c"Longest the sweeper (and pdoflow.sweep()) waits for a lock.",
        c"Ending a job waits for its blocked children's locks, which an open \
          transaction may hold indefinitely. A step or job that cannot get its \
          locks in time is left for the next round; the rest go ahead.",
        &SWEEP_LOCK_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.compaction_threshold",
        c"Size of pdoflow.active_jobs with its indexes from which the sweeper compacts it.",
        c"Compaction truncates the table and copies its live jobs back, under a brief \
          ACCESS EXCLUSIVE lock, when dead rows that vacuum cannot remove (a long \
          transaction holds the xmin horizon) fill it. 0: never.",
        &COMPACTION_THRESHOLD_MB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"pdoflow.compaction_max_jobs",
        c"Most live jobs a compaction of pdoflow.active_jobs copies.",
        c"Every session's work on the table waits while they are copied (about 5 us \
          each); with more live jobs than this the table is left to vacuum.",
        &COMPACTION_MAX_JOBS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    // PostgreSQL allows a postmaster-level setting to be defined only while
    // shared_preload_libraries loads. A session that loads pdoflow later
    // (no sweeper then) still defines it, reloadable, so that it can be set
    // with ALTER SYSTEM ahead of the restart that enables the sweeper.
    let preloading = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    GucRegistry::define_string_guc(
        c"pdoflow.database",
        c"Databases the pdoflow background sweeper works in (comma-separated).",
        c"One sweeper process per database, started at server start when pdoflow \
          is in shared_preload_libraries. Empty: no background sweeper. Other \
          databases need pdoflow.sweep() called periodically.",
        &DATABASE,
        if preloading {
            GucContext::Postmaster
        } else {
            GucContext::Sighup
        },
        GucFlags::default(),
    );
    // Reject misspelt pdoflow.* settings instead of keeping them as placeholders.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pdoflow".as_ptr()) };
}

fn seconds(value: i32) -> Interval {
    Interval::from_micros(i64::from(value) * 1_000_000)
}

/// `pdoflow.retention` as an interval; NULL when finished jobs are kept forever.
#[pg_extern(stable, parallel_safe, name = "_retention")]
fn retention() -> Option<Interval> {
    match RETENTION_S.get() {
        0 => None,
        value => Some(seconds(value)),
    }
}

/// `pdoflow.compaction_threshold` in bytes; 0 when compaction is off.
#[pg_extern(stable, parallel_safe, name = "_compaction_threshold")]
fn compaction_threshold() -> i64 {
    i64::from(COMPACTION_THRESHOLD_MB.get()) * 1024 * 1024
}

/// `pdoflow.compaction_max_jobs`.
#[pg_extern(stable, parallel_safe, name = "_compaction_max_jobs")]
fn compaction_max_jobs() -> i64 {
    i64::from(COMPACTION_MAX_JOBS.get())
}

/// `pdoflow.require_registered_tasks`.
#[pg_extern(stable, parallel_safe, name = "_require_registered_tasks")]
fn require_registered_tasks() -> bool {
    REQUIRE_REGISTERED_TASKS.get()
}

/// `pdoflow.worker_timeout` as an interval.
#[pg_extern(stable, parallel_safe, name = "_worker_timeout")]
fn worker_timeout() -> Interval {
    seconds(WORKER_TIMEOUT_S.get())
}

/// The database names listed in `pdoflow.database`: trimmed, without empty
/// entries or repeats, in the order given.
pub fn sweeper_databases() -> Vec<String> {
    let listed = DATABASE
        .get()
        .map(|value| value.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_database_list(&listed)
}

fn parse_database_list(listed: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in listed.split(',').map(str::trim) {
        if !name.is_empty() && !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod unit_tests {
    use super::parse_database_list;

    #[test]
    fn database_lists_are_trimmed_and_deduplicated() {
        assert_eq!(parse_database_list("postgres"), ["postgres"]);
        assert_eq!(parse_database_list(" app , jobs,app,, "), ["app", "jobs"]);
        assert!(parse_database_list("").is_empty());
        assert!(parse_database_list(" , ").is_empty());
    }
}
