//! Postings: named batches of jobs, followed, paused, resumed or cancelled
//! as one (`pdoflow.posting_status`, `set_posting_status`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{created, decode_cursor, encode_cursor, json, page_limit, posting_id};
use crate::auth::Role;
use crate::json::{Body, Query};
use crate::pool::Session;
use crate::problem::{self, Problem};
use crate::schemas::{Cursor, Name, PostingStatus};
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

const COLUMNS: &str = "id, name, description, status, queue, priority, created_at, \
    status_changed_at, total, queued, running, succeeded, failed, cancelled, blocked, complete";

/// A posting and its jobs per state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Posting {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `active`, `paused` or `cancelled`.
    #[schema(value_type = PostingStatus)]
    pub status: String,
    /// The queue its jobs get when they name none.
    pub queue: Option<String>,
    /// The priority its jobs get when they name none.
    pub priority: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub status_changed_at: DateTime<Utc>,
    pub total: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub blocked: i64,
    /// Every job has ended (and there was at least one).
    pub complete: bool,
    /// Ended jobs / all jobs, from 0 to 1 (0 without jobs).
    pub progress: f64,
}

impl Posting {
    fn from_row(row: &Row) -> Result<Posting, Problem> {
        let read = |error: tokio_postgres::Error| {
            Problem::internal(&format!(
                "reading a posting: {}",
                sql_error::describe(&error)
            ))
        };
        let total: i64 = row.try_get(8).map_err(read)?;
        let succeeded: i64 = row.try_get(11).map_err(read)?;
        let failed: i64 = row.try_get(12).map_err(read)?;
        let cancelled: i64 = row.try_get(13).map_err(read)?;
        let ended = succeeded + failed + cancelled;
        Ok(Posting {
            id: row.try_get(0).map_err(read)?,
            name: row.try_get(1).map_err(read)?,
            description: row.try_get(2).map_err(read)?,
            status: row.try_get(3).map_err(read)?,
            queue: row.try_get(4).map_err(read)?,
            priority: row.try_get(5).map_err(read)?,
            created_at: row.try_get(6).map_err(read)?,
            status_changed_at: row.try_get(7).map_err(read)?,
            total,
            queued: row.try_get(9).map_err(read)?,
            running: row.try_get(10).map_err(read)?,
            succeeded,
            failed,
            cancelled,
            blocked: row.try_get(14).map_err(read)?,
            complete: row.try_get(15).map_err(read)?,
            progress: if total > 0 {
                ended as f64 / total as f64
            } else {
                0.0
            },
        })
    }
}

async fn read(session: &mut Session, id: Uuid) -> Result<Posting, Problem> {
    let sql = format!("SELECT {COLUMNS} FROM pdoflow.posting_status WHERE id = $1::uuid");
    match session.row(&sql, &[&id], &Ctx::default()).await? {
        Some(row) => Posting::from_row(&row),
        None => Err(Problem::not_found(format!("posting {id} does not exist"))),
    }
}

/// A posting to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPosting {
    #[schema(value_type = Name)]
    pub name: String,
    #[schema(pattern = r"^[^\x00]*$")]
    pub description: Option<String>,
    /// The priority of its jobs that name none.
    #[schema(minimum = -2147483648, maximum = 2147483647)]
    #[serde(default, deserialize_with = "crate::json::opt_int32")]
    pub priority: Option<i32>,
    /// The queue of its jobs that name none.
    #[schema(value_type = Option<Name>)]
    pub queue: Option<String>,
}

/// Create a posting.
#[utoipa::path(post, path = "/v1/postings", tag = "postings", request_body = NewPosting,
    responses(
        (status = 201, description = "The posting", body = Posting,
            headers(("Location" = String, description = "/v1/postings/{id}"))),
        (status = 422, description = "A bad name or queue", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    role: Role,
    Body(body): Body<NewPosting>,
) -> Result<Response, Problem> {
    let ctx = Ctx {
        fields: &[
            ("name", "/name"),
            ("description", "/description"),
            ("priority", "/priority"),
            ("queue", "/queue"),
        ],
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, &role).await?;
    let id: Uuid = session
        .row(
            "SELECT pdoflow.create_posting($1::text, $2::text, $3::int4, $4::text)",
            &[&body.name, &body.description, &body.priority, &body.queue],
            &ctx,
        )
        .await?
        .and_then(|row| row.try_get(0).ok())
        .ok_or_else(|| Problem::internal("pdoflow.create_posting returned no id"))?;
    let posting = read(&mut session, id).await?;
    session.commit().await?;
    Ok(created(format!("/v1/postings/{id}"), &posting))
}

/// `GET /v1/postings` page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PostingFilter {
    /// `active`, `paused` or `cancelled`.
    #[param(value_type = Option<PostingStatus>)]
    pub status: Option<String>,
    /// Postings per page, 1 to 1000 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

/// A page of postings, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostingPage {
    pub items: Vec<Posting>,
    pub next_cursor: Option<String>,
}

