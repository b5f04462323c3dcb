//! Compaction of `active_jobs` (`sql/api/compaction.sql`): the table is
//! truncated and its live jobs copied back, so it must keep every job as it
//! was, lose and repeat nothing while workers race it, never make the queue
//! wait behind a long lock holder, follow its rule, and be done by the
//! background sweeper on its own while a long transaction holds the xmin
//! horizon. (pgrx-tests/isolation/specs/compaction.spec shows the
//! interleavings one by one.)

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pdoflow_tests::{active_rows, count, describe, eventually, ServerLog, TestDatabase};
use tokio_postgres::Client;
use uuid::Uuid;

const RACE: Duration = Duration::from_secs(3);
/// A forced compaction that waits for the locks of a slow machine.
const FORCED: &str = "pdoflow.compact_active_jobs(force => true, lock_wait => '10 seconds')";

/// What `pdoflow.compact_active_jobs` answered.
struct Outcome {
    compacted: bool,
    jobs: Option<i64>,
    bytes_before: i64,
    bytes_after: i64,
    reason: Option<String>,
}

async fn compact(client: &Client, call: &str) -> Outcome {
    let row = client
        .query_one(
            &format!("SELECT compacted, jobs, bytes_before, bytes_after, reason FROM {call}"),
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("{call}: {}", describe(&error)));
    Outcome {
        compacted: row.get(0),
        jobs: row.get(1),
        bytes_before: row.get(2),
        bytes_after: row.get(3),
        reason: row.get(4),
    }
}

