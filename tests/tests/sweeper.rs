//! The background sweeper at work on a real cluster: `make test` starts one
//! with pdoflow preloaded, a sweeper in each `pdoflow_swept_*` database and
//! `pdoflow.sweep_interval = 100ms`. Nothing here calls `pdoflow.sweep()`:
//! every change the tests wait for is the background worker's.
//!
//! Tests sharing a database work in queues of their own.

use std::time::Duration;

use pdoflow_tests::{
    counted, drain, eventually, job_counts, job_state, sqlstate, wait_for_state, TestDatabase,
};
use tokio_postgres::Client;
use uuid::Uuid;

/// Far longer than the sweeper needs (a few rounds of 100 ms), so a slow
/// machine does not fail the tests.
const PATIENCE: Duration = Duration::from_secs(20);

/// Enqueues one job in `queue` and claims it for `worker` with `lease`;
/// returns its id.
async fn claimed_job(
    client: &Client,
    queue: &str,
    max_attempts: i32,
    worker: &str,
    lease: &str,
) -> Uuid {
    client
        .execute(
            "SELECT pdoflow.enqueue('abandoned', queue => $1, max_attempts => $2)",
            &[&queue, &max_attempts],
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT id, attempt FROM pdoflow.claim(1, ARRAY[$1], $2, $3::text::interval)",
            &[&queue, &worker, &lease],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(1), 1);
    row.get(0)
}

#[tokio::test]
async fn an_abandoned_claim_is_queued_again_and_its_late_finish_rejected() {
    let database = TestDatabase::swept("leases").await;
    let client = database.connect().await;
    let id = claimed_job(&client, "requeue", 3, "crashed-worker", "1 second").await;

    let requeued = wait_for_state(&client, id, "queued", PATIENCE).await;
    assert_eq!(requeued.attempt, 1, "the lost attempt counts");
    let last_error = requeued.last_error.unwrap_or_default();
    assert!(
        last_error.starts_with("lease of attempt 1 expired at ")
            && last_error.ends_with(" on worker \"crashed-worker\""),
        "{last_error}"
    );

    for late in [
        "SELECT pdoflow.finish($1, 1)",
        "SELECT pdoflow.heartbeat($1, 1)",
    ] {
        let error = client.execute(late, &[&id]).await.unwrap_err();
        assert_eq!(sqlstate(&error), "55000", "{late}");
    }
    // Once its backoff has passed, the job is handed out again as attempt 2.
    let attempt: i32 = eventually("the job claimed again", PATIENCE, || async {
        client
            .query_opt(
                "SELECT attempt FROM pdoflow.claim(1, ARRAY['requeue'], 'rescuer')",
                &[],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    })
    .await;
    assert_eq!(attempt, 2);
    assert_eq!(
        client
            .query_one("SELECT pdoflow.finish($1, 2)", &[&id])
            .await
            .unwrap()
            .get::<_, String>(0),
        "succeeded"
    );
}

#[tokio::test]
async fn an_abandoned_claim_without_attempts_left_fails() {
    let database = TestDatabase::swept("leases").await;
    let client = database.connect().await;
    let id = claimed_job(&client, "exhaust", 1, "lost-worker", "1 second").await;

    let last_error = wait_for_state(&client, id, "failed", PATIENCE)
        .await
        .last_error
        .unwrap_or_default();
    assert!(
        last_error.contains("on worker \"lost-worker\""),
        "{last_error}"
    );
    let error = client
        .execute("SELECT pdoflow.finish($1, 1)", &[&id])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "55000");
}

#[tokio::test]
async fn a_live_lease_is_left_alone() {
    let database = TestDatabase::swept("leases").await;
    let client = database.connect().await;
    let id = claimed_job(&client, "alive", 1, "healthy-worker", "5 seconds").await;
    // Heartbeats keep the claim current well past its first lease.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        client
            .execute("SELECT pdoflow.heartbeat($1, 1, '5 seconds')", &[&id])
            .await
            .expect("heartbeat of a live claim");
    }
    assert_eq!(job_state(&client, id).await.state, "running");
    assert_eq!(
        client
            .query_one("SELECT pdoflow.finish($1, 1)", &[&id])
            .await
            .unwrap()
            .get::<_, String>(0),
        "succeeded"
    );
}

