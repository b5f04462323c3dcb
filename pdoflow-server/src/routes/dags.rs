//! DAGs: a workflow of jobs submitted in one call (`pdoflow.submit_dag`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::json;
use crate::auth::Role;
use crate::json::Body;
use crate::pool::Session;
use crate::problem::Problem;
use crate::schemas::Dag;
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

/// A DAG to submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDag {
    /// The document `pdoflow.submit_dag` takes: `{"nodes": [{"name", "task",
    /// "args", "after", ...}], "edges": [[from, to]]}` (docs/sql-api.md).
    #[schema(value_type = Dag)]
    pub dag: Value,
    /// The posting to put every job in.
    pub posting: Option<Uuid>,
}

/// A job of the DAG.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagJob {
    /// Its full name (`checks/merge` for node `merge` of sub-DAG `checks`).
    pub name: String,
    pub id: Uuid,
}

/// The DAG's jobs, parents first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagJobs {
    pub jobs: Vec<DagJob>,
}

/// Submit a DAG of jobs.
#[utoipa::path(post, path = "/v1/dags", tag = "dags", request_body = NewDag,
    responses(
        (status = 201, description = "Its jobs", body = DagJobs),
        (status = 409, description = "A dependency that can never be met, a cancelled posting", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A malformed document, a cycle, args that do not match a schema", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    role: Role,
    Body(body): Body<NewDag>,
) -> Result<Response, Problem> {
    let ctx = Ctx {
        fields: &[("dag", "/dag"), ("posting", "/posting")],
        dag: Some(body.dag.clone()),
        ..Ctx::default()
    };
    let rows = Session::run(
        &state.pool,
        &role,
        "SELECT name, id FROM pdoflow.submit_dag($1::jsonb, $2::uuid)",
        &[&body.dag, &body.posting],
        &ctx,
    )
    .await?;
    let jobs = rows
        .iter()
        .map(|row| {
            Ok(DagJob {
                name: row.try_get(0)?,
                id: row.try_get(1)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(|error| Problem::internal(&sql_error::describe(&error)))?;
    Ok(json(StatusCode::CREATED, &DagJobs { jobs }))
}
