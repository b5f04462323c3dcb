//! The pdoflow the server needs: 0.13.0 or later (`await_ended` for the
//! long-poll hub, `register_task(..., replace)`, workers' job types,
//! `pdoflow.stats`, and `pdoflow.job_attempts` for the dashboard's job
//! timeline). The server and the extension ship together, so there
//! is no fallback for older ones: each new connection checks the installed
//! version once, and one that is missing or older fails to connect, which
//! the API answers with a 503 saying what to do.

use tokio_postgres::Client;

use crate::sql_error;

/// The oldest pdoflow the server works with.
pub const REQUIRED: (u32, u32, u32) = (0, 13, 0);
const REQUIRED_TEXT: &str = "0.13.0";

/// Why a connection for the server could not be made.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConnectError {
    /// The database could not be reached or refused the login.
    #[error("{0}")]
    Connect(String),
    /// The version check itself failed.
    #[error("cannot read the installed pdoflow version: {0}")]
    Check(String),
    /// pdoflow is not installed in the database.
    #[error(
        "pdoflow {REQUIRED_TEXT} or later is needed in database {database} (found none): CREATE EXTENSION pdoflow"
    )]
    Missing { database: String },
    /// pdoflow is installed, older than the server needs.
    #[error(
        "pdoflow {REQUIRED_TEXT} or later is needed in database {database} (found {found}): ALTER EXTENSION pdoflow UPDATE"
    )]
    TooOld { database: String, found: String },
}

/// Fails unless `client`'s database has pdoflow 0.13.0 or later.
pub async fn check(client: &Client) -> Result<(), ConnectError> {
    // pg_extension is readable by every role, unlike pdoflow's schema.
    let row = client
        .query_one(
            "SELECT pg_catalog.current_database()::text, \
                    (SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'pdoflow')",
            &[],
        )
        .await
        .map_err(|error| ConnectError::Check(sql_error::describe(&error)))?;
    let database: String = row
        .try_get(0)
        .map_err(|error| ConnectError::Check(sql_error::describe(&error)))?;
    let found: Option<String> = row
        .try_get(1)
        .map_err(|error| ConnectError::Check(sql_error::describe(&error)))?;
    match found {
        None => Err(ConnectError::Missing { database }),
        Some(found) if !recent_enough(&found) => Err(ConnectError::TooOld { database, found }),
        Some(_) => Ok(()),
    }
}

/// Whether `version` (`major.minor.patch`, maybe with a suffix such as
/// `-beta1`) is at least `REQUIRED`. One that does not parse is not.
fn recent_enough(version: &str) -> bool {
    let mut parts = version.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let mut next = || parts.next().flatten();
    match (next(), next(), next()) {
        (Some(major), Some(minor), patch) => (major, minor, patch.unwrap_or(0)) >= REQUIRED,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(recent_enough("0.13.0"));
        assert!(recent_enough("0.13.3"));
        assert!(recent_enough("0.14.0"));
        assert!(recent_enough("1.0.0"));
        assert!(recent_enough("0.13"));
        assert!(recent_enough("0.13.0-beta1"));
        assert!(!recent_enough("0.12.0"));
        assert!(!recent_enough("0.9.9"));
        assert!(!recent_enough("0.2.10"));
        assert!(!recent_enough("unknown"));
    }

    #[test]
    fn the_message_says_what_to_do() {
        let error = ConnectError::TooOld {
            database: "app".into(),
            found: "0.12.0".into(),
        };
        assert_eq!(
            error.to_string(),
            "pdoflow 0.13.0 or later is needed in database app (found 0.12.0): ALTER EXTENSION pdoflow UPDATE"
        );
    }
}