/// List postings, newest first.
#[utoipa::path(get, path = "/v1/postings", tag = "postings", params(PostingFilter),
    responses(
        (status = 200, description = "A page of postings", body = PostingPage),
        (status = 422, description = "A bad query parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    role: Role,
    Query(filter): Query<PostingFilter>,
) -> Result<Response, Problem> {
    if let Some(status) = &filter.status {
        if !["active", "paused", "cancelled"].contains(&status.as_str()) {
            return Err(Problem::invalid_parameter(
                "status",
                format!("status must be active, paused or cancelled, got {status:?}"),
            ));
        }
    }
    let limit = page_limit(filter.limit.as_deref())?;
    let cursor = decode_cursor(filter.cursor.as_deref())?;
    let fetch = limit + 1;
    let mut sql = format!("SELECT {COLUMNS} FROM pdoflow.posting_status WHERE true");
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(status) = &filter.status {
        params.push(status);
        sql.push_str(&format!(" AND status = ${}::text", params.len()));
    }
    if let Some(cursor) = &cursor {
        params.push(cursor);
        sql.push_str(&format!(" AND id < ${}::uuid", params.len()));
    }
    params.push(&fetch);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}::int8", params.len()));
    let rows = Session::run(&state.pool, &role, &sql, &params, &Ctx::default()).await?;
    let mut items = rows
        .iter()
        .map(Posting::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|posting| encode_cursor(posting.id))
    } else {
        None
    };
    Ok(json(StatusCode::OK, &PostingPage { items, next_cursor }))
}

/// Get a posting with its progress.
#[utoipa::path(get, path = "/v1/postings/{id}", tag = "postings",
    params(("id" = Uuid, Path, description = "The posting's id")),
    responses(
        (status = 200, description = "The posting", body = Posting),
        (status = 404, description = "No such posting (NotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = posting_id(&id)?;
    let mut session = Session::begin(&state.pool, &role).await?;
    let posting = read(&mut session, id).await?;
    session.commit().await?;
    Ok(json(StatusCode::OK, &posting))
}

async fn set_status(
    state: &AppState,
    role: &Role,
    id: &str,
    status: &str,
) -> Result<Response, Problem> {
    let id = posting_id(id)?;
    let ctx = Ctx {
        posting: Some(id),
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, role).await?;
    session
        .rows(
            "SELECT pdoflow.set_posting_status($1::uuid, $2::text)",
            &[&id, &status],
            &ctx,
        )
        .await?;
    let posting = read(&mut session, id).await?;
    session.commit().await?;
    Ok(json(StatusCode::OK, &posting))
}

/// Pause a posting: its queued jobs are not claimed until it is resumed.
#[utoipa::path(post, path = "/v1/postings/{id}/pause", tag = "postings",
    params(("id" = Uuid, Path, description = "The posting's id")),
    responses(
        (status = 200, description = "The posting", body = Posting),
        (status = 404, description = "No such posting (NotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The posting is cancelled (Conflict)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &role, &id, "paused").await
}

/// Resume a paused posting.
#[utoipa::path(post, path = "/v1/postings/{id}/resume", tag = "postings",
    params(("id" = Uuid, Path, description = "The posting's id")),
    responses(
        (status = 200, description = "The posting", body = Posting),
        (status = 404, description = "No such posting (NotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The posting is cancelled (Conflict)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &role, &id, "active").await
}

/// Cancel a posting: its jobs that have not started end cancelled. Final.
#[utoipa::path(post, path = "/v1/postings/{id}/cancel", tag = "postings",
    params(("id" = Uuid, Path, description = "The posting's id")),
    responses(
        (status = 200, description = "The posting", body = Posting),
        (status = 404, description = "No such posting (NotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    set_status(&state, &role, &id, "cancelled").await
}

/// Delete a posting whose jobs have all ended, with those jobs.
#[utoipa::path(delete, path = "/v1/postings/{id}", tag = "postings",
    params(("id" = Uuid, Path, description = "The posting's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such posting (NotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Some of its jobs have not ended (Conflict)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = posting_id(&id)?;
    let ctx = Ctx {
        posting: Some(id),
        ..Ctx::default()
    };
    let deleted: bool = Session::run(
        &state.pool,
        &role,
        "SELECT pdoflow.delete_posting($1::uuid)",
        &[&id],
        &ctx,
    )
    .await?
    .into_iter()
    .next()
    .and_then(|row| row.try_get(0).ok())
    .unwrap_or(false);
    if !deleted {
        return Err(Problem::not_found(format!("posting {id} does not exist")));
    }
    Ok(problem::no_content())
}
