//! The parameters of a connection string that are taken out before
//! tokio-postgres sees it: the TLS ones (its 0.7 parser knows only
//! `sslmode` disable, prefer and require, and rejects `sslrootcert`,
//! `sslcert` and `sslkey` as unknown options), and `target_session_attrs`
//! (it knows `any`, `read-write` and `read-only`, not libpq's `primary`,
//! `standby` and `prefer-standby`).
//!
//! Both forms libpq accepts are handled, split exactly where tokio-postgres
//! would split them so that what is left means what it meant:
//!
//! - `postgresql://user@host/db?sslmode=verify-full&sslrootcert=ca.pem`
//!   (the query's keys and values percent-decoded);
//! - `host=db sslmode=verify-full sslrootcert='/etc/my ca.pem'` (values
//!   optionally single-quoted, with backslash escapes).

use std::path::PathBuf;

use super::target::TargetSession;
use super::tls::{RootCertificates, SslMode, TlsSettings};

/// The parameters of one connection string (or `db.conf`) taken out of it,
/// as written; `None` where not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parameters {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub sslsni: Option<String>,
    pub target_session_attrs: Option<String>,
}

/// libpq's TLS parameters that this client does not implement: named as
/// such, rather than as tokio-postgres's "unknown option".
const UNSUPPORTED: [&str; 8] = [
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "sslkeylogfile",
    "requiressl",
];

/// The environment variables libpq reads for the same parameters; the
/// connection string wins over them.
pub(crate) const ENVIRONMENT: [(&str, &str); 6] = [
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslsni", "PGSSLSNI"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
];

impl Parameters {
    /// Keeps `value` if `key` is a parameter handled here: `Ok(true)`.
    pub(crate) fn take(&mut self, key: &str, value: String) -> Result<bool, String> {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "sslsni" => &mut self.sslsni,
            "target_session_attrs" => &mut self.target_session_attrs,
            // Obsolete: libpq ignores it too (no TLS library compresses now).
            "sslcompression" => return Ok(true),
            key if UNSUPPORTED.contains(&key) => {
                return Err(format!(
                    "connection parameter {key} is not supported by pdoflow's client"
                ))
            }
            _ => return Ok(false),
        };
        // As in libpq, a later occurrence replaces an earlier one.
        *slot = Some(value);
        Ok(true)
    }

    /// The server these parameters want (`PGTARGETSESSIONATTRS` where
    /// not given); None where neither says.
    pub(crate) fn target(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<TargetSession>, String> {
        match pick(&self.target_session_attrs, "target_session_attrs", env) {
            None => Ok(None),
            Some((value, origin)) => value
                .parse()
                .map(Some)
                .map_err(|error| format!("{origin}: {error}")),
        }
    }

    /// The TLS settings these parameters give, with the environment's
    /// (`PGSSLMODE`, ...) where a parameter is not given, and libpq's
    /// defaults where neither is.
    pub(crate) fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsSettings, String> {
        let pick = |given: &Option<String>, key: &str| pick(given, key, env);
        // Revocation lists are not checked here: one that libpq would use
        // must not be silently ignored.
        for variable in ["PGSSLCRL", "PGSSLCRLDIR"] {
            if env(variable).is_some_and(|value| !value.is_empty()) {
                return Err(format!(
                    "{variable} is set, but pdoflow's client does not check certificate \
                     revocation lists; unset it to connect without one"
                ));
            }
        }
        let mode = match pick(&self.sslmode, "sslmode") {
            Some((value, origin)) => Some(
                value
                    .parse::<SslMode>()
                    .map_err(|error| format!("{origin}={value:?}: {error}"))?,
            ),
            None => None,
        };
        let root_certificates = match pick(&self.sslrootcert, "sslrootcert") {
            Some((value, _)) if value == "system" => RootCertificates::System,
            Some((value, _)) => RootCertificates::File(PathBuf::from(value)),
            None => RootCertificates::Default,
        };
        let mode = match (mode, &root_certificates) {
            // libpq 16: the system's roots make verify-full the default, and
            // anything weaker an error (anyone can get a certificate from a
            // public CA for a name of their own).
            (None, RootCertificates::System) => SslMode::VerifyFull,
            (Some(mode), RootCertificates::System) if mode != SslMode::VerifyFull => {
                return Err(super::tls::weak_mode_with_system_roots(mode));
            }
            (mode, _) => mode.unwrap_or_default(),
        };
        let sni = match pick(&self.sslsni, "sslsni") {
            None => true,
            Some((value, _)) if value == "1" => true,
            Some((value, _)) if value == "0" => false,
            Some((value, origin)) => {
                return Err(format!("{origin}={value:?}: must be 0 or 1"));
            }
        };
        Ok(TlsSettings {
            mode,
            root_certificates,
            client_certificate: pick(&self.sslcert, "sslcert").map(|(path, _)| path.into()),
            client_key: pick(&self.sslkey, "sslkey").map(|(path, _)| path.into()),
            sni,
        })
    }
}

