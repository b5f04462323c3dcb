//! Harness for the integration tests: each test gets a database of its own,
//! with the pdoflow extension created, on the cluster named by
//! `PDOFLOW_TEST_DATABASE_URL` (which `make test` starts and sets).

pub mod cli;
pub mod http;
pub mod own_cluster;
pub mod standby;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

pub const URL_VARIABLE: &str = "PDOFLOW_TEST_DATABASE_URL";

/// A fresh database with pdoflow installed, dropped and re-created per run.
pub struct TestDatabase {
    config: Config,
}

impl TestDatabase {
    /// Creates database `pdoflow_it_<label>` (replacing an older one), with
    /// pdoflow installed.
    pub async fn create(label: &str) -> TestDatabase {
        let database = TestDatabase::create_empty(label).await;
        database
            .connect()
            .await
            .batch_execute("CREATE EXTENSION pdoflow")
            .await
            .expect("CREATE EXTENSION pdoflow");
        database
    }

    /// Creates database `pdoflow_it_<label>` (replacing an older one),
    /// without pdoflow: for restoring a dump into.
    pub async fn create_empty(label: &str) -> TestDatabase {
        let server = server_config();
        let name = format!("pdoflow_it_{label}");
        let admin = connect_to(&server).await;
        // Two statements: CREATE DATABASE cannot run inside a (multi-statement) transaction.
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|error| panic!("{statement}: {}", describe(&error)));
        }
        let mut config = server.clone();
        config.dbname(&name);
        TestDatabase { config }
    }

    /// Opens database `pdoflow_swept_<label>`, one of those `make test` lists
    /// in `pdoflow.database` so that a background sweeper works in it. The
    /// first call in a test program re-creates the extension there; tests of
    /// one program sharing a database then share its jobs, so they keep to
    /// queues of their own. Sweepers start only with the server, so these
    /// databases are made by `scripts/test.sh`, not here.
    pub async fn swept(label: &str) -> TestDatabase {
        static RECREATED: tokio::sync::Mutex<Vec<String>> =
            tokio::sync::Mutex::const_new(Vec::new());
        let mut config = server_config();
        let name = format!("pdoflow_swept_{label}");
        config.dbname(&name);
        let database = TestDatabase { config };
        let mut recreated = RECREATED.lock().await;
        if recreated.contains(&name) {
            return database;
        }
        recreated.push(name.clone());
        let client = match config_connect(&database.config).await {
            Ok(client) => client,
            Err(error) => panic!(
                "database {name} ({}): the background sweeper tests need the cluster \
                 `make test` prepares",
                describe(&error)
            ),
        };
        client
            .batch_execute(
                "DROP EXTENSION IF EXISTS pdoflow CASCADE;
                 DROP SCHEMA IF EXISTS pdoflow CASCADE;
                 CREATE EXTENSION pdoflow;",
            )
            .await
            .unwrap_or_else(|error| panic!("re-creating pdoflow in {name}: {}", describe(&error)));
        database
    }

    /// A connection URL for the test database, for programs under test.
    pub fn url(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        format!("postgresql://{user}@{host}:{port}/{}", self.name())
    }

    /// The cluster's port.
    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    /// A new connection, or `None` while the server cannot be reached.
    pub async fn connect_fallible(&self) -> Option<Client> {
        config_connect(&self.config).await.ok()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// A new connection to the test database.
    pub async fn connect(&self) -> Client {
        connect_to(&self.config).await
    }

    /// A new connection to the test database as `user` (the cluster trusts
    /// local connections).
    pub async fn connect_as(&self, user: &str) -> Client {
        let mut config = self.config.clone();
        config.user(user);
        connect_to(&config).await
    }

    /// A new connection to another database on the same cluster.
    pub async fn connect_to_database(&self, name: &str) -> Client {
        let mut config = self.config.clone();
        config.dbname(name);
        connect_to(&config).await
    }

    /// A new connection that LISTENs on `channel`; its notifications arrive
    /// on the returned receiver.
    pub async fn listen(&self, channel: &str) -> (Client, mpsc::UnboundedReceiver<Notification>) {
        let (client, mut connection) = self
            .config
            .connect(NoTls)
            .await
            .expect("connect to the test database");
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(notification) = message {
                    let _ = sender.send(notification);
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .expect("LISTEN");
        (client, receiver)
    }
}

/// The test cluster's connection settings, from `PDOFLOW_TEST_DATABASE_URL`.
fn server_config() -> Config {
    let url = std::env::var(URL_VARIABLE).unwrap_or_else(|_| {
        panic!("{URL_VARIABLE} is not set: run the integration tests with `make test`")
    });
    url.parse()
        .unwrap_or_else(|error| panic!("{URL_VARIABLE}={url}: {error}"))
}

async fn config_connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn connect_to(config: &Config) -> Client {
    config_connect(config)
        .await
        .unwrap_or_else(|error| panic!("connect to the test cluster: {}", describe(&error)))
}

/// Connects to the test database, retrying while the server is not
/// accepting connections (during crash recovery, say) for up to `patience`.
pub async fn connect_patiently(database: &TestDatabase, patience: Duration) -> Client {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match config_connect(&database.config).await {
            Ok(client) => return client,
            Err(error) if tokio::time::Instant::now() >= deadline => {
                panic!("the server did not come back: {}", describe(&error))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits (up to `patience`) until exactly `count` other sessions of the
/// database sleep inside `pdoflow.await_result`: in its wait (wait event
/// type `Extension`), not merely with the statement reported active, which
/// it already is while the client's Parse is handled; a cancel sent then
/// can reach the backend while it reads the next message, and PostgreSQL
/// drops such a cancel.
pub async fn sessions_awaiting_results(client: &Client, count: i64, patience: Duration) {
    eventually("the sessions to wait", patience, || async {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'active'
                   AND wait_event_type = 'Extension'
                   AND query LIKE '%pdoflow.await_result%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (waiting == count).then_some(())
    })
    .await;
}

/// Waits until the server has begun its crash restart after a backend was
/// killed: until `sentinel`, a connection opened before the kill, is cut
/// off. A connection made before that point could be accepted and then cut
/// off by the restart itself.
pub async fn await_crash_restart(sentinel: &Client, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    while sentinel.simple_query("SELECT 1").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not restart after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for up to `patience`;
/// panics naming `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test cluster's server log (`server.log` in its data directory, where
/// `scripts/cluster.sh` has it written), read through the server.
pub struct ServerLog {
    path: String,
    start: i64,
}

impl ServerLog {
    /// Marks the log's current end; `read_new` returns what comes after it.
    pub async fn mark(client: &Client) -> ServerLog {
        let row = client
            .query_one(
                "SELECT path, (pg_stat_file(path)).size
                 FROM (SELECT current_setting('data_directory') || '/server.log' AS path) AS log",
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("finding the server log: {}", describe(&error)));
        ServerLog {
            path: row.get(0),
            start: row.get(1),
        }
    }

    /// The lines written to the log since `mark`.
    pub async fn read_new(&self, client: &Client) -> Vec<String> {
        let text: String = client
            .query_one(
                "SELECT pg_read_file($1, $2, (pg_stat_file($1)).size - $2)",
                &[&self.path, &self.start],
            )
            .await
            .unwrap_or_else(|error| panic!("reading the server log: {}", describe(&error)))
            .get(0);
        text.lines().map(str::to_owned).collect()
    }
}

/// Every notification that arrives within `quiet` of the previous one.
pub async fn drain(
    receiver: &mut mpsc::UnboundedReceiver<Notification>,
    quiet: Duration,
) -> Vec<String> {
    let mut payloads = Vec::new();
    while let Ok(Some(notification)) = tokio::time::timeout(quiet, receiver.recv()).await {
        payloads.push(notification.payload().to_owned());
    }
    payloads
}

/// The single bigint that `sql` returns (a count, say); panics naming the
/// statement and its error.
pub async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{sql}: {}", describe(&error)))
        .get(0)
}

/// A failed statement's SQLSTATE and message, for test failure output.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// The directory of the PostgreSQL programs (initdb, pg_ctl, pg_dump,
/// pg_config) of the version under test: `PDOFLOW_TEST_PG_BIN`, which
/// `make test PG=NN` sets, else the directory of the `pg_config` on PATH.
pub fn pg_bindir() -> PathBuf {
    if let Some(bindir) = std::env::var_os("PDOFLOW_TEST_PG_BIN") {
        return PathBuf::from(bindir);
    }
    let output = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("run pg_config (or set PDOFLOW_TEST_PG_BIN)");
    PathBuf::from(
        String::from_utf8(output.stdout)
            .expect("a UTF-8 path")
            .trim(),
    )
}

/// What `pg_config` of the version under test says for `option`
/// (`--sharedir`, say).
pub fn pg_config(option: &str) -> String {
    let output = std::process::Command::new(pg_bindir().join("pg_config"))
        .arg(option)
        .output()
        .expect("run pg_config");
    assert!(output.status.success(), "pg_config {option} failed");
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_owned()
}

/// The SQLSTATE code of a failed statement.
pub fn sqlstate(error: &tokio_postgres::Error) -> &str {
    error
        .code()
        .map(|code| code.code())
        .unwrap_or("(not a server error)")
}

/// Enqueues one plain job (task `t`, queue `default`) in a transaction of its
/// own; true when it went through the PL/pgSQL `pdoflow._enqueue_general`
/// rather than enqueue's own INSERT (as counted by `track_functions`).
pub async fn enqueue_took_the_sql_path(client: &Client) -> bool {
    // A backend reports its function calls now and then, not at each commit:
    // the count before the call, in the same transaction, is the baseline.
    const CALLS: &str = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
                          WHERE schemaname = 'pdoflow' AND funcname = '_enqueue_general'";
    let messages = client
        .simple_query(&format!(
            "BEGIN;
             SET LOCAL track_functions = 'pl';
             {CALLS};
             SELECT pdoflow.enqueue('t', '{{}}') IS NOT NULL;
             {CALLS};
             COMMIT;"
        ))
        .await
        .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)));
    let values: Vec<String> = messages
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    match &values[..] {
        [before, _, after] => before != after,
        _ => panic!("unexpected results: {values:?}"),
    }
}

/// A job's state, attempt and last error, as `pdoflow.jobs` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub state: String,
    pub attempt: i32,
    pub last_error: Option<String>,
}

