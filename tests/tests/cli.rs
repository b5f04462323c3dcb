//! The admin commands of `pdoflow-run` (through `test-worker`, which shares
//! its command line): enqueue, status, jobs, job show|attempts|cancel|retry,
//! priority-stats, execute-job, wait, and the pool supervisor.

use std::time::Duration;

use pdoflow_tests::{eventually, send_signal, TestDatabase};
use tokio::process::Command;

const PATIENCE: Duration = Duration::from_secs(30);
const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

#[tokio::test]
async fn admin_commands_enqueue_list_show_cancel_and_retry() {
    let database = TestDatabase::create("cli_admin").await;
    let created = database
        .cli(WORKER)
        .json(&[
            "enqueue",
            "--task",
            "echo",
            "--args",
            r#"{"n": 1}"#,
            "--queue",
            "mail",
            "--priority",
            "-5",
            "--delay",
            "5m",
            "--max-attempts",
            "2",
            "--json",
        ])
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let plain_id = database
        .cli(WORKER)
        .ok(&["enqueue", "--task", "noop"])
        .await;
    assert_eq!(plain_id.trim().len(), 36, "{plain_id}");

    let job = database
        .cli(WORKER)
        .json(&["job", "show", &id, "--json"])
        .await;
    assert_eq!(job["task"], "echo");
    assert_eq!(job["queue"], "mail");
    assert_eq!(job["priority"], -5);
    assert_eq!(job["max_attempts"], 2);
    assert_eq!(job["args"], serde_json::json!({"n": 1}));
    let human = database.cli(WORKER).ok(&["job", "show", &id]).await;
    assert!(human.contains("queue: mail"), "{human}");

    let status = database.cli(WORKER).json(&["status", "--json"]).await;
    assert_eq!(
        status,
        serde_json::json!([
            {"queue": "default", "state": "queued", "jobs": 1},
            {"queue": "mail", "state": "queued", "jobs": 1},
        ])
    );
    let priorities = database
        .cli(WORKER)
        .json(&["priority-stats", "--json"])
        .await;
    assert_eq!(priorities[0]["queue"], "default");
    assert_eq!(priorities[1]["priority"], -5);

    let listed = database
        .cli(WORKER)
        .json(&["jobs", "--queue", "mail", "--json"])
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let page_two = database
        .cli(WORKER)
        .json(&["jobs", "--limit", "1", "--page", "2", "--json"])
        .await;
    assert_eq!(
        page_two.as_array().unwrap().len(),
        1,
        "two jobs, one per page"
    );
    assert!(database.cli(WORKER).ok(&["jobs"]).await.contains("echo"));

    assert_eq!(
        database
            .cli(WORKER)
            .ok(&["job", "cancel", &id])
            .await
            .trim(),
        "cancelled"
    );
    assert_eq!(
        database
            .cli(WORKER)
            .ok(&["job", "cancel", &id])
            .await
            .trim(),
        "not cancelled: the job had already ended"
    );
    assert_eq!(
        database.cli(WORKER).ok(&["job", "retry", &id]).await.trim(),
        "queued again"
    );
    // The job's attempts: none yet; then one that failed.
    let none = database
        .cli(WORKER)
        .json(&["job", "attempts", &id, "--json"])
        .await;
    assert_eq!(none, serde_json::json!([]));
    database
        .connect()
        .await
        .batch_execute(&format!(
            "SELECT pdoflow.finish(id, attempt, error => 'smtp timeout
(after 30 s)')
             FROM pdoflow.claim_job('{id}', worker => 'mailer')"
        ))
        .await
        .unwrap();
    let attempts = database
        .cli(WORKER)
        .json(&["job", "attempts", &id, "--json"])
        .await;
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["worker"], "mailer");
    assert_eq!(attempts[0]["error"], "smtp timeout\n(after 30 s)");
    let table = database.cli(WORKER).ok(&["job", "attempts", &id]).await;
    assert!(
        table.contains("failed") && table.contains("smtp timeout") && !table.contains("after 30"),
        "{table}"
    );

    let unknown = database
        .cli(WORKER)
        .run(&["job", "show", "00000000-0000-7000-8000-000000000000"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
    let unknown = database
        .cli(WORKER)
        .run(&["job", "attempts", "00000000-0000-7000-8000-000000000000"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
    let bad_task = database.cli(WORKER).run(&["enqueue", "--task", ""]).await;
    assert_eq!(bad_task.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad_task.stderr).contains("jobs[0].task must not be empty"),
        "{}",
        String::from_utf8_lossy(&bad_task.stderr)
    );
}

/// A standby target is for the commands that only read: with one server
/// (a primary), `prefer-standby` falls back to it for them, and the
/// commands that write refuse it.
#[tokio::test]
async fn standby_targets_serve_only_the_commands_that_read() {
    let database = TestDatabase::create("cli_targets").await;
    let url = format!("{}?target_session_attrs=prefer-standby", database.url());
    let cli = database.cli(WORKER);
    cli.ok(&["--database-url", &url, "status"]).await;
    cli.ok(&["--database-url", &url, "jobs"]).await;
    for command in [
        &["enqueue", "--task", "x"][..],
        &["worker", "--burst"],
        &["wait"],
    ] {
        let mut args = vec!["--database-url", url.as_str()];
        args.extend_from_slice(command);
        cli.fails(
            &args,
            1,
            "target_session_attrs=prefer-standby wants a standby",
        )
        .await;
    }
    // No standby at all: `standby` finds none and says why.
    let standby_only = format!("{}?target_session_attrs=standby", database.url());
    let output = cli.run(&["--database-url", &standby_only, "status"]).await;
    assert_eq!(output.status.code(), Some(1));
    let bad = format!("{}?target_session_attrs=replica", database.url());
    cli.fails(&["--database-url", &bad, "status"], 1, "\"replica\"")
        .await;
}

#[tokio::test]
async fn execute_job_runs_one_job_through_claim_and_finish() {
    let database = TestDatabase::create("cli_execute").await;
    let client = database.connect().await;
    let later: uuid::Uuid = client
        .query_one(
            r#"SELECT pdoflow.enqueue('echo', '{"x": 1}', run_at => now() + interval '1 day')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let stdout = database
        .cli(WORKER)
        .ok(&["execute-job", &later.to_string()])
        .await;
    assert!(stdout.contains("succeeded (attempt 1)"), "{stdout}");
    let state: String = client
        .query_one("SELECT state FROM pdoflow.jobs WHERE id = $1", &[&later])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "succeeded");

    let again = database
        .cli(WORKER)
        .run(&["execute-job", &later.to_string()])
        .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr)
        .contains("is succeeded; only a queued job can be executed"));

    let failing: uuid::Uuid = client
        .query_one(
            r#"SELECT pdoflow.enqueue('fail', '{"message": "nope"}')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let failed = database
        .cli(WORKER)
        .run(&["execute-job", &failing.to_string()])
        .await;
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("failed (attempt 1, now queued): nope"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_worker_told_its_tasks_leaves_the_others_alone() {
    let database = TestDatabase::create("cli_tasks").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT pdoflow.enqueue('echo'); SELECT pdoflow.enqueue('someone_elses_task');",
        )
        .await
        .unwrap();
    let output = database
        .cli(WORKER)
        .command(&["worker", "--tasks", "echo,noop", "--poll-interval", "100ms"])
        .spawn()
        .unwrap();
    eventually("the echo job done", PATIENCE, || async {
        let state: String = client
            .query_one("SELECT state FROM pdoflow.jobs WHERE task = 'echo'", &[])
            .await
            .unwrap()
            .get(0);
        (state == "succeeded").then_some(())
    })
    .await;
    drop(output);
    let other: (String, i32) = client
        .query_one(
            "SELECT state, attempt FROM pdoflow.jobs WHERE task = 'someone_elses_task'",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(other, ("queued".to_owned(), 0));

    let unknown = database
        .cli(WORKER)
        .run(&["worker", "--tasks", "nope"])
        .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("task \"nope\" has no handler in this worker"));
}

#[tokio::test]
async fn wait_returns_once_the_queue_is_empty() {
    let database = TestDatabase::create("cli_wait").await;
    database
        .cli(WORKER)
        .ok(&["enqueue", "--task", "sleep", "--args", r#"{"ms": 300}"#])
        .await;
    let timed_out = database
        .cli(WORKER)
        .run(&["wait", "--timeout", "300ms"])
        .await;
    assert_eq!(
        timed_out.status.code(),
        Some(1),
        "nobody works the queue yet"
    );
    let _worker = database.cli(WORKER).command(&["worker"]).spawn().unwrap();
    database
        .cli(WORKER)
        .ok(&["wait", "--timeout", "20s", "--progress"])
        .await;
}

#[tokio::test]
async fn the_pool_restarts_a_dead_worker_and_stops_them_all_on_sigterm() {
    let database = TestDatabase::create("cli_pool").await;
    let client = database.connect().await;
    let pool = database
        .cli(WORKER)
        .command(&["pool", "--processes", "2", "--poll-interval", "100ms"])
        .spawn()
        .unwrap();
    let workers = || async {
        client
            .query(
                "SELECT name FROM pdoflow.workers ORDER BY first_seen_at",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let first = eventually("two workers registered", PATIENCE, || async {
        let names = workers().await;
        (names.len() == 2).then_some(names)
    })
    .await;
    // Worker names end with their process id.
    let victim = first[0].rsplit('-').next().unwrap().to_owned();
    send_signal("-KILL", &victim);
    eventually("a replacement worker registered", PATIENCE, || async {
        let names = workers().await;
        (names.len() == 3).then_some(())
    })
    .await;
    // The pool still works jobs.
    database
        .cli(WORKER)
        .ok(&["enqueue", "--task", "noop"])
        .await;
    database.cli(WORKER).ok(&["wait", "--timeout", "20s"]).await;

    send_signal("-TERM", pool.id().unwrap());
    let output = tokio::time::timeout(PATIENCE, pool.wait_with_output())
        .await
        .expect("the pool exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("worker process died"), "{stderr}");
    for name in workers().await {
        let pid = name.rsplit('-').next().unwrap();
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(
            !alive,
            "worker process {pid} still running after the pool stopped"
        );
    }
}

#[tokio::test]
async fn the_config_file_is_used_when_nothing_else_is_given_and_flags_win() {
    let database = TestDatabase::create("cli_config_file").await;
    let home = std::env::temp_dir().join(format!("pdoflow-home-{}", database.name()));
    let conf_dir = home.join(".config").join("pdoflow");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("db.conf"),
        format!(
            "[postgresql]\nuser = postgres\nhost = 127.0.0.1\nport = {}\ndatabase = {}\n",
            database.port(),
            database.name()
        ),
    )
    .unwrap();
    let status = |extra: Vec<String>, env_url: Option<&str>| {
        let mut command = Command::new(WORKER);
        command
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("PDOFLOW_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .args(extra)
            .args(["status", "--json"]);
        if let Some(url) = env_url {
            command.env("DATABASE_URL", url);
        }
        command.output()
    };
    let unreachable = "postgresql://postgres@127.0.0.1:1/none";
    let from_file = status(vec![], None).await.unwrap();
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    // The environment beats the file, the flag beats the environment.
    let from_env = status(vec![], Some(unreachable)).await.unwrap();
    assert_eq!(
        from_env.status.code(),
        Some(1),
        "DATABASE_URL is used first"
    );
    assert!(String::from_utf8_lossy(&from_env.stderr).contains("(DATABASE_URL)"));
    let flag = vec!["--database-url".to_owned(), database.url()];
    let from_flag = status(flag, Some(unreachable)).await.unwrap();
    assert!(
        from_flag.status.success(),
        "{}",
        String::from_utf8_lossy(&from_flag.stderr)
    );
}

#[tokio::test]
async fn queues_commands_list_pause_resume_and_limit() {
    let database = TestDatabase::create("cli_queues").await;
    let cli = database.cli(WORKER);
    assert_eq!(cli.ok(&["queues", "list"]).await.trim(), "(none)");
    assert_eq!(
        cli.json(&["queues", "list", "--json"]).await,
        serde_json::json!([])
    );
    cli.ok(&["enqueue", "--task", "noop", "--queue", "mail"])
        .await;

    assert_eq!(cli.ok(&["queues", "pause", "mail"]).await.trim(), "paused");
    assert_eq!(
        cli.ok(&["queues", "pause", "mail"]).await.trim(),
        "already paused"
    );
    let listed = cli.json(&["queues", "list", "--json"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let mail = &listed[0];
    assert_eq!(mail["queue"], "mail");
    assert_eq!(mail["paused"], true);
    assert_eq!(mail["waiting"], 1);
    assert_eq!(mail["throttled"], 1);
    assert!(
        mail["max_running"].is_null() && mail["rate"].is_null(),
        "{mail}"
    );

    assert_eq!(
        cli.ok(&[
            "queues",
            "limit",
            "mail",
            "--max-running",
            "5",
            "--rate",
            "10",
            "--per",
            "1m"
        ])
        .await
        .trim(),
        "queue \"mail\": at most 5 running, 10 claims per 1m"
    );
    assert_eq!(
        cli.ok(&["queues", "key-limit", "mail", "2"]).await.trim(),
        "queue \"mail\": at most 2 running per concurrency key"
    );
    let mail = &cli.json(&["queues", "list", "--json"]).await[0];
    assert_eq!(mail["max_running"], 5);
    assert_eq!(
        mail["rate"],
        serde_json::json!({"count": 10, "per_seconds": 60.0})
    );
    assert_eq!(mail["key_limit"], 2);
    assert_eq!(mail["paused"], true, "limits keep the pause");
    let table = cli.ok(&["queues", "list"]).await;
    for expected in [
        "mail",
        "yes",
        "10 claims per 1m",
        "max running",
        "throttled",
    ] {
        assert!(table.contains(expected), "{expected}: {table}");
    }

    // --rate alone: a rate per second, and no running limit any more.
    assert_eq!(
        cli.ok(&["queues", "limit", "mail", "--rate", "3"])
            .await
            .trim(),
        "queue \"mail\": 3 claims per 1s"
    );
    let mail = &cli.json(&["queues", "list", "--json"]).await[0];
    assert!(mail["max_running"].is_null(), "{mail}");
    assert_eq!(
        mail["rate"],
        serde_json::json!({"count": 3, "per_seconds": 1.0})
    );
    // Neither flag: both limits removed; the key limit stays.
    assert_eq!(
        cli.ok(&["queues", "limit", "mail"]).await.trim(),
        "queue \"mail\": no limits"
    );
    assert_eq!(
        cli.ok(&["queues", "key-limit", "mail", "--clear"])
            .await
            .trim(),
        "queue \"mail\": no per-key limit"
    );
    let mail = &cli.json(&["queues", "list", "--json"]).await[0];
    assert!(
        mail["max_running"].is_null() && mail["rate"].is_null() && mail["key_limit"].is_null(),
        "{mail}"
    );

    assert_eq!(
        cli.ok(&["queues", "resume", "mail"]).await.trim(),
        "resumed"
    );
    assert_eq!(
        cli.ok(&["queues", "resume", "mail"]).await.trim(),
        "not paused"
    );
    let mail = &cli.json(&["queues", "list", "--json"]).await[0];
    assert_eq!(
        (&mail["paused"], &mail["throttled"]),
        (&serde_json::json!(false), &serde_json::json!(0))
    );

    // A concurrency key from the command line.
    let id = cli
        .ok(&[
            "enqueue",
            "--task",
            "noop",
            "--concurrency-key",
            "customer-7",
        ])
        .await;
    let job = cli.json(&["job", "show", id.trim(), "--json"]).await;
    assert_eq!(job["concurrency_key"], "customer-7");
}

#[tokio::test]
async fn queue_limits_below_one_show_the_servers_reason() {
    let database = TestDatabase::create("cli_queues_bad").await;
    let cli = database.cli(WORKER);
    for (args, reason) in [
        (
            &["queues", "limit", "q", "--max-running", "0"][..],
            "pdoflow-run: max_running must be at least 1 (NULL removes the limit), got 0 (SQLSTATE 22023)",
        ),
        (
            &["queues", "limit", "q", "--max-running", "-2"][..],
            "max_running must be at least 1 (NULL removes the limit), got -2",
        ),
        (
            &["queues", "limit", "q", "--rate", "-1"][..],
            "pdoflow-run: rate must be at least 1, got -1",
        ),
        (
            &["queues", "limit", "q", "--rate", "1", "--per", "0s"][..],
            "per must be between 1 millisecond and 1 year",
        ),
        (
            &["queues", "key-limit", "q", "0"][..],
            "pdoflow-run: max_running must be at least 1 (NULL removes the limit), got 0",
        ),
        (
            &["queues", "key-limit", "q", "-1"][..],
            "max_running must be at least 1 (NULL removes the limit), got -1",
        ),
    ] {
        let output = cli.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
    // Usage mistakes: exit code 2.
    cli.fails(&["queues", "key-limit", "q"], 2, "(see --help)")
        .await;
    cli.fails(&["queues", "limit", "q", "--per", "1s"], 2, "--rate")
        .await;
    cli.fails(
        &["queues", "limit", "q", "--rate", "1", "--per", "soon"],
        2,
        "--per",
    )
    .await;
    assert_eq!(
        cli.ok(&["queues", "list"]).await.trim(),
        "(none)",
        "nothing changed"
    );
    let help = cli.ok(&["queues", "limit", "--help"]).await;
    assert!(help.contains("removes both"), "{help}");
}