/// How many jobs of `task` are in `state`.
async fn jobs_in(client: &Client, task: &str, state: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE task = $1 AND state = $2",
            &[&task, &state],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_compaction_keeps_every_job_as_it_was() {
    let database = TestDatabase::create("compaction_keeps").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT pdoflow.enqueue('ready', jsonb_build_object('big', repeat('x', 100000)), priority => 3);
             SELECT pdoflow.enqueue('later', run_at => now() + interval '1 hour');
             SELECT pdoflow.enqueue('parent', queue => 'parents');
             SELECT pdoflow.enqueue('child', depends_on => ARRAY[(SELECT id FROM pdoflow.jobs WHERE task = 'parent')]);
             SELECT pdoflow.set_posting_status(pdoflow.create_posting('held'), 'paused');
             SELECT pdoflow.enqueue('parked', posting => (SELECT id FROM pdoflow.postings));
             SELECT count(*) FROM pdoflow.claim(1, ARRAY['parents'], 'w', '10 minutes');",
        )
        .await
        .unwrap_or_else(|error| panic!("setting up: {}", describe(&error)));
    let states: Vec<String> = client
        .query(
            "SELECT DISTINCT state FROM pdoflow.active_jobs ORDER BY state",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(states, ["blocked", "paused", "queued", "running"]);
    let before = active_rows(&client).await;

    let outcome = compact(&client, FORCED).await;
    assert!(outcome.compacted, "{:?}", outcome.reason);
    assert_eq!(outcome.jobs, Some(5));
    assert_eq!(
        active_rows(&client).await,
        before,
        "the jobs came back changed"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.check_consistency()").await,
        0
    );

    // They work on as before: the parent's claim finishes, which releases
    // its child, and claims find the queued jobs in order.
    let finished: String = client
        .query_one(
            "SELECT pdoflow.finish(id, attempt) FROM pdoflow.jobs WHERE task = 'parent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(finished, "succeeded");
    let claimed: Vec<String> = client
        .query("SELECT task FROM pdoflow.claim(10, worker => 'w')", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(claimed, ["ready", "child"]);
}

#[tokio::test]
async fn only_dead_rows_go_and_a_later_claim_sees_the_table_compacted() {
    let database = TestDatabase::create("compaction_rule").await;
    let client = database.connect().await;
    // An autovacuum of the table would keep the lock from a compaction for
    // longer than its 200 ms, and it recounts the rows the rule reads.
    client
        .batch_execute("ALTER TABLE pdoflow.active_jobs SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let outcome = compact(&client, "pdoflow.compact_active_jobs()").await;
    assert!(!outcome.compacted);
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("smaller than pdoflow.compaction_threshold (128 MB)"),
        "{reason}"
    );

    // A transaction holding an xid keeps vacuum from removing anything.
    let holder = database.connect().await;
    holder
        .batch_execute("BEGIN; SELECT txid_current();")
        .await
        .unwrap();
    client
        .batch_execute(
            "SET pdoflow.compaction_threshold = '1MB';
             SELECT count(*) FROM pdoflow.enqueue_many('churn', array_fill('{}'::jsonb, ARRAY[6000]));",
        )
        .await
        .unwrap();
    for _ in 0..6 {
        churn_claimed(&client, 1000).await;
    }
    client
        .batch_execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('kept', array_fill('{}'::jsonb, ARRAY[50]));
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .unwrap();
    // The statistics reach shared memory when the session next goes idle.
    let outcome = eventually(
        "compaction by the rule",
        Duration::from_secs(10),
        || async {
            let outcome = compact(&client, "pdoflow.compact_active_jobs()").await;
            outcome.compacted.then_some(outcome)
        },
    )
    .await;
    assert_eq!(outcome.jobs, Some(50));
    assert!(
        outcome.bytes_after * 4 < outcome.bytes_before,
        "{} bytes after, {} before",
        outcome.bytes_after,
        outcome.bytes_before
    );
    assert_eq!(jobs_in(&client, "kept", "queued").await, 50);
    assert_eq!(jobs_in(&client, "churn", "succeeded").await, 6000);

    // Mostly live jobs: nothing to gain.
    client
        .batch_execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('deep', array_fill('{}'::jsonb, ARRAY[20000]));
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .unwrap();
    let reason = eventually("the live jobs counted", Duration::from_secs(10), || async {
        compact(&client, "pdoflow.compact_active_jobs()")
            .await
            .reason
            .filter(|reason| reason.contains("not mostly dead rows"))
    })
    .await;
    assert!(reason.starts_with("about 20050 live jobs"), "{reason}");
    client
        .batch_execute("SET pdoflow.compaction_max_jobs = 100")
        .await
        .unwrap();
    let reason = compact(&client, "pdoflow.compact_active_jobs()")
        .await
        .reason
        .unwrap_or_default();
    assert_eq!(
        reason,
        "about 20050 live jobs, more than pdoflow.compaction_max_jobs (100)"
    );
    // Forced, the cap does not apply: every job is kept.
    let outcome = compact(&client, FORCED).await;
    assert_eq!(outcome.jobs, Some(20050));

    // Row counts start from nothing after a reset (or a crash).
    client
        .batch_execute(
            "SELECT pg_stat_reset_single_table_counters('pdoflow.active_jobs'::regclass)",
        )
        .await
        .unwrap();
    let reason = compact(&client, "pdoflow.compact_active_jobs()")
        .await
        .reason
        .unwrap_or_default();
    assert!(
        reason.starts_with("no row counts for the table yet"),
        "{reason}"
    );
    // Counts that miss the live jobs (they were inserted before the reset):
    // the copy finds more than pdoflow.compaction_max_jobs, gives up and
    // changes nothing.
    client
        .batch_execute("SELECT count(*) FROM pdoflow.enqueue_many('churn', array_fill('{}'::jsonb, ARRAY[1000]), queue => 'again')")
        .await
        .unwrap();
    client
        .batch_execute(
            "SELECT count(*) FROM pdoflow.finish_many(
                 (SELECT array_agg(id) FROM pdoflow.claim(1000, ARRAY['again'], 'w')),
                 array_fill(1, ARRAY[1000]));
             SELECT pg_stat_force_next_flush();",
        )
        .await
        .unwrap();
    let before = active_rows(&client).await;
    let error = eventually("the copy's limit", Duration::from_secs(10), || async {
        client
            .query("SELECT * FROM pdoflow.compact_active_jobs()", &[])
            .await
            .err()
    })
    .await;
    assert_eq!(
        error.code().map(|code| code.code()),
        Some("54000"),
        "{}",
        describe(&error)
    );
    assert_eq!(active_rows(&client).await, before);
    holder.batch_execute("COMMIT").await.unwrap();

    let error = client
        .query_one(
            "SELECT * FROM pdoflow.compact_active_jobs(lock_wait => '0')",
            &[],
        )
        .await
        .expect_err("a zero wait");
    assert_eq!(error.code().map(|code| code.code()), Some("22023"));
}

#[tokio::test]
async fn the_queue_never_waits_behind_a_long_lock_holder() {
    let database = TestDatabase::create("compaction_holder").await;
    let client = database.connect().await;
    client
        .batch_execute("ALTER TABLE pdoflow.active_jobs SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    client
        .batch_execute("SELECT pdoflow.enqueue('waiting')")
        .await
        .unwrap();
    // A report in a long transaction keeps its lock on active_jobs.
    let report = database.connect().await;
    report
        .batch_execute("BEGIN; SELECT count(*) FROM pdoflow.jobs;")
        .await
        .unwrap();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Not even asked for (asked, it would have failed with 55P03 after
    // queueing everyone behind the request for lock_wait).
    let outcome = compact(&client, "pdoflow.compact_active_jobs(force => true)").await;
    assert!(!outcome.compacted);
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "client backend (pid {report_pid}), in a transaction since "
        )) && reason.ends_with(", holds a lock on pdoflow.active_jobs"),
        "{reason}"
    );
    report.batch_execute("COMMIT").await.unwrap();

    // A younger holder passes that test: the lock is asked for, waited for
    // lock_wait, and the failure leaves everything as it was.
    report
        .batch_execute("BEGIN; SELECT count(*) FROM pdoflow.jobs;")
        .await
        .unwrap();
    let error = client
        .query(
            "SELECT * FROM pdoflow.compact_active_jobs(force => true, lock_wait => '5 seconds')",
            &[],
        )
        .await
        .expect_err("the lock was held all along");
    assert_eq!(
        error.code().map(|code| code.code()),
        Some("55P03"),
        "{}",
        describe(&error)
    );
    report.batch_execute("COMMIT").await.unwrap();

    // pg_dump takes its snapshot before its locks: no compaction while it runs.
    let dump = database.connect().await;
    dump.batch_execute("SET application_name = 'pg_dump'")
        .await
        .unwrap();
    let reason = compact(&client, FORCED).await.reason.unwrap_or_default();
    assert!(reason.starts_with("pg_dump (pid "), "{reason}");
    drop(dump);

    // The caller's own lock_timeout is as it was afterwards.
    let rows = eventually(
        "a compaction after pg_dump left",
        Duration::from_secs(10),
        || async {
            let rows = client
                .simple_query(&format!(
                    "BEGIN; SET LOCAL lock_timeout = '7s';
                 SELECT compacted, jobs FROM {FORCED};
                 SHOW lock_timeout; COMMIT;"
                ))
                .await
                .unwrap();
            let values: Vec<String> = rows
                .iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or_default().to_owned())
                    }
                    _ => None,
                })
                .collect();
            (values.first().map(String::as_str) == Some("t")).then_some(values)
        },
    )
    .await;
    assert_eq!(rows, ["t", "7s"]);
}

