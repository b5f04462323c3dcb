//! `pdoflow-run serve`: the HTTP API (the `pdoflow-server` crate).
//!
//! Each setting comes from its flag, else its `PDOFLOW_` environment
//! variable, else the `[server]` section of db.conf (the file of `--config`,
//! or `~/.config/pdoflow/db.conf` when it exists), else its default:
//!
//! ```ini
//! [server]
//! listen = 0.0.0.0:8080
//! jwt_secret = ...            ; or jwt_public_key = /etc/pdoflow/jwt.pem
//! jwt_audience = pdoflow
//! anon_role = web_anon
//! max_wait = 60s
//! pool_size = 16
//! pool_timeout = 5s
//! max_body = 2097152
//! service_role = pdoflow_service
//! application_name = pdoflow-server
//! dashboard = true
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use pdoflow_server::{Connector, JwtConfig, PublicKey, ServerConfig};

use crate::config::{self, ConnectionSettings};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PDOFLOW_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HS256 secret that bearer tokens are signed with.
    #[arg(long, env = "PDOFLOW_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of the public key tokens are signed for: RSA (RS256) or EC
    /// P-256 (ES256).
    #[arg(long, env = "PDOFLOW_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// When set, a token's `aud` claim must name it.
    #[arg(long, env = "PDOFLOW_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Role of requests without a token (unset: they get 401).
    #[arg(long, env = "PDOFLOW_ANON_ROLE")]
    pub anon_role: Option<String>,
    /// Longest `Prefer: wait=N` (and claim `wait`) honoured [default: 60s].
    #[arg(long, env = "PDOFLOW_MAX_WAIT", value_parser = humantime::parse_duration)]
    pub max_wait: Option<Duration>,
    /// Pooled database connections (the long-poll hub uses one more)
    /// [default: 16].
    #[arg(long, env = "PDOFLOW_POOL_SIZE")]
    pub pool_size: Option<usize>,
    /// How long a request waits for a pooled connection before it gets a
    /// 503 [default: 5s].
    #[arg(long, env = "PDOFLOW_POOL_TIMEOUT", value_parser = humantime::parse_duration)]
    pub pool_timeout: Option<Duration>,
    /// Largest request body in bytes [default: 2097152].
    #[arg(long, env = "PDOFLOW_MAX_BODY")]
    pub max_body: Option<usize>,
    /// Role the server's own queries (long-poll hub, /metrics) run as
    /// [default: the login's own privileges].
    #[arg(long, env = "PDOFLOW_SERVICE_ROLE")]
    pub service_role: Option<String>,
    /// application_name of the server's connections [default: pdoflow-server].
    #[arg(long, env = "PDOFLOW_APPLICATION_NAME")]
    pub application_name: Option<String>,
    /// Serve the web dashboard at /dashboard/ (and /api/stats, /api/jobs):
    /// true or false [default: true].
    #[arg(long, env = "PDOFLOW_DASHBOARD", value_name = "BOOL")]
    pub dashboard: Option<bool>,
}

/// The `[server]` settings of db.conf, by key.
#[derive(Default)]
struct FileSettings {
    path: Option<PathBuf>,
    values: Vec<(String, String)>,
}

const FILE_KEYS: [&str; 12] = [
    "listen",
    "jwt_secret",
    "jwt_public_key",
    "jwt_audience",
    "anon_role",
    "max_wait",
    "pool_size",
    "pool_timeout",
    "max_body",
    "service_role",
    "application_name",
    "dashboard",
];

impl FileSettings {
    fn read(explicit: Option<&Path>) -> Result<FileSettings> {
        let path = match explicit {
            Some(path) => path.to_owned(),
            None => match config::default_config_file() {
                Some(path) if path.exists() => path,
                _ => return Ok(FileSettings::default()),
            },
        };
        if !path.exists() {
            return Ok(FileSettings::default());
        }
        let values = config::read_server_section(&path)?;
        for (key, _) in &values {
            if !FILE_KEYS.contains(&key.as_str()) {
                return Err(Error::ConfigFile {
                    path,
                    message: format!(
                        "unknown key {key:?} in [{}]; expected one of {}",
                        config::SERVER_SECTION,
                        FILE_KEYS.join(", ")
                    ),
                });
            }
        }
        Ok(FileSettings {
            path: Some(path),
            values,
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// `key` parsed by `parse`, naming the file and key when it fails.
    fn parse<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => parse(value).map(Some).map_err(|error| Error::ConfigFile {
                path: self.path.clone().unwrap_or_default(),
                message: format!("[{}] {key} = {value:?}: {error}", config::SERVER_SECTION),
            }),
        }
    }
}

fn duration(value: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(value).map_err(|error| error.to_string())
}

fn number<T: std::str::FromStr>(value: &str) -> std::result::Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|error| error.to_string())
}

