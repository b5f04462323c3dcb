//! HTTP workers: register with the job types served, claim, heartbeat,
//! report progress, finish, release. Each is one SQL API call; a claim that
//! is no longer current is a 409 InvalidTaskTransition naming the job, the
//! attempt and why.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::jobs::read_job;
use super::{job_id, json, positive_seconds, seconds};
use crate::auth::Role;
use crate::json::Body;
use crate::pool::Session;
use crate::problem::{self, Problem};
use crate::raw_json::RawJson;
use crate::schemas::{Name, WorkerState};
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

/// A worker, as `pdoflow.workers` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Worker {
    pub name: String,
    /// `active`, or `gone` once silent for `pdoflow.worker_timeout`.
    #[schema(value_type = WorkerState)]
    pub state: String,
    /// The job types it said it serves (null: not said).
    pub job_types: Option<Vec<String>>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub gone_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "name, state, tasks, first_seen_at, last_seen_at, gone_at";

impl Worker {
    fn from_row(row: &Row) -> Result<Worker, Problem> {
        let read = |error: tokio_postgres::Error| {
            Problem::internal(&format!(
                "reading a worker: {}",
                sql_error::describe(&error)
            ))
        };
        Ok(Worker {
            name: row.try_get(0).map_err(read)?,
            state: row.try_get(1).map_err(read)?,
            job_types: row.try_get(2).map_err(read)?,
            first_seen_at: row.try_get(3).map_err(read)?,
            last_seen_at: row.try_get(4).map_err(read)?,
            gone_at: row.try_get(5).map_err(read)?,
        })
    }
}

/// The workers, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    pub items: Vec<Worker>,
}

/// List workers (needs `pdoflow_admin`, which may read the registry).
#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    responses((status = 200, description = "The workers", body = WorkerList)))]
pub async fn list(State(state): State<Arc<AppState>>, role: Role) -> Result<Response, Problem> {
    let sql = format!("SELECT {COLUMNS} FROM pdoflow.workers ORDER BY name");
    let rows = Session::run(&state.pool, &role, &sql, &[], &Ctx::default()).await?;
    let items = rows
        .iter()
        .map(Worker::from_row)
        .collect::<Result<_, _>>()?;
    Ok(json(StatusCode::OK, &WorkerList { items }))
}

/// Get a worker (needs `pdoflow_admin`).
#[utoipa::path(get, path = "/v1/workers/{name}", tag = "workers",
    params(("name" = Name, Path, description = "The worker's name")),
    responses(
        (status = 200, description = "The worker", body = Worker),
        (status = 404, description = "No such worker (NotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let sql = format!("SELECT {COLUMNS} FROM pdoflow.workers WHERE name = $1::text");
    let row = Session::run(&state.pool, &role, &sql, &[&name], &Ctx::default())
        .await?
        .into_iter()
        .next();
    match row {
        Some(row) => Ok(json(StatusCode::OK, &Worker::from_row(&row)?)),
        None => Err(Problem::not_found(format!("no worker is named {name:?}"))),
    }
}

/// A worker's registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// The job types it serves: its claims take only these unless they
    /// name others. Absent: keep what was registered. Each once.
    #[schema(value_type = Option<std::collections::BTreeSet<Name>>)]
    pub job_types: Option<Vec<String>>,
}

