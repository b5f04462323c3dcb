//! Unique jobs through the Rust client and `pdoflow-run enqueue`: a job
//! whose unique key another job of its task holds gets that job's id back,
//! until the holder fails, is cancelled, or succeeded longer ago than its
//! `unique_for`.

use std::time::Duration;

use pdoflow_client::{Client, Dag, NewJob, Outcome};
use pdoflow_tests::TestDatabase;
use serde_json::json;
use uuid::Uuid;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
const LEASE: Duration = Duration::from_secs(60);

async fn client(database: &TestDatabase) -> Client {
    Client::connect(&database.url())
        .await
        .expect("connect the client")
}

/// Claims job `id` and finishes it with `outcome`; returns its state then.
async fn run(client: &Client, id: Uuid, outcome: Outcome) -> String {
    let claimed = client
        .claim_job(id, "unique-test", LEASE)
        .await
        .expect("claim the job")
        .expect("the job is queued");
    let finished = client
        .finish_many(&[(id, claimed.attempt, outcome)])
        .await
        .expect("finish the job");
    finished[0].state.clone().expect("a state")
}

fn job(task: &str, key: &str) -> NewJob {
    NewJob::new(task, &json!({ "key": key }))
        .expect("JSON args")
        .unique_key(key)
}

#[tokio::test]
async fn a_held_key_gives_the_holders_id_until_the_holder_fails_or_is_cancelled() {
    let database = TestDatabase::create("client_unique").await;
    let client = client(&database).await;

    let first = client
        .enqueue(&job("report", "day-1").max_attempts(1))
        .await
        .unwrap();
    let again = client.enqueue(&job("report", "day-1")).await.unwrap();
    assert_eq!(again, first, "the key is held: the holder's id comes back");
    let other_task = client.enqueue(&job("invoice", "day-1")).await.unwrap();
    assert_ne!(other_task, first, "keys are per task");
    let read = client.job(first).await.unwrap().expect("the job");
    assert_eq!(read.unique_key.as_deref(), Some("day-1"));
    assert_eq!(read.progress, None);
    assert_eq!(
        client.jobs(&Default::default()).await.unwrap().len(),
        2,
        "no job was added for the duplicate"
    );

    // In one list: the held key, a new key twice, no key.
    let ids = client
        .enqueue_many(&[
            job("report", "day-1"),
            job("report", "day-2"),
            job("report", "day-2"),
            NewJob::new("report", &json!({})).unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], first);
    assert_eq!(ids[2], ids[1], "the second day-2 gets the first one's id");
    assert_ne!(ids[1], first);
    assert_ne!(ids[3], ids[1]);

    // The holder fails (its only attempt): the key is free again.
    let state = run(&client, first, Err("broken".into())).await;
    assert_eq!(state, "failed");
    let after_failure = client.enqueue(&job("report", "day-1")).await.unwrap();
    assert_ne!(after_failure, first, "a failed job lets its key go");
    assert_eq!(
        client.enqueue(&job("report", "day-1")).await.unwrap(),
        after_failure,
        "and the new job holds it"
    );

    // Cancelled: the same.
    assert!(client.cancel(ids[1]).await.unwrap());
    let after_cancel = client.enqueue(&job("report", "day-2")).await.unwrap();
    assert_ne!(after_cancel, ids[1], "a cancelled job lets its key go");
}

#[tokio::test]
async fn a_succeeded_job_keeps_its_key_for_unique_for_only() {
    let database = TestDatabase::create("client_unique_for").await;
    let client = client(&database).await;

    let kept = client
        .enqueue(&job("sync", "kept").unique_for(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(
        run(&client, kept, Ok(Some(json!({"synced": 1})))).await,
        "succeeded"
    );
    assert_eq!(
        client.enqueue(&job("sync", "kept")).await.unwrap(),
        kept,
        "succeeded within unique_for: still the holder"
    );

    let brief = client
        .enqueue(&job("sync", "brief").unique_for(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(run(&client, brief, Ok(None)).await, "succeeded");
    assert_eq!(client.enqueue(&job("sync", "brief")).await.unwrap(), brief);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_ne!(
        client.enqueue(&job("sync", "brief")).await.unwrap(),
        brief,
        "unique_for has passed"
    );

    let plain = client.enqueue(&job("sync", "plain")).await.unwrap();
    assert_eq!(run(&client, plain, Ok(None)).await, "succeeded");
    assert_ne!(
        client.enqueue(&job("sync", "plain")).await.unwrap(),
        plain,
        "without unique_for the key goes when the job succeeds"
    );

    // unique_for means nothing without a key: the server says so.
    let error = client
        .enqueue(
            &NewJob::new("sync", &json!({}))
                .unwrap()
                .unique_for(Duration::from_secs(1)),
        )
        .await
        .expect_err("unique_for without unique_key");
    assert!(
        error.to_string().contains("unique_for needs a unique_key"),
        "{error}"
    );
}

#[tokio::test]
async fn a_dag_node_whose_key_is_held_is_the_holder() {
    let database = TestDatabase::create("client_unique_dag").await;
    let client = client(&database).await;
    let holder = client.enqueue(&job("fetch", "source-a")).await.unwrap();
    let mut dag = Dag::new();
    dag.node("fetch", job("fetch", "source-a"));
    dag.node("parse", NewJob::new("parse", &json!({})).unwrap())
        .after(["fetch"]);
    let ids = client.submit_dag(&dag, None).await.unwrap();
    assert_eq!(ids.get("fetch"), Some(holder));
    let parse = client
        .job(ids.get("parse").expect("parse"))
        .await
        .unwrap()
        .expect("the parse job");
    assert_eq!(parse.depends_on, [holder], "the child waits for the holder");
}

#[tokio::test]
async fn enqueue_with_a_unique_key_prints_the_holders_id() {
    let database = TestDatabase::create("client_unique_cli").await;
    let cli = database.cli(WORKER);
    let args = [
        "enqueue",
        "--task",
        "noop",
        "--unique-key",
        "nightly",
        "--unique-for",
        "1h",
    ];
    let first = cli.ok(&args).await;
    let second = cli.ok(&args).await;
    assert_eq!(first.trim().len(), 36, "{first}");
    assert_eq!(second, first);
    let shown = cli.json(&["job", "show", first.trim(), "--json"]).await;
    assert_eq!(shown["unique_key"], "nightly");
    let human = cli.ok(&["job", "show", first.trim()]).await;
    assert!(human.contains("unique key: nightly"), "{human}");
    cli.fails(
        &["enqueue", "--task", "noop", "--unique-for", "1h"],
        2,
        "--unique-key",
    )
    .await;
}
