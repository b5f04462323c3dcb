//! Idle workers LISTEN on channel `pdoflow`: each statement that makes jobs
//! available notifies once per queue, after commit, and never for jobs that
//! are not due yet.

use std::time::Duration;

use pdoflow_tests::{drain, TestDatabase};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn one_notification_per_queue_per_statement() {
    let database = TestDatabase::create("notify_coalesced").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let producer = database.connect().await;

    producer
        .batch_execute("SELECT count(*) FROM pdoflow.enqueue_many('t', array_fill('{}'::jsonb, ARRAY[500]), queue => 'bulk')")
        .await
        .unwrap();
    assert_eq!(drain(&mut notifications, QUIET).await, vec!["bulk"]);

    producer
        .batch_execute(
            r#"SELECT count(*) FROM pdoflow.enqueue_many('[
                {"task": "t", "queue": "a"}, {"task": "t", "queue": "b"}, {"task": "t", "queue": "a"},
                {"task": "t", "queue": "later", "run_at": "2999-01-01T00:00:00Z"}
            ]')"#,
        )
        .await
        .unwrap();
    let mut queues = drain(&mut notifications, QUIET).await;
    queues.sort();
    assert_eq!(
        queues,
        vec!["a", "b"],
        "once per due queue, none for the delayed job"
    );

    producer
        .batch_execute("SELECT pdoflow.enqueue('t', queue => 'single')")
        .await
        .unwrap();
    assert_eq!(drain(&mut notifications, QUIET).await, vec!["single"]);
}

#[tokio::test]
async fn notifications_wait_for_commit_and_vanish_on_rollback() {
    let database = TestDatabase::create("notify_commit").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let producer = database.connect().await;

    producer
        .batch_execute("BEGIN; SELECT pdoflow.enqueue('t', queue => 'rolled_back')")
        .await
        .unwrap();
    assert!(
        drain(&mut notifications, QUIET).await.is_empty(),
        "nothing before commit"
    );
    producer.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        drain(&mut notifications, QUIET).await.is_empty(),
        "nothing after rollback"
    );

    producer
        .batch_execute("BEGIN; SELECT pdoflow.enqueue('t', queue => 'committed')")
        .await
        .unwrap();
    assert!(
        drain(&mut notifications, QUIET).await.is_empty(),
        "nothing before commit"
    );
    producer.batch_execute("COMMIT").await.unwrap();
    assert_eq!(drain(&mut notifications, QUIET).await, vec!["committed"]);
}

#[tokio::test]
async fn delayed_jobs_are_not_announced_but_retries_by_hand_are() {
    let database = TestDatabase::create("notify_delayed").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let producer = database.connect().await;

    let row = producer
        .query_one(
            "SELECT pdoflow.enqueue('t', queue => 'later', run_at => now() + interval '1 hour')",
            &[],
        )
        .await
        .unwrap();
    let id: uuid::Uuid = row.get(0);
    assert!(drain(&mut notifications, QUIET).await.is_empty());

    producer
        .execute("SELECT pdoflow.cancel($1)", &[&id])
        .await
        .unwrap();
    producer
        .execute("SELECT pdoflow.retry($1)", &[&id])
        .await
        .unwrap();
    assert_eq!(
        drain(&mut notifications, QUIET).await,
        vec!["later"],
        "a retried job is due at once"
    );
}
