//! The routes, one resource per file, and what they share.

pub(crate) mod attempts;
mod dags;
mod health;
mod job_types;
pub(crate) mod jobs;
mod postings;
mod queues;
mod workers;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::openapi;
use crate::problem::{self, Code, Problem};
use crate::schemas::{MAX_SECONDS, MIN_POSITIVE_SECONDS};
use crate::state::AppState;

/// Every documented route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(job_types::list, job_types::register))
        .routes(routes!(
            job_types::get_one,
            job_types::replace,
            job_types::remove
        ))
        .routes(routes!(jobs::list, jobs::submit))
        .routes(routes!(jobs::submit_batch))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(attempts::list))
        .routes(routes!(workers::heartbeat))
        .routes(routes!(workers::progress))
        .routes(routes!(workers::finish))
        .routes(routes!(workers::release))
        .routes(routes!(workers::list))
        .routes(routes!(workers::get_one, workers::register))
        .routes(routes!(workers::claim))
        .routes(routes!(postings::list, postings::create))
        .routes(routes!(postings::get_one, postings::remove))
        .routes(routes!(postings::pause))
        .routes(routes!(postings::resume))
        .routes(routes!(postings::cancel))
        .routes(routes!(dags::submit))
        .routes(routes!(queues::list))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(queues::stats))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The whole application: the routes, the OpenAPI document, problems for
/// every error, latencies recorded, bodies capped.
pub fn app(state: Arc<AppState>) -> Router {
    let (router, document) = router().split_for_parts();
    let document = Arc::new(openapi::finish(document));
    let body_limit = state.config.body_limit;
    let router = match state.config.dashboard {
        true => router.merge(crate::dashboard::router()),
        false => router,
    };
    router
        .route(
            "/v1/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::metrics::track,
        ))
        .layer(middleware::from_fn(problem::finish_problems))
        .with_state(state)
}

/// A JSON response with a status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (status, Json(value)).into_response()
}

/// 201 with `Location`.
pub fn created<T: Serialize>(location: String, value: &T) -> Response {
    let mut response = json(StatusCode::CREATED, value);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A job id from the path: one that is not a UUID names no job (404).
pub fn job_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse::<Uuid>().map_err(|_| {
        Problem::new(
            Code::JobNotFound,
            format!("no job has the id {raw:?}: job ids are UUIDs"),
        )
    })
}

/// A posting id from the path: one that is not a UUID names no posting.
pub fn posting_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse::<Uuid>().map_err(|_| {
        Problem::not_found(format!(
            "no posting has the id {raw:?}: posting ids are UUIDs"
        ))
    })
}

/// Page size: `limit` from 1 to 1000, default 50.
pub fn page_limit(raw: Option<&str>) -> Result<i64, Problem> {
    match raw {
        None => Ok(50),
        Some(raw) => match raw.parse::<i64>() {
            Ok(limit) if (1..=1000).contains(&limit) => Ok(limit),
            _ => Err(Problem::invalid_parameter(
                "limit",
                format!("limit must be an integer from 1 to 1000, got {raw:?}"),
            )),
        },
    }
}

/// The opaque cursor of a page: the last id it showed, base64url.
pub fn encode_cursor(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode_cursor(raw: Option<&str>) -> Result<Option<Uuid>, Problem> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::invalid_parameter(
                "cursor",
                "cursor is not a cursor this API returned (next_cursor)",
            )
        })
}

/// A duration in seconds from a body: from 0 to `MAX_SECONDS` (365,000
/// days, less than the 1000 years a `run_at` may be ahead).
pub fn seconds(pointer: &str, value: Option<f64>) -> Result<Option<f64>, Problem> {
    within(pointer, value, 0.0)
}

/// A duration that must be positive (a lease, `unique_for`): at least a
/// microsecond, the resolution of PostgreSQL's intervals (less would be 0).
pub fn positive_seconds(pointer: &str, value: Option<f64>) -> Result<Option<f64>, Problem> {
    within(pointer, value, MIN_POSITIVE_SECONDS)
}

fn within(pointer: &str, value: Option<f64>, least: f64) -> Result<Option<f64>, Problem> {
    match value {
        Some(seconds) if !(least..=MAX_SECONDS).contains(&seconds) => Err(Problem::invalid_body(
            pointer,
            format!("{pointer}: must be a number of seconds from {least} to {MAX_SECONDS}, got {seconds}"),
        )),
        other => Ok(other),
    }
}