/// What a DBA added to the table stays as it was: their columns (identity
/// and generated ones too), and their triggers, which do not take the copy
/// for new jobs.
#[tokio::test]
async fn the_copy_keeps_what_a_dba_added_and_fires_no_trigger() {
    let database = TestDatabase::create("compaction_triggers").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "ALTER TABLE pdoflow.active_jobs
                 ADD COLUMN serial bigint GENERATED ALWAYS AS IDENTITY,
                 ADD COLUMN customer text GENERATED ALWAYS AS (args->>'customer') STORED,
                 ADD COLUMN note text DEFAULT 'n';
             CREATE TABLE audit (id uuid);
             CREATE FUNCTION audit_insert() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN INSERT INTO public.audit VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER audit AFTER INSERT ON pdoflow.active_jobs
                 FOR EACH ROW EXECUTE FUNCTION audit_insert();
             SELECT pdoflow.enqueue('audited', '{\"customer\": \"acme\"}');
             SELECT pdoflow.enqueue('audited', '{\"customer\": \"zeta\"}');
             UPDATE pdoflow.active_jobs SET note = 'kept';",
        )
        .await
        .unwrap();
    assert_eq!(count(&client, "SELECT count(*) FROM audit").await, 2);
    let before = active_rows(&client).await;
    let outcome = compact(&client, FORCED).await;
    assert!(outcome.compacted, "{:?}", outcome.reason);
    assert_eq!(active_rows(&client).await, before);
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.active_jobs WHERE customer IN ('acme', 'zeta') AND note = 'kept'").await,
        2
    );
    assert_eq!(count(&client, "SELECT count(*) FROM audit").await, 2);
    assert_eq!(
        client
            .query_one("SHOW session_replication_role", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "origin"
    );
}

