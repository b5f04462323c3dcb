//! The background sweeper as a process: it shows in pg_stat_activity, obeys
//! SIGTERM and SIGHUP, survives SIGKILL (and the crash restart that follows),
//! and stays quiet when its extension is dropped.
//!
//! These tests signal processes and change server settings, and a SIGKILL
//! restarts every backend: they run one at a time, and this program runs
//! alone (cargo runs test programs one after another).

use std::time::Duration;

use pdoflow_tests::{
    connect_patiently, describe, eventually, job_state, send_signal, wait_for_state, ServerLog,
    TestDatabase,
};
use tokio::sync::Mutex;
use tokio_postgres::Client;

const PATIENCE: Duration = Duration::from_secs(30);

/// Held by each test for its whole run.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The pid of the sweeper of `database`; `None` while there is none, or
/// while the server cannot answer (during a crash restart).
async fn sweeper_pid(client: &Client, database: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pdoflow sweeper' AND datname = $1",
            &[&database],
        )
        .await
        .ok()
        .flatten()
        .map(|row| row.get(0))
}

/// Waits for a sweeper of `database` other than the process `old`.
async fn sweeper_restarted(client: &Client, database: &str, old: i32, what: &str) {
    eventually(what, PATIENCE, || async {
        sweeper_pid(client, database)
            .await
            .filter(|new| *new != old)
    })
    .await;
}

/// Claims a fresh job with a 1-second lease and waits until the sweeper has
/// taken it back: proof that a sweeper is at work in the database.
async fn assert_sweeping(client: &Client) {
    let id = claim_with_short_lease(client, "probe").await;
    wait_for_state(client, id, "failed", PATIENCE).await;
}

/// Enqueues a job with one attempt in `queue` (a queue with no other jobs
/// waiting) and claims it with a 1-second lease.
async fn claim_with_short_lease(client: &Client, queue: &str) -> uuid::Uuid {
    client
        .execute(
            "SELECT pdoflow.enqueue('probe', queue => $1, max_attempts => 1)",
            &[&queue],
        )
        .await
        .unwrap_or_else(|error| panic!("enqueueing a probe job: {}", describe(&error)));
    client
        .query_one(
            "SELECT id FROM pdoflow.claim(1, ARRAY[$1], lease => '1 second')",
            &[&queue],
        )
        .await
        .map(|row| row.get(0))
        .unwrap_or_else(|error| panic!("claiming a probe job: {}", describe(&error)))
}

/// Sets (or with `None` resets) pdoflow.sweep_interval server-wide and
/// reloads the configuration. ALTER SYSTEM refuses to run in a transaction,
/// so it goes alone.
async fn set_sweep_interval(client: &Client, interval: Option<&str>) {
    let alter = match interval {
        Some(interval) => format!("ALTER SYSTEM SET pdoflow.sweep_interval = '{interval}'"),
        None => "ALTER SYSTEM RESET pdoflow.sweep_interval".to_owned(),
    };
    for statement in [alter.as_str(), "SELECT pg_reload_conf()"] {
        client
            .batch_execute(statement)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {}", describe(&error)));
    }
}

#[tokio::test]
async fn one_sweeper_per_listed_database_under_its_own_backend_type() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::swept("lifecycle").await;
    let client = database.connect().await;
    let listed: String = client
        .query_one("SHOW pdoflow.database", &[])
        .await
        .unwrap()
        .get(0);
    let mut expected: Vec<String> = listed
        .split(',')
        .map(|name| name.trim().to_owned())
        .collect();
    expected.sort();
    let running: Vec<String> =
        eventually("a sweeper in every listed database", PATIENCE, || async {
            let running: Vec<String> = client
                .query(
                    "SELECT datname, application_name FROM pg_stat_activity
                 WHERE backend_type = 'pdoflow sweeper' ORDER BY datname",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    assert_eq!(row.get::<_, String>(1), "pdoflow sweeper");
                    row.get(0)
                })
                .collect();
            (running == expected).then_some(running)
        })
        .await;
    assert!(running.contains(&"postgres".to_owned()));
    assert_sweeping(&client).await;
}

#[tokio::test]
async fn sigterm_ends_it_promptly_and_it_is_started_again() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::swept("lifecycle").await;
    let client = database.connect().await;
    let pid = eventually("the sweeper running", PATIENCE, || {
        sweeper_pid(&client, database.name())
    })
    .await;

    let terminated: bool = client
        .query_one("SELECT pg_terminate_backend($1, 5000)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated, "the sweeper exits within 5 s of SIGTERM");
    sweeper_restarted(&client, database.name(), pid, "the sweeper started again").await;
    assert_sweeping(&client).await;
}

