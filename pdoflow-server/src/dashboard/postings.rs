//! Postings (named batches of jobs): their status and progress, pause,
//! resume and cancel; a posting's page draws its jobs as a DAG.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::actions::{self, Action, ActionForm};
use super::graph;
use super::layout::{self, Section};
use super::session::Viewer;
use super::{begin_read, html_page, problem_page, read, read_problem};
use crate::sql_error::Ctx;
use crate::state::AppState;

/// Postings listed, newest first.
const LIMIT: i64 = 200;
/// Jobs of a posting drawn at most.
const GRAPH_LIMIT: i64 = 1000;

const COLUMNS: &str = "id, name, description, status, queue, priority, created_at, \
    status_changed_at, total::int8, queued::int8, running::int8, succeeded::int8, \
    failed::int8, cancelled::int8, blocked::int8, complete";

struct Posting {
    id: Uuid,
    name: String,
    description: Option<String>,
    status: String,
    queue: Option<String>,
    priority: Option<i32>,
    created_at: DateTime<Utc>,
    status_changed_at: Option<DateTime<Utc>>,
    total: i64,
    queued: i64,
    running: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    blocked: i64,
    complete: bool,
}

fn posting_row(row: &Row) -> Result<Posting, tokio_postgres::Error> {
    Ok(Posting {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        description: row.try_get(2)?,
        status: row.try_get(3)?,
        queue: row.try_get(4)?,
        priority: row.try_get(5)?,
        created_at: row.try_get(6)?,
        status_changed_at: row.try_get(7)?,
        total: row.try_get(8)?,
        queued: row.try_get(9)?,
        running: row.try_get(10)?,
        succeeded: row.try_get(11)?,
        failed: row.try_get(12)?,
        cancelled: row.try_get(13)?,
        blocked: row.try_get(14)?,
        complete: row.try_get(15)?,
    })
}

impl Posting {
    fn ended(&self) -> i64 {
        self.succeeded + self.failed + self.cancelled
    }
}

fn progress(posting: &Posting) -> Markup {
    let percent = if posting.total > 0 {
        posting.ended() * 100 / posting.total
    } else {
        0
    };
    html! {
        div.progress {
            progress max=(posting.total.max(1)) value=(posting.ended())
                aria-label=(format!("{} of {} jobs ended", posting.ended(), posting.total)) {
                (percent) "%"
            }
            span.progress-text {
                (posting.ended()) " / " (posting.total) " ended"
                @if posting.failed > 0 { ", " span.error-text { (posting.failed) " failed" } }
            }
        }
    }
}

fn buttons(posting: &Posting, csrf: &str) -> Markup {
    let action = format!("/dashboard/postings/{}", posting.id);
    let cancelled = posting.status == "cancelled";
    html! {
        form.actions method="post" action=(action.clone())
            hx-post=(action) hx-target="#flash" hx-swap="innerHTML" {
            input type="hidden" name="csrf" value=(csrf);
            @if posting.status == "paused" {
                button id=(format!("resume-{}", posting.id)) type="submit" name="action" value="resume"
                    aria-label=(format!("Resume posting {}", posting.name)) { "Resume" }
            } @else {
                button id=(format!("pause-{}", posting.id)) type="submit" name="action" value="pause" disabled[cancelled]
                    aria-label=(format!("Pause posting {}", posting.name)) { "Pause" }
            }
            button.danger id=(format!("cancel-{}", posting.id)) type="submit" name="action" value="cancel" disabled[cancelled]
                aria-label=(format!("Cancel posting {}", posting.name)) { "Cancel" }
        }
    }
}

/// `GET /dashboard/postings`
pub async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let sql = format!(
        "SELECT {COLUMNS} FROM pdoflow.posting_status ORDER BY created_at DESC, id DESC LIMIT {LIMIT}"
    );
    let rows = match read(&state, &viewer, &sql, &[]).await {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Postings", "read postings", problem),
    };
    let postings: Vec<Posting> = match rows.iter().map(posting_row).collect() {
        Ok(postings) => postings,
        Err(error) => return problem_page(&viewer, "Postings", &error.to_string()),
    };
    let body = html! {
        h1 { "Postings" }
        p.muted { "Named batches of jobs. A paused posting's jobs are not claimed; cancelling ends its waiting jobs and is final." }
        (layout::live_region("live-postings", "/dashboard/postings", html! {
            @if postings.is_empty() {
                p.muted { "No postings yet (pdoflow.create_posting)." }
            } @else {
                div.table-wrap {
                    table #postings {
                        caption.visually-hidden { "Postings, newest first" }
                        thead { tr {
                            th scope="col" { "Posting" }
                            th scope="col" { "Status" }
                            th scope="col" { "Progress" }
                            th scope="col" .num .wide { "Running" }
                            th scope="col" .wide { "Created" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for posting in &postings {
                                tr data-posting-id=(posting.id) {
                                    th scope="row" {
                                        a href=(format!("/dashboard/postings/{}", posting.id)) { (posting.name) }
                                        @if let Some(description) = &posting.description { br; span.muted { (description) } }
                                    }
                                    td.posting-status { (posting.status) }
                                    td { (progress(posting)) }
                                    td.num.wide { (posting.running) }
                                    td.wide { (layout::when(Some(posting.created_at))) }
                                    td { (buttons(posting, &viewer.csrf)) }
                                }
                            }
                        }
                    }
                }
            }
        }))
    };
    html_page(layout::page(
        Some(&viewer),
        "Postings",
        Section::Postings,
        body,
    ))
}