/// Producers, workers (claim, heartbeat, finish) and a compaction in a loop,
/// racing: afterwards every job enqueued has succeeded exactly once, at its
/// first attempt, and no worker's finish or heartbeat was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_racing_compactions_loses_and_repeats_nothing() {
    let database = TestDatabase::create("compaction_race").await;
    let stop = Arc::new(AtomicBool::new(false));
    let enqueued = Arc::new(AtomicI64::new(0));
    let compactions = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for producer in 0..2i64 {
        let client = database.connect().await;
        let (stop, enqueued) = (stop.clone(), enqueued.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let args = serde_json::json!({ "producer": producer, "n": n });
                let sql = if n % 3 == 0 {
                    "SELECT count(*) FROM pdoflow.enqueue_many('race', ARRAY[$1::jsonb, $1::jsonb || '{\"twin\": true}'])"
                } else {
                    "SELECT count(*) FROM (SELECT pdoflow.enqueue('race', $1::jsonb)) AS e"
                };
                let added: i64 = client
                    .query_one(sql, &[&args])
                    .await
                    .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)))
                    .get(0);
                enqueued.fetch_add(added, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    for worker in 0..3 {
        let client = database.connect().await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            work(&client, &format!("w{worker}"), &stop).await
        }));
    }
    {
        let client = database.connect().await;
        let (stop, compactions) = (stop.clone(), compactions.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = compact(
                    &client,
                    "pdoflow.compact_active_jobs(force => true, lock_wait => '10 seconds')",
                )
                .await;
                assert!(outcome.compacted, "{:?}", outcome.reason);
                compactions.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(RACE).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a racing task panicked");
    }
    let client = database.connect().await;
    work(&client, "drain", &AtomicBool::new(true)).await;

    assert!(compactions.load(Ordering::Relaxed) > 5);
    let enqueued = enqueued.load(Ordering::Relaxed);
    assert!(enqueued > 100, "only {enqueued} jobs");
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT args), count(*) FILTER (WHERE state = 'succeeded' AND attempt = 1)
             FROM pdoflow.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), enqueued, "jobs lost or added");
    assert_eq!(row.get::<_, i64>(1), enqueued, "args repeated");
    assert_eq!(
        row.get::<_, i64>(2),
        enqueued,
        "not every job succeeded at once"
    );
}

/// Claims and finishes `jobs` jobs of the default queue.
async fn churn_claimed(client: &Client, jobs: i32) {
    client
        .execute(
            "SELECT count(*) FROM pdoflow.finish_many(
                 (SELECT array_agg(id) FROM pdoflow.claim($1, ARRAY['default'], 'w')),
                 array_fill(1, ARRAY[$1]))",
            &[&jobs],
        )
        .await
        .unwrap_or_else(|error| panic!("claiming and finishing: {}", describe(&error)));
}