/// Register a worker: alive now, serving these job types.
///
/// Registering again keeps it alive (call it more often than
/// `pdoflow.worker_timeout` while idle; claims and heartbeats count too).
#[utoipa::path(put, path = "/v1/workers/{name}", tag = "workers",
    params(("name" = Name, Path, description = "The worker's name")),
    request_body = Option<WorkerRegistration>,
    responses(
        (status = 200, description = "The worker", body = Worker),
        (status = 422, description = "A bad name or job type", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
    Body(body): Body<WorkerRegistration>,
) -> Result<Response, Problem> {
    let ctx = Ctx {
        fields: &[("tasks", "/job_types")],
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, &role).await?;
    session
        .rows(
            "SELECT pdoflow.register_worker($1::text, $2::text[])",
            &[&name, &body.job_types],
            &ctx,
        )
        .await?;
    // Workers may not read the registry (admins may): they get what they
    // registered.
    let readable = session
        .row(
            "SELECT pg_catalog.has_table_privilege('pdoflow.workers', 'SELECT')",
            &[],
            &ctx,
        )
        .await?
        .and_then(|row| row.try_get::<_, bool>(0).ok())
        .unwrap_or(false);
    let row = if readable {
        let sql = format!("SELECT {COLUMNS} FROM pdoflow.workers WHERE name = $1::text");
        session.row(&sql, &[&name], &ctx).await?
    } else {
        None
    };
    let worker = match row {
        Some(row) => Worker::from_row(&row)?,
        None => {
            let now: Option<DateTime<Utc>> = session
                .row("SELECT now()", &[], &ctx)
                .await?
                .and_then(|row| row.try_get(0).ok());
            Worker {
                name: name.clone(),
                state: "active".into(),
                job_types: body.job_types.clone(),
                first_seen_at: None,
                last_seen_at: now,
                gone_at: None,
            }
        }
    };
    session.commit().await?;
    Ok(json(StatusCode::OK, &worker))
}

/// What to claim.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// How many jobs at most (default 1; at most `pdoflow.max_claim`,
    /// 1000 by default).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::json::opt_int32")]
    pub n: Option<i32>,
    /// Seconds the claims are leased for (default 300): heartbeat before.
    #[schema(minimum = 0.000001, maximum = 31536000000_f64)]
    pub lease: Option<f64>,
    /// Only these queues (default: every queue).
    #[schema(value_type = Option<Vec<Name>>, min_items = 1)]
    pub queues: Option<Vec<String>>,
    /// Only jobs of these types (default: the worker's registered job
    /// types; every type when it registered none).
    #[schema(value_type = Option<Vec<Name>>, min_items = 1)]
    pub job_types: Option<Vec<String>>,
    /// Seconds to wait for a job when none is available (default 0; capped
    /// by the server's `--max-wait`). The wait holds a pooled connection.
    #[schema(minimum = 0, maximum = 31536000000_f64)]
    pub wait: Option<f64>,
}

/// A claimed job: finish it with its `id` and `attempt`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Claim {
    pub id: Uuid,
    pub task: String,
    #[schema(value_type = Value)]
    pub args: RawJson,
    pub queue: String,
    pub priority: i32,
    /// This claim's attempt number: pass it to heartbeat, progress, finish, release.
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_expires_at: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// What went wrong last time (a retried job).
    pub last_error: Option<String>,
    pub posting: Option<Uuid>,
    /// The results of its parents that succeeded, by node name or id.
    #[schema(value_type = Option<Value>)]
    pub parent_results: Option<RawJson>,
}

/// The jobs claimed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Claims {
    pub jobs: Vec<Claim>,
}

