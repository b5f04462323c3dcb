//! Waiting for one job from the Rust client (`Client::await_result`) and
//! the command line (`pdoflow-run wait --job`, through `test-worker`): back
//! as soon as another connection ends the job, the job as it is when the
//! wait runs out, and the exit codes that say which.

use std::time::{Duration, Instant};

use pdoflow_client::cli::{EXIT_JOB_FAILED, EXIT_STILL_RUNNING};
use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::{Client, Error};
use pdoflow_tests::{describe, TestDatabase};
use serde_json::json;
use uuid::Uuid;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
/// Woken by the commit, not by the server's safety-net look (every 5 s).
const PROMPTLY: Duration = Duration::from_millis(2500);

/// Enqueues a job of task `t` (one attempt) in `queue`; returns its id.
async fn enqueue(client: &tokio_postgres::Client, queue: &str) -> Uuid {
    client
        .query_one(
            "SELECT pdoflow.enqueue('t', '{}', queue => $1, max_attempts => 1)",
            &[&queue],
        )
        .await
        .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)))
        .get(0)
}

/// Claims job `id` and finishes it with `result` or `error`, on `client`.
async fn finish(
    client: &tokio_postgres::Client,
    id: Uuid,
    result: Option<serde_json::Value>,
    error: Option<&str>,
) {
    let attempt: i32 = client
        .query_one(
            "SELECT attempt FROM pdoflow.claim_job($1, 'await-test', interval '1 minute')",
            &[&id],
        )
        .await
        .unwrap_or_else(|error| panic!("claim_job: {}", describe(&error)))
        .get(0);
    client
        .execute(
            "SELECT pdoflow.finish($1, $2, result => $3, error => $4)",
            &[&id, &attempt, &result, &error],
        )
        .await
        .unwrap_or_else(|error| panic!("finish: {}", describe(&error)));
}

#[tokio::test]
async fn await_result_returns_as_soon_as_another_connection_ends_the_job() {
    let database = TestDatabase::create("client_await_promptly").await;
    let sql = database.connect().await;
    let client = Client::connect(&database.url()).await.unwrap();
    let id = enqueue(&sql, "default").await;

    let started = Instant::now();
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        finish(&sql, id, Some(json!({"rows": 3})), None).await;
    });
    let outcome = client
        .await_result(id, Duration::from_secs(20))
        .await
        .unwrap();
    let waited = started.elapsed();
    finisher.await.unwrap();
    assert!(outcome.is_finished() && outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.id, id);
    assert_eq!(outcome.result, Some(json!({"rows": 3})));
    assert_eq!(outcome.last_error, None);
    assert!(outcome.finished_at.is_some());
    assert!(
        waited >= Duration::from_millis(300) && waited < PROMPTLY,
        "waited {waited:?}"
    );

    // An ended job: at once.
    let started = Instant::now();
    let again = client
        .await_result(id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(again, outcome);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn await_result_gives_the_current_state_when_the_time_is_up() {
    let database = TestDatabase::create("client_await_timeout").await;
    let sql = database.connect().await;
    let id = enqueue(&sql, "default").await;
    // A statement_timeout shorter than the wait: the client waits in
    // shorter server-side calls rather than have the statement cancelled.
    let mut settings = ConnectionSettings::from_url(&database.url(), "the test").unwrap();
    settings.session.statement_timeout = Duration::from_millis(700);
    let client = Client::connect_with_settings(&settings).await.unwrap();

    let started = Instant::now();
    let outcome = client
        .await_result(id, Duration::from_millis(1_800))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(outcome.state, "queued");
    assert!(!outcome.is_finished());
    assert!(
        waited >= Duration::from_millis(1_750) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );

    let looked = client.await_result(id, Duration::ZERO).await.unwrap();
    assert_eq!(looked.state, "queued");

    let unknown = Uuid::from_u128(42);
    match client.await_result(unknown, Duration::ZERO).await {
        Err(Error::NoSuchJob(id)) => assert_eq!(id, unknown),
        other => panic!("an unknown job: {other:?}"),
    }
}

#[tokio::test]
async fn wait_for_a_job_exits_with_how_it_ended() {
    let database = TestDatabase::create("client_await_cli").await;
    let sql = database.connect().await;
    let cli = database.cli(WORKER);

    // Succeeds while the command waits.
    let id = enqueue(&sql, "default").await;
    let waiting = cli
        .command(&["wait", "--job", &id.to_string(), "--timeout", "20s"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    finish(&sql, id, Some(json!({"sent": true})), None).await;
    let output = tokio::time::timeout(Duration::from_secs(30), waiting.wait_with_output())
        .await
        .expect("wait --job returns")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert!(stdout.contains("state: succeeded"), "{stdout}");
    assert!(stdout.contains(r#"result: {"sent":true}"#), "{stdout}");
    let json = cli
        .json(&["wait", "--job", &id.to_string(), "--json"])
        .await;
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["result"], json!({"sent": true}));

    // Failed, and cancelled: exit 4, the error on stderr.
    let failed = enqueue(&sql, "default").await;
    finish(&sql, failed, None, Some("SMTP timeout\nat line 3")).await;
    cli.fails(
        &["wait", "--job", &failed.to_string()],
        i32::from(EXIT_JOB_FAILED),
        &format!("pdoflow-run: job {failed} failed: SMTP timeout"),
    )
    .await;
    let cancelled = enqueue(&sql, "default").await;
    sql.execute("SELECT pdoflow.cancel($1)", &[&cancelled])
        .await
        .unwrap();
    cli.fails(&["wait", "--job", &cancelled.to_string()], 4, "cancelled")
        .await;

    // Not over by the timeout: exit 3, with the state it is in.
    let queued = enqueue(&sql, "default").await;
    let started = Instant::now();
    let output = cli
        .run(&["wait", "--job", &queued.to_string(), "--timeout", "400ms"])
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_STILL_RUNNING)),
        "{stderr}"
    );
    assert_eq!(
        (EXIT_STILL_RUNNING, EXIT_JOB_FAILED),
        (3, 4),
        "as documented"
    );
    assert!(
        stderr.contains(&format!("job {queued} still queued after 400ms")),
        "{stderr}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(String::from_utf8_lossy(&output.stdout).contains("state: queued"));

    // No such job: the command fails as every command does.
    cli.fails(
        &["wait", "--job", &Uuid::from_u128(7).to_string()],
        1,
        "does not exist",
    )
    .await;
    cli.fails(&["wait", "--job", "x"], 2, "invalid value").await;
}
