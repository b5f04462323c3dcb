//! Failover without losing a job. A primary with a synchronous standby
//! (`synchronous_standby_names = '*'`) runs a queue under load: a producer
//! enqueueing through the `Client`, two `pdoflow-run worker` processes,
//! DAGs whose children add up their parents' results, and a schedule firing
//! every second. Everyone connects with both hosts in one URL and
//! `target_session_attrs=read-write`. Mid-way the primary's postmaster is
//! killed with `kill -9`, and one of the workers with it (as if it ran on
//! the same machine); the standby is promoted. Afterwards:
//!
//! - every job whose enqueue was acknowledged exists;
//! - every job seen succeeded before the kill is still succeeded (a
//!   transaction becomes visible on the primary only once the standby has
//!   it, so what anyone could see finished is on the standby);
//! - the dead worker's claims come back through their leases (one job it
//!   certainly holds, which stalls on its first attempt, ends up succeeded
//!   by the survivor after a `lease_expired` attempt of the dead one), the
//!   live worker reconnects to the promoted server, and the queue drains
//!   with every job succeeded (at least once) and every DAG's sums right;
//! - no schedule occurrence is enqueued twice.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::{Client, NewJob};
use pdoflow_tests::count;
use pdoflow_tests::standby::Pair;
use tokio::process::{Child, Command};
use uuid::Uuid;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
/// Jobs the producer enqueues, one per transaction.
const JOBS: usize = 3000;
/// The primary dies once this many are acknowledged.
const KILL_AFTER: usize = 1000;
/// DAGs submitted before the kill, and during the outage's aftermath.
const DAGS: usize = 10;
const PATIENCE: Duration = Duration::from_secs(120);

fn worker(url: &str, name: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("the worker's log file");
    Command::new(WORKER)
        .args([
            "worker",
            "--name",
            name,
            "--concurrency",
            "20",
            "--lease",
            "4s",
            "--poll-interval",
            "1s",
        ])
        .env("PDOFLOW_DATABASE_URL", url)
        .env("RUST_LOG", "info")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start a worker")
}

/// A chain of three `sum_parents` jobs (1, then +10, then +100) whose last
/// sum is 111 when each ran after its parent.
const DAG: &str = r#"{"nodes": [
    {"name": "one", "task": "sum_parents", "args": {"add": 1}},
    {"name": "ten", "task": "sum_parents", "args": {"add": 10}, "after": ["one"]},
    {"name": "hundred", "task": "sum_parents", "args": {"add": 100}, "after": ["ten"]}]}"#;

/// Submits `DAGS` copies of `DAG`; returns the id of each one's last job.
async fn submit_dags(client: &tokio_postgres::Client) -> Vec<Uuid> {
    let mut last = Vec::new();
    for _ in 0..DAGS {
        let id: Uuid = client
            .query_one(
                "SELECT id FROM pdoflow.submit_dag($1::text::jsonb) WHERE name = 'hundred'",
                &[&DAG],
            )
            .await
            .unwrap()
            .get(0);
        last.push(id);
    }
    last
}

