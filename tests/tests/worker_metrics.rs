//! `pdoflow-run worker --metrics-listen`: the worker's handler metrics in
//! Prometheus' text format, scraped from a real worker process (the
//! `test-worker` binary: pdoflow-run's command line plus tasks that fail
//! and panic on purpose): durations per task, outcomes, jobs in flight.

use std::process::Stdio;
use std::time::Duration;

use pdoflow_tests::{eventually, TestDatabase};
use tokio::process::Command;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
const PATIENCE: Duration = Duration::from_secs(30);

fn free_address() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address").to_string()
}

fn worker(database: &TestDatabase, args: &[&str]) -> Command {
    let mut command = Command::new(WORKER);
    command
        .arg("--database-url")
        .arg(database.url())
        .args(args)
        .env_remove("PDOFLOW_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn scrape(address: &str) -> Option<String> {
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}

/// The value of the sample of `family` whose labels include every one of
/// `labels` (`name="value"`).
fn sample(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn handler_durations_outcomes_and_jobs_in_flight() {
    let database = TestDatabase::create("worker_metrics").await;
    let client = database.connect().await;
    client
        .batch_execute(
            r#"SELECT count(*) FROM pdoflow.enqueue_many('echo', array_fill('{}'::jsonb, ARRAY[3]));
               SELECT pdoflow.enqueue('fail', '{"message": "no"}', max_attempts => 1);
               SELECT pdoflow.enqueue('panic', '{"message": "boom"}', max_attempts => 1);
               SELECT pdoflow.enqueue('sleep', '{"ms": 60000}', max_attempts => 1);"#,
        )
        .await
        .unwrap();
    let address = free_address();
    let mut child = worker(
        &database,
        &[
            "worker",
            "--metrics-listen",
            &address,
            "--job-timeout",
            "0s",
        ],
    )
    .spawn()
    .expect("start the worker");

    let text = eventually("the outcomes are counted", PATIENCE, || async {
        let text = scrape(&address).await?;
        let done = sample(
            &text,
            "pdoflow_worker_jobs_total",
            &[r#"task="echo""#, r#"outcome="succeeded""#],
        ) == Some(3.0)
            && sample(
                &text,
                "pdoflow_worker_jobs_total",
                &[r#"task="fail""#, r#"outcome="failed""#],
            ) == Some(1.0)
            && sample(
                &text,
                "pdoflow_worker_jobs_total",
                &[r#"task="panic""#, r#"outcome="panicked""#],
            ) == Some(1.0);
        done.then_some(text)
    })
    .await;
    // A histogram per task and outcome, with buckets from 1 ms.
    assert_eq!(
        sample(
            &text,
            "pdoflow_worker_handler_duration_seconds_count",
            &[r#"task="echo""#, r#"outcome="succeeded""#]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "pdoflow_worker_handler_duration_seconds_bucket",
            &[r#"task="echo""#, r#"le="0.001""#]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        text.contains("# TYPE pdoflow_worker_handler_duration_seconds histogram"),
        "{text}"
    );
    // The sleeping job is in flight, the others are not.
    assert_eq!(
        sample(&text, "pdoflow_worker_jobs_in_flight", &[r#"task="sleep""#]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "pdoflow_worker_jobs_in_flight", &[r#"task="echo""#]),
        Some(0.0),
        "{text}"
    );

    child.start_kill().ok();
    let _ = tokio::time::timeout(PATIENCE, child.wait()).await;
}

#[tokio::test]
async fn an_address_that_cannot_be_bound_is_refused_at_start() {
    let database = TestDatabase::create("worker_metrics_bad").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("its address").to_string();
    let output = tokio::time::timeout(
        PATIENCE,
        worker(&database, &["worker", "--metrics-listen", &address]).output(),
    )
    .await
    .expect("the worker exits")
    .expect("run the worker");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--metrics-listen {address}")),
        "{stderr}"
    );

    // A pool of several processes cannot share one address.
    let output = tokio::time::timeout(
        PATIENCE,
        worker(
            &database,
            &[
                "pool",
                "--processes",
                "2",
                "--metrics-listen",
                "127.0.0.1:9",
            ],
        )
        .output(),
    )
    .await
    .expect("the pool exits")
    .expect("run the pool");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot share one address"), "{stderr}");
}
