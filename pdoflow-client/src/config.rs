//! Where the database connection comes from, highest priority first:
//!
//! 1. an explicit URL (`--database-url` on the command line);
//! 2. an explicitly named config file (`--config`, `PDOFLOW_CONFIG`);
//! 3. the environment: `PDOFLOW_DATABASE_URL`, then `DATABASE_URL`;
//! 4. the config file `~/.config/pdoflow/db.conf` (or `$XDG_CONFIG_HOME/...`),
//!    in the INI format of the original pdoflow:
//!
//! ```ini
//! [postgresql]
//! user = app
//! password = secret
//! host = db.internal
//! port = 5432
//! database = app
//! ```

use std::path::{Path, PathBuf};

use tokio_postgres::Config;

use crate::error::{Error, Result};

pub const URL_VARIABLES: [&str; 2] = ["PDOFLOW_DATABASE_URL", "DATABASE_URL"];
const SECTION: &str = "postgresql";
const KEYS: [&str; 5] = ["user", "password", "host", "port", "database"];

/// Connection settings and a description of where they came from (for logs
/// and error messages; never includes the password).
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    pub config: Config,
    pub source: String,
}

/// Resolves the connection settings in the documented order. `config_file`
/// overrides the default location of `db.conf`.
pub fn resolve(url: Option<&str>, config_file: Option<&Path>) -> Result<ConnectionSettings> {
    if let Some(url) = url {
        return parse_url(url, "--database-url");
    }
    // A config file named explicitly outranks the environment's URLs.
    if let Some(path) = config_file {
        if !path.exists() {
            return Err(Error::ConfigFile {
                path: path.to_owned(),
                message: "no such file".into(),
            });
        }
        return Ok(ConnectionSettings {
            config: read_config_file(path)?,
            source: path.display().to_string(),
        });
    }
    for variable in URL_VARIABLES {
        if let Ok(url) = std::env::var(variable) {
            if !url.is_empty() {
                return parse_url(&url, variable);
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
    Ok(ConnectionSettings {
        config: read_config_file(&path)?,
        source: path.display().to_string(),
    })
}

fn no_settings() -> Error {
    Error::Config(
        "no database given: pass --database-url, set PDOFLOW_DATABASE_URL or DATABASE_URL, \
         or write ~/.config/pdoflow/db.conf"
            .into(),
    )
}

fn parse_url(url: &str, source: &str) -> Result<ConnectionSettings> {
    let config = url.parse::<Config>().map_err(|error| {
        Error::Config(format!(
            "{source}: not a PostgreSQL connection string: {error}"
        ))
    })?;
    Ok(ConnectionSettings {
        config,
        source: source.to_owned(),
    })
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
/// password, host, port and database. Unknown sections or keys are errors,
/// so a typo does not silently connect somewhere else.
pub fn read_config_file(path: &Path) -> Result<Config> {
    let fail = |message: String| Error::ConfigFile {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
    let ini = ini::Ini::load_from_str(&text).map_err(|error| fail(error.to_string()))?;
    let mut config = Config::new();
    let mut found = false;
    for (section, properties) in ini.iter() {
        match section {
            Some(SECTION) => found = true,
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
                    config.host(value);
                }
                "database" => {
                    config.dbname(value);
                }
                "port" => {
                    let port = value.parse::<u16>().map_err(|_| {
                        fail(format!(
                            "port must be a number from 1 to 65535, got {value:?}"
                        ))
                    })?;
                    config.port(port);
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
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let config = read_config_file(&path).unwrap();
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
            ("[postgresql]\nport = fifty\n", "port must be a number"),
            ("user = app\n", "outside a section"),
            ("", "no [postgresql] section"),
            ("[postgresql\nuser = app\n", ""),
        ] {
            let (path, _cleanup) = write(text);
            let error = read_config_file(&path).unwrap_err().to_string();
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
    }
}