/// A parameter's value as given, else from its environment variable, with
/// where it came from (for error messages); None where neither has one.
fn pick(
    given: &Option<String>,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    if let Some(value) = given.as_ref().filter(|value| !value.is_empty()) {
        return Some((value.clone(), key.to_owned()));
    }
    let variable = ENVIRONMENT
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, variable)| *variable)?;
    env(variable)
        .filter(|value| !value.is_empty())
        .map(|value| (value, variable.to_owned()))
}

/// Splits a connection string into what tokio-postgres parses and the
/// parameters taken out. An error is a message for "not a PostgreSQL connection string: ...".
pub(crate) fn split(text: &str) -> Result<(String, Parameters), String> {
    let mut parameters = Parameters::default();
    let rest = match ["postgres://", "postgresql://"]
        .iter()
        .find(|prefix| text.starts_with(*prefix))
    {
        Some(prefix) => split_url(text, prefix.len(), &mut parameters)?,
        None => split_key_values(text, &mut parameters)?,
    };
    Ok((rest, parameters))
}

/// The URL form. tokio-postgres ends the credentials at the first `@` of
/// the whole string, and the query at the first `?` after that; its
/// parameters are `key=value` separated by `&` (a key runs to the next `=`).
fn split_url(url: &str, prefix: usize, parameters: &mut Parameters) -> Result<String, String> {
    let after_credentials = url[prefix..].find('@').map_or(prefix, |at| prefix + at + 1);
    let Some(question) = url[after_credentials..].find('?') else {
        return Ok(url.to_owned());
    };
    let query_start = after_credentials + question + 1;
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = &url[query_start..];
    while !rest.is_empty() {
        let Some(equals) = rest.find('=') else {
            // Malformed: left for tokio-postgres to report.
            kept.push(rest);
            break;
        };
        let (value, next) = match rest[equals + 1..].find('&') {
            Some(amp) => (
                &rest[equals + 1..equals + 1 + amp],
                &rest[equals + 2 + amp..],
            ),
            None => (&rest[equals + 1..], ""),
        };
        let pair = &rest[..equals + 1 + value.len()];
        let key = percent_encoding::percent_decode_str(&rest[..equals]).decode_utf8();
        let taken = match key {
            Ok(key) => {
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| format!("the value of {key} is not UTF-8"))?;
                parameters.take(&key, value.into_owned())?
            }
            Err(_) => false,
        };
        if !taken {
            kept.push(pair);
        }
        rest = next;
    }
    let mut out = url[..query_start - 1].to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Ok(out)
}

/// The `key=value` form, read as tokio-postgres (and libpq) read it; the
/// pairs not taken are written back quoted.
fn split_key_values(text: &str, parameters: &mut Parameters) -> Result<String, String> {
    let mut chars = text.chars().peekable();
    let mut kept = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_some() {
                return Err("a parameter without a name (`=` first)".into());
            }
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("expected `=` after {key}"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("the quoted value of {key} is not terminated")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(format!("{key} has no value"));
            }
        }
        if !parameters.take(&key, value.clone())? {
            kept.push(format!("{key}='{}'", quote(&value)));
        }
    }
    Ok(kept.join(" "))
}