/// Enqueues `JOBS` jobs, one per transaction, reconnecting
/// (`Client::reconnect`: to whichever host is the primary) whenever a call
/// fails; records each acknowledged id.
async fn produce(settings: ConnectionSettings, acknowledged: Arc<Mutex<Vec<Uuid>>>) {
    let mut client = Client::connect_with_settings(&settings)
        .await
        .expect("the producer's first connection");
    let mut n = 0;
    let deadline = Instant::now() + PATIENCE;
    while n < JOBS {
        assert!(
            Instant::now() < deadline,
            "the producer could not enqueue for too long"
        );
        if client.is_closed() && client.reconnect().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let job = NewJob::new("echo", &serde_json::json!({ "n": n })).expect("a job");
        match client.enqueue(&job).await {
            Ok(id) => {
                acknowledged.lock().unwrap().push(id);
                n += 1;
            }
            // Not acknowledged: it may or may not exist; try the next one.
            Err(error) => {
                assert!(error.is_connection_lost(), "enqueue: {error}");
                let _ = client.reconnect().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_killed_primary_loses_no_acknowledged_job() {
    let pair = Pair::start("failover", "app", "").await;
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/app?target_session_attrs=read-write",
        pair.primary.port, pair.standby.port
    );
    let settings = ConnectionSettings::from_url(&url, "the test").expect("the two-host URL");
    // Each target finds its server, the primary listed first.
    for (target, in_recovery) in [
        ("read-write", false),
        ("primary", false),
        ("standby", true),
        ("read-only", true),
        ("prefer-standby", true),
        ("any", false),
    ] {
        let url = url.replace("read-write", target);
        let client = Client::connect(&url).await.expect(target);
        let row = client
            .postgres()
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, bool>(0), in_recovery, "{target}");
    }
    let primary = pair.primary.connect("app").await.expect("the primary");
    primary
        .batch_execute(
            "SET pdoflow.retry_backoff_base = 0;
             SELECT pdoflow.schedule('tick', 'every 1 seconds', 'echo', '{\"scheduled\": true}');",
        )
        .await
        .unwrap();
    let mut dags = submit_dags(&primary).await;

    let logs = pair.primary.data.parent().unwrap().to_owned();
    let doomed_log = logs.join(format!("failover-doomed-{}.log", std::process::id()));
    let survivor_log = logs.join(format!("failover-survivor-{}.log", std::process::id()));
    // A long job that the doomed worker holds when it dies: it must come
    // back through its lease and succeed on the survivor.
    let long: Uuid = primary
        .query_one(
            "SELECT pdoflow.enqueue('stall_first', '{\"ms\": 600000}', priority => 10)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut doomed = worker(&url, "doomed", &doomed_log);
    let deadline = Instant::now() + PATIENCE;
    while count(
        &primary,
        &format!("SELECT count(*) FROM pdoflow.jobs WHERE id = '{long}' AND worker = 'doomed'"),
    )
    .await
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the doomed worker did not claim the long job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut survivor = worker(&url, "survivor", &survivor_log);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let producer = tokio::spawn(produce(settings.clone(), Arc::clone(&acknowledged)));

    let deadline = Instant::now() + PATIENCE;
    while acknowledged.lock().unwrap().len() < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the producer is stuck before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What anyone can see finished on the primary right now.
    let seen_succeeded: Vec<Uuid> = primary
        .query("SELECT id FROM pdoflow.jobs WHERE state = 'succeeded'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let _ = doomed.start_kill();
    pair.kill_primary();
    drop(primary);
    pair.promote().await;
    let _ = doomed.wait().await;

    let promoted = pair
        .standby
        .connect("app")
        .await
        .expect("the promoted standby");
    // More DAGs, now that the standby is the primary.
    dags.extend(submit_dags(&promoted).await);
    producer.await.expect("the producer");
    promoted
        .batch_execute("SELECT pdoflow.unschedule('tick')")
        .await
        .unwrap();

    let acknowledged: Vec<Uuid> = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), JOBS);
    let found: HashSet<Uuid> = promoted
        .query(
            "SELECT id FROM pdoflow.jobs WHERE id = ANY ($1)",
            &[&acknowledged],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let lost: Vec<&Uuid> = acknowledged
        .iter()
        .filter(|id| !found.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged enqueues lost: {lost:?}");
    let still_succeeded = promoted
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE id = ANY ($1) AND state = 'succeeded'",
            &[&seen_succeeded],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        still_succeeded,
        seen_succeeded.len() as i64,
        "a job seen succeeded before the kill is not succeeded after it"
    );

    // The queue drains: the dead worker's claims come back when their
    // leases run out, and the survivor works them.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = count(
            &promoted,
            "SELECT count(*) FROM pdoflow.jobs WHERE state IN ('queued', 'blocked', 'running')",
        )
        .await;
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} jobs left undone; the survivor's log:\n{}",
            std::fs::read_to_string(&survivor_log).unwrap_or_default()
        );
        assert!(
            survivor
                .try_wait()
                .expect("the survivor's status")
                .is_none(),
            "the surviving worker exited; its log:\n{}",
            std::fs::read_to_string(&survivor_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let not_succeeded = count(
        &promoted,
        "SELECT count(*) FROM pdoflow.jobs WHERE state <> 'succeeded'",
    )
    .await;
    assert_eq!(not_succeeded, 0, "jobs that did not succeed");
    let sums: Vec<i64> = promoted
        .query(
            "SELECT (result ->> 'sum')::bigint FROM pdoflow.jobs WHERE id = ANY ($1)",
            &[&dags],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        sums,
        vec![111; 2 * DAGS],
        "a DAG's child ran before its parent"
    );
    let row = promoted
        .query_one(
            "SELECT count(*), count(DISTINCT run_at) FROM pdoflow.jobs WHERE args = '{\"scheduled\": true}'",
            &[],
        )
        .await
        .unwrap();
    let (occurrences, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert!(occurrences > 0);
    assert_eq!(
        occurrences, distinct,
        "a schedule occurrence was enqueued twice"
    );
    let long_attempts: Vec<(String, String)> = promoted
        .query(
            "SELECT outcome, coalesce(worker, '') FROM pdoflow.job_attempts WHERE job = $1 ORDER BY attempt",
            &[&long],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        long_attempts,
        [("lease_expired".to_owned(), "doomed".to_owned())],
        "the long job's claim by the dead worker came back by its lease"
    );
    let worked_by: String = promoted
        .query_one("SELECT worker FROM pdoflow.jobs WHERE id = $1", &[&long])
        .await
        .unwrap()
        .get(0);
    assert_eq!(worked_by, "survivor");
    let expired = count(
        &promoted,
        "SELECT count(*) FROM pdoflow.job_attempts WHERE outcome = 'lease_expired' AND worker = 'doomed'",
    )
    .await;
    println!(
        "{JOBS} jobs, {} seen succeeded at the kill, {expired} of the dead worker's claims taken back by lease",
        seen_succeeded.len()
    );
    let _ = survivor.start_kill();
    let _ = std::fs::remove_file(&doomed_log);
    let _ = std::fs::remove_file(&survivor_log);
}