/// The state of job `id`.
pub async fn job_state(client: &Client, id: uuid::Uuid) -> JobState {
    let row = client
        .query_one(
            "SELECT state, attempt, last_error FROM pdoflow.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap_or_else(|error| panic!("reading job {id}: {}", describe(&error)));
    JobState {
        state: row.get(0),
        attempt: row.get(1),
        last_error: row.get(2),
    }
}

/// Waits until job `id` is in `state`, for up to `patience`.
pub async fn wait_for_state(
    client: &Client,
    id: uuid::Uuid,
    state: &str,
    patience: Duration,
) -> JobState {
    let what = format!("job {id} {state}");
    eventually(&what, patience, || async {
        let current = job_state(client, id).await;
        (current.state == state).then_some(current)
    })
    .await
}

/// Job counts by task and state, sorted: `(task, state, count)`.
/// Every column of every active job, in id order: to compare the table
/// before and after something that must leave its jobs as they were.
pub async fn active_rows(client: &Client) -> Vec<serde_json::Value> {
    client
        .query(
            "SELECT to_jsonb(j) FROM pdoflow.active_jobs AS j ORDER BY j.id",
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("reading active_jobs: {}", describe(&error)))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

pub async fn job_counts(client: &Client) -> Vec<(String, String, i64)> {
    client
        .query(
            "SELECT task, state, count(*) FROM pdoflow.jobs GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("counting jobs: {}", describe(&error)))
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// One expected row of `job_counts`.
pub fn counted(task: &str, state: &str, count: i64) -> (String, String, i64) {
    (task.to_owned(), state.to_owned(), count)
}

/// Sends `signal` (`-TERM`, `-KILL`, ...) to process `pid` with kill(1);
/// as the postgres user when this user may not (a server process, when the
/// tests do not run as root).
pub fn send_signal(signal: &str, pid: impl std::fmt::Display) {
    let pid = pid.to_string();
    let direct = std::process::Command::new("kill")
        .args([signal, &pid])
        .status();
    if matches!(direct, Ok(status) if status.success()) {
        return;
    }
    let status = std::process::Command::new("sudo")
        .args(["-n", "-u", "postgres", "kill", signal, &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}
