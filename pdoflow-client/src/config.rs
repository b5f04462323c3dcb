//! Where the database connection comes from, highest priority first:
//!
//! 1. an explicit URL (`--database-url` on the command line);
//! 2. an explicitly named config file (`--config`, `PDOFLOW_CONFIG`);
//! 3. the environment: `PDOFLOW_DATABASE_URL`, then `DATABASE_URL`;
//! 4. the config file `~/.config/pdoflow/db.conf` (or `$XDG_CONFIG_HOME/...`),
//!    in the INI format of the original pdoflow, plus libpq's TLS
//!    parameters, `target_session_attrs` and `connect_timeout` (all
//!    optional; `host` and `port` may list several, comma-separated):
//!
//! ```ini
//! [postgresql]
//! user = app
//! password = secret
//! host = db.internal
//! port = 5432
//! database = app
//! sslmode = verify-full
//! sslrootcert = /etc/ssl/certs/db-ca.pem
//! sslcert = /etc/pdoflow/client.crt
//! sslkey = /etc/pdoflow/client.key
//! ```
//!
//! A `[server]` section holds `pdoflow-run serve`'s settings
//! (`read_server_section`; see docs/http-api.md).
//!
//! The TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
//! `sslsni`) mean what they mean to libpq, in a URL
//! (`?sslmode=verify-full&sslrootcert=ca.pem`), a `key=value` string or
//! `db.conf`; where not given there, `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGSSLCERT`, `PGSSLKEY` and `PGSSLSNI` apply (see `connect`).
//!
//! Several hosts (`postgresql://a,b/db`, `host=a,b`) are tried in order
//! for the first that fits `target_session_attrs` (else
//! `PGTARGETSESSIONATTRS`; default `any`). Each host then gets at most
//! `connect_timeout` (default `MULTI_HOST_CONNECT_TIMEOUT` when there are
//! several), so that one that does not answer does not hold up the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::connect::{self, Parameters, SessionSettings, TargetSession, TlsSettings};
use crate::error::{Error, Result};

pub const URL_VARIABLES: [&str; 2] = ["PDOFLOW_DATABASE_URL", "DATABASE_URL"];
const SECTION: &str = "postgresql";
/// The section of `pdoflow-run serve`'s settings (see `read_server_section`),
/// which the connection settings leave alone.
pub const SERVER_SECTION: &str = "server";
const KEYS: [&str; 12] = [
    "user",
    "password",
    "host",
    "port",
    "database",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslsni",
    "target_session_attrs",
    "connect_timeout",
];
/// Each host's `connect_timeout` when several are given and the settings
/// name none: a host that does not answer (down, or cut off) would
/// otherwise hold up the next for the operating system's TCP timeout.
pub const MULTI_HOST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a connection of the client is made with (see `connect`), and
/// a description of where it came from (for logs and error messages; never
/// includes the password).
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// Where to connect and as whom. Its `ssl_mode` is not used: `tls` says.
    pub config: Config,
    /// TLS, as libpq's `sslmode`, `sslrootcert`, ... give it.
    pub tls: TlsSettings,
    /// Which of several hosts to use (`target_session_attrs`; default any).
    /// Its `config`'s `target_session_attrs` is not used: this says.
    pub target: TargetSession,
    /// What each connection sets for its session (lock and statement
    /// timeouts; defaults 5 s and 1 min).
    pub session: SessionSettings,
    pub source: String,
}

impl ConnectionSettings {
    /// Settings from a `postgresql://` URL or a `key=value` connection
    /// string, with libpq's TLS parameters in it or in the environment
    /// (`PGSSLMODE`, ...), and the default session settings. `source` names
    /// where the string came from in error messages.
    pub fn from_url(url: &str, source: &str) -> Result<ConnectionSettings> {
        parse_url(url, source, &connect::process_env)
    }

    /// Settings from a tokio-postgres `Config`: its `ssl_mode` when set to
    /// `disable` or `require` (`prefer`, the default, gives way to
    /// `PGSSLMODE`), the other TLS parameters from the environment, and the
    /// default session settings.
    pub fn from_config(config: Config, source: &str) -> Result<ConnectionSettings> {
        let tls = connect::tls_from_config(&config, &connect::process_env)
            .map_err(|error| Error::Config(format!("{source}: {error}")))?;
        Ok(ConnectionSettings {
            target: TargetSession::of(config.get_target_session_attrs()),
            config,
            tls,
            session: SessionSettings::default(),
            source: source.to_owned(),
        })
    }
}

