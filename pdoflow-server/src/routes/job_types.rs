//! Job types: the SQL API's registered tasks (`pdoflow.tasks`), with the
//! JSON Schema their jobs' args must match.
//!
//! Names may be namespaced: `scope:category:name`. The scope of a name with
//! three or more `:`-separated parts is its first part, its category the
//! second; `category:name` and plain names belong to the `global` scope
//! (`category:name` has category `category`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};

use super::{created, json};
use crate::auth::Role;
use crate::json::{Body, Query};
use crate::pool::Session;
use crate::problem::{self, Problem};
use crate::raw_json::RawJson;
use crate::schemas::{ArgsSchema, Name};
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

pub const GLOBAL_SCOPE: &str = "global";

/// `(scope, category)` of a job type name (see the module's rule).
pub fn namespace(name: &str) -> (&str, Option<&str>) {
    let parts: Vec<&str> = name.splitn(3, ':').collect();
    match parts.as_slice() {
        [scope, category, _] => (scope, Some(category)),
        [category, _] => (GLOBAL_SCOPE, Some(category)),
        _ => (GLOBAL_SCOPE, None),
    }
}

/// A registered job type.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobType {
    pub name: String,
    /// The part before the first `:` of a `scope:category:name`, else `global`.
    pub scope: String,
    /// The `category` of `scope:category:name` or `category:name`.
    pub category: Option<String>,
    pub description: Option<String>,
    /// The JSON Schema its jobs' args must match; null: any args.
    #[schema(value_type = Option<Value>)]
    pub args_schema: Option<RawJson>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, description, args_schema, registered_at, updated_at";

impl JobType {
    fn from_row(row: &Row) -> Result<JobType, Problem> {
        let read = |error: tokio_postgres::Error| {
            Problem::internal(&format!(
                "reading a job type: {}",
                sql_error::describe(&error)
            ))
        };
        let name: String = row.try_get(0).map_err(read)?;
        let (scope, category) = namespace(&name);
        Ok(JobType {
            scope: scope.to_owned(),
            category: category.map(str::to_owned),
            name: name.clone(),
            description: row.try_get(1).map_err(read)?,
            args_schema: row.try_get(2).map_err(read)?,
            registered_at: row.try_get(3).map_err(read)?,
            updated_at: row.try_get(4).map_err(read)?,
        })
    }
}

/// `GET /v1/job-types` filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScopeFilter {
    /// Only the job types of this scope (`global` for names without one).
    pub scope: Option<String>,
}

/// The job types, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobTypeList {
    pub items: Vec<JobType>,
}

/// List job types.
#[utoipa::path(get, path = "/v1/job-types", tag = "job-types", params(ScopeFilter),
    responses((status = 200, description = "The job types", body = JobTypeList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    role: Role,
    Query(filter): Query<ScopeFilter>,
) -> Result<Response, Problem> {
    let rows = Session::run(
        &state.pool,
        &role,
        &format!("SELECT {COLUMNS} FROM pdoflow.tasks ORDER BY name"),
        &[],
        &Ctx::default(),
    )
    .await?;
    let items = rows
        .iter()
        .map(JobType::from_row)
        .filter(|job_type| match (&filter.scope, job_type) {
            (Some(scope), Ok(job_type)) => &job_type.scope == scope,
            _ => true,
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json(StatusCode::OK, &JobTypeList { items }))
}

/// A job type to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJobType {
    #[schema(value_type = Name)]
    pub name: String,
    /// A JSON Schema for its jobs' args; absent or null: any args.
    #[schema(value_type = Option<ArgsSchema>)]
    pub args_schema: Option<Value>,
    #[schema(pattern = r"^[^\x00]*$")]
    pub description: Option<String>,
}

/// A job type's registration, replaced as a whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTypeRegistration {
    /// A JSON Schema for its jobs' args; absent or null: any args.
    #[schema(value_type = Option<ArgsSchema>)]
    pub args_schema: Option<Value>,
    #[schema(pattern = r"^[^\x00]*$")]
    pub description: Option<String>,
}

const FIELDS: &[(&str, &str)] = &[
    ("name", "/name"),
    ("args_schema", "/args_schema"),
    ("description", "/description"),
];