/// Claims, heartbeats and finishes until `stop`, then until nothing is left.
async fn work(client: &Client, worker: &str, stop: &AtomicBool) {
    loop {
        let claims: Vec<(Uuid, i32)> = client
            .query(
                "SELECT id, attempt FROM pdoflow.claim(5, worker => $1, lease => '10 minutes')",
                &[&worker],
            )
            .await
            .unwrap_or_else(|error| panic!("claim: {}", describe(&error)))
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if claims.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let (id, attempt) = claims[0];
        let extended: bool = client
            .query_one(
                "SELECT pdoflow.heartbeat($1, $2) IS NOT NULL",
                &[&id, &attempt],
            )
            .await
            .unwrap_or_else(|error| panic!("heartbeat: {}", describe(&error)))
            .get(0);
        assert!(extended, "a heartbeat of a live claim was refused");
        let ids: Vec<Uuid> = claims.iter().map(|claim| claim.0).collect();
        let attempts: Vec<i32> = claims.iter().map(|claim| claim.1).collect();
        let rejected: Vec<Option<String>> = client
            .query(
                "SELECT rejected FROM pdoflow.finish_many($1, $2)",
                &[&ids, &attempts],
            )
            .await
            .unwrap_or_else(|error| panic!("finish_many: {}", describe(&error)))
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(rejected, vec![None; ids.len()], "a finish was refused");
    }
}

/// The background sweeper compacts by itself while a transaction holds the
/// xmin horizon, and the table stays near the threshold however many jobs
/// are worked.
#[tokio::test]
async fn the_sweeper_compacts_while_the_horizon_is_held() {
    let database = TestDatabase::swept("compaction").await;
    let client = database.connect().await;
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET pdoflow.compaction_threshold = '2MB';
             ALTER TABLE pdoflow.active_jobs SET (autovacuum_enabled = false);",
            database.name()
        ))
        .await
        .unwrap();
    let log = ServerLog::mark(&client).await;
    let holder = database.connect().await;
    holder
        .batch_execute("BEGIN; SELECT txid_current();")
        .await
        .unwrap();
    client
        .batch_execute("SELECT count(*) FROM pdoflow.enqueue_many('kept', array_fill('{}'::jsonb, ARRAY[10]), run_at => now() + interval '1 day')")
        .await
        .unwrap();

    let expected = format!(
        "pdoflow sweeper: compacted pdoflow.active_jobs in database \"{}\"",
        database.name()
    );
    let first_by = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut worked = 0i64;
    let mut largest = 0i64;
    let mut rounds_after = None;
    // Work until the sweeper has compacted, then as much again: the table
    // stays near the threshold however many jobs go through it.
    while rounds_after != Some(0) {
        assert!(
            rounds_after.is_some() || tokio::time::Instant::now() < first_by,
            "the sweeper did not compact active_jobs within a minute"
        );
        // (One statement per transaction: a transaction that holds its lock
        // on the table for longer than 200 ms keeps compaction off.)
        client
            .batch_execute(
                "SELECT count(*) FROM pdoflow.enqueue_many('churn', array_fill('{}'::jsonb, ARRAY[200]))",
            )
            .await
            .unwrap();
        churn_claimed(&client, 200).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        worked += 200;
        largest = largest.max(
            count(
                &client,
                "SELECT pg_total_relation_size('pdoflow.active_jobs')",
            )
            .await,
        );
        rounds_after = match rounds_after {
            None => {
                let lines = log.read_new(&client).await;
                lines
                    .iter()
                    .any(|line| line.contains(&expected))
                    .then_some(150)
            }
            Some(rounds) => Some(rounds - 1),
        };
    }
    let compactions = log
        .read_new(&client)
        .await
        .iter()
        .filter(|line| line.contains(&expected))
        .count();
    holder.batch_execute("COMMIT").await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} RESET pdoflow.compaction_threshold",
            database.name()
        ))
        .await
        .unwrap();
    // Uncompacted, the table would have grown to about 15 MB (half a KB per
    // job worked). The sweeper goes by row counts that reach it up to a
    // second late, so the table overshoots the threshold by what a second
    // of work adds.
    assert!(compactions >= 3, "{compactions} compactions");
    assert!(
        largest < 6 * 1024 * 1024,
        "active_jobs reached {largest} bytes while {worked} jobs were worked"
    );
    assert_eq!(jobs_in(&client, "kept", "queued").await, 10);
    assert_eq!(jobs_in(&client, "churn", "succeeded").await, worked);
}
