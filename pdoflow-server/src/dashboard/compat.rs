//! JSON for dashboards and scripts written for the GoodJob-style queue
//! pdoflow replaces: `GET /api/stats` and `GET /api/jobs?status=...`, with
//! the fields it had (docs/dashboard.md lists them). They run as the role
//! of a bearer token or of the dashboard's sign-in cookie.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::session;
use crate::auth::Role;
use crate::pool::Session;
use crate::problem::{Code, Problem};
use crate::raw_json::RawJson;
use crate::routes::json;
use crate::sql_error::Ctx;
use crate::state::AppState;

/// The role of a request: its bearer token, else its sign-in cookie, else
/// the anonymous role (or 401).
pub struct ApiRole(Role);

impl FromRequestParts<Arc<AppState>> for ApiRole {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<ApiRole, Problem> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(session) = session::session_cookie(&parts.headers) {
                return state.auth.authenticate_token(&session).map(ApiRole);
            }
        }
        state.auth.authenticate(&parts.headers).map(ApiRole)
    }
}

/// Job counts by status.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Waiting to run (due now or later; not `blocked`).
    pub queued: i64,
    /// Of `queued`, those due later.
    pub scheduled: i64,
    /// Waiting for their parents (pdoflow's own state).
    pub blocked: i64,
    pub running: i64,
    /// Succeeded.
    pub finished: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Every job, whatever its status.
    pub total: i64,
}

/// `GET /api/stats`: counts every job pdoflow keeps (history included,
/// until `pdoflow.retention` removes it).
pub async fn stats(State(state): State<Arc<AppState>>, ApiRole(role): ApiRole) -> Response {
    let sql = "
        SELECT count(*) FILTER (WHERE state = 'queued'),
               count(*) FILTER (WHERE state = 'queued' AND run_at > now()),
               count(*) FILTER (WHERE state = 'blocked'),
               count(*) FILTER (WHERE state = 'running'),
               count(*) FILTER (WHERE state = 'succeeded'),
               count(*) FILTER (WHERE state = 'failed'),
               count(*) FILTER (WHERE state = 'cancelled'),
               count(*)
        FROM pdoflow.jobs";
    let rows = match Session::run(&state.pool, &role, sql, &[], &Ctx::default()).await {
        Ok(rows) => rows,
        Err(problem) => return problem.into_response(),
    };
    let read = |row: &tokio_postgres::Row| -> Result<Stats, tokio_postgres::Error> {
        Ok(Stats {
            queued: row.try_get(0)?,
            scheduled: row.try_get(1)?,
            blocked: row.try_get(2)?,
            running: row.try_get(3)?,
            finished: row.try_get(4)?,
            failed: row.try_get(5)?,
            cancelled: row.try_get(6)?,
            total: row.try_get(7)?,
        })
    };
    match rows.first().map(read) {
        Some(Ok(stats)) => json(StatusCode::OK, &stats),
        Some(Err(error)) => {
            Problem::internal(&format!("reading /api/stats: {error}")).into_response()
        }
        None => Problem::internal("reading /api/stats: no row").into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// A job as the GoodJob-style queue listed it, with pdoflow's own fields
/// after.
#[derive(Debug, Serialize)]
pub struct CompatJob {
    pub id: Uuid,
    pub queue: String,
    pub priority: i32,
    /// The job's args.
    pub payload: RawJson,
    /// `queued`, `running`, `finished` (succeeded), `failed`, plus
    /// pdoflow's `blocked` and `cancelled`.
    pub status: &'static str,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The latest change seen: finished, heartbeat, started or created.
    pub updated_at: DateTime<Utc>,
    pub task: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub result: Option<RawJson>,
}

/// The statuses `status=` takes, and the pdoflow state each means.
const STATUSES: [(&str, &str); 6] = [
    ("queued", "queued"),
    ("running", "running"),
    ("finished", "succeeded"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("blocked", "blocked"),
];
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

fn status_of(state: &str) -> &'static str {
    STATUSES
        .iter()
        .find(|(_, each)| *each == state)
        .map_or("queued", |(status, _)| status)
}

/// `GET /api/jobs?status=queued|running|finished|failed&limit=N`: the
/// newest jobs first (100 by default, at most 1000).
pub async fn jobs(
    State(state): State<Arc<AppState>>,
    ApiRole(role): ApiRole,
    Query(query): Query<JobsQuery>,
) -> Response {
    let job_state = match query.status.as_deref().filter(|status| !status.is_empty()) {
        None => None,
        Some(status) => match STATUSES.iter().find(|(name, _)| *name == status) {
            Some((_, job_state)) => Some(*job_state),
            None => {
                return bad_parameter(
                    "status",
                    format!(
                        "status {status:?} is not one of {}",
                        STATUSES.map(|(name, _)| name).join(", ")
                    ),
                )
            }
        },
    };
    let limit = match query.limit.as_deref().filter(|limit| !limit.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<i64>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => {
                return bad_parameter(
                    "limit",
                    format!("limit {text:?} is not a whole number from 1 to {MAX_LIMIT}"),
                )
            }
        },
    };
    // Two statements, not `$1 IS NULL OR state = $1`: a plan for one state
    // leaves finished_jobs out when the state is an active one.
    const COLUMNS: &str = "id, queue, priority, args, state, attempt, max_attempts, last_error, \
        run_at, created_at, coalesce(finished_at, heartbeat_at, started_at, created_at), task, \
        started_at, finished_at, result";
    let rows = match job_state {
        Some(job_state) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM pdoflow.jobs WHERE state = $1 ORDER BY id DESC LIMIT $2"
            );
            Session::run(
                &state.pool,
                &role,
                &sql,
                &[&job_state, &limit],
                &Ctx::default(),
            )
            .await
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM pdoflow.jobs ORDER BY id DESC LIMIT $1");
            Session::run(&state.pool, &role, &sql, &[&limit], &Ctx::default()).await
        }
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(problem) => return problem.into_response(),
    };
    let read = |row: &tokio_postgres::Row| -> Result<CompatJob, tokio_postgres::Error> {
        let job_state: String = row.try_get(4)?;
        Ok(CompatJob {
            id: row.try_get(0)?,
            queue: row.try_get(1)?,
            priority: row.try_get(2)?,
            payload: row.try_get(3)?,
            status: status_of(&job_state),
            attempts: row.try_get(5)?,
            max_attempts: row.try_get(6)?,
            last_error: row.try_get(7)?,
            run_at: row.try_get(8)?,
            created_at: row.try_get(9)?,
            updated_at: row.try_get(10)?,
            task: row.try_get(11)?,
            started_at: row.try_get(12)?,
            finished_at: row.try_get(13)?,
            result: row.try_get(14)?,
        })
    };
    match rows.iter().map(read).collect::<Result<Vec<_>, _>>() {
        Ok(jobs) => json(StatusCode::OK, &jobs),
        Err(error) => Problem::internal(&format!("reading /api/jobs: {error}")).into_response(),
    }
}

/// A 400 naming the query parameter that is wrong (as the GoodJob-style
/// API answered a bad filter).
fn bad_parameter(parameter: &str, detail: String) -> Response {
    Problem {
        parameter: Some(parameter.to_owned()),
        ..Problem::new(Code::BadRequest, detail)
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_status() {
        for state in super::super::jobs::STATES {
            assert_eq!(
                STATUSES
                    .iter()
                    .find(|(_, each)| *each == state)
                    .map(|(s, _)| *s),
                Some(status_of(state))
            );
        }
        assert_eq!(status_of("succeeded"), "finished");
    }
}
