//! Health (`/healthz`: the process; `/readyz`: the database) and the
//! metrics route's description. None needs a token.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::json;
use crate::pool::Session;
use crate::problem::Problem;
use crate::sql_error::Ctx;
use crate::state::AppState;

/// How long `/readyz` gives the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The process is up (the database is not asked).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Response {
    json(
        StatusCode::OK,
        &Health {
            status: "ok".into(),
        },
    )
}

/// The database answers `SELECT 1` on a pooled connection within 2 s.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database cannot be reached (ServiceUnavailable)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let check = async {
        let mut session = Session::begin_as(&state.pool, None).await?;
        session.rows("SELECT 1", &[], &Ctx::default()).await?;
        session.commit().await
    };
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(json(
            StatusCode::OK,
            &Health {
                status: "ok".into(),
            },
        )),
        Ok(Err(problem)) => Err(Problem::unavailable(format!(
            "the database is not ready: {}",
            problem.detail
        ))),
        Err(_) => Err(Problem::unavailable(
            "the database did not answer SELECT 1 within 2 s",
        )),
    }
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        (status = 503, description = "The database could not be read (ServiceUnavailable)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(state: State<Arc<AppState>>) -> Result<Response, Problem> {
    crate::metrics::scrape(state).await
}