/// The server's settings: flags and environment (`args`), else db.conf,
/// else the defaults.
fn server_config(args: ServeArgs, file: &FileSettings) -> Result<(ServerConfig, String)> {
    let text =
        |value: Option<String>, key: &str| value.or_else(|| file.get(key).map(str::to_owned));
    let listen = match args.listen {
        Some(listen) => listen,
        None => file.parse("listen", number::<SocketAddr>)?.map_or_else(
            || {
                pdoflow_server::DEFAULT_LISTEN
                    .parse()
                    .map_err(|error| Error::Invalid(format!("{error}")))
            },
            Ok,
        )?,
    };
    let public_key = args
        .jwt_public_key
        .or_else(|| file.get("jwt_public_key").map(PathBuf::from))
        .map(PublicKey::File);
    let config = ServerConfig {
        listen,
        jwt: JwtConfig {
            secret: text(args.jwt_secret, "jwt_secret").map(String::into_bytes),
            public_key,
            audience: text(args.jwt_audience, "jwt_audience"),
        },
        anon_role: text(args.anon_role, "anon_role"),
        max_wait: match args.max_wait {
            Some(wait) => wait,
            None => file
                .parse("max_wait", duration)?
                .unwrap_or(pdoflow_server::DEFAULT_MAX_WAIT),
        },
        pool_size: match args.pool_size {
            Some(size) => size,
            None => file
                .parse("pool_size", number::<usize>)?
                .unwrap_or(pdoflow_server::DEFAULT_POOL_SIZE),
        },
        pool_timeout: match args.pool_timeout {
            Some(timeout) => timeout,
            None => file
                .parse("pool_timeout", duration)?
                .unwrap_or(pdoflow_server::DEFAULT_POOL_TIMEOUT),
        },
        body_limit: match args.max_body {
            Some(limit) => limit,
            None => file
                .parse("max_body", number::<usize>)?
                .unwrap_or(pdoflow_server::DEFAULT_BODY_LIMIT),
        },
        service_role: text(args.service_role, "service_role"),
        dashboard: match args.dashboard {
            Some(dashboard) => dashboard,
            None => file.parse("dashboard", number::<bool>)?.unwrap_or(true),
        },
    };
    if config.pool_size == 0 {
        return Err(Error::Invalid("--pool-size must be at least 1".into()));
    }
    let application_name = text(args.application_name, "application_name")
        .unwrap_or_else(|| pdoflow_server::DEFAULT_APPLICATION_NAME.to_owned());
    Ok((config, application_name))
}

/// Serves the HTTP API until SIGINT or SIGTERM.
pub async fn run(
    mut settings: ConnectionSettings,
    config_file: Option<&Path>,
    args: ServeArgs,
) -> Result<()> {
    let file = FileSettings::read(config_file)?;
    let (config, application_name) = server_config(args, &file)?;
    settings.config.application_name(&application_name);
    let settings = Arc::new(settings);
    let connector: Connector = Arc::new(move || {
        let settings = Arc::clone(&settings);
        Box::pin(async move {
            // Driven by the server, which passes the connection's
            // notifications to whoever listens (the dashboard's live feed).
            let (client, connection) = crate::connect::open(&settings)
                .await
                .map_err(|error| error.to_string())?;
            let connected = pdoflow_server::drive(client, connection);
            let session = settings
                .session
                .statements(true)
                .map_err(|error| error.to_string())?;
            connected
                .client
                .batch_execute(&session)
                .await
                .map_err(|error| error.to_string())?;
            Ok(connected)
        })
    });
    let shutdown = super::shutdown_signal()?;
    pdoflow_server::serve(config, connector, shutdown)
        .await
        .map_err(|error| Error::Invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            listen: None,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_audience: None,
            anon_role: None,
            max_wait: None,
            pool_size: None,
            pool_timeout: None,
            max_body: None,
            service_role: None,
            application_name: None,
            dashboard: None,
        }
    }

    #[test]
    fn flags_win_over_db_conf_which_wins_over_defaults() {
        let file = FileSettings {
            path: Some("db.conf".into()),
            values: vec![
                ("listen".into(), "0.0.0.0:9000".into()),
                ("pool_size".into(), "4".into()),
                ("anon_role".into(), "web_anon".into()),
            ],
        };
        let (config, name) = server_config(args(), &file).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.pool_size, 4);
        assert_eq!(config.anon_role.as_deref(), Some("web_anon"));
        assert_eq!(config.max_wait, pdoflow_server::DEFAULT_MAX_WAIT);
        assert_eq!(name, "pdoflow-server");
        let (config, _) = server_config(
            ServeArgs {
                pool_size: Some(8),
                ..args()
            },
            &file,
        )
        .unwrap();
        assert_eq!(config.pool_size, 8);
        let (config, _) = server_config(args(), &FileSettings::default()).unwrap();
        assert_eq!(config.listen.to_string(), pdoflow_server::DEFAULT_LISTEN);
        let bad = FileSettings {
            path: Some("db.conf".into()),
            values: vec![("max_wait".into(), "soon".into())],
        };
        let error = server_config(args(), &bad).err().unwrap().to_string();
        assert!(error.contains("max_wait"), "{error}");
    }

    #[test]
    fn the_dashboard_is_on_unless_turned_off() {
        let (config, _) = server_config(args(), &FileSettings::default()).unwrap();
        assert!(config.dashboard);
        let off = FileSettings {
            path: Some("db.conf".into()),
            values: vec![("dashboard".into(), "false".into())],
        };
        assert!(!server_config(args(), &off).unwrap().0.dashboard);
        let on = ServeArgs {
            dashboard: Some(true),
            ..args()
        };
        assert!(server_config(on, &off).unwrap().0.dashboard);
        let bad = FileSettings {
            path: Some("db.conf".into()),
            values: vec![("dashboard".into(), "sometimes".into())],
        };
        let error = server_config(args(), &bad).err().unwrap().to_string();
        assert!(error.contains("dashboard"), "{error}");
    }
}
