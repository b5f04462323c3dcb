//! How enqueues announce work (`pdoflow.notify`), in a database with a
//! background sweeper: with the default `coalesced`, the sweeper sends the
//! NOTIFY after the enqueue commits, one per queue for every transaction
//! that committed meanwhile. Databases without a sweeper (the other tests)
//! get `direct` notifications, as before.
//!
//! The tests share one database (and so its channel): each works in queues
//! named with its own prefix and ignores the others' announcements.

use std::time::Duration;

use pdoflow_tests::{drain, eventually, TestDatabase};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::Notification;

const PATIENCE: Duration = Duration::from_secs(20);

/// The announcements of queues starting with `prefix` that arrive within
/// `quiet` of each other.
async fn heard(
    notifications: &mut UnboundedReceiver<Notification>,
    prefix: &str,
    quiet: Duration,
) -> Vec<String> {
    let mut heard = drain(notifications, quiet).await;
    heard.retain(|queue| queue.starts_with(prefix));
    heard.sort();
    heard
}

/// The next announcement of a queue starting with `prefix`.
async fn next_heard(notifications: &mut UnboundedReceiver<Notification>, prefix: &str) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let notification = notifications
                .recv()
                .await
                .expect("the listener is connected");
            if notification.payload().starts_with(prefix) {
                return notification.payload().to_owned();
            }
        }
    })
    .await
    .expect("an announcement")
}

#[tokio::test]
async fn an_enqueue_is_announced_after_its_commit_and_a_rollback_is_not() {
    let database = TestDatabase::swept("announce").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let client = database.connect().await;

    client
        .batch_execute("BEGIN; SELECT pdoflow.enqueue('work', queue => 'a_committed');")
        .await
        .unwrap();
    assert_eq!(
        heard(&mut notifications, "a_", Duration::from_millis(300)).await,
        Vec::<String>::new(),
        "nothing while the transaction is open"
    );
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(next_heard(&mut notifications, "a_").await, "a_committed");

    client
        .batch_execute("BEGIN; SELECT pdoflow.enqueue('work', queue => 'a_rolled_back'); ROLLBACK;")
        .await
        .unwrap();
    // A later commit wakes the sweeper: had the rollback left its queue on
    // the board, it would be announced with this one.
    client
        .execute("SELECT pdoflow.enqueue('work', queue => 'a_after')", &[])
        .await
        .unwrap();
    assert_eq!(next_heard(&mut notifications, "a_").await, "a_after");
    assert_eq!(
        heard(&mut notifications, "a_", Duration::from_millis(500)).await,
        Vec::<String>::new(),
        "the rolled back enqueue is not announced"
    );
}

#[tokio::test]
async fn commits_made_while_the_sweeper_is_busy_share_one_announcement() {
    let database = TestDatabase::swept("announce").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let client = database.connect().await;
    let blocker = database.connect().await;

    // Hold the sweeper inside a round: it waits for the workers table.
    blocker
        .batch_execute("BEGIN; LOCK pdoflow.workers IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    let name = database.name().to_owned();
    eventually("the sweeper waits for the lock", PATIENCE, || {
        let (client, name) = (&client, &name);
        async move {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE backend_type = 'pdoflow sweeper' AND datname = $1 AND wait_event_type = 'Lock'",
                    &[name],
                )
                .await
                .unwrap()
                .get(0);
            (waiting == 1).then_some(())
        }
    })
    .await;

    for _ in 0..20 {
        client
            .execute("SELECT pdoflow.enqueue('work', queue => 'b_held')", &[])
            .await
            .unwrap();
    }
    client
        .execute("SELECT pdoflow.enqueue('work', queue => 'b_held_too')", &[])
        .await
        .unwrap();
    assert_eq!(
        heard(&mut notifications, "b_", Duration::from_millis(300)).await,
        Vec::<String>::new(),
        "the busy sweeper has announced nothing yet"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        heard(&mut notifications, "b_", Duration::from_millis(1500)).await,
        vec!["b_held", "b_held_too"],
        "21 commits, one announcement per queue"
    );
}

#[tokio::test]
async fn direct_notifies_in_the_transaction_and_off_not_at_all() {
    let database = TestDatabase::swept("announce").await;
    let (_listener, mut notifications) = database.listen("pdoflow").await;
    let client = database.connect().await;

    client
        .batch_execute(
            "SET pdoflow.notify = 'off';
             SELECT pdoflow.enqueue('work', queue => 'c_silent');
             SELECT pdoflow.enqueue_many('work', ARRAY['{}'::jsonb, '{}'], queue => 'c_silent');",
        )
        .await
        .unwrap();
    assert_eq!(
        heard(&mut notifications, "c_", Duration::from_millis(500)).await,
        Vec::<String>::new(),
        "pdoflow.notify = off announces nothing"
    );

    client
        .batch_execute(
            "SET pdoflow.notify = 'direct'; SELECT pdoflow.enqueue('work', queue => 'c_direct');",
        )
        .await
        .unwrap();
    assert_eq!(
        heard(&mut notifications, "c_", Duration::from_millis(500)).await,
        vec!["c_direct"]
    );

    let refused = client
        .batch_execute("SET pdoflow.notify = 'loud'")
        .await
        .expect_err("not a mode");
    let message = refused
        .as_db_error()
        .map(|error| error.message().to_owned());
    assert_eq!(
        message.as_deref(),
        Some("invalid value for parameter \"pdoflow.notify\": \"loud\"")
    );
}