/// Claim jobs for this worker.
#[utoipa::path(post, path = "/v1/workers/{name}/claim", tag = "workers",
    params(("name" = Name, Path, description = "The worker's name")),
    request_body = Option<ClaimRequest>,
    responses(
        (status = 200, description = "The jobs claimed (maybe none)", body = Claims),
        (status = 422, description = "A value out of range (`pointer` names it)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn claim(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
    Body(body): Body<ClaimRequest>,
) -> Result<Response, Problem> {
    let lease = positive_seconds("/lease", body.lease)?;
    let wait =
        seconds("/wait", body.wait)?.map(|wait| wait.min(state.config.max_wait.as_secs_f64()));
    let ctx = Ctx {
        fields: &[
            ("n", "/n"),
            ("lease", "/lease"),
            ("queues", "/queues"),
            ("tasks", "/job_types"),
            ("wait", "/wait"),
        ],
        ..Ctx::default()
    };
    let mut session = Session::begin_as(&state.pool, state.config.service_role.as_deref()).await?;
    let job_types = match body.job_types {
        Some(job_types) => Some(job_types),
        None => registered_job_types(&mut session, &name).await?,
    };
    session.switch_to(&role).await?;
    let rows = session
        .rows(
            "SELECT id, task, args, queue, priority, attempt, max_attempts, lease_expires_at, \
                    run_at, created_at, last_error, posting, parent_results
             FROM pdoflow.claim(
                 n => coalesce($1::int4, 1),
                 queues => $2::text[],
                 worker => $3::text,
                 lease => pg_catalog.make_interval(secs => coalesce($4::float8, 300)),
                 tasks => $5::text[],
                 wait => pg_catalog.make_interval(secs => coalesce($6::float8, 0)))",
            &[&body.n, &body.queues, &name, &lease, &job_types, &wait],
            &ctx,
        )
        .await?;
    session.commit().await?;
    let read = |error: tokio_postgres::Error| {
        Problem::internal(&format!("reading a claim: {}", sql_error::describe(&error)))
    };
    let jobs = rows
        .iter()
        .map(|row| {
            Ok(Claim {
                id: row.try_get(0).map_err(read)?,
                task: row.try_get(1).map_err(read)?,
                args: row.try_get(2).map_err(read)?,
                queue: row.try_get(3).map_err(read)?,
                priority: row.try_get(4).map_err(read)?,
                attempt: row.try_get(5).map_err(read)?,
                max_attempts: row.try_get(6).map_err(read)?,
                lease_expires_at: row.try_get(7).map_err(read)?,
                run_at: row.try_get(8).map_err(read)?,
                created_at: row.try_get(9).map_err(read)?,
                last_error: row.try_get(10).map_err(read)?,
                posting: row.try_get(11).map_err(read)?,
                parent_results: row.try_get(12).map_err(read)?,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok(json(StatusCode::OK, &Claims { jobs }))
}

/// The job types worker `name` registered, read as the server's service
/// role (or login): workers may not read the registry themselves.
async fn registered_job_types(
    session: &mut Session,
    name: &str,
) -> Result<Option<Vec<String>>, Problem> {
    let ctx = Ctx::default();
    let readable = session
        .row(
            "SELECT pg_catalog.has_table_privilege('pdoflow.workers', 'SELECT')",
            &[],
            &ctx,
        )
        .await?
        .and_then(|row| row.try_get::<_, bool>(0).ok())
        .unwrap_or(false);
    if !readable {
        return Err(Problem::invalid_body(
            "/job_types",
            "job_types is needed: the server's role may not read the workers registry \
             (give its service role pdoflow_admin to claim the registered job types by default)",
        ));
    }
    let row = session
        .row(
            "SELECT tasks FROM pdoflow.workers WHERE name = $1::text",
            &[&name],
            &ctx,
        )
        .await?;
    Ok(row.and_then(|row| row.try_get(0).ok()).flatten())
}

/// A heartbeat.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The claim's attempt.
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "crate::json::int32")]
    pub attempt: i32,
    /// Seconds the lease runs from now (default: as long as the last lease).
    #[schema(minimum = 0.000001, maximum = 31536000000_f64)]
    pub lease: Option<f64>,
}

/// The renewed lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lease {
    pub lease_expires_at: DateTime<Utc>,
}

fn claim_ctx(job: Uuid, attempt: i32, fields: &'static [(&'static str, &'static str)]) -> Ctx {
    Ctx {
        fields,
        job: Some(job),
        attempt: Some(attempt),
        ..Ctx::default()
    }
}

/// Extend a claim's lease.
#[utoipa::path(post, path = "/v1/jobs/{id}/heartbeat", tag = "workers",
    params(("id" = Uuid, Path, description = "The job's id")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The new lease", body = Lease),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The claim is not current (InvalidTaskTransition)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn heartbeat(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
    Body(body): Body<HeartbeatRequest>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let lease = positive_seconds("/lease", body.lease)?;
    let ctx = claim_ctx(
        id,
        body.attempt,
        &[("lease", "/lease"), ("attempt", "/attempt")],
    );
    let row = Session::run(
        &state.pool,
        &role,
        "SELECT pdoflow.heartbeat($1::uuid, $2::int4, pg_catalog.make_interval(secs => $3::float8))",
        &[&id, &body.attempt, &lease],
        &ctx,
    )
    .await?
    .into_iter()
    .next();
    let lease_expires_at = row
        .and_then(|row| row.try_get(0).ok())
        .ok_or_else(|| Problem::internal("pdoflow.heartbeat returned nothing"))?;
    Ok(json(StatusCode::OK, &Lease { lease_expires_at }))
}

/// A progress report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "crate::json::int32")]
    pub attempt: i32,
    /// Any JSON value: `{"done": 40, "total": 100}`.
    pub progress: Value,
}