#[tokio::test]
async fn listeners_hear_when_delayed_jobs_and_retries_fall_due() {
    let database = TestDatabase::swept("notify").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let client = database.connect().await;

    client
        .execute(
            "SELECT pdoflow.enqueue('later', queue => 'delayed', run_at => now() + interval '1.5 seconds')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        drain(&mut notifications, Duration::from_millis(500)).await,
        Vec::<String>::new(),
        "nothing before the job is due"
    );
    let heard = tokio::time::timeout(PATIENCE, notifications.recv())
        .await
        .expect("a notification once the delayed job is due")
        .expect("the listener is still connected");
    assert_eq!(heard.payload(), "delayed");
    assert_eq!(
        drain(&mut notifications, Duration::from_millis(500)).await,
        Vec::<String>::new(),
        "announced once"
    );

    // A failed attempt waits out its backoff, then is announced.
    client
        .batch_execute(
            "SET pdoflow.retry_backoff_base = '1s';
             SELECT pdoflow.enqueue('flaky', queue => 'retries');",
        )
        .await
        .unwrap();
    assert_eq!(
        drain(&mut notifications, Duration::from_millis(300)).await,
        vec!["retries"],
        "the enqueue itself"
    );
    client
        .execute(
            "SELECT pdoflow.finish(id, attempt, 'boom') FROM pdoflow.claim(1, ARRAY['retries'])",
            &[],
        )
        .await
        .unwrap();
    let heard = tokio::time::timeout(PATIENCE, notifications.recv())
        .await
        .expect("a notification once the retry is due")
        .expect("the listener is still connected");
    assert_eq!(heard.payload(), "retries");
    let claimed = client
        .query_opt(
            "SELECT attempt FROM pdoflow.claim(1, ARRAY['retries'])",
            &[],
        )
        .await
        .unwrap()
        .map(|row| row.get::<_, i32>(0));
    assert_eq!(claimed, Some(2), "the announced retry can be claimed");
}

#[tokio::test]
async fn retention_deletes_old_finished_jobs_and_nothing_else() {
    let database = TestDatabase::swept("retention").await;
    let client = database.connect().await;
    // 30 finished jobs: 10 old succeeded, 10 old failed or cancelled, 10 recent;
    // and 5 queued jobs, enqueued long ago, that must survive.
    client
        .batch_execute(
            "SET pdoflow.retry_backoff_base = 0;
             SELECT count(*) FROM pdoflow.enqueue_many('done', array_fill('{}'::jsonb, ARRAY[20]));
             SELECT count(pdoflow.finish(id, attempt)) FROM pdoflow.claim(20);
             SELECT count(*) FROM pdoflow.enqueue_many('broken', array_fill('{}'::jsonb, ARRAY[5]), max_attempts => 1);
             SELECT count(pdoflow.finish(id, attempt, 'boom')) FROM pdoflow.claim(5);
             SELECT count(*) FROM pdoflow.enqueue_many('unwanted', array_fill('{}'::jsonb, ARRAY[5]));
             SELECT count(pdoflow.cancel(id)) FROM pdoflow.jobs WHERE task = 'unwanted';
             SELECT count(*) FROM pdoflow.enqueue_many('waiting', array_fill('{}'::jsonb, ARRAY[5]));
             UPDATE pdoflow.active_jobs SET created_at = now() - interval '30 days';
             UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '8 days'
             WHERE id IN (SELECT id FROM pdoflow.finished_jobs WHERE task = 'done' ORDER BY id LIMIT 10)
                OR task IN ('broken', 'unwanted');
             UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '6 days 23 hours'
             WHERE task = 'done' AND finished_at > now() - interval '1 day';",
        )
        .await
        .unwrap();

    let remaining = eventually("old finished jobs deleted", PATIENCE, || async {
        let count: i64 = client
            .query_one("SELECT count(*) FROM pdoflow.finished_jobs", &[])
            .await
            .unwrap()
            .get(0);
        (count <= 10).then_some(count)
    })
    .await;
    assert_eq!(
        remaining, 10,
        "the jobs finished within pdoflow.retention stay"
    );
    assert_eq!(
        job_counts(&client).await,
        vec![
            counted("done", "succeeded", 10),
            counted("waiting", "queued", 5)
        ]
    );
}

