//! A crash restart of the server (one backend killed with SIGKILL, which
//! makes the postmaster restart them all) in the middle of schedules firing
//! and sessions waiting in `pdoflow.await_result`: every waiter gets its
//! error at once instead of hanging, the waiting room works again after the
//! restart, and the schedule goes on with each occurrence enqueued once.
//! The kill restarts every backend of the cluster, so this test program runs
//! alone (cargo runs test programs one after another).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pdoflow_tests::{
    connect_patiently, describe, eventually, send_signal, sessions_awaiting_results, TestDatabase,
};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_crash_restart_leaves_no_waiter_behind_and_runs_no_occurrence_twice() {
    let database = Arc::new(TestDatabase::swept("schedules").await);
    let client = database.connect().await;
    client
        .batch_execute("SELECT pdoflow.schedule('crash-ticks', 'every 1 seconds', 'tick-crash')")
        .await
        .unwrap();
    eventually("the schedule to run", PATIENCE, || async {
        let jobs: i64 = client
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs WHERE task = 'tick-crash'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (jobs >= 2).then_some(())
    })
    .await;

    // Twenty sessions wait for jobs nobody works.
    let ids: Vec<Uuid> = client
        .query(
            "SELECT id FROM pdoflow.enqueue_many('unworked', array_fill('{}'::jsonb, ARRAY[20]),
                                                 queue => 'crash-waiters')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut waiters = Vec::new();
    for id in ids {
        let database = Arc::clone(&database);
        waiters.push(tokio::spawn(async move {
            let session = database.connect().await;
            session
                .query_one(
                    "SELECT state FROM pdoflow.await_result($1, '10 minutes')",
                    &[&id],
                )
                .await
                .map(|row| row.get::<_, String>(0))
        }));
    }
    sessions_awaiting_results(&client, 20, PATIENCE).await;

    let victim: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let killed = Instant::now();
    send_signal("-KILL", victim);
    for waiter in waiters {
        let outcome = tokio::time::timeout(PATIENCE, waiter)
            .await
            .expect("a waiter was left hanging by the crash")
            .expect("a waiter panicked");
        assert!(
            outcome.is_err(),
            "a wait survived the crash restart: {outcome:?}"
        );
    }
    println!(
        "every waiter had its error {:?} after the kill",
        killed.elapsed()
    );

    let client = connect_patiently(&database, PATIENCE).await;
    // The waiting room was made afresh: a new wait is woken as before.
    let id: Uuid = client
        .query_one(
            "SELECT pdoflow.enqueue('after-crash', queue => 'crash-waiters')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let waiter = database.connect().await;
    let waiting = tokio::spawn(async move {
        waiter
            .query_one(
                "SELECT state FROM pdoflow.await_result($1, '1 minute')",
                &[&id],
            )
            .await
            .map(|row| (row.get::<_, String>(0), Instant::now()))
    });
    sessions_awaiting_results(&client, 1, PATIENCE).await;
    client
        .query_one("SELECT pdoflow.cancel($1)", &[&id])
        .await
        .unwrap();
    let cancelled = Instant::now();
    let (state, returned) = waiting
        .await
        .expect("the waiter panicked")
        .unwrap_or_else(|error| panic!("await_result after the restart: {}", describe(&error)));
    assert_eq!(state, "cancelled");
    assert!(returned.saturating_duration_since(cancelled) < Duration::from_millis(2500));

    // The schedule goes on after the restart, each occurrence once.
    let before: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE task = 'tick-crash'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eventually(
        "the schedule to run after the restart",
        PATIENCE,
        || async {
            let jobs: i64 = client
                .query_one(
                    "SELECT count(*) FROM pdoflow.jobs WHERE task = 'tick-crash'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (jobs >= before + 3).then_some(())
        },
    )
    .await;
    client
        .batch_execute("SELECT pdoflow.unschedule('crash-ticks')")
        .await
        .unwrap();
    let doubled: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT run_at FROM pdoflow.jobs WHERE task = 'tick-crash'
                                   GROUP BY run_at HAVING count(*) > 1) AS d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubled, 0, "an occurrence was enqueued twice");
}