/// Resolves the connection settings in the documented order. `config_file`
/// overrides the default location of `db.conf`. The TLS files they name
/// are read once here, so that a missing or unreadable one is reported
/// before anything starts.
pub fn resolve(url: Option<&str>, config_file: Option<&Path>) -> Result<ConnectionSettings> {
    let settings = find(url, config_file)?;
    connect::check_tls(&settings.tls)
        .map_err(|error| Error::Config(format!("{}: {error}", settings.source)))?;
    Ok(settings)
}

/// The settings of `resolve`, not yet checked.
fn find(url: Option<&str>, config_file: Option<&Path>) -> Result<ConnectionSettings> {
    if let Some(url) = url {
        return parse_url(url, "--database-url", &connect::process_env);
    }
    // A config file named explicitly outranks the environment's URLs.
    if let Some(path) = config_file {
        if !path.exists() {
            return Err(Error::ConfigFile {
                path: path.to_owned(),
                message: "no such file".into(),
            });
        }
        return read_config_file(path);
    }
    for variable in URL_VARIABLES {
        if let Ok(url) = std::env::var(variable) {
            if !url.is_empty() {
                return parse_url(&url, variable, &connect::process_env);
            }
        }
    }
    let path = match config_file {
        Some(path) => path.to_owned(),
        None => default_config_file().ok_or_else(no_settings)?,
    };
    if !path.exists() {
        if config_file.is_some() {
            return Err(Error::ConfigFile {
                path,
                message: "no such file".into(),
            });
        }
        return Err(no_settings());
    }
    read_config_file(&path)
}

fn no_settings() -> Error {
    Error::Config(
        "no database given: pass --database-url, set PDOFLOW_DATABASE_URL or DATABASE_URL, \
         or write ~/.config/pdoflow/db.conf"
            .into(),
    )
}