/// Report how far a claim got (also renews its lease).
#[utoipa::path(post, path = "/v1/jobs/{id}/progress", tag = "workers",
    params(("id" = Uuid, Path, description = "The job's id")),
    request_body = ProgressRequest,
    responses(
        (status = 204, description = "Recorded"),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The claim is not current (InvalidTaskTransition)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn progress(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
    Body(body): Body<ProgressRequest>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let ctx = claim_ctx(
        id,
        body.attempt,
        &[("progress", "/progress"), ("attempt", "/attempt")],
    );
    Session::run(
        &state.pool,
        &role,
        "SELECT pdoflow.progress($1::uuid, $2::int4, $3::jsonb)",
        &[&id, &body.attempt, &body.progress],
        &ctx,
    )
    .await?;
    Ok(problem::no_content())
}

/// How a claim ended.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "crate::json::int32")]
    pub attempt: i32,
    /// The result (any JSON value).
    pub result: Option<Value>,
    /// Given: the attempt failed (retried while attempts are left).
    #[schema(pattern = r"^[^\x00]*$")]
    pub error: Option<String>,
}

/// The job's state after a finish.
#[derive(Debug, Serialize, ToSchema)]
pub struct Finished {
    /// `succeeded`, `queued` (to be retried), `failed` or `cancelled`.
    pub state: String,
}

/// Finish a claim with a result, or with an error.
#[utoipa::path(post, path = "/v1/jobs/{id}/finish", tag = "workers",
    params(("id" = Uuid, Path, description = "The job's id")),
    request_body = FinishRequest,
    responses(
        (status = 200, description = "The job's new state", body = Finished),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The claim is not current (InvalidTaskTransition)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn finish(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
    Body(body): Body<FinishRequest>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let ctx = claim_ctx(
        id,
        body.attempt,
        &[
            ("result", "/result"),
            ("error", "/error"),
            ("attempt", "/attempt"),
        ],
    );
    let row = Session::run(
        &state.pool,
        &role,
        "SELECT pdoflow.finish($1::uuid, $2::int4, error => $3::text, result => $4::jsonb)",
        &[&id, &body.attempt, &body.error, &body.result],
        &ctx,
    )
    .await?
    .into_iter()
    .next();
    let state = row
        .and_then(|row| row.try_get(0).ok())
        .ok_or_else(|| Problem::internal("pdoflow.finish returned nothing"))?;
    Ok(json(StatusCode::OK, &Finished { state }))
}

/// A claim to hand back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[schema(minimum = 1, maximum = 2147483647)]
    #[serde(deserialize_with = "crate::json::int32")]
    pub attempt: i32,
}

/// Hand a claim back: the job is queued again at once, the attempt not
/// counted against `max_attempts`.
#[utoipa::path(post, path = "/v1/jobs/{id}/release", tag = "workers",
    params(("id" = Uuid, Path, description = "The job's id")),
    request_body = ReleaseRequest,
    responses(
        (status = 204, description = "Released"),
        (status = 404, description = "No such job (JobNotFound)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The claim is not current (InvalidTaskTransition)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn release(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(id): Path<String>,
    Body(body): Body<ReleaseRequest>,
) -> Result<Response, Problem> {
    let id = job_id(&id)?;
    let ctx = claim_ctx(id, body.attempt, &[("attempt", "/attempt")]);
    let mut session = Session::begin(&state.pool, &role).await?;
    let released: bool = session
        .row(
            "SELECT pdoflow.release($1::uuid, $2::int4)",
            &[&id, &body.attempt],
            &ctx,
        )
        .await?
        .and_then(|row| row.try_get(0).ok())
        .unwrap_or(false);
    if released {
        session.commit().await?;
        return Ok(problem::no_content());
    }
    // release says false, not why: the job's state does.
    let job = read_job(&mut session, id).await?;
    session.commit().await?;
    Err(Problem {
        detail: format!(
            "claim (job {id}, attempt {}) is not current: the job is {} at attempt {}",
            body.attempt, job.state, job.attempt
        ),
        ..Problem::transition(
            id,
            Some(body.attempt),
            format!("the job is {} at attempt {}", job.state, job.attempt),
        )
    })
}
