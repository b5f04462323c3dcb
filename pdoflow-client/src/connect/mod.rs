//! How the client connects: every connection it makes (a `Client`, the
//! worker loop's, its finisher's and LISTEN connections, the command line's)
//! goes through [`connect`] or `open` here, with [`ConnectionSettings`]:
//!
//! - TLS as libpq does it (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
//!   `sslsni`, from the connection string, `db.conf` or `PGSSLMODE`, ...;
//!   see `tls.rs`), on rustls;
//! - with several hosts, the first that fits `target_session_attrs`
//!   (`target.rs`), asked again at every connection: after a failover a
//!   reconnect finds the promoted primary;
//! - right after connecting, one round trip of `SET`s for the session:
//!   `lock_timeout`, `statement_timeout` ([`SessionSettings`]) and
//!   `default_transaction_isolation = 'read committed'`, since pdoflow's
//!   finishing functions refuse to run in a REPEATABLE READ or SERIALIZABLE
//!   transaction, which a role's defaults could otherwise make every
//!   transaction.
//!
//! [`ConnectionSettings`]: crate::config::ConnectionSettings

mod params;
mod target;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as WireMode, TargetSessionAttrs};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::Socket;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::ConnectionSettings;
use crate::error::{Error, Result};

pub(crate) use params::{split, Parameters};
pub use target::TargetSession;
pub use tls::{RootCertificates, SslMode, TlsSettings};

/// A connection's socket, TLS or not (one type for both, so that the
/// LISTEN connection can poll it itself).
pub(crate) type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Default `lock_timeout` of the client's connections.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `statement_timeout` of the client's connections.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// PostgreSQL's largest timeout: `INT_MAX` milliseconds (about 24.8 days).
const LONGEST_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// What the client's connections set for their own statements, right after
/// connecting. Zero disables a timeout, as in PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSettings {
    /// `lock_timeout` (default 5 s): a statement waiting this long for a
    /// lock fails (SQLSTATE 55P03) instead of queueing behind, say, a
    /// long-running transaction that locked a job row; the worker retries it.
    pub lock_timeout: Duration,
    /// `statement_timeout` (default 1 min): a statement running this long is
    /// cancelled (SQLSTATE 57014). The LISTEN connection leaves it unset.
    pub statement_timeout: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }
}

impl SessionSettings {
    /// Fails when a timeout exceeds what PostgreSQL accepts.
    pub fn check(&self) -> Result<()> {
        for (name, value) in [
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if value > LONGEST_TIMEOUT {
                return Err(Error::Config(format!(
                    "{name} must be at most 24 days (PostgreSQL's limit), got {value:?}"
                )));
            }
        }
        Ok(())
    }

    /// The `SET`s, as one simple-query batch (one round trip). In whole
    /// milliseconds, PostgreSQL's unit; a nonzero timeout below 1 ms is
    /// 1 ms rather than "none".
    pub(crate) fn statements(&self, statement_timeout: bool) -> Result<String> {
        self.check()?;
        let millis = |value: Duration| match value.as_millis() {
            0 if !value.is_zero() => 1,
            millis => millis,
        };
        let mut sql = format!("SET lock_timeout = {}; ", millis(self.lock_timeout));
        if statement_timeout {
            sql.push_str(&format!(
                "SET statement_timeout = {}; ",
                millis(self.statement_timeout)
            ));
        }
        sql.push_str("SET default_transaction_isolation = 'read committed'");
        Ok(sql)
    }
}

/// Connects with `settings`, runs the session `SET`s and drives the
/// connection in a task of its own (which ends when the client is dropped).
pub async fn connect(settings: &ConnectionSettings) -> Result<tokio_postgres::Client> {
    let (client, connection) = open(settings).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection ended");
        }
    });
    client
        .batch_execute(&settings.session.statements(true)?)
        .await?;
    Ok(client)
}

/// The process's home directory, where libpq's default files are.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// Reads the files `tls` names and builds its TLS configuration, to report
/// a problem before the first connection.
pub(crate) fn check_tls(tls: &TlsSettings) -> std::result::Result<(), String> {
    tls::prepare(tls, home().as_deref()).map(|_| ())
}

