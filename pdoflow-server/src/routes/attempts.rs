//! A job's attempts that ended without success (`pdoflow.job_attempts`):
//! failed, lease expired, released, or cancelled while running.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::{job_id, json};
use crate::auth::Role;
use crate::pool::Session;
use crate::problem::Problem;
use crate::raw_json::RawJson;
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

/// How a claim ended without success.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AttemptOutcome {
    /// The worker finished it with an error.
    Failed,
    /// Its lease ran out and the sweeper took the job back.
    LeaseExpired,
    /// The worker handed the job back (`release`).
    Released,
    /// The job was cancelled while it ran.
    Cancelled,
}

/// One claim of a job that ended without success.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAttempt {
    pub attempt: i32,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// Its last heartbeat (or progress report).
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    #[schema(value_type = AttemptOutcome)]
    pub outcome: String,
    /// The worker's error, or why the sweeper took the job back; null for
    /// a release or a cancel.
    pub error: Option<String>,
    /// Its last progress report.
    #[schema(value_type = Option<Value>)]
    pub progress: Option<RawJson>,
}

/// A job's unsuccessful attempts, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAttempts {
    pub items: Vec<JobAttempt>,
}

/// The attempts of job `$1`, oldest first; no row when there is no such
/// job, one row of nulls for a job without any.
const ATTEMPTS: &str = "
    SELECT a.attempt, a.worker, a.started_at, a.heartbeat_at, a.ended_at, a.outcome, a.error,
           a.progress
    FROM (SELECT FROM pdoflow.jobs WHERE id = $1) AS j
    LEFT JOIN pdoflow.job_attempts AS a ON a.job = $1
    ORDER BY a.attempt";

impl JobAttempt {
    /// A row of [`ATTEMPTS`]; None for the row of a job without attempts.
    fn from_row(row: &Row) -> Result<Option<JobAttempt>, Problem> {
        let read = |error: tokio_postgres::Error| {
            Problem::internal(&format!(
                "reading a job's attempt: {}",
                sql_error::describe(&error)
            ))
        };
        let Some(attempt) = row.try_get(0).map_err(read)? else {
            return Ok(None);
        };
        Ok(Some(JobAttempt {
            attempt,
            worker: row.try_get(1).map_err(read)?,
            started_at: row.try_get(2).map_err(read)?,
            heartbeat_at: row.try_get(3).map_err(read)?,
            ended_at: row.try_get(4).map_err(read)?,
            outcome: row.try_get(5).map_err(read)?,
            error: row.try_get(6).map_err(read)?,
            progress: row.try_get(7).map_err(read)?,
        }))
    }
}

/// List a job's attempts that ended without success.
///
/// Every claim of the job that failed, lost its lease, was released or was
/// cancelled while it ran, oldest first. A succeeded claim is the job
/// itself (`started_at`, `worker`, `finished_at`).
#[utoipa::path(get, path = "/v1/jobs/{id}/attempts", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's unsuccessful attempts", body = JobAttempts),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let ctx = Ctx {
        job: Some(id),
        ..Ctx::default()
    };
    let rows = Session::run(&state.pool, &role, ATTEMPTS, &[&id], &ctx).await?;
    if rows.is_empty() {
        return Err(Problem::job_not_found(id));
    }
    let mut items = Vec::new();
    for row in &rows {
        items.extend(JobAttempt::from_row(row)?);
    }
    Ok(json(StatusCode::OK, &JobAttempts { items }))
}
