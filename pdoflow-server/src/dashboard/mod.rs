//! The web dashboard, at `/dashboard/`: server-rendered HTML (maud), made
//! live by htmx and server-sent events, with a uPlot chart; every asset is
//! in the binary. Pages and buttons run as the signed-in role, so the
//! database's privileges decide what each user may see and do, as for the
//! HTTP API. Beside it, `/api/stats` and `/api/jobs` answer as the
//! GoodJob-style queue pdoflow replaces did. See docs/dashboard.md.

mod actions;
mod assets;
mod attempts;
mod compat;
mod graph;
mod jobs;
mod layout;
pub mod live;
mod login;
mod overview;
mod postings;
mod queues;
mod schedules;
pub mod session;
mod throughput;
mod workers;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use tower_http::set_header::SetResponseHeaderLayer;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::pool::Session;
use crate::problem::{Code, Problem};
use crate::sql_error::Ctx;
use crate::state::AppState;
use session::Viewer;

/// What the dashboard keeps while the server runs.
pub struct Dashboard {
    pub csrf: session::CsrfKey,
    pub live: Arc<live::Live>,
}

impl Dashboard {
    pub fn new() -> Result<Dashboard, String> {
        Ok(Dashboard {
            csrf: session::CsrfKey::generate()?,
            live: Arc::new(live::Live::default()),
        })
    }
}

/// Scripts and styles from this server only, nothing inline, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The dashboard's routes, and the GoodJob-style JSON.
pub fn router() -> Router<Arc<AppState>> {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/", get(overview::page))
        .route("/dashboard/login", get(login::form).post(login::sign_in))
        .route("/dashboard/logout", post(login::sign_out))
        .route("/dashboard/events", get(live::events))
        .route("/dashboard/jobs", get(jobs::list))
        .route("/dashboard/jobs/{id}", get(jobs::page).post(jobs::act))
        .route("/dashboard/queues", get(queues::page))
        .route("/dashboard/queues/{queue}", post(queues::act))
        .route("/dashboard/postings", get(postings::list))
        .route(
            "/dashboard/postings/{id}",
            get(postings::page).post(postings::act),
        )
        .route("/dashboard/workers", get(workers::page))
        .route("/dashboard/schedules", get(schedules::page))
        .route("/dashboard/schedules/{name}", post(schedules::act))
        .route("/dashboard/{*rest}", get(no_such_page))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        // Pages hold the CSRF token and private data: never cached.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    pages
        .route("/dashboard/assets/{hash}/{name}", get(assets::serve))
        .route("/api/stats", get(compat::stats))
        .route("/api/jobs", get(compat::jobs))
}

/// How long a dashboard read may take: a page is not worth a long scan
/// (a text search through a large history, say).
const READ_TIMEOUT: &str = "10s";

/// A transaction as the viewer's role for a page's reads, bounded by
/// `READ_TIMEOUT`.
async fn begin_read(state: &AppState, viewer: &Viewer) -> Result<Session, Problem> {
    let mut session = Session::begin(&state.pool, &viewer.role).await?;
    session
        .rows(
            "SELECT pg_catalog.set_config('statement_timeout', $1, true)",
            &[&READ_TIMEOUT],
            &Ctx::default(),
        )
        .await?;
    Ok(session)
}

/// A page's one read (see `begin_read`).
async fn read(
    state: &AppState,
    viewer: &Viewer,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Problem> {
    begin_read(state, viewer)
        .await?
        .rows_and_commit(sql, params, &Ctx::default())
        .await
}

/// `GET /dashboard/...` that is no page: a page that says so.
async fn no_such_page(viewer: Viewer) -> Response {
    not_found(
        &viewer,
        "Not found",
        "There is no such page in the dashboard.",
    )
}

/// A page as a response.
fn html_page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

/// A page saying `message`, with `status`. A live region reloading itself
/// gets nothing instead (204: htmx keeps what it shows).
fn status_page(viewer: &Viewer, status: StatusCode, title: &str, message: &str) -> Response {
    if viewer.htmx {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        status,
        Html(layout::trouble(Some(viewer), title, message).into_string()),
    )
        .into_response()
}

/// A page for what could not be found.
fn not_found(viewer: &Viewer, title: &str, message: &str) -> Response {
    status_page(viewer, StatusCode::NOT_FOUND, title, message)
}

/// A page for a value the database gave that the page could not read.
fn problem_page(viewer: &Viewer, title: &str, detail: &str) -> Response {
    tracing::warn!("dashboard page {title}: {detail}");
    status_page(
        viewer,
        StatusCode::INTERNAL_SERVER_ERROR,
        title,
        "The server could not read what the database answered; its log says why.",
    )
}

/// A page for a read that failed: a role without the privilege is told so
/// (not an error page: the frame and navigation stay), the rest says what
/// went wrong.
fn read_problem(viewer: &Viewer, title: &str, what: &str, problem: Problem) -> Response {
    let timed_out = problem.code == Code::ServiceUnavailable
        && problem.detail.contains("cancelled the statement");
    let message = match problem.code {
        _ if timed_out => format!(
            "Reading this took longer than {READ_TIMEOUT}, and was given up: narrow it down (a state, a queue, a task)."
        ),
        Code::Forbidden => format!(
            "Your role {} is not allowed to {what}: {}",
            viewer.role.name, problem.detail
        ),
        Code::Unauthorized => format!("Your sign-in no longer works: {}", problem.detail),
        _ => problem.detail.clone(),
    };
    let status = match problem.code {
        // The page itself worked: it says what the role may not do.
        Code::Forbidden => StatusCode::OK,
        _ => StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    };
    status_page(viewer, status, title, &message)
}

/// `text` encoded for a query string value.
fn query_value(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|pair| pair.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
