//! A worker outlives a PostgreSQL restart: it reconnects and finishes the
//! queue. The restart drops every connection to the test cluster, so this
//! test program runs alone (cargo runs test programs one after another).

use std::process::Stdio;
use std::time::Duration;

use pdoflow_tests::{connect_patiently, eventually, send_signal, TestDatabase};
use tokio::process::Command;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
const PATIENCE: Duration = Duration::from_secs(60);

async fn succeeded(database: &TestDatabase) -> Option<i64> {
    let client = database.connect_fallible().await?;
    client
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE state = 'succeeded'",
            &[],
        )
        .await
        .ok()
        .map(|row| row.get(0))
}

#[tokio::test]
async fn the_worker_reconnects_after_a_restart_and_finishes_the_queue() {
    let database = TestDatabase::create("worker_restart").await;
    let client = database.connect().await;
    client
        .batch_execute(r#"SELECT count(*) FROM pdoflow.enqueue_many('sleep', array_fill('{"ms": 100}'::jsonb, ARRAY[40]));"#)
        .await
        .unwrap();
    let worker = Command::new(WORKER)
        .args([
            "--database-url",
            &database.url(),
            "worker",
            "--concurrency",
            "2",
            "--poll-interval",
            "200ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("some jobs done", PATIENCE, || async {
        succeeded(&database).await.filter(|done| *done >= 4)
    })
    .await;

    let port = database.port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");
    // The cluster `make test` started (scripts/test.sh names it, and sets
    // PG_MAJOR for cluster.sh).
    let cluster = std::env::var("PDOFLOW_TEST_CLUSTER").unwrap_or_else(|_| "test-pg15".into());
    let status = std::process::Command::new("bash")
        .args([script, "restart", &cluster, &port])
        .status()
        .unwrap();
    assert!(status.success(), "restarting the test cluster");
    drop(client);
    let client = connect_patiently(&database, PATIENCE).await;

    eventually("every job done after the restart", PATIENCE, || async {
        succeeded(&database).await.filter(|done| *done == 40)
    })
    .await;
    let retried: i64 = client
        .query_one("SELECT count(*) FROM pdoflow.jobs WHERE attempt <> 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(retried, 0, "every job ran once");

    send_signal("-TERM", worker.id().unwrap());
    let output = tokio::time::timeout(PATIENCE, worker.wait_with_output())
        .await
        .expect("the worker exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("reconnected to the database"), "{stderr}");
}
