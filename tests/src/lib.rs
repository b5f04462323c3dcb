//! Harness for the integration tests: each test gets a database of its own,
//! with the pdoflow extension created, on the cluster named by
//! `PDOFLOW_TEST_DATABASE_URL` (which `make test` starts and sets).

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
    /// Creates database `pdoflow_it_<label>` (replacing an older one).
    pub async fn create(label: &str) -> TestDatabase {
        let url = std::env::var(URL_VARIABLE).unwrap_or_else(|_| {
            panic!("{URL_VARIABLE} is not set: run the integration tests with `make test`")
        });
        let server: Config = url
            .parse()
            .unwrap_or_else(|error| panic!("{URL_VARIABLE}={url}: {error}"));
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
        let database = TestDatabase { config };
        database
            .connect()
            .await
            .batch_execute("CREATE EXTENSION pdoflow")
            .await
            .expect("CREATE EXTENSION pdoflow");
        database
    }

    /// A new connection to the test database.
    pub async fn connect(&self) -> Client {
        connect_to(&self.config).await
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

async fn connect_to(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(connection);
    client
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

/// A failed statement's SQLSTATE and message, for test failure output.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// The SQLSTATE code of a failed statement.
pub fn sqlstate(error: &tokio_postgres::Error) -> &str {
    error
        .code()
        .map(|code| code.code())
        .unwrap_or("(not a server error)")
}