/// Register a job type.
///
/// 201 when new; 200 when it was registered with the same schema already
/// (its description is updated); 409 SchemaConflict when it is registered
/// with another schema (replace it with PUT).
#[utoipa::path(post, path = "/v1/job-types", tag = "job-types", request_body = NewJobType,
    responses(
        (status = 201, description = "Registered", body = JobType,
            headers(("Location" = String, description = "/v1/job-types/{name}"))),
        (status = 200, description = "Registered already, with this schema", body = JobType),
        (status = 409, description = "Registered with another schema (SchemaConflict)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or a schema that does not compile", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    role: Role,
    Body(body): Body<NewJobType>,
) -> Result<Response, Problem> {
    save(
        &state,
        &role,
        body.name,
        body.args_schema,
        body.description,
        false,
    )
    .await
}

/// Register or replace a job type.
///
/// The explicit replacement: whatever schema it had, it gets this one.
#[utoipa::path(put, path = "/v1/job-types/{name}", tag = "job-types",
    params(("name" = Name, Path, description = "The job type's name")),
    request_body = Option<JobTypeRegistration>,
    responses(
        (status = 201, description = "Registered", body = JobType,
            headers(("Location" = String, description = "/v1/job-types/{name}"))),
        (status = 200, description = "Replaced", body = JobType),
        (status = 422, description = "A bad name or a schema that does not compile", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replace(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
    Body(body): Body<JobTypeRegistration>,
) -> Result<Response, Problem> {
    save(
        &state,
        &role,
        name,
        body.args_schema,
        body.description,
        true,
    )
    .await
}

async fn save(
    state: &AppState,
    role: &Role,
    name: String,
    args_schema: Option<Value>,
    description: Option<String>,
    replace: bool,
) -> Result<Response, Problem> {
    let ctx = Ctx {
        fields: FIELDS,
        job_type: Some(name.clone()),
        ..Ctx::default()
    };
    let mut session = Session::begin(&state.pool, role).await?;
    let new: bool = session
        .row(
            "SELECT pdoflow.register_task($1::text, $2::jsonb, $3::text, replace => $4::bool)",
            &[&name, &args_schema, &description, &replace],
            &ctx,
        )
        .await?
        .and_then(|row| row.try_get(0).ok())
        .unwrap_or(false);
    let job_type = read(&mut session, &name).await?;
    session.commit().await?;
    Ok(if new {
        created(format!("/v1/job-types/{}", percent_path(&name)), &job_type)
    } else {
        json(StatusCode::OK, &job_type)
    })
}

async fn read(session: &mut Session, name: &str) -> Result<JobType, Problem> {
    let row = session
        .row(
            &format!("SELECT {COLUMNS} FROM pdoflow.tasks WHERE name = $1::text"),
            &[&name],
            &Ctx::default(),
        )
        .await?;
    match row {
        Some(row) => JobType::from_row(&row),
        None => Err(Problem::not_found(format!(
            "job type {name:?} is not registered"
        ))),
    }
}

/// A name as one path segment.
fn percent_path(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Get a job type.
#[utoipa::path(get, path = "/v1/job-types/{name}", tag = "job-types",
    params(("name" = Name, Path, description = "The job type's name")),
    responses(
        (status = 200, description = "The job type", body = JobType),
        (status = 404, description = "Not registered (NotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let mut session = Session::begin(&state.pool, &role).await?;
    let job_type = read(&mut session, &name).await?;
    session.commit().await?;
    Ok(json(StatusCode::OK, &job_type))
}

/// Unregister a job type.
///
/// Its jobs, active and ended, stay as they are; registering it again
/// makes it active again.
#[utoipa::path(delete, path = "/v1/job-types/{name}", tag = "job-types",
    params(("name" = Name, Path, description = "The job type's name")),
    responses(
        (status = 204, description = "Unregistered"),
        (status = 404, description = "Not registered (NotFound)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    role: Role,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let removed: bool = Session::run(
        &state.pool,
        &role,
        "SELECT pdoflow.unregister_task($1::text)",
        &[&name],
        &Ctx::default(),
    )
    .await?
    .into_iter()
    .next()
    .and_then(|row| row.try_get(0).ok())
    .unwrap_or(false);
    if !removed {
        return Err(Problem::not_found(format!(
            "job type {name:?} is not registered"
        )));
    }
    Ok(problem::no_content())
}

#[cfg(test)]
mod tests {
    use super::namespace;

    #[test]
    fn names_have_a_scope() {
        assert_eq!(namespace("mail"), ("global", None));
        assert_eq!(namespace("mail:send"), ("global", Some("mail")));
        assert_eq!(namespace("acme:mail:send"), ("acme", Some("mail")));
        assert_eq!(namespace("acme:mail:send:v2"), ("acme", Some("mail")));
    }
}