/// A value escaped for a single-quoted `key='value'`.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::Config;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn settings(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<TlsSettings, String> {
        let (_, parameters) = split(text)?;
        parameters.resolve(env)
    }

    #[test]
    fn urls_lose_their_tls_parameters_and_keep_the_rest() {
        let (rest, parameters) = split(
            "postgresql://app:p%40ss@db.example:6432/jobs?sslmode=verify-full&application_name=w%201&sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem&sslcert=c.pem&sslkey=k.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgresql://app:p%40ss@db.example:6432/jobs?application_name=w%201"
        );
        assert_eq!(parameters.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(
            parameters.sslrootcert.as_deref(),
            Some("/etc/ca dir/ca.pem")
        );
        assert_eq!(parameters.sslcert.as_deref(), Some("c.pem"));
        assert_eq!(parameters.sslkey.as_deref(), Some("k.pem"));
        let config: Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(config.get_application_name(), Some("w 1"));
        assert_eq!(config.get_dbname(), Some("jobs"));

        // Only TLS parameters: the `?` goes too.
        let (rest, _) = split("postgres://h/d?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://h/d");
        // No query at all, and a `?` inside the credentials.
        let (rest, parameters) = split("postgresql://u:a?b@h/d").unwrap();
        assert_eq!(rest, "postgresql://u:a?b@h/d");
        assert_eq!(parameters, Parameters::default());
        let (rest, parameters) = split("postgresql://u:a?b@h/d?sslmode=disable").unwrap();
        assert_eq!(rest, "postgresql://u:a?b@h/d");
        assert_eq!(parameters.sslmode.as_deref(), Some("disable"));
    }

    #[test]
    fn key_value_strings_lose_their_tls_parameters_and_keep_the_rest() {
        let (rest, parameters) = split(
            r"host=db.example port = 6432 sslmode=verify-ca sslrootcert='/etc/my ca\'s.pem' password='a b\\c' dbname=jobs",
        )
        .unwrap();
        assert_eq!(parameters.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(parameters.sslrootcert.as_deref(), Some("/etc/my ca's.pem"));
        let config: Config = rest.parse().unwrap();
        assert_eq!(config.get_ports(), &[6432]);
        assert_eq!(config.get_password(), Some(&br"a b\c"[..]));
        assert_eq!(config.get_dbname(), Some("jobs"));
        assert_eq!(
            config.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("db.example".into())]
        );
        assert_eq!(split("").unwrap().0, "");
        for (text, expected) in [
            ("host", "expected `=` after host"),
            ("host=", "host has no value"),
            ("password='x", "not terminated"),
            ("=x", "without a name"),
        ] {
            let error = split(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_default_is_prefer_with_libpq_files() {
        assert_eq!(settings("host=h", &no_env).unwrap(), TlsSettings::default());
        assert_eq!(TlsSettings::default().mode, SslMode::Prefer);
        assert_eq!(
            TlsSettings::default().root_certificates,
            RootCertificates::Default
        );
    }

    #[test]
    fn the_connection_string_wins_over_the_environment() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-full".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_owned()),
            "PGSSLCERT" => Some("/env/client.crt".to_owned()),
            "PGSSLKEY" => Some("/env/client.key".to_owned()),
            _ => None,
        };
        let from_env = settings("postgresql://h/d", &env).unwrap();
        assert_eq!(from_env.mode, SslMode::VerifyFull);
        assert_eq!(
            from_env.root_certificates,
            RootCertificates::File("/env/ca.pem".into())
        );
        assert_eq!(from_env.client_certificate, Some("/env/client.crt".into()));
        assert_eq!(from_env.client_key, Some("/env/client.key".into()));
        let given = settings(
            "postgresql://h/d?sslmode=require&sslrootcert=/url/ca.pem&sslkey=/url/k",
            &env,
        )
        .unwrap();
        assert_eq!(given.mode, SslMode::Require);
        assert_eq!(
            given.root_certificates,
            RootCertificates::File("/url/ca.pem".into())
        );
        assert_eq!(given.client_certificate, Some("/env/client.crt".into()));
        assert_eq!(given.client_key, Some("/url/k".into()));
        // Empty variables count as unset.
        let empty = |_: &str| Some(String::new());
        assert_eq!(settings("host=h", &empty).unwrap(), TlsSettings::default());
    }

    #[test]
    fn bad_values_are_named_with_where_they_came_from() {
        let error = settings("host=h sslmode=verify", &no_env).unwrap_err();
        assert!(
            error.starts_with("sslmode=\"verify\": not one of disable, allow, prefer, require, verify-ca, verify-full"),
            "{error}"
        );
        let env = |name: &str| (name == "PGSSLMODE").then(|| "strict".to_owned());
        let error = settings("host=h", &env).unwrap_err();
        assert!(error.starts_with("PGSSLMODE=\"strict\""), "{error}");
        let error = settings("postgresql://h/d?sslsni=yes", &no_env).unwrap_err();
        assert!(error.contains("sslsni=\"yes\": must be 0 or 1"), "{error}");
        let error = settings("postgresql://h/d?sslcrl=x.crl", &no_env).unwrap_err();
        assert!(
            error.contains("sslcrl is not supported by pdoflow's client"),
            "{error}"
        );
        // A revocation list libpq would check is refused, not ignored.
        let env = |name: &str| (name == "PGSSLCRL").then(|| "/etc/ssl/pg.crl".to_owned());
        let error = settings("host=h sslmode=verify-full", &env).unwrap_err();
        assert!(
            error.starts_with("PGSSLCRL is set, but pdoflow's client does not check"),
            "{error}"
        );
        // tokio-postgres's own parameters pass, sslcompression is ignored.
        let (rest, _) = split("host=h sslcompression=0 sslnegotiation=postgres").unwrap();
        assert_eq!(rest, "host='h' sslnegotiation='postgres'");
    }

    #[test]
    fn system_roots_need_verify_full() {
        let system = settings("postgresql://h/d?sslrootcert=system", &no_env).unwrap();
        assert_eq!(system.mode, SslMode::VerifyFull);
        assert_eq!(system.root_certificates, RootCertificates::System);
        for mode in ["disable", "prefer", "require", "verify-ca"] {
            let error = settings(
                &format!("host=h sslrootcert=system sslmode={mode}"),
                &no_env,
            )
            .unwrap_err();
            assert!(
                error.contains(&format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system"
                )),
                "{error}"
            );
        }
        let env = |name: &str| (name == "PGSSLMODE").then(|| "require".to_owned());
        assert!(settings("host=h sslrootcert=system", &env).is_err());
    }

    #[test]
    fn sni_can_be_turned_off() {
        assert!(!settings("host=h sslsni=0", &no_env).unwrap().sni);
        assert!(settings("host=h sslsni=1", &no_env).unwrap().sni);
    }
}
