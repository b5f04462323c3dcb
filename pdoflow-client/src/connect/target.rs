//! Which server of several a connection wants: libpq's
//! `target_session_attrs` (in the connection string, or
//! `PGTARGETSESSIONATTRS`). With several hosts (`postgresql://a,b/db`,
//! `host=a,b`), hosts are tried in order and the first that fits is used;
//! each new connection asks again, so after a failover the client's
//! reconnects find the promoted server.
//!
//! tokio-postgres checks `transaction_read_only` (as libpq does for
//! `read-write` and `read-only`), so `primary` and `standby` mean
//! "writable" and "read-only" here: the same unless a server sets
//! `default_transaction_read_only`.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::TargetSessionAttrs;

/// The server a connection wants, as libpq names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetSession {
    /// The first server that answers (the default).
    #[default]
    Any,
    /// One that accepts writes: the primary.
    ReadWrite,
    /// One that does not: a standby.
    ReadOnly,
    /// As `read-write`.
    Primary,
    /// As `read-only`.
    Standby,
    /// A standby if one answers, else any server.
    PreferStandby,
}

impl TargetSession {
    /// Every value, as written in a connection string.
    pub const NAMES: [&'static str; 6] = [
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ];

    /// What tokio-postgres is asked for first (`prefer-standby` then falls
    /// back to `any`).
    pub(crate) fn first_choice(self) -> TargetSessionAttrs {
        match self {
            TargetSession::Any => TargetSessionAttrs::Any,
            TargetSession::ReadWrite | TargetSession::Primary => TargetSessionAttrs::ReadWrite,
            TargetSession::ReadOnly | TargetSession::Standby | TargetSession::PreferStandby => {
                TargetSessionAttrs::ReadOnly
            }
        }
    }

    /// Whether a connection made for this target may be asked to write:
    /// false for the targets that want a standby.
    pub fn may_write(self) -> bool {
        !matches!(
            self,
            TargetSession::ReadOnly | TargetSession::Standby | TargetSession::PreferStandby
        )
    }

    /// The target a tokio-postgres `Config` asks for.
    pub(crate) fn of(attrs: TargetSessionAttrs) -> TargetSession {
        match attrs {
            TargetSessionAttrs::ReadWrite => TargetSession::ReadWrite,
            TargetSessionAttrs::ReadOnly => TargetSession::ReadOnly,
            _ => TargetSession::Any,
        }
    }
}

impl FromStr for TargetSession {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "any" => TargetSession::Any,
            "read-write" => TargetSession::ReadWrite,
            "read-only" => TargetSession::ReadOnly,
            "primary" => TargetSession::Primary,
            "standby" => TargetSession::Standby,
            "prefer-standby" => TargetSession::PreferStandby,
            other => {
                return Err(format!(
                    "target_session_attrs must be one of {}, got {other:?}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

impl fmt::Display for TargetSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TargetSession::Any => "any",
            TargetSession::ReadWrite => "read-write",
            TargetSession::ReadOnly => "read-only",
            TargetSession::Primary => "primary",
            TargetSession::Standby => "standby",
            TargetSession::PreferStandby => "prefer-standby",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libpq_name_reads_back_as_written() {
        for name in TargetSession::NAMES {
            let target: TargetSession = name.parse().unwrap();
            assert_eq!(target.to_string(), name);
        }
        let error = "readwrite".parse::<TargetSession>().unwrap_err();
        assert!(error.contains("\"readwrite\""), "{error}");
        assert!(error.contains("prefer-standby"), "{error}");
    }

    #[test]
    fn only_the_standby_targets_may_not_write() {
        let writers: Vec<&str> = TargetSession::NAMES
            .into_iter()
            .filter(|name| name.parse::<TargetSession>().unwrap().may_write())
            .collect();
        assert_eq!(writers, ["any", "read-write", "primary"]);
    }
}
