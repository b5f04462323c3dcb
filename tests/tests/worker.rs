//! `pdoflow-run worker` end to end: a real worker process (the `test-worker`
//! binary: pdoflow-run's command line plus tasks that misbehave on purpose)
//! against the test cluster.

use std::process::{Output, Stdio};
use std::time::Duration;

use pdoflow_tests::{
    counted, eventually, job_counts, job_state, send_signal, wait_for_state, TestDatabase,
};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
const PATIENCE: Duration = Duration::from_secs(30);

fn worker_command(database: &TestDatabase, args: &[&str]) -> Command {
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

/// Runs a worker in burst mode to completion.
async fn burst(database: &TestDatabase, extra: &[&str]) -> Output {
    let mut args = vec!["worker", "--burst", "--log-dir"];
    let log_dir = log_dir(database);
    args.push(&log_dir);
    args.extend_from_slice(extra);
    let output = tokio::time::timeout(PATIENCE, worker_command(database, &args).output())
        .await
        .expect("the burst worker finishes")
        .expect("run the worker");
    assert!(
        output.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn log_dir(database: &TestDatabase) -> String {
    std::env::temp_dir()
        .join(format!("pdoflow-test-logs-{}", database.name()))
        .display()
        .to_string()
}

#[tokio::test]
async fn jobs_enqueued_in_sql_are_worked_and_their_results_stored() {
    let database = TestDatabase::create("worker_end_to_end").await;
    let client = database.connect().await;
    client
        .batch_execute(
            r#"SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{}'::jsonb, ARRAY[300]));
               SELECT pdoflow.enqueue('echo', '{"n": 42}', queue => 'other');
               SELECT pdoflow.enqueue('sleep', '{"ms": 200}');
               SELECT pdoflow.grant_task('shell', 'postgres');
               SELECT pdoflow.enqueue('shell', '{"command": ["sh", "-c", "echo out; echo err >&2"], "env": {"X": "1"}}');"#,
        )
        .await
        .unwrap();
    burst(&database, &["--concurrency", "4", "--enable-shell"]).await;

    assert_eq!(
        job_counts(&client).await,
        vec![
            counted("echo", "succeeded", 1),
            counted("noop", "succeeded", 300),
            counted("shell", "succeeded", 1),
            counted("sleep", "succeeded", 1),
        ]
    );
    let echo: serde_json::Value = client
        .query_one("SELECT result FROM pdoflow.jobs WHERE task = 'echo'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(echo, serde_json::json!({"args": {"n": 42}, "attempt": 1}));
    let (id, shell): (uuid::Uuid, serde_json::Value) = client
        .query_one(
            "SELECT id, result FROM pdoflow.jobs WHERE task = 'shell'",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(shell["exit_code"], 0);
    let stdout_log = std::path::PathBuf::from(log_dir(&database)).join(format!("{id}.stdout.log"));
    assert_eq!(shell["stdout_log"], stdout_log.display().to_string());
    assert_eq!(std::fs::read_to_string(&stdout_log).unwrap(), "out\n");
    let stderr_log = stdout_log.with_file_name(format!("{id}.stderr.log"));
    assert_eq!(std::fs::read_to_string(stderr_log).unwrap(), "err\n");
    let worker: String = client
        .query_one("SELECT worker FROM pdoflow.jobs WHERE task = 'echo'", &[])
        .await
        .unwrap()
        .get(0);
    let registered: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.workers WHERE name = $1",
            &[&worker],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(registered, 1, "the worker is in the registry");
}

#[tokio::test]
async fn each_kind_of_failure_ends_as_the_right_failure_and_the_worker_goes_on() {
    let database = TestDatabase::create("worker_failures").await;
    let client = database.connect().await;
    client
        .batch_execute(
            r#"SELECT pdoflow.grant_task('shell', 'postgres');
               SELECT pdoflow.enqueue('panic', '{"message": "handler exploded"}', max_attempts => 1);
               SELECT pdoflow.enqueue('fail', '{"message": "upstream said no"}', max_attempts => 1);
               SELECT pdoflow.enqueue('sleep', '{"ms": 10000}', max_attempts => 1);
               SELECT pdoflow.enqueue('shell', '{"command": ["sh", "-c", "echo partial; echo bad input >&2; exit 3"]}', max_attempts => 1);
               SELECT pdoflow.enqueue('unknown_task', max_attempts => 1);
               SELECT pdoflow.enqueue('shell', '{"command": ["sh", "-c", "printf \"nul:\\\\000:\" >&2; exit 1"]}', max_attempts => 1, queue => 'nul');
               SELECT pdoflow.enqueue('sleep', '{"seconds": 1}', max_attempts => 1, queue => 'bad_args');
               SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{}'::jsonb, ARRAY[20]));"#,
        )
        .await
        .unwrap();
    burst(
        &database,
        &[
            "--job-timeout",
            "1s",
            "--concurrency",
            "3",
            "--enable-shell",
        ],
    )
    .await;

    let failures: Vec<(String, String, String)> = client
        .query(
            "SELECT task, state, last_error FROM pdoflow.jobs WHERE task <> 'noop' ORDER BY task, queue",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let expect = |task: &str, error: &str| {
        let found = failures
            .iter()
            .find(|(name, _, last_error)| name == task && last_error.contains(error));
        assert!(
            matches!(found, Some((_, state, _)) if state == "failed"),
            "{task}: expected a failure containing {error:?} in {failures:#?}"
        );
    };
    expect("panic", "the handler panicked: handler exploded");
    expect("fail", "upstream said no");
    expect("sleep", "timed out after 1s");
    expect(
        "shell",
        "\"sh\" exited with code 3; stderr ends with:\nbad input",
    );
    expect(
        "unknown_task",
        "no handler for task \"unknown_task\" in this worker",
    );
    expect("sleep", "arguments do not fit task \"sleep\"");
    // PostgreSQL text cannot hold NUL: it is stored visibly escaped.
    expect("shell", "stderr ends with:\nnul:\\0:");
    assert!(
        job_counts(&client)
            .await
            .contains(&counted("noop", "succeeded", 20)),
        "the worker kept going"
    );
}

async fn running_count(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn terminate(child: &Child) {
    send_signal("-TERM", child.id().expect("the worker is running"));
}

/// Enqueues a 1.5-second job with 3 attempts in `queue`, starts a worker with
/// `worker_args` and a 2-second lease, and kills it (SIGKILL) while it runs
/// the job; returns the job's id.
async fn kill_a_worker_mid_job(
    database: &TestDatabase,
    client: &Client,
    queue: &str,
    worker_args: &[&str],
) -> uuid::Uuid {
    let id: uuid::Uuid = client
        .query_one(
            r#"SELECT pdoflow.enqueue('sleep', '{"ms": 1500}', queue => $1, max_attempts => 3)"#,
            &[&queue],
        )
        .await
        .unwrap()
        .get(0);
    let mut args = vec!["worker", "--lease", "2s"];
    args.extend_from_slice(worker_args);
    let victim = worker_command(database, &args).spawn().unwrap();
    // The database may be shared with other tests: watch this job only.
    wait_for_state(client, id, "running", PATIENCE).await;
    send_signal("-KILL", victim.id().expect("the worker is running"));
    let _ = victim.wait_with_output().await;
    id
}

#[tokio::test]
async fn sigterm_lets_running_jobs_finish_then_exits_zero() {
    let database = TestDatabase::create("worker_sigterm").await;
    let client = database.connect().await;
    client
        .batch_execute(r#"SELECT count(*) FROM pdoflow.enqueue_many('sleep', array_fill('{"ms": 1500}'::jsonb, ARRAY[3]));"#)
        .await
        .unwrap();
    let child = worker_command(
        &database,
        &["worker", "--concurrency", "3", "--poll-interval", "200ms"],
    )
    .spawn()
    .unwrap();
    eventually("three jobs running", PATIENCE, || async {
        (running_count(&client).await == 3).then_some(())
    })
    .await;
    client
        .execute(r#"SELECT pdoflow.enqueue('sleep', '{"ms": 10}')"#, &[])
        .await
        .unwrap();
    terminate(&child);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the worker exits")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        job_counts(&client).await,
        vec![
            counted("sleep", "queued", 1),
            counted("sleep", "succeeded", 3)
        ],
        "running jobs finished, nothing new was claimed, nothing is left running"
    );
}

/// A producer that enqueues a child of a running job, in a transaction it
/// keeps open, locks that job: its finish must wait. The worker's finishing
/// connection gives up after its lock_timeout, stores the other outcomes
/// one by one, keeps claiming, and stores the held-up one once the lock is
/// gone.
#[tokio::test]
async fn a_job_locked_by_a_producer_does_not_hold_back_the_others() {
    let database = TestDatabase::create("worker_locked_job").await;
    let client = database.connect().await;
    let held: uuid::Uuid = client
        .query_one(
            r#"SELECT pdoflow.enqueue('sleep', '{"ms": 1000}', queue => 'work')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut worker = worker_command(
        &database,
        &[
            "--lock-timeout",
            "300ms",
            "worker",
            "--queues",
            "work",
            "--poll-interval",
            "200ms",
        ],
    )
    .spawn()
    .unwrap();
    wait_for_state(&client, held, "running", PATIENCE).await;
    let producer = database.connect().await;
    producer
        .batch_execute(&format!(
            "BEGIN; SELECT pdoflow.enqueue('noop', queue => 'work', depends_on => ARRAY['{held}'::uuid]);"
        ))
        .await
        .unwrap();
    // The held job's handler ends meanwhile; its outcome cannot be stored.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .batch_execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{}'::jsonb, ARRAY[20]), queue => 'work')",
        )
        .await
        .unwrap();
    eventually("the other jobs stored", PATIENCE, || async {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs WHERE task = 'noop' AND state = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (done == 20).then_some(())
    })
    .await;
    assert_eq!(job_state(&client, held).await.state, "running");

    producer.batch_execute("COMMIT").await.unwrap();
    wait_for_state(&client, held, "succeeded", PATIENCE).await;
    eventually("the child released and worked", PATIENCE, || async {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs WHERE task = 'noop' AND state = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (done == 21).then_some(())
    })
    .await;
    terminate(&worker);
    let status = tokio::time::timeout(PATIENCE, worker.wait())
        .await
        .expect("the worker stops")
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn jobs_still_running_after_the_grace_period_are_released() {
    let database = TestDatabase::create("worker_grace").await;
    let client = database.connect().await;
    client
        .execute(
            r#"SELECT pdoflow.enqueue('sleep', '{"ms": 60000}', max_attempts => 1)"#,
            &[],
        )
        .await
        .unwrap();
    let child = worker_command(&database, &["worker", "--shutdown-grace", "1s"])
        .spawn()
        .unwrap();
    eventually("the job running", PATIENCE, || async {
        (running_count(&client).await == 1).then_some(())
    })
    .await;
    terminate(&child);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the worker exits after its grace period")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (state, attempt, max_attempts): (String, i32, i32) = client
        .query_one("SELECT state, attempt, max_attempts FROM pdoflow.jobs", &[])
        .await
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .unwrap();
    assert_eq!(
        (state.as_str(), attempt, max_attempts),
        ("queued", 1, 2),
        "released, its attempt not counted against max_attempts"
    );
}

#[tokio::test]
async fn a_killed_workers_job_is_worked_again_and_succeeds_once() {
    let database = TestDatabase::swept("worker").await;
    let client = database.connect().await;
    let id = kill_a_worker_mid_job(&database, &client, "killed", &["--queues", "killed"]).await;

    // The background sweeper takes the claim back once its lease expires.
    burst(&database, &["--queues", "killed"]).await;
    let job = job_state(&client, id).await;
    assert_eq!((job.state.as_str(), job.attempt), ("succeeded", 2));
}

#[tokio::test]
async fn bad_configuration_is_one_line_and_a_non_zero_exit() {
    let database = TestDatabase::create("worker_bad_config").await;
    let conf = std::env::temp_dir().join(format!("pdoflow-bad-{}.conf", database.name()));
    std::fs::write(&conf, "[postgresql]\nusername = app\n").unwrap();
    let conf = conf.display().to_string();
    for (args, expected_code, expected) in [
        (
            vec![
                "--database-url",
                "postgresql://postgres@127.0.0.1:1/none",
                "worker",
            ],
            1,
            "cannot connect to the database (--database-url)",
        ),
        (
            vec!["--config", &conf, "status"],
            1,
            "unknown key \"username\"",
        ),
        (
            vec!["worker", "--bogus"],
            2,
            "unexpected argument '--bogus'",
        ),
        (
            vec!["--log-level", "no=such=level", "status"],
            2,
            "--log-level",
        ),
        (
            vec![
                "--database-url",
                "postgresql://postgres@127.0.0.1:1/none",
                "worker",
                "--poll-interval",
                "0s",
            ],
            1,
            "the poll interval must be from 10ms to 7 days",
        ),
        (
            vec!["--database-url", "postgresql://h:notaport/d", "status"],
            1,
            "--database-url: not a PostgreSQL connection string",
        ),
    ] {
        let output = Command::new(WORKER)
            .args(&args)
            .env_remove("PDOFLOW_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env("HOME", std::env::temp_dir())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(expected_code),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr}"
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn heartbeats_keep_a_long_job_beyond_its_first_lease() {
    let database = TestDatabase::swept("worker").await;
    let client = database.connect().await;
    let id: uuid::Uuid = client
        .query_one(
            r#"SELECT pdoflow.enqueue('sleep', '{"ms": 3500}', queue => 'long')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A 1-second lease, three and a half seconds of work, a sweeper every
    // 100 ms: only heartbeats keep the claim current.
    burst(&database, &["--queues", "long", "--lease", "1s"]).await;
    let job = job_state(&client, id).await;
    assert_eq!((job.state.as_str(), job.attempt), ("succeeded", 1));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let database = TestDatabase::create("worker_json_logs").await;
    database
        .connect()
        .await
        .execute("SELECT pdoflow.enqueue('noop')", &[])
        .await
        .unwrap();
    let output = worker_command(&database, &["--log-format", "json", "worker", "--burst"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"].is_object(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn without_a_background_sweeper_workers_sweep_and_rescue_a_killed_workers_job() {
    // A database no background sweeper covers: the workers sweep themselves.
    let database = TestDatabase::create("worker_self_sweep").await;
    let client = database.connect().await;
    let id = kill_a_worker_mid_job(&database, &client, "default", &[]).await;

    let rescuer = worker_command(&database, &["worker"]).spawn().unwrap();
    let job = wait_for_state(&client, id, "succeeded", PATIENCE).await;
    assert_eq!(job.attempt, 2, "worked again after its lease expired");
    terminate(&rescuer);
    let output = rescuer.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("this worker sweeps"), "{stderr}");
}
