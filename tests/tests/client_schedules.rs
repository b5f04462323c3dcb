//! Cron schedules from the Rust client (`Client::schedule` and its
//! siblings) and the command line (`pdoflow-run schedules`, through
//! `test-worker`): created, listed, replaced, paused, resumed and removed,
//! and what a bad pattern or time zone looks like.

use std::time::Duration;

use pdoflow_client::{Client, Error, Schedule};
use pdoflow_tests::{eventually, TestDatabase};
use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

#[tokio::test]
async fn schedules_commands_add_list_pause_resume_and_remove() {
    let database = TestDatabase::create("client_schedules_cli").await;
    let cli = database.cli(WORKER);
    assert_eq!(cli.ok(&["schedules", "list"]).await.trim(), "(none)");

    let added = cli
        .ok(&[
            "schedules",
            "add",
            "nightly",
            "--cron",
            "*/5 * * * *",
            "--task",
            "report",
            "--args",
            r#"{"kind": "sales"}"#,
            "--queue",
            "reports",
            "--priority",
            "-3",
            "--max-attempts",
            "2",
            "--time-zone",
            "Europe/Berlin",
            "--no-catch-up",
        ])
        .await;
    assert!(
        added.starts_with("schedule \"nightly\": next run at 20"),
        "{added}"
    );
    let listed = cli.json(&["schedules", "list", "--json"]).await;
    let nightly = &listed[0];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(nightly["name"], "nightly");
    assert_eq!(nightly["cron"], "*/5 * * * *");
    assert_eq!(nightly["task"], "report");
    assert_eq!(nightly["args"], json!({"kind": "sales"}));
    assert_eq!(nightly["queue"], "reports");
    assert_eq!(nightly["priority"], -3);
    assert_eq!(nightly["max_attempts"], 2);
    assert_eq!(nightly["time_zone"], "Europe/Berlin");
    assert_eq!(nightly["catch_up"], false);
    assert_eq!(nightly["paused"], false);
    assert_eq!(nightly["owner"], "postgres");
    assert!(nightly["next_run_at"].is_string(), "{nightly}");
    assert!(nightly["last_job"].is_null());

    // Defaults, and the human table.
    let hourly = cli
        .json(&[
            "schedules",
            "add",
            "hourly",
            "--cron",
            "@hourly",
            "--task",
            "tick",
            "--json",
        ])
        .await;
    assert_eq!(hourly["queue"], "default");
    assert_eq!(hourly["time_zone"], "UTC");
    assert_eq!(hourly["catch_up"], true);
    assert_eq!(hourly["max_attempts"], 5);
    let table = cli.ok(&["schedules", "list"]).await;
    for expected in [
        "nightly",
        "*/5 * * * *",
        "Europe/Berlin",
        "hourly",
        "@hourly",
    ] {
        assert!(table.contains(expected), "{expected}: {table}");
    }

    assert_eq!(
        cli.ok(&["schedules", "pause", "nightly"]).await.trim(),
        "paused"
    );
    let listed = cli.json(&["schedules", "list", "--json"]).await;
    assert_eq!(listed[1]["name"], "nightly");
    assert_eq!(listed[1]["paused"], true);
    assert!(cli.ok(&["schedules", "list"]).await.contains("yes"));
    assert_eq!(
        cli.ok(&["schedules", "resume", "nightly"]).await.trim(),
        "resumed"
    );
    let listed = cli.json(&["schedules", "list", "--json"]).await;
    assert_eq!(listed[1]["paused"], false);

    // Adding again replaces.
    cli.ok(&[
        "schedules",
        "add",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--task",
        "report",
    ])
    .await;
    let listed = cli.json(&["schedules", "list", "--json"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(listed[1]["cron"], "0 3 * * *");
    assert_eq!(listed[1]["queue"], "default", "every option is replaced");

    assert_eq!(
        cli.ok(&["schedules", "remove", "nightly"]).await.trim(),
        "removed"
    );
    cli.fails(
        &["schedules", "remove", "nightly"],
        1,
        "pdoflow-run: schedule \"nightly\" does not exist",
    )
    .await;
    for action in ["pause", "resume"] {
        cli.fails(
            &["schedules", action, "nightly"],
            1,
            "pdoflow-run: schedule \"nightly\" does not exist",
        )
        .await;
    }
    let listed = cli.json(&["schedules", "list", "--json"]).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

/// Runs `args`, expecting exit code 1 and exactly one line on stderr that
/// starts with `start`.
async fn refused(database: &TestDatabase, args: &[&str], start: &str) {
    let output = database.cli(WORKER).run(args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with(start), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}");
}

#[tokio::test]
async fn a_bad_pattern_or_time_zone_is_one_clear_line() {
    let database = TestDatabase::create("client_schedules_bad").await;
    let add = |cron: &'static str, zone: &'static str| {
        [
            "schedules",
            "add",
            "broken",
            "--cron",
            cron,
            "--task",
            "t",
            "--time-zone",
            zone,
        ]
    };
    refused(
        &database,
        &add("*/5 * * *", "UTC"),
        "pdoflow-run: cron \"*/5 * * *\" has 4 fields; a pattern has 5, or 6 with seconds first",
    )
    .await;
    refused(
        &database,
        &add("61 * * * *", "UTC"),
        "pdoflow-run: cron \"61 * * * *\" is not a valid cron pattern",
    )
    .await;
    refused(
        &database,
        &add("0 0 30 2 *", "UTC"),
        "pdoflow-run: cron \"0 0 30 2 *\" never runs",
    )
    .await;
    refused(
        &database,
        &add("@daily", "Mars/Olympus"),
        "pdoflow-run: time_zone \"Mars/Olympus\" is not a known time zone",
    )
    .await;
    // The server's hint comes along, on the same line.
    let output = database.cli(WORKER).run(&add("bogus", "UTC")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("(SQLSTATE 22023); hint: Write five fields"),
        "{stderr}"
    );
    assert_eq!(
        database.cli(WORKER).ok(&["schedules", "list"]).await.trim(),
        "(none)",
        "nothing was saved"
    );
    // Usage mistakes are the command line's.
    database
        .cli(WORKER)
        .fails(&["schedules", "add", "x", "--task", "t"], 2, "--cron")
        .await;
}

#[tokio::test]
async fn the_client_saves_runs_pauses_and_removes_a_schedule() {
    let database = TestDatabase::create("client_schedules_api").await;
    let client = Client::connect(&database.url()).await.unwrap();
    let every_second = Schedule::new("tick", "every 1 seconds", "tick", &json!({"n": 1}))
        .unwrap()
        .queue("ticks")
        .priority(2)
        .max_attempts(1);
    client.schedule(&every_second).await.unwrap();
    let listed = client.schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    let tick = &listed[0];
    assert_eq!(
        (tick.name.as_str(), tick.cron.as_str(), tick.queue.as_str()),
        ("tick", "every 1 seconds", "ticks")
    );
    assert_eq!((tick.priority, tick.max_attempts), (2, 1));
    assert!(tick.catch_up && !tick.paused);
    assert!(tick.next_run_at.is_some());

    // No background sweeper works in the tests' databases: sweeping here
    // runs the schedule once its time has come.
    let job = eventually(
        "the schedule's first job",
        Duration::from_secs(10),
        || async {
            client.sweep().await.unwrap();
            client.schedule_info("tick").await.unwrap()?.last_job
        },
    )
    .await;
    let enqueued = client.job(job).await.unwrap().expect("the scheduled job");
    assert_eq!(enqueued.task, "tick");
    assert_eq!(enqueued.queue, "ticks");
    assert_eq!(enqueued.args, json!({"n": 1}));
    assert_eq!(enqueued.max_attempts, 1);

    client.pause_schedule("tick").await.unwrap();
    client.pause_schedule("tick").await.unwrap();
    let info = client.schedule_info("tick").await.unwrap().expect("tick");
    assert!(info.paused);
    client.resume_schedule("tick").await.unwrap();
    assert!(
        !client
            .schedule_info("tick")
            .await
            .unwrap()
            .expect("tick")
            .paused
    );

    match client.pause_schedule("nope").await {
        Err(Error::NoSuchSchedule(name)) => assert_eq!(name, "nope"),
        other => panic!("an unknown schedule: {other:?}"),
    }
    match client.resume_schedule("nope").await {
        Err(Error::NoSuchSchedule(name)) => assert_eq!(name, "nope"),
        other => panic!("an unknown schedule: {other:?}"),
    }
    assert!(client.schedule_info("nope").await.unwrap().is_none());

    let bad = Schedule::new("bad", "* * *", "tick", &json!({})).unwrap();
    let error = client.schedule(&bad).await.expect_err("a bad pattern");
    assert_eq!(error.sqlstate(), Some("22023"), "{error}");
    assert!(error.to_string().contains("has 3 fields"), "{error}");

    assert!(client.unschedule("tick").await.unwrap());
    assert!(!client.unschedule("tick").await.unwrap());
    assert!(client.schedules().await.unwrap().is_empty());
    assert!(
        client.job(job).await.unwrap().is_some(),
        "the jobs it enqueued stay"
    );
}
