//! Waiting for one job to end: `Client::await_result` over
//! `pdoflow.await_result`, which sleeps inside the server until the
//! transaction that ends the job commits. No LISTEN, so it works through a
//! connection pooler in transaction mode too.
//!
//! The server's wait keeps its statement's snapshot for as long as it
//! lasts (holding back vacuum) and counts against `statement_timeout`, so a
//! long wait is made of calls of at most `AWAIT_CHUNK` each.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};

/// The longest one `pdoflow.await_result` call waits. Shorter still when
/// the session's `statement_timeout` is: each call then waits four fifths of
/// it, so that the wait ends before the timeout cancels the statement.
pub const AWAIT_CHUNK: Duration = Duration::from_secs(30);

/// One call: the job as it is when it has ended, or after `$2` seconds.
const AWAIT_SQL: &str = "SELECT state, result, last_error, finished_at, progress
     FROM pdoflow.await_result($1, make_interval(secs => least($2::float8,
         (SELECT nullif(s.setting::float8, 0) * 0.8 / 1000
          FROM pg_catalog.pg_settings AS s WHERE s.name = 'statement_timeout'))))";

/// A job as `await_result` left it: ended, or as it was when the wait ran
/// out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobOutcome {
    pub id: Uuid,
    /// `succeeded`, `failed` or `cancelled` once it has ended; else
    /// `blocked`, `queued` or `running`.
    pub state: String,
    /// What the handler returned, when it succeeded.
    pub result: Option<Value>,
    /// Why its last attempt failed, if one did.
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What its handler last reported (`JobContext::progress`).
    pub progress: Option<Value>,
}

impl JobOutcome {
    /// Whether the job has ended: succeeded, failed or cancelled.
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }

    /// Whether it ended well.
    pub fn succeeded(&self) -> bool {
        self.state == "succeeded"
    }
}

impl Client {
    /// Waits until job `id` has ended (succeeded, failed or cancelled), for
    /// at most `timeout`; returns at once for a job that already has. After
    /// `timeout` it returns the job as it is then: check `is_finished`. A
    /// zero `timeout` only looks. An unknown job (or one that retention has
    /// removed) is `Error::NoSuchJob`.
    ///
    /// Long waits are made of server-side waits of at most `AWAIT_CHUNK`.
    /// Meanwhile the connection is busy: other statements sent through this
    /// `Client` wait behind the wait, so give waiting a `Client` of its
    /// own. The connection must use READ COMMITTED, as `Client::connect`
    /// sets it.
    pub async fn await_result(&self, id: Uuid, timeout: Duration) -> Result<JobOutcome> {
        // A timeout beyond the clock's range waits for as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(AWAIT_CHUNK, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            let outcome = self.await_once(id, left.min(AWAIT_CHUNK)).await?;
            let out_of_time = deadline.is_some_and(|deadline| Instant::now() >= deadline);
            if outcome.is_finished() || out_of_time {
                return Ok(outcome);
            }
        }
    }

    /// One `pdoflow.await_result` call of at most `wait`.
    async fn await_once(&self, id: Uuid, wait: Duration) -> Result<JobOutcome> {
        let row = match self
            .postgres()
            .query_one(AWAIT_SQL, &[&id, &wait.as_secs_f64()])
            .await
        {
            Ok(row) => row,
            // invalid_parameter_value: the only parameter that can be wrong
            // here is the job (the wait is never negative).
            Err(error) if error.code().map(|code| code.code()) == Some("22023") => {
                return Err(Error::NoSuchJob(id))
            }
            Err(error) => return Err(error.into()),
        };
        Ok(JobOutcome {
            id,
            state: row.try_get(0)?,
            result: row.try_get(1)?,
            last_error: row.try_get(2)?,
            finished_at: row.try_get(3)?,
            progress: row.try_get(4)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(state: &str) -> JobOutcome {
        JobOutcome {
            id: Uuid::nil(),
            state: state.to_owned(),
            result: None,
            last_error: None,
            finished_at: None,
            progress: None,
        }
    }

    #[test]
    fn only_the_end_states_are_finished() {
        for state in ["succeeded", "failed", "cancelled"] {
            assert!(outcome(state).is_finished(), "{state}");
        }
        for state in ["blocked", "queued", "running"] {
            assert!(!outcome(state).is_finished(), "{state}");
        }
        assert!(outcome("succeeded").succeeded());
        assert!(!outcome("failed").succeeded());
    }
}
