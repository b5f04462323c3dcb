//! A crash restart of the server (one backend killed with SIGKILL, which
//! makes the postmaster restart them all and re-create shared memory) while
//! jobs of a limited queue run: the running slots are counted again from
//! the table, so the limit still holds after the restart, and slots come
//! back as those jobs end. A claim waiting in `claim(..., wait)` gets its
//! error at once. The kill restarts every backend of the cluster, so this
//! test program runs alone (cargo runs test programs one after another).

use std::time::Duration;

use pdoflow_tests::{await_crash_restart, connect_patiently, send_signal, TestDatabase};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn running_slots_are_counted_again_after_a_crash_restart() {
    let database = TestDatabase::create("flow_control_crash").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT pdoflow.set_queue_limits('limited', max_running => 3);
             SELECT count(*) FROM pdoflow.enqueue_many('work', array_fill('{}'::jsonb, ARRAY[10]), 'limited');",
        )
        .await
        .unwrap();
    let claimed = client
        .query(
            "SELECT id, attempt FROM pdoflow.claim(10, ARRAY['limited'], lease => '1 hour')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);

    // A claim waits for a slot when the server crashes.
    let waiter = database.connect().await;
    let waiting = tokio::spawn(async move {
        waiter
            .query(
                "SELECT id FROM pdoflow.claim(1, ARRAY['limited'], wait => '10 minutes')",
                &[],
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sentinel = database.connect().await;
    send_signal("-KILL", victim);
    let outcome = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting claim was left hanging by the crash")
        .expect("the waiting claim panicked");
    assert!(outcome.is_err(), "the waiting claim got jobs: {outcome:?}");
    await_crash_restart(&sentinel, PATIENCE).await;

    // Shared memory is new: the first claim counts the 3 running jobs.
    let client = connect_patiently(&database, PATIENCE).await;
    let none: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "the limit did not hold after the restart");
    let slots: Option<i64> = client
        .query_one(
            "SELECT running_slots FROM pdoflow.queues WHERE queue = 'limited'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, Some(3));

    // Ending one of them frees its slot.
    let (id, attempt): (Uuid, i32) = (claimed[0].get(0), claimed[0].get(1));
    client
        .execute("SELECT pdoflow.finish($1, $2)", &[&id, &attempt])
        .await
        .unwrap();
    let one: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    let running: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.active_jobs WHERE queue = 'limited' AND state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 3);
}