#[tokio::test]
async fn sigkill_is_survived_and_sweeping_goes_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::swept("lifecycle").await;
    let client = database.connect().await;
    let pid = eventually("the sweeper running", PATIENCE, || {
        sweeper_pid(&client, database.name())
    })
    .await;

    // A background worker killed outright may have left shared memory
    // inconsistent: the postmaster restarts every backend, this one included.
    send_signal("-KILL", pid);
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = connect_patiently(&database, PATIENCE).await;
    sweeper_restarted(
        &client,
        database.name(),
        pid,
        "the sweeper back after the crash",
    )
    .await;
    assert_sweeping(&client).await;
}

#[tokio::test]
async fn reloading_the_configuration_changes_the_interval() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::swept("lifecycle").await;
    let client = database.connect().await;
    set_sweep_interval(&client, Some("1h")).await;
    // The sweeper wakes for the reload, runs one round, then sleeps an hour.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = claim_with_short_lease(&client, "slow").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = job_state(&client, id).await.state;

    set_sweep_interval(&client, None).await;
    assert_eq!(
        state, "running",
        "no round ran during the hour-long interval"
    );
    // A round soon after the interval is short again.
    wait_for_state(&client, id, "failed", PATIENCE).await;
}

/// Finishes a fresh job in the lifecycle database and backdates it; returns its id.
async fn finished_hours_ago(client: &Client, hours: i32) -> uuid::Uuid {
    let id = claim_with_short_lease(client, "history").await;
    client
        .execute("SELECT pdoflow.finish($1, 1)", &[&id])
        .await
        .unwrap_or_else(|error| panic!("finishing a job: {}", describe(&error)));
    client
        .execute(
            "UPDATE pdoflow.finished_jobs SET finished_at = now() - make_interval(hours => $2) WHERE id = $1",
            &[&id, &hours],
        )
        .await
        .unwrap_or_else(|error| panic!("backdating a job: {}", describe(&error)));
    id
}

async fn exists(client: &Client, id: uuid::Uuid) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pdoflow.jobs WHERE id = $1)",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn database_settings_apply_without_a_restart() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::swept("lifecycle").await;
    let client = database.connect().await;
    let name = database.name().to_owned();
    client
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET pdoflow.retention = '1h'"
        ))
        .await
        .unwrap();
    // A sweeper that connects now starts with the database's value, the
    // case where a later RESET must fall back to the server's value.
    let pid = eventually("the sweeper running", PATIENCE, || {
        sweeper_pid(&client, &name)
    })
    .await;
    client
        .execute("SELECT pg_terminate_backend($1, 5000)", &[&pid])
        .await
        .unwrap();
    sweeper_restarted(&client, &name, pid, "the sweeper started again").await;
    let two_hours_old = finished_hours_ago(&client, 2).await;
    eventually(
        "a job past the database's retention deleted",
        PATIENCE,
        || async { (!exists(&client, two_hours_old).await).then_some(()) },
    )
    .await;

    client
        .batch_execute(&format!("ALTER DATABASE {name} RESET pdoflow.retention"))
        .await
        .unwrap();
    // Give the sweeper time to see the RESET before the next old job exists.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = finished_hours_ago(&client, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        exists(&client, kept).await,
        "back to the default retention of 7 days"
    );
}

#[tokio::test]
async fn dropping_the_extension_under_it_logs_no_errors() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let database = TestDatabase::swept("lifecycle").await;
    let client = database.connect().await;
    assert_sweeping(&client).await;

    let log = ServerLog::mark(&client).await;
    client
        .batch_execute("DROP EXTENSION pdoflow")
        .await
        .unwrap();
    // Thirty rounds or so without the extension.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_lines = log.read_new(&client).await;
    client
        .batch_execute("CREATE EXTENSION pdoflow")
        .await
        .unwrap();
    assert_sweeping(&client).await;
    let lines = log.read_new(&client).await;

    let problems: Vec<&String> = lines
        .iter()
        .filter(|line| {
            ["ERROR", "WARNING", "FATAL", "PANIC"]
                .iter()
                .any(|level| line.contains(&format!("{level}:  ")))
        })
        .collect();
    assert!(problems.is_empty(), "server log: {problems:#?}");
    let mentions = |text: &str| lines.iter().filter(|line| line.contains(text)).count();
    let dropped = format!("was dropped from database \"{}\"", database.name());
    assert_eq!(mentions(&dropped), 1, "the drop is logged once: {lines:#?}");
    assert!(
        idle_lines
            .iter()
            .filter(|line| line.contains(&dropped))
            .count()
            == 1,
        "{idle_lines:#?}"
    );
    let resumed = format!("sweeping database \"{}\"", database.name());
    assert_eq!(
        mentions(&resumed),
        1,
        "the re-creation is logged once: {lines:#?}"
    );
}
