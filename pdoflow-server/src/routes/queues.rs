//! Queues (`pdoflow.queues`: controls and job counts; pause and resume) and
//! the cumulative counters of `pdoflow.stats`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::json;
use crate::auth::Role;
use crate::pool::Session;
use crate::problem::Problem;
use crate::schemas::Name;
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

/// A queue with jobs or controls.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queue {
    pub queue: String,
    pub paused: bool,
    /// At most this many of its jobs run at once.
    pub max_running: Option<i32>,
    /// At most `rate` claims per `per_seconds`.
    pub rate: Option<i32>,
    pub per_seconds: Option<f64>,
    /// At most this many running jobs per concurrency key.
    pub key_limit: Option<i32>,
    /// Queued jobs that are due.
    pub waiting: i64,
    /// Queued jobs not due yet.
    pub delayed: i64,
    pub blocked: i64,
    pub running: i64,
    /// Waiting jobs held back right now by the pause or a limit.
    pub throttled: i64,
}

const QUEUE_COLUMNS: &str = "queue, paused, max_running, rate, \
    extract(epoch FROM per)::float8, key_limit, waiting, delayed, blocked, running, throttled";

impl Queue {
    fn from_row(row: &Row) -> Result<Queue, tokio_postgres::Error> {
        Ok(Queue {
            queue: row.try_get(0)?,
            paused: row.try_get(1)?,
            max_running: row.try_get(2)?,
            rate: row.try_get(3)?,
            per_seconds: row.try_get(4)?,
            key_limit: row.try_get(5)?,
            waiting: row.try_get(6)?,
            delayed: row.try_get(7)?,
            blocked: row.try_get(8)?,
            running: row.try_get(9)?,
            throttled: row.try_get(10)?,
        })
    }
}

/// The queues, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub items: Vec<Queue>,
}

fn read_error(error: tokio_postgres::Error) -> Problem {
    Problem::internal(&format!("reading a row: {}", sql_error::describe(&error)))
}

/// List queues with their controls and job counts.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, description = "The queues", body = QueueList)))]
pub async fn list(State(state): State<Arc<AppState>>, role: Role) -> Result<Response, Problem> {
    let rows = Session::run(
        &state.pool,
        &role,
        &format!("SELECT {QUEUE_COLUMNS} FROM pdoflow.queues ORDER BY queue"),
        &[],
        &Ctx::default(),
    )
    .await?;
    let items = rows
        .iter()
        .map(Queue::from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    Ok(json(StatusCode::OK, &QueueList { items }))
}

/// A queue paused or resumed.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueControl {
    pub queue: String,
    pub paused: bool,
    /// False when it was so already.
    pub changed: bool,
}

async fn control(
    state: &AppState,
    role: &Role,
    queue: String,
    pause: bool,
) -> Result<Response, Problem> {
    let sql = if pause {
        "SELECT pdoflow.pause_queue($1::text)"
    } else {
        "SELECT pdoflow.resume_queue($1::text)"
    };
    let changed: bool = Session::run(&state.pool, role, sql, &[&queue], &Ctx::default())
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.try_get(0).ok())
        .unwrap_or(false);
    Ok(json(
        StatusCode::OK,
        &QueueControl {
            queue,
            paused: pause,
            changed,
        },
    ))
}

/// Pause a queue (its queued jobs are not claimed; enqueueing goes on).
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(("name" = Name, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "Paused", body = QueueControl),
        (status = 422, description = "A bad queue name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    control(&state, &role, name, true).await
}

/// Resume a paused queue.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(("name" = Name, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "Resumed", body = QueueControl),
        (status = 422, description = "A bad queue name", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    control(&state, &role, name, false).await
}

/// One queue's cumulative counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStats {
    /// Null: the queues the counters had no room for.
    pub queue: Option<String>,
    pub enqueued: i64,
    pub claimed: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub retried: i64,
    pub cancelled: i64,
    pub leases_expired: i64,
    /// Since when they count.
    pub stats_reset: Option<DateTime<Utc>>,
}

/// The counters, by queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsList {
    pub items: Vec<QueueStats>,
}

/// Jobs enqueued, claimed, succeeded, failed, retried, cancelled and leases
/// expired per queue since the server started or the counters were reset.
#[utoipa::path(get, path = "/v1/stats", tag = "queues",
    responses((status = 200, description = "The counters", body = StatsList)))]
pub async fn stats(State(state): State<Arc<AppState>>, role: Role) -> Result<Response, Problem> {
    let rows = Session::run(
        &state.pool,
        &role,
        "SELECT queue, enqueued, claimed, succeeded, failed, retried, cancelled, \
                    leases_expired, stats_reset FROM pdoflow.stats ORDER BY queue",
        &[],
        &Ctx::default(),
    )
    .await?;
    let items = rows
        .iter()
        .map(|row| {
            Ok(QueueStats {
                queue: row.try_get(0)?,
                enqueued: row.try_get(1)?,
                claimed: row.try_get(2)?,
                succeeded: row.try_get(3)?,
                failed: row.try_get(4)?,
                retried: row.try_get(5)?,
                cancelled: row.try_get(6)?,
                leases_expired: row.try_get(7)?,
                stats_reset: row.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(read_error)?;
    Ok(json(StatusCode::OK, &StatsList { items }))
}
