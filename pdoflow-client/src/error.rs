//! The errors of the client library.

use std::path::PathBuf;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL refused a statement, or the connection failed.
    #[error("{}", describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No usable database connection settings.
    #[error("{0}")]
    Config(String),
    /// The `db.conf` file could not be read or parsed.
    #[error("{path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    /// Two handlers were registered under one task name.
    #[error("task {0:?} is registered twice")]
    DuplicateTask(String),
    /// Job arguments or results that do not convert to or from JSON.
    #[error("{context}: {source}")]
    Json {
        context: String,
        source: serde_json::Error,
    },
    /// A job id that names no job.
    #[error("job {0} does not exist")]
    NoSuchJob(uuid::Uuid),
    /// A posting id that names no posting.
    #[error("posting {0} does not exist")]
    NoSuchPosting(uuid::Uuid),
    /// Anything else a caller asked for that cannot be done.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The SQLSTATE of a PostgreSQL error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Postgres(error) => error.code().map(|code| code.code()),
            _ => None,
        }
    }

    /// True when the connection itself failed (not a refused statement):
    /// the worker reconnects instead of giving up.
    pub fn is_connection_lost(&self) -> bool {
        let Error::Postgres(error) = self else {
            return false;
        };
        if error.is_closed() {
            return true;
        }
        if let Some(db) = error.as_db_error() {
            // admin_shutdown, crash_shutdown, cannot_connect_now
            return matches!(db.code().code(), "57P01" | "57P02" | "57P03");
        }
        // An I/O error under the connection (reset, timed out).
        std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
    }
}

/// tokio-postgres prints only "db error" for a server error; show the
/// server's message, SQLSTATE and hint instead.
fn describe_postgres(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}
