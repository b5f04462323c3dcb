//! A job's attempts that ended without success, as `pdoflow.job_attempts`
//! keeps them (pdoflow 0.13.0 and later): failed, lease expired, released,
//! or cancelled while running. A succeeded attempt is the job itself.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};

/// One claim of a job that ended without success.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobAttempt {
    pub attempt: i32,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// Its last heartbeat (or progress report).
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    /// `failed`, `lease_expired`, `released` or `cancelled`.
    pub outcome: String,
    /// The worker's error, or the sweeper's `lease of attempt N expired
    /// ...`; None for a release or a cancel.
    pub error: Option<String>,
    /// Its last progress report.
    pub progress: Option<Value>,
}

/// The attempts of job `$1`, oldest first; no row when there is no such
/// job, one row of NULLs for a job without any.
const ATTEMPTS: &str = "
    SELECT a.attempt, a.worker, a.started_at, a.heartbeat_at, a.ended_at, a.outcome, a.error,
           a.progress
    FROM (SELECT FROM pdoflow.jobs WHERE id = $1) AS j
    LEFT JOIN pdoflow.job_attempts AS a ON a.job = $1
    ORDER BY a.attempt";

impl JobAttempt {
    fn from_row(row: &Row) -> Result<Option<JobAttempt>> {
        let Some(attempt) = row.try_get(0)? else {
            return Ok(None);
        };
        Ok(Some(JobAttempt {
            attempt,
            worker: row.try_get(1)?,
            started_at: row.try_get(2)?,
            heartbeat_at: row.try_get(3)?,
            ended_at: row.try_get(4)?,
            outcome: row.try_get(5)?,
            error: row.try_get(6)?,
            progress: row.try_get(7)?,
        }))
    }
}

impl Client {
    /// Job `id`'s attempts that ended without success, oldest first (empty
    /// for a job that never had one). An unknown job (or one that retention
    /// has removed) is `Error::NoSuchJob`.
    pub async fn job_attempts(&self, id: Uuid) -> Result<Vec<JobAttempt>> {
        let rows = self.postgres().query(ATTEMPTS, &[&id]).await?;
        if rows.is_empty() {
            return Err(Error::NoSuchJob(id));
        }
        let mut attempts = Vec::new();
        for row in &rows {
            attempts.extend(JobAttempt::from_row(row)?);
        }
        Ok(attempts)
    }
}
