//! `pdoflow.await_result` on a real cluster: sessions waiting in the database
//! are woken by the commit that ends their job (through their latch, not by
//! looking again: the safety-net look comes only every 5 seconds), give up
//! at their timeout, and return at once on cancel or statement_timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pdoflow_tests::{describe, sessions_awaiting_results, sqlstate, TestDatabase};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(30);
/// A waiter woken by its latch returns long before the waiting room's
/// safety-net look (5 s) would have found its job ended.
const WOKEN_WITHIN: Duration = Duration::from_millis(2500);

#[tokio::test]
async fn two_hundred_waiters_wake_when_their_jobs_finish() {
    const WAITERS: usize = 200;
    let database = Arc::new(TestDatabase::create("await_many").await);
    let client = database.connect().await;
    let ids: Vec<Uuid> = client
        .query(
            "SELECT id FROM pdoflow.enqueue_many('compute',
                 (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, $1::integer) AS i))",
            &[&(WAITERS as i32)],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut waiters = Vec::new();
    for id in ids.clone() {
        let database = Arc::clone(&database);
        waiters.push(tokio::spawn(async move {
            let session = database.connect().await;
            let row = session
                .query_one(
                    "SELECT state, result FROM pdoflow.await_result($1, '60 seconds')",
                    &[&id],
                )
                .await
                .unwrap_or_else(|error| panic!("await_result: {}", describe(&error)));
            let state: String = row.get(0);
            let result: Option<serde_json::Value> = row.get(1);
            (id, state, result, Instant::now())
        }));
    }
    sessions_awaiting_results(&client, WAITERS as i64, PATIENCE).await;

    // Every job claimed and finished at once, each with its own result.
    let claims = client
        .query("SELECT id, attempt, args FROM pdoflow.claim(1000)", &[])
        .await
        .unwrap();
    assert_eq!(claims.len(), WAITERS);
    let claim_ids: Vec<Uuid> = claims.iter().map(|row| row.get(0)).collect();
    let attempts: Vec<i32> = claims.iter().map(|row| row.get(1)).collect();
    let results: Vec<serde_json::Value> = claims
        .iter()
        .map(|row| serde_json::json!({"echo": row.get::<_, serde_json::Value>(2)}))
        .collect();
    client
        .query(
            "SELECT * FROM pdoflow.finish_many($1, $2, results => $3)",
            &[&claim_ids, &attempts, &results],
        )
        .await
        .unwrap();
    let finished = Instant::now();

    let mut delays = Vec::new();
    for waiter in waiters {
        let (id, state, result, returned) = waiter.await.expect("a waiter panicked");
        assert_eq!(state, "succeeded", "job {id}");
        let n = result
            .as_ref()
            .and_then(|result| result["echo"]["n"].as_i64())
            .unwrap_or_else(|| panic!("job {id} came back without its result: {result:?}"));
        assert!(n >= 1 && n <= WAITERS as i64);
        delays.push(returned.saturating_duration_since(finished));
    }
    delays.sort();
    let slowest = delays[delays.len() - 1];
    println!(
        "{WAITERS} waiters returned after the finish's commit: median {:?}, p99 {:?}, slowest {:?}",
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
        slowest
    );
    assert!(
        slowest < WOKEN_WITHIN,
        "a waiter took {slowest:?}: it was not woken by the commit"
    );
}

#[tokio::test]
async fn a_wait_ends_at_its_timeout_with_the_current_state() {
    let database = TestDatabase::create("await_timeout").await;
    let client = database.connect().await;
    let id: Uuid = client
        .query_one("SELECT pdoflow.enqueue('slow')", &[])
        .await
        .unwrap()
        .get(0);
    let started = Instant::now();
    let state: String = client
        .query_one(
            "SELECT state FROM pdoflow.await_result($1, '300 milliseconds')",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let waited = started.elapsed();
    assert_eq!(state, "queued");
    assert!(
        waited >= Duration::from_millis(300),
        "returned after {waited:?}"
    );
}

#[tokio::test]
async fn cancel_and_statement_timeout_end_a_wait_at_once() {
    let database = TestDatabase::create("await_cancel").await;
    let client = database.connect().await;
    let id: Uuid = client
        .query_one("SELECT pdoflow.enqueue('never')", &[])
        .await
        .unwrap()
        .get(0);

    let waiter = database.connect().await;
    let cancel = waiter.cancel_token();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let outcome = waiter
            .query_one(
                "SELECT state FROM pdoflow.await_result($1, '10 minutes')",
                &[&id],
            )
            .await;
        (outcome, started.elapsed())
    });
    sessions_awaiting_results(&client, 1, PATIENCE).await;
    let cancelled_at = Instant::now();
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("sending the cancel");
    let (outcome, _) = waiting.await.expect("the waiter panicked");
    let error = outcome.expect_err("a cancelled wait returned a row");
    assert_eq!(sqlstate(&error), "57014", "{}", describe(&error));
    assert!(
        cancelled_at.elapsed() < WOKEN_WITHIN,
        "the cancel took {:?}",
        cancelled_at.elapsed()
    );

    let started = Instant::now();
    let error = client
        .batch_execute(&format!(
            "SET statement_timeout = '200ms';
             SELECT * FROM pdoflow.await_result('{id}', '10 minutes');"
        ))
        .await
        .expect_err("the statement timeout did not end the wait");
    assert_eq!(sqlstate(&error), "57014", "{}", describe(&error));
    assert!(
        started.elapsed() < WOKEN_WITHIN,
        "the timeout took {:?}",
        started.elapsed()
    );

    // The waiting room forgot both: a later wait is woken as usual.
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();
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
        .unwrap_or_else(|error| panic!("await_result: {}", describe(&error)));
    assert_eq!(state, "cancelled");
    assert!(returned.saturating_duration_since(cancelled) < WOKEN_WITHIN);
}

/// A session that starts waiting after a transaction ended its job, but
/// before that transaction committed, is woken by the commit (the waiting
/// room is asked at the commit, not when the job ends).
#[tokio::test]
async fn a_wait_that_starts_between_the_end_and_the_commit_is_woken() {
    let database = TestDatabase::create("await_race").await;
    let client = database.connect().await;
    let id: Uuid = client
        .query_one("SELECT pdoflow.enqueue('racy')", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute("SELECT pdoflow.claim(1, worker => 'w')")
        .await
        .unwrap();
    let finisher = database.connect().await;
    finisher
        .batch_execute(&format!("BEGIN; SELECT pdoflow.finish('{id}', 1);"))
        .await
        .unwrap();

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
    finisher.batch_execute("COMMIT").await.unwrap();
    let committed = Instant::now();
    let (state, returned) = waiting
        .await
        .expect("the waiter panicked")
        .unwrap_or_else(|error| panic!("await_result: {}", describe(&error)));
    assert_eq!(state, "succeeded");
    let delay = returned.saturating_duration_since(committed);
    assert!(delay < WOKEN_WITHIN, "woken {delay:?} after the commit");
}
