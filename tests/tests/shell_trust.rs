//! The built-in `shell` task runs commands on the worker's host, so a worker
//! runs it only when started with `--enable-shell` (or
//! `PDOFLOW_ENABLE_SHELL`), and then only once task "shell" has a grant in
//! the database: turning shell on always comes with a decision on who may
//! enqueue commands.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use pdoflow_tests::{describe, TestDatabase};
use tokio::process::Command;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
const PATIENCE: Duration = Duration::from_secs(30);

/// A file the test's shell job would create, were it run.
fn marker(database: &TestDatabase) -> PathBuf {
    std::env::temp_dir().join(format!("pdoflow-shell-marker-{}", database.name()))
}

/// Runs `test-worker` with `args` against `database` and waits for it.
async fn run(database: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> Output {
    let log_dir = std::env::temp_dir().join(format!("pdoflow-shell-logs-{}", database.name()));
    let mut command = Command::new(WORKER);
    command
        .env("PDOFLOW_DATABASE_URL", database.url())
        .env_remove("DATABASE_URL")
        .env_remove("PDOFLOW_ENABLE_SHELL")
        .envs(env.iter().copied())
        .args(args)
        .arg("--log-dir")
        .arg(&log_dir)
        .kill_on_drop(true);
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("the worker finishes")
        .expect("run the worker")
}

/// Enqueues a shell job that would create the marker file.
async fn enqueue_marker_job(database: &TestDatabase) -> uuid::Uuid {
    let marker = marker(database);
    let _ = std::fs::remove_file(&marker);
    let args = serde_json::json!({"command": ["touch", marker.display().to_string()]});
    database
        .connect()
        .await
        .query_one(
            "SELECT pdoflow.enqueue('shell', $1::jsonb, max_attempts => 1)",
            &[&args],
        )
        .await
        .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)))
        .get(0)
}

async fn state_and_error(database: &TestDatabase, id: uuid::Uuid) -> (String, Option<String>) {
    let row = database
        .connect()
        .await
        .query_one(
            "SELECT state, last_error FROM pdoflow.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_worker_without_enable_shell_does_not_run_shell_jobs() {
    let database = TestDatabase::create("shell_off").await;
    let id = enqueue_marker_job(&database).await;
    let output = run(&database, &["worker", "--burst"], &[]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (state, error) = state_and_error(&database, id).await;
    assert_eq!(state, "failed");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("no handler for task \"shell\"") && error.contains("--enable-shell"),
        "{error}"
    );
    assert!(!marker(&database).exists(), "the command must not have run");

    // execute-job neither.
    let id = enqueue_marker_job(&database).await;
    let output = run(&database, &["execute-job", &id.to_string()], &[]).await;
    assert!(!output.status.success());
    assert!(!marker(&database).exists(), "the command must not have run");
}

#[tokio::test]
async fn enable_shell_refuses_to_start_until_shell_has_a_grant() {
    let database = TestDatabase::create("shell_ungranted").await;
    let id = enqueue_marker_job(&database).await;
    for (args, env) in [
        (vec!["worker", "--burst", "--enable-shell"], vec![]),
        (
            vec!["worker", "--burst"],
            vec![("PDOFLOW_ENABLE_SHELL", "true")],
        ),
        (
            vec!["pool", "--processes", "1", "--burst", "--enable-shell"],
            vec![],
        ),
        (
            vec!["execute-job", "--enable-shell", &id.to_string()],
            vec![],
        ),
    ] {
        let output = run(&database, &args, &env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr}");
        assert!(
            lines[0].contains("--enable-shell")
                && lines[0].contains("no grant")
                && lines[0].contains("pdoflow.grant_task('shell'"),
            "{args:?}: {stderr}"
        );
    }
    let (state, _) = state_and_error(&database, id).await;
    assert_eq!(state, "queued", "nothing was claimed");
    assert!(!marker(&database).exists());

    // PDOFLOW_ENABLE_SHELL=false, or the flag's =false, leave shell off:
    // the worker starts (and fails the job for want of a handler).
    let output = run(
        &database,
        &["worker", "--burst", "--enable-shell=false"],
        &[("PDOFLOW_ENABLE_SHELL", "0")],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!marker(&database).exists());
}

#[tokio::test]
async fn with_a_grant_enable_shell_runs_shell_jobs() {
    let database = TestDatabase::create("shell_granted").await;
    database
        .connect()
        .await
        .batch_execute("SELECT pdoflow.grant_task('shell', 'pdoflow_admin')")
        .await
        .unwrap();
    let id = enqueue_marker_job(&database).await;
    let output = run(
        &database,
        &["worker", "--burst"],
        &[("PDOFLOW_ENABLE_SHELL", "1")],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (state, error) = state_and_error(&database, id).await;
    assert_eq!(state, "succeeded", "{error:?}");
    assert!(marker(&database).exists(), "the command ran");
    let _ = std::fs::remove_file(marker(&database));
}

/// The grant decides per job, at the moment a worker would run it: a shell
/// job enqueued before the task was granted, by a role that holds no grant,
/// fails without running, while a grantee's job runs.
#[tokio::test]
async fn a_shell_job_of_a_role_without_a_grant_is_not_run() {
    let database = TestDatabase::create("shell_per_job").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "DROP ROLE IF EXISTS pdoflow_shell_app;
             CREATE ROLE pdoflow_shell_app IN ROLE pdoflow_producer;",
        )
        .await
        .unwrap();
    // Enqueued by a producer while shell was open to everyone.
    let marker = marker(&database);
    let _ = std::fs::remove_file(&marker);
    client
        .batch_execute("SET ROLE pdoflow_shell_app")
        .await
        .unwrap();
    let early: uuid::Uuid = client
        .query_one(
            "SELECT pdoflow.enqueue('shell', $1::jsonb, max_attempts => 1)",
            &[&serde_json::json!({"command": ["touch", marker.display().to_string()]})],
        )
        .await
        .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)))
        .get(0);
    client.batch_execute("RESET ROLE").await.unwrap();
    client
        .batch_execute("SELECT pdoflow.grant_task('shell', 'pdoflow_admin')")
        .await
        .unwrap();
    let granted: uuid::Uuid = client
        .query_one(
            r#"SELECT pdoflow.enqueue('shell', '{"command": ["true"]}')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let output = run(&database, &["worker", "--burst", "--enable-shell"], &[]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (state, error) = state_and_error(&database, early).await;
    assert_eq!(state, "failed");
    let error = error.unwrap_or_default();
    assert!(
        error.starts_with(
            "not run: the role that enqueued this job holds no grant of task \"shell\""
        ),
        "{error}"
    );
    assert!(!marker.exists(), "the command must not have run");
    let (state, error) = state_and_error(&database, granted).await;
    assert_eq!(state, "succeeded", "{error:?}");
    client
        .batch_execute("DROP ROLE pdoflow_shell_app")
        .await
        .unwrap_or_else(|error| panic!("drop role: {}", describe(&error)));
}