/// `GET /dashboard/postings/{id}`: its status, progress and DAG.
pub async fn page(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return super::not_found(
            &viewer,
            "Posting",
            &format!("{id:?} is not a posting id (a UUID)."),
        );
    };
    let mut session = match begin_read(&state, &viewer).await {
        Ok(session) => session,
        Err(problem) => return read_problem(&viewer, "Posting", "read postings", problem),
    };
    let ctx = Ctx::default();
    let sql = format!("SELECT {COLUMNS} FROM pdoflow.posting_status WHERE id = $1");
    let posting = match session.row(&sql, &[&id], &ctx).await {
        Ok(Some(row)) => match posting_row(&row) {
            Ok(posting) => posting,
            Err(error) => return problem_page(&viewer, "Posting", &error.to_string()),
        },
        Ok(None) => {
            return super::not_found(&viewer, "Posting", &format!("There is no posting {id}."))
        }
        Err(problem) => return read_problem(&viewer, "Posting", "read postings", problem),
    };
    let jobs = session
        .rows(
            &format!(
                "SELECT id, task, node, state, depends_on FROM pdoflow.jobs
                 WHERE posting = $1 ORDER BY id LIMIT {}",
                GRAPH_LIMIT + 1
            ),
            &[&id],
            &ctx,
        )
        .await;
    let jobs = match jobs {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Posting", "read jobs", problem),
    };
    let _ = session.commit().await;
    let mut nodes = Vec::with_capacity(jobs.len());
    for row in &jobs {
        match graph::Node::read(row) {
            Ok(node) => nodes.push(node),
            Err(error) => return problem_page(&viewer, "Posting", &error.to_string()),
        }
    }
    let truncated = nodes.len() as i64 > GRAPH_LIMIT;
    nodes.truncate(GRAPH_LIMIT as usize);
    let here = format!("/dashboard/postings/{id}");
    let title = format!("Posting {}", posting.name);
    let body = html! {
        p.crumbs { a href="/dashboard/postings" { "Postings" } " / " span.id { (posting.id) } }
        (layout::live_region("live-posting", &here, html! {
            div data-posting-id=(posting.id) {
                h1 { (posting.name) " " (layout::badge(&posting.status)) }
                @if let Some(description) = &posting.description { p { (description) } }
                (progress(&posting))
                p { "Status: " strong.posting-status { (posting.status) } }
                (buttons(&posting, &viewer.csrf))
                dl.facts {
                    dt { "Id" } dd.id { (posting.id) }
                    dt { "Jobs" } dd {
                        a href=(format!("/dashboard/jobs?posting={}", posting.id)) { (posting.total) " jobs" }
                        ": " (posting.queued) " queued, " (posting.blocked) " blocked, "
                        (posting.running) " running, " (posting.succeeded) " succeeded, "
                        (posting.failed) " failed, " (posting.cancelled) " cancelled"
                    }
                    @if let Some(queue) = &posting.queue { dt { "Queue" } dd { (queue) } }
                    @if let Some(priority) = posting.priority { dt { "Priority" } dd { (priority) } }
                    dt { "Created" } dd { (layout::when(Some(posting.created_at))) }
                    dt { "Status changed" } dd { (layout::when(posting.status_changed_at)) }
                    dt { "Complete" } dd { @if posting.complete { "yes" } @else { "no" } }
                }
            }
        }))
        // Outside the live region: a reload would reset the frame's scroll.
        h2 { "Graph" }
        @if nodes.is_empty() {
            p.muted { "The posting has no jobs." }
        } @else {
            p.muted { "As the page was loaded: reload it for the jobs' latest states." }
            @if truncated { p.notice { "Only the first " (GRAPH_LIMIT) " jobs are drawn." } }
            (graph::legend())
            div.graph-frame tabindex="0" { (graph::svg(&nodes, None)) }
        }
    };
    html_page(layout::page(Some(&viewer), &title, Section::Postings, body))
}

/// `POST /dashboard/postings/{id}`: pause, resume or cancel.
pub async fn act(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let back = format!("/dashboard/postings/{id}");
    let Ok(posting) = id.parse::<Uuid>() else {
        return actions::unknown(&form, &back, &headers);
    };
    let (status, what, done, unchanged) = match form.action.as_str() {
        "pause" => (
            "paused",
            "pause postings",
            "The posting is paused: its waiting jobs are not claimed until it is resumed.",
            "The posting was paused already.",
        ),
        "resume" => (
            "active",
            "resume postings",
            "The posting is active again.",
            "The posting was active already.",
        ),
        "cancel" => (
            "cancelled",
            "cancel postings",
            "The posting is cancelled: its waiting jobs ended as cancelled.",
            "The posting was cancelled already.",
        ),
        _ => return actions::unknown(&form, &back, &headers),
    };
    let params: [&(dyn ToSql + Sync); 2] = [&posting, &status];
    let action = Action {
        sql: "SELECT pdoflow.set_posting_status($1, $2)",
        params: &params,
        what,
        needs: "pdoflow_admin",
        done: done.into(),
        unchanged: unchanged.into(),
        back,
    };
    actions::run(&state, &viewer, &headers, &form, action).await
}