/// Opens a connection with `settings`' TLS, not yet driven and without the
/// session `SET`s (see [`SessionSettings::statements`]): for a caller that
/// polls the connection itself.
pub(crate) async fn open(
    settings: &ConnectionSettings,
) -> Result<(tokio_postgres::Client, Connection)> {
    let prepared = tls::prepare(&settings.tls, home().as_deref()).map_err(Error::Config)?;
    tracing::debug!(sslmode = %settings.tls.mode, plan = ?prepared.plan, checks = ?prepared.checks, "connecting");
    let connector = MakeRustlsConnect::new(prepared.config);
    let hosts = settings.config.get_hosts();
    // PostgreSQL has no TLS on Unix sockets, and libpq does not ask there.
    let unix_only = !hosts.is_empty() && hosts.iter().all(|host| matches!(host, Host::Unix(_)));
    let plan = if unix_only {
        tls::Plan::Plain
    } else {
        prepared.plan
    };
    let attempt = |mode: WireMode, target: TargetSessionAttrs| {
        let mut config = settings.config.clone();
        config.ssl_mode(mode);
        config.target_session_attrs(target);
        let connector = connector.clone();
        async move { config.connect(connector).await }
    };
    let attempt = &attempt;
    let with_plan = |target: TargetSessionAttrs| async move {
        match plan {
            tls::Plan::Plain => attempt(WireMode::Disable, target).await,
            tls::Plan::Tls => attempt(WireMode::Require, target).await,
            tls::Plan::TlsThenPlain => match attempt(WireMode::Prefer, target).await {
                // tokio-postgres falls back when the server declines TLS;
                // libpq also falls back when the handshake itself fails.
                Err(error) if is_tls_failure(&error) => {
                    tracing::warn!(
                        error = %Error::Postgres(error),
                        "sslmode=prefer: the TLS handshake failed; connecting without TLS"
                    );
                    attempt(WireMode::Disable, target).await
                }
                other => other,
            },
            tls::Plan::PlainThenTls => match attempt(WireMode::Disable, target).await {
                // The server refused the plain connection (pg_hba.conf's
                // hostssl, say): libpq's `allow` tries again with TLS.
                Err(error) if error.as_db_error().is_some() => {
                    attempt(WireMode::Require, target).await
                }
                other => other,
            },
        }
    };
    let connected = match with_plan(settings.target.first_choice()).await {
        // prefer-standby: no standby answered, so any server will do.
        Err(error) if settings.target == TargetSession::PreferStandby => {
            tracing::debug!(error = %Error::Postgres(error), "no standby answered; connecting to any server");
            with_plan(TargetSessionAttrs::Any).await
        }
        other => other,
    };
    Ok(connected?)
}

/// Whether a failed connection failed in the TLS handshake (or the server
/// declined TLS that was required). tokio-postgres keeps its error kinds
/// private; this is the text of its `Kind::Tls`.
pub(crate) fn is_tls_failure(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_none() && error.to_string() == "error performing TLS handshake"
}

/// The settings a `tokio_postgres::Config` gives: its `ssl_mode` unless
/// it is the default `prefer` (which cannot be told from one set
/// explicitly), else `PGSSLMODE`; the other TLS parameters from the
/// environment (`PGSSLROOTCERT`, ...).
pub(crate) fn tls_from_config(
    config: &tokio_postgres::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<TlsSettings, String> {
    let parameters = Parameters {
        sslmode: match config.get_ssl_mode() {
            WireMode::Disable => Some("disable".into()),
            WireMode::Require => Some("require".into()),
            _ => None,
        },
        ..Parameters::default()
    };
    parameters.resolve(env)
}

/// The process environment, for `Parameters::resolve`.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_set_in_one_batch() {
        let defaults = SessionSettings::default();
        assert_eq!(
            defaults.statements(true).unwrap(),
            "SET lock_timeout = 5000; SET statement_timeout = 60000; \
             SET default_transaction_isolation = 'read committed'"
        );
        let custom = SessionSettings {
            lock_timeout: Duration::ZERO,
            statement_timeout: Duration::from_micros(10),
        };
        assert_eq!(
            custom.statements(true).unwrap(),
            "SET lock_timeout = 0; SET statement_timeout = 1; \
             SET default_transaction_isolation = 'read committed'"
        );
        assert_eq!(
            custom.statements(false).unwrap(),
            "SET lock_timeout = 0; SET default_transaction_isolation = 'read committed'"
        );
        let too_long = SessionSettings {
            statement_timeout: Duration::from_secs(30 * 24 * 3600),
            ..defaults
        };
        let error = too_long.statements(true).unwrap_err().to_string();
        assert!(
            error.starts_with("statement_timeout must be at most 24 days"),
            "{error}"
        );
    }

    #[test]
    fn a_config_gives_its_sslmode_unless_it_is_the_default() {
        let env = |name: &str| (name == "PGSSLMODE").then(|| "verify-full".to_owned());
        let mut config = tokio_postgres::Config::new();
        assert_eq!(
            tls_from_config(&config, &env).unwrap().mode,
            SslMode::VerifyFull
        );
        config.ssl_mode(WireMode::Disable);
        assert_eq!(
            tls_from_config(&config, &env).unwrap().mode,
            SslMode::Disable
        );
        config.ssl_mode(WireMode::Require);
        assert_eq!(
            tls_from_config(&config, &env).unwrap().mode,
            SslMode::Require
        );
        let no_env = |_: &str| None;
        config.ssl_mode(WireMode::Prefer);
        assert_eq!(
            tls_from_config(&config, &no_env).unwrap().mode,
            SslMode::Prefer
        );
    }

    /// A server that says yes to TLS, then talks nonsense: the handshake
    /// fails, and the error says it was TLS, with the cause.
    #[tokio::test]
    async fn a_failed_handshake_is_reported_as_tls_with_its_cause() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_all(b"S").await.unwrap();
            let mut hello = [0u8; 512];
            let _ = socket.read(&mut hello).await;
            let _ = socket.write_all(b"this is not TLS at all, sorry\n").await;
        });
        let settings = crate::config::ConnectionSettings::from_url(
            &format!("postgresql://u@127.0.0.1:{port}/d?sslmode=require"),
            "test",
        )
        .unwrap();
        let error = open(&settings).await.err().unwrap();
        let Error::Postgres(postgres) = &error else {
            panic!("not a connection error: {error}");
        };
        assert!(is_tls_failure(postgres), "{error}");
        let text = error.to_string();
        assert!(text.starts_with("TLS: "), "{text}");
        assert!(!text.contains("error performing TLS handshake"), "{text}");
        server.abort();
    }
}
