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
    /// A schedule name that names no schedule.
    #[error("schedule {0:?} does not exist")]
    NoSuchSchedule(String),
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

    /// True when the connection itself failed (not a refused statement), or
    /// reached a server that cannot take writes (SQLSTATE 25006: a standby,
    /// say the old primary back after a failover): the worker reconnects
    /// instead of giving up, and with several hosts and
    /// `target_session_attrs=read-write` finds the primary.
    pub fn is_connection_lost(&self) -> bool {
        let Error::Postgres(error) = self else {
            return false;
        };
        if error.is_closed() {
            return true;
        }
        if let Some(db) = error.as_db_error() {
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // read_only_sql_transaction
            return matches!(db.code().code(), "57P01" | "57P02" | "57P03" | "25006");
        }
        // An I/O error under the connection (reset, timed out).
        std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
    }
}

/// tokio-postgres prints only "db error" for a server error; show the
/// server's message, SQLSTATE and hint instead. A failed TLS handshake,
/// which it prints as "error performing TLS handshake", says why.
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
            Some(source) if crate::connect::is_tls_failure(error) => describe_tls(source),
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// A name as WebPKI presents it (`DnsName("db.example")`,
/// `IpAddress(10.0.0.1)`), as a person writes it.
fn plain_name(presented: &str) -> &str {
    match presented.split_once('(') {
        Some((kind, rest)) if kind.chars().all(char::is_alphanumeric) => {
            rest.strip_suffix(')').unwrap_or(rest).trim_matches('"')
        }
        _ => presented,
    }
}

/// Why a TLS handshake failed, in a few words, then rustls' own.
fn describe_tls(source: &(dyn std::error::Error + 'static)) -> String {
    use rustls::CertificateError;
    // tokio-rustls hands rustls' error over inside an io::Error.
    let rustls_error = source
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .or_else(|| source.downcast_ref::<rustls::Error>());
    let Some(rustls_error) = rustls_error else {
        return format!("TLS: {source}");
    };
    match rustls_error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "TLS: the server's certificate is not valid for host {:?} (it is for {})",
            expected.to_str(),
            if presented.is_empty() {
                "no host name".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            "TLS: the server's certificate is not valid for the host connected to".to_owned()
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("TLS: the server's certificate is not trusted: {rustls_error}")
        }
        rustls::Error::AlertReceived(_) => {
            format!("TLS: the server ended the handshake: {rustls_error}")
        }
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn presented_names_read_as_written() {
        assert_eq!(super::plain_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(super::plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(super::plain_name("db.example"), "db.example");
    }
}