#[tokio::test]
async fn silent_workers_are_marked_gone() {
    let database = TestDatabase::swept("retention").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT pdoflow.register_worker('silent');
             SELECT pdoflow.register_worker('chatty');
             UPDATE pdoflow.workers SET last_seen_at = now() - interval '2 minutes' WHERE name = 'silent';",
        )
        .await
        .unwrap();
    eventually("the silent worker marked gone", PATIENCE, || async {
        let state: String = client
            .query_one(
                "SELECT state FROM pdoflow.workers WHERE name = 'silent'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (state == "gone").then_some(())
    })
    .await;
    let chatty: String = client
        .query_one(
            "SELECT state FROM pdoflow.workers WHERE name = 'chatty'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(chatty, "active");
}

/// A producer inside an open transaction that enqueues a job depending on a
/// blocked child holds a lock on that child until it commits. Ending the
/// child's parent (here: its lease expired, no attempts left) has to wait
/// for that lock. The sweeper waits at most pdoflow.sweep_lock_timeout for
/// it, leaves that job for a later round, and meanwhile takes back other
/// expired claims, announces due jobs and deletes old history.
#[tokio::test]
async fn a_producer_holding_locks_does_not_stall_the_sweeper() {
    let database = TestDatabase::swept("locks").await;
    let client = database.connect().await;

    let parent = claimed_job(&client, "stalled", 1, "crashed-worker", "1 second").await;
    let child: Uuid = client
        .query_one(
            "SELECT pdoflow.enqueue('child', queue => 'stalled', depends_on => ARRAY[$1::uuid])",
            &[&parent],
        )
        .await
        .unwrap()
        .get(0);
    let producer = database.connect().await;
    producer
        .batch_execute(&format!(
            "BEGIN; SELECT pdoflow.enqueue('grandchild', queue => 'stalled', depends_on => ARRAY['{child}'::uuid]);"
        ))
        .await
        .unwrap();

    // Work the sweeper must still do while the producer's transaction is open.
    let other = claimed_job(&client, "unaffected", 1, "crashed-worker", "1 second").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    client
        .batch_execute(
            "SELECT pdoflow.enqueue('later', queue => 'due_while_locked', run_at => now() + interval '1 second');
             SELECT pdoflow.enqueue('done', queue => 'old_history');
             SELECT pdoflow.finish(c.id, c.attempt) FROM pdoflow.claim(1, ARRAY['old_history'], 'w') AS c;
             -- Past pdoflow.retention (7 days).
             UPDATE pdoflow.finished_jobs SET finished_at = now() - interval '8 days'
             WHERE queue = 'old_history';",
        )
        .await
        .unwrap();
    let held_since = std::time::Instant::now();

    let failed = wait_for_state(&client, other, "failed", PATIENCE).await;
    assert!(
        failed
            .last_error
            .unwrap_or_default()
            .starts_with("lease of attempt 1 expired"),
        "the other expired claim was taken back"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while !drain(&mut notifications, Duration::from_millis(200))
        .await
        .contains(&"due_while_locked".to_owned())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the due job was not announced within {PATIENCE:?}"
        );
    }
    eventually("the old finished job deleted", PATIENCE, || async {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs WHERE queue = 'old_history'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (left == 0).then_some(())
    })
    .await;
    assert!(
        held_since.elapsed() < Duration::from_secs(30),
        "all of it happened while the lock was held"
    );
    // The parent waits: its child is locked.
    assert_eq!(job_state(&client, parent).await.state, "running");

    // Once the producer commits, the parent ends, and its descendants with it.
    producer.batch_execute("COMMIT").await.unwrap();
    wait_for_state(&client, parent, "failed", PATIENCE).await;
    let cancelled = wait_for_state(&client, child, "cancelled", PATIENCE).await;
    assert!(
        cancelled.last_error.unwrap_or_default().contains("failed"),
        "the child was cancelled because its parent failed"
    );
    eventually("the grandchild cancelled", PATIENCE, || async {
        let state: String = client
            .query_one(
                "SELECT state FROM pdoflow.jobs WHERE task = 'grandchild'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (state == "cancelled").then_some(())
    })
    .await;
}