/// A connection string's settings: its TLS parameters taken out (for
/// tokio-postgres rejects most of them) and resolved with `env`'s
/// `PGSSLMODE`, ..., the rest parsed by tokio-postgres.
fn parse_url(
    url: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectionSettings> {
    let not_one = |error: String| {
        Error::Config(format!(
            "{source}: not a PostgreSQL connection string: {error}"
        ))
    };
    let (rest, parameters) = connect::split(url).map_err(not_one)?;
    let config = rest
        .parse::<Config>()
        .map_err(|error| not_one(error.to_string()))?;
    let config = config_with_hosts_checked(config)
        .map_err(|error| Error::Config(format!("{source}: {error}")))?;
    finish_settings(config, &parameters, source, env)
}

/// `config`, checked for a host list tokio-postgres would take as one host
/// (`?host=a,b` in a URL names a host "a,b"), with the default
/// `connect_timeout` of several hosts.
fn config_with_hosts_checked(mut config: Config) -> std::result::Result<Config, String> {
    if let Some(Host::Tcp(listed)) = config
        .get_hosts()
        .iter()
        .find(|host| matches!(host, Host::Tcp(name) if name.contains(',')))
    {
        return Err(format!(
            "host {listed:?} is one name to this client: list several hosts in the \
             URL's authority (postgresql://a:5432,b:5432/db) or as host=a,b port=5432,5432"
        ));
    }
    let ports = config.get_ports().len();
    let hosts = config.get_hosts().len();
    if ports > 1 && ports != hosts {
        return Err(format!(
            "{hosts} host(s) but {ports} ports: give one port, or one per host"
        ));
    }
    if hosts > 1 && config.get_connect_timeout().is_none() {
        config.connect_timeout(MULTI_HOST_CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// The settings of `config` and the `parameters` taken out of its string
/// (TLS and the target server, resolved with `env`).
fn finish_settings(
    mut config: Config,
    parameters: &Parameters,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectionSettings> {
    let target = parameters
        .target(env)
        .map_err(|error| Error::Config(format!("{source}: {error}")))?
        .unwrap_or_default();
    config.target_session_attrs(target.first_choice());
    let tls = settings_with_tls(&mut config, parameters, source, env)?;
    Ok(ConnectionSettings {
        config,
        tls,
        target,
        session: SessionSettings::default(),
        source: source.to_owned(),
    })
}

/// The TLS settings of `parameters` (and `env`), checked, with `config`'s
/// `ssl_mode` set to match as nearly as tokio-postgres can say, so that it
/// tells the truth to whoever reads it.
fn settings_with_tls(
    config: &mut Config,
    parameters: &Parameters,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TlsSettings> {
    let tls = parameters
        .resolve(env)
        .map_err(|error| Error::Config(format!("{source}: {error}")))?;
    config.ssl_mode(match tls.mode {
        connect::SslMode::Disable | connect::SslMode::Allow => {
            tokio_postgres::config::SslMode::Disable
        }
        connect::SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    Ok(tls)
}

/// `$XDG_CONFIG_HOME/pdoflow/db.conf`, else `~/.config/pdoflow/db.conf`.
pub fn default_config_file() -> Option<PathBuf> {
    Some(
        xdg_dir("XDG_CONFIG_HOME", ".config")?
            .join("pdoflow")
            .join("db.conf"),
    )
}

/// An XDG base directory: `$variable` when set and not empty, else
/// `~/<fallback>`; `None` without a home directory.
pub(crate) fn xdg_dir(variable: &str, fallback: &str) -> Option<PathBuf> {
    match std::env::var_os(variable).filter(|dir| !dir.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(std::env::var_os("HOME")?).join(fallback)),
    }
}

/// Reads a `db.conf` file: section `[postgresql]` with the keys user,
/// password, host, port and database, and libpq's TLS parameters sslmode,
/// sslrootcert, sslcert, sslkey and sslsni (the environment's `PGSSLMODE`,
/// ... where they are not given). Unknown sections or keys are errors, so a
/// typo does not silently connect somewhere else, or without TLS.
pub fn read_config_file(path: &Path) -> Result<ConnectionSettings> {
    read_config_file_with(path, &connect::process_env)
}

fn read_config_file_with(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectionSettings> {
    let fail = |message: String| Error::ConfigFile {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
    let ini = ini::Ini::load_from_str(&text).map_err(|error| fail(error.to_string()))?;
    let mut config = Config::new();
    let mut tls = Parameters::default();
    let mut found = false;
    for (section, properties) in ini.iter() {
        match section {
            Some(SECTION) => found = true,
            Some(SERVER_SECTION) => continue,
            None if properties.is_empty() => continue,
            None => {
                return Err(fail(format!(
                    "settings outside a section; put them under [{SECTION}]"
                )))
            }
            Some(other) => {
                return Err(fail(format!(
                    "unknown section [{other}]; expected [{SECTION}]"
                )))
            }
        }
        for (key, value) in properties.iter() {
            match key {
                "user" => {
                    config.user(value);
                }
                "password" => {
                    config.password(value);
                }
                "host" => {
                    for host in value.split(',') {
                        config.host(host.trim());
                    }
                }
                "database" => {
                    config.dbname(value);
                }
                "port" => {
                    for port in value.split(',') {
                        let port = port.trim().parse::<u16>().map_err(|_| {
                            fail(format!(
                                "port must be a number from 1 to 65535 (or several, \
                                 comma-separated), got {value:?}"
                            ))
                        })?;
                        config.port(port);
                    }
                }
                "connect_timeout" => {
                    let seconds = value.trim().parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                        fail(format!(
                            "connect_timeout must be a whole number of seconds, at least 1, got {value:?}"
                        ))
                    })?;
                    config.connect_timeout(Duration::from_secs(seconds));
                }
                "sslmode"
                | "sslrootcert"
                | "sslcert"
                | "sslkey"
                | "sslsni"
                | "target_session_attrs" => {
                    tls.take(key, value.to_owned()).map_err(fail)?;
                }
                other => {
                    return Err(fail(format!(
                        "unknown key {other:?} in [{SECTION}]; expected one of {}",
                        KEYS.join(", ")
                    )))
                }
            }
        }
    }
    if !found {
        return Err(fail(format!("no [{SECTION}] section")));
    }
    if config.get_hosts().is_empty() {
        config.host("localhost");
    }
    let source = path.display().to_string();
    let config = config_with_hosts_checked(config).map_err(fail)?;
    finish_settings(config, &tls, &source, env)
}

/// The `[server]` section of a `db.conf` file (the settings of `pdoflow-run
/// serve`), as `(key, value)` pairs in file order; empty when the file has
/// none. The keys are checked by their reader.
pub fn read_server_section(path: &Path) -> Result<Vec<(String, String)>> {
    let fail = |message: String| Error::ConfigFile {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
    let ini = ini::Ini::load_from_str(&text).map_err(|error| fail(error.to_string()))?;
    Ok(ini
        .section(Some(SERVER_SECTION))
        .map(|properties| {
            properties
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::{RootCertificates, SslMode};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(text: &str) -> (PathBuf, impl Drop) {
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let path = std::env::temp_dir().join(format!("pdoflow-db-conf-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, text).unwrap();
        (path.clone(), Remove(path))
    }

    #[test]
    fn reads_the_original_pdoflow_format() {
        let (path, _cleanup) = write(
            "[postgresql]\nuser = app\npassword = secret\nhost = db.internal\nport = 6543\ndatabase = jobs\n",
        );
        let settings = read_config_file_with(&path, &no_env).unwrap();
        assert_eq!(settings.tls, TlsSettings::default());
        let config = settings.config;
        assert_eq!(config.get_user(), Some("app"));
        assert_eq!(config.get_dbname(), Some("jobs"));
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_password(), Some(&b"secret"[..]));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("[postgres]\nuser = app\n", "unknown section [postgres]"),
            ("[postgresql]\nusername = app\n", "unknown key \"username\""),
            ("[postgresql]\nsslcrl = x\n", "unknown key \"sslcrl\""),
            ("[postgresql]\nsslmode = on\n", "sslmode=\"on\": not one of"),
            ("[postgresql]\nport = fifty\n", "port must be a number"),
            ("user = app\n", "outside a section"),
            ("", "no [postgresql] section"),
            ("[postgresql\nuser = app\n", ""),
        ] {
            let (path, _cleanup) = write(text);
            let error = read_config_file_with(&path, &no_env)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(&path.display().to_string()), "{error}");
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn an_explicit_url_wins_and_bad_urls_are_named() {
        let settings = resolve(Some("postgresql://u@h:1/d"), None).unwrap();
        assert_eq!(settings.source, "--database-url");
        let error = resolve(Some("postgresql://h:notaport/d"), None).unwrap_err();
        assert!(error.to_string().starts_with("--database-url: "), "{error}");
        let error = resolve(Some("postgresql://h/d?sslmode=strict"), None).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--database-url: sslmode=\"strict\": not one of"),
            "{error}"
        );
    }

    #[test]
    fn the_server_section_is_left_to_serve() {
        let (path, _cleanup) =
            write("[postgresql]\nhost = db\n\n[server]\nlisten = 0.0.0.0:9000\npool_size = 4\n");
        let settings = read_config_file_with(&path, &no_env).unwrap();
        assert_eq!(settings.config.get_hosts().len(), 1);
        let server = read_server_section(&path).unwrap();
        assert_eq!(
            server,
            vec![
                ("listen".to_owned(), "0.0.0.0:9000".to_owned()),
                ("pool_size".to_owned(), "4".to_owned())
            ]
        );
        let (path, _cleanup) = write("[postgresql]\nhost = db\n");
        assert!(read_server_section(&path).unwrap().is_empty());
    }

    #[test]
    fn db_conf_has_the_tls_parameters() {
        let (path, _cleanup) = write(
            "[postgresql]\nhost = db\nsslmode = verify-ca\nsslrootcert = /etc/ca.pem\n\
             sslcert = /etc/c.crt\nsslkey = /etc/c.key\n",
        );
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("disable".to_owned()),
            "PGSSLKEY" => Some("/env/c.key".to_owned()),
            _ => None,
        };
        let settings = read_config_file_with(&path, &env).unwrap();
        assert_eq!(settings.tls.mode, SslMode::VerifyCa);
        assert_eq!(
            settings.tls.root_certificates,
            RootCertificates::File("/etc/ca.pem".into())
        );
        assert_eq!(settings.tls.client_certificate, Some("/etc/c.crt".into()));
        // db.conf wins over the environment, which fills in what it lacks.
        assert_eq!(settings.tls.client_key, Some("/etc/c.key".into()));
        let (path, _cleanup) = write("[postgresql]\nhost = db\n");
        let settings = read_config_file_with(&path, &env).unwrap();
        assert_eq!(settings.tls.mode, SslMode::Disable);
        assert_eq!(settings.tls.client_key, Some("/env/c.key".into()));
        assert_eq!(
            settings.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn urls_take_the_environment_where_they_say_nothing() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-full".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_owned()),
            _ => None,
        };
        let settings = parse_url("postgresql://u@h/d", "x", &env).unwrap();
        assert_eq!(settings.tls.mode, SslMode::VerifyFull);
        assert_eq!(
            settings.tls.root_certificates,
            RootCertificates::File("/env/ca.pem".into())
        );
        assert_eq!(settings.session, SessionSettings::default());
        let settings = parse_url("host=h user=u sslmode=require", "x", &env).unwrap();
        assert_eq!(settings.tls.mode, SslMode::Require);
        assert_eq!(settings.config.get_user(), Some("u"));
        assert_eq!(
            settings.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn several_hosts_and_the_server_they_want() {
        use tokio_postgres::config::TargetSessionAttrs;
        let settings = parse_url(
            "postgresql://u@10.0.0.1:5432,10.0.0.2:5433/app?target_session_attrs=read-write",
            "x",
            &no_env,
        )
        .unwrap();
        assert_eq!(settings.config.get_hosts().len(), 2);
        assert_eq!(settings.config.get_ports(), [5432, 5433]);
        assert_eq!(settings.target, TargetSession::ReadWrite);
        assert_eq!(
            settings.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            settings.config.get_connect_timeout(),
            Some(&MULTI_HOST_CONNECT_TIMEOUT)
        );
        // libpq's names that tokio-postgres lacks, and the environment.
        let settings = parse_url(
            "host=a,b port=1,2 target_session_attrs=prefer-standby connect_timeout=2",
            "x",
            &no_env,
        )
        .unwrap();
        assert_eq!(settings.target, TargetSession::PreferStandby);
        assert_eq!(
            settings.config.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert!(!settings.target.may_write());
        let env = |name: &str| (name == "PGTARGETSESSIONATTRS").then(|| "standby".to_owned());
        let settings = parse_url("postgresql://u@h/app", "x", &env).unwrap();
        assert_eq!(settings.target, TargetSession::Standby);
        assert_eq!(settings.config.get_connect_timeout(), None);
        let settings = parse_url("postgresql://u@h/app", "x", &no_env).unwrap();
        assert_eq!(settings.target, TargetSession::Any);

        let error = parse_url(
            "postgresql://h/app?target_session_attrs=master",
            "src",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("src") && error.contains("\"master\""),
            "{error}"
        );
        let error = parse_url("postgresql:///app?host=a,b", "src", &no_env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("one name"), "{error}");
        let error = parse_url("host=a,b,c port=1,2", "src", &no_env)
            .unwrap_err()
            .to_string();
        assert!(error.contains("3 host(s) but 2 ports"), "{error}");
    }

    #[test]
    fn db_conf_lists_hosts_and_the_server_it_wants() {
        let (path, _cleanup) = write(
            "[postgresql]\nhost = db1, db2\nport = 5432,5433\ndatabase = app\n\
             target_session_attrs = read-write\nconnect_timeout = 3\n",
        );
        let settings = read_config_file_with(&path, &no_env).unwrap();
        assert_eq!(settings.config.get_hosts().len(), 2);
        assert_eq!(settings.config.get_ports(), [5432, 5433]);
        assert_eq!(settings.target, TargetSession::ReadWrite);
        assert_eq!(
            settings.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        for (line, expected) in [
            ("target_session_attrs = primary-ish", "\"primary-ish\""),
            ("connect_timeout = soon", "connect_timeout must be"),
            ("port = 5432,x", "port must be"),
        ] {
            let (path, _cleanup) = write(&format!("[postgresql]\nhost = a,b\n{line}\n"));
            let error = read_config_file_with(&path, &no_env)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
