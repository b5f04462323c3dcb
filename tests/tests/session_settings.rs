//! What the client's connections set for their session right after
//! connecting: `lock_timeout` and `statement_timeout` as configured (5 s and
//! 1 min by default), and `default_transaction_isolation = 'read committed'`
//! even for a role whose own default is REPEATABLE READ, under which
//! pdoflow's finishing functions refuse to run.

use std::time::Duration;

use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::connect::SessionSettings;
use pdoflow_client::Client;
use pdoflow_tests::{describe, wait_for_state, TestDatabase};

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
/// A login role (cluster-wide, so made once and kept) whose transactions
/// default to REPEATABLE READ.
const ROLE: &str = "pdoflow_it_repeatable_reader";

async fn show(client: &Client, setting: &str) -> String {
    client
        .postgres()
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap_or_else(|error| panic!("SHOW {setting}: {}", describe(&error)))
        .get(0)
}

/// The test database, with `ROLE` made a pdoflow admin there.
async fn database(label: &str) -> TestDatabase {
    // Two tests altering one role at once could collide ("tuple
    // concurrently updated"): one at a time.
    static ROLE_SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let database = TestDatabase::create(label).await;
    let _one_at_a_time = ROLE_SETUP.lock().await;
    database
        .connect()
        .await
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                     CREATE ROLE {ROLE} LOGIN;
                 END IF;
             END $$;
             ALTER ROLE {ROLE} SET default_transaction_isolation = 'repeatable read';
             GRANT pdoflow_admin TO {ROLE};"
        ))
        .await
        .unwrap_or_else(|error| panic!("making {ROLE}: {}", describe(&error)));
    database
}

/// The database's URL, as `ROLE`.
fn url_as_role(database: &TestDatabase) -> String {
    database.url().replacen(
        "postgresql://postgres@",
        &format!("postgresql://{ROLE}@"),
        1,
    )
}

#[tokio::test]
async fn connections_set_their_timeouts_and_read_committed() {
    let database = database("session_settings").await;
    let url = url_as_role(&database);
    // The role's default holds on a connection of its own...
    let raw = database.connect_as(ROLE).await;
    let isolation: String = raw
        .query_one("SHOW default_transaction_isolation", &[])
        .await
        .expect("SHOW")
        .get(0);
    assert_eq!(isolation, "repeatable read");

    // ...not on the client's, which has the default timeouts,
    let client = Client::connect(&url).await.expect("connect");
    assert_eq!(
        show(&client, "default_transaction_isolation").await,
        "read committed"
    );
    assert_eq!(show(&client, "lock_timeout").await, "5s");
    assert_eq!(show(&client, "statement_timeout").await, "1min");
    // or those it is given.
    let mut settings = ConnectionSettings::from_url(&url, "test").expect("settings");
    settings.session = SessionSettings {
        lock_timeout: Duration::from_millis(1_234),
        statement_timeout: Duration::ZERO,
    };
    let client = Client::connect_with_settings(&settings)
        .await
        .expect("connect");
    assert_eq!(
        show(&client, "default_transaction_isolation").await,
        "read committed"
    );
    assert_eq!(show(&client, "lock_timeout").await, "1234ms");
    assert_eq!(show(&client, "statement_timeout").await, "0");
    // connect_with(&Config) too.
    let config: tokio_postgres::Config = url.parse().expect("a Config");
    let client = Client::connect_with(&config).await.expect("connect_with");
    assert_eq!(
        show(&client, "default_transaction_isolation").await,
        "read committed"
    );
    assert_eq!(show(&client, "lock_timeout").await, "5s");
}

#[tokio::test]
async fn pdoflow_run_works_for_a_repeatable_read_role_within_its_timeouts() {
    let database = database("session_settings_cli").await;
    let url = url_as_role(&database);
    let run = |args: &[&str]| {
        let mut command = tokio::process::Command::new(WORKER);
        command
            .env("PDOFLOW_DATABASE_URL", &url)
            .env_remove("DATABASE_URL")
            .env_remove("PDOFLOW_LOCK_TIMEOUT")
            .env_remove("PDOFLOW_STATEMENT_TIMEOUT")
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    };
    let output = |args: &[&str]| {
        let mut command = run(args);
        async move {
            tokio::time::timeout(Duration::from_secs(30), command.output())
                .await
                .expect("the command finishes")
                .expect("run the command")
        }
    };

    // A worker of this role claims, runs and finishes a job.
    let enqueued = output(&["enqueue", "--task", "noop"]).await;
    assert!(
        enqueued.status.success(),
        "{}",
        String::from_utf8_lossy(&enqueued.stderr)
    );
    let id: uuid::Uuid = String::from_utf8_lossy(&enqueued.stdout)
        .trim()
        .parse()
        .expect("a job id");
    let worked = output(&[
        "worker",
        "--burst",
        "--lock-timeout",
        "2s",
        "--statement-timeout",
        "30s",
    ])
    .await;
    assert!(
        worked.status.success(),
        "{}",
        String::from_utf8_lossy(&worked.stderr)
    );
    let admin = database.connect().await;
    wait_for_state(&admin, id, "succeeded", Duration::from_secs(10)).await;

    // The timeouts reach the session: with the job's row locked elsewhere,
    // cancelling it gives up after --lock-timeout...
    let second = output(&["enqueue", "--task", "noop"]).await;
    let second: uuid::Uuid = String::from_utf8_lossy(&second.stdout)
        .trim()
        .parse()
        .expect("a job id");
    let mut holder = database.connect().await;
    let locking = holder.transaction().await.expect("BEGIN");
    locking
        .execute(
            "SELECT FROM pdoflow.active_jobs WHERE id = $1 FOR UPDATE",
            &[&second],
        )
        .await
        .expect("lock the job's row");
    let started = std::time::Instant::now();
    let cancel = output(&[
        "job",
        "cancel",
        &second.to_string(),
        "--lock-timeout",
        "300ms",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&cancel.stderr);
    assert_eq!(cancel.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lock timeout") && stderr.contains("55P03"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // ...or after --statement-timeout, given no lock timeout (the
    // environment's variable works like the flag).
    let mut command = run(&["job", "cancel", &second.to_string(), "--lock-timeout", "0s"]);
    command.env("PDOFLOW_STATEMENT_TIMEOUT", "300ms");
    let cancel = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the command finishes")
        .expect("run the command");
    let stderr = String::from_utf8_lossy(&cancel.stderr);
    assert_eq!(cancel.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("statement timeout") && stderr.contains("57014"),
        "{stderr}"
    );
    locking.rollback().await.expect("ROLLBACK");

    // Once the lock is gone, the role cancels (which refuses to run under
    // REPEATABLE READ).
    let cancel = output(&["job", "cancel", &second.to_string()]).await;
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    wait_for_state(&admin, second, "cancelled", Duration::from_secs(10)).await;
}
