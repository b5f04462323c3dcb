//! Queues: paused or not, their limits, their waiting, running and
//! throttled jobs (`pdoflow.queues`); pause and resume.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use maud::html;
use tokio_postgres::types::ToSql;

use super::actions::{self, Action, ActionForm};
use super::layout::{self, Section};
use super::session::Viewer;
use super::{html_page, problem_page, query_value, read, read_problem};
use crate::state::AppState;

const QUEUES: &str = "
    SELECT queue, paused, max_running::int8, rate::int8, per::text, key_limit::int8,
           waiting::int8, delayed::int8, blocked::int8, running::int8, throttled::int8
    FROM pdoflow.queues ORDER BY queue";

struct QueueRow {
    queue: String,
    paused: bool,
    max_running: Option<i64>,
    rate: Option<i64>,
    per: Option<String>,
    key_limit: Option<i64>,
    waiting: i64,
    delayed: i64,
    blocked: i64,
    running: i64,
    throttled: i64,
}

/// `GET /dashboard/queues`
pub async fn page(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let rows = match read(&state, &viewer, QUEUES, &[]).await {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Queues", "read queues", problem),
    };
    let read = |row: &tokio_postgres::Row| -> Result<QueueRow, tokio_postgres::Error> {
        Ok(QueueRow {
            queue: row.try_get(0)?,
            paused: row.try_get(1)?,
            max_running: row.try_get(2)?,
            rate: row.try_get(3)?,
            per: row.try_get(4)?,
            key_limit: row.try_get(5)?,
            waiting: row.try_get(6)?,
            delayed: row.try_get(7)?,
            blocked: row.try_get(8)?,
            running: row.try_get(9)?,
            throttled: row.try_get(10)?,
        })
    };
    let queues: Vec<QueueRow> = match rows.iter().map(read).collect() {
        Ok(queues) => queues,
        Err(error) => return problem_page(&viewer, "Queues", &error.to_string()),
    };
    let body = html! {
        h1 { "Queues" }
        p.muted { "Every queue with jobs or controls. Pausing a queue stops its jobs from being claimed; running jobs go on. Limits are set in SQL (pdoflow.set_queue_limits, pdoflow.set_key_limit)." }
        (layout::live_region("live-queues", "/dashboard/queues", html! {
            @if queues.is_empty() {
                p.muted { "No queue has jobs or controls yet." }
            } @else {
                div.table-wrap {
                    table #queues {
                        caption.visually-hidden { "Queues" }
                        thead { tr {
                            th scope="col" { "Queue" }
                            th scope="col" { "Paused" }
                            th scope="col" { "Limits" }
                            th scope="col" .num { "Waiting" }
                            th scope="col" .num { "Running" }
                            th scope="col" .num .wide { "Delayed" }
                            th scope="col" .num .wide { "Blocked" }
                            th scope="col" .num { "Throttled" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for (row, queue) in queues.iter().enumerate() {
                                @let action = format!("/dashboard/queues/{}", path_segment(&queue.queue));
                                tr data-queue=(queue.queue) {
                                    th scope="row" { a href=(format!("/dashboard/jobs?queue={}", query_value(&queue.queue))) { (queue.queue) } }
                                    td.queue-paused { @if queue.paused { "yes" } @else { "no" } }
                                    td.limits { (limits(queue)) }
                                    td.num { (queue.waiting) }
                                    td.num { (queue.running) }
                                    td.num.wide { (queue.delayed) }
                                    td.num.wide { (queue.blocked) }
                                    td.num { (queue.throttled) }
                                    td {
                                        form.actions method="post" action=(action.clone())
                                            hx-post=(action) hx-target="#flash" hx-swap="innerHTML" {
                                            input type="hidden" name="csrf" value=(viewer.csrf);
                                            @if queue.paused {
                                                button id=(format!("resume-queue-{row}")) type="submit" name="action" value="resume"
                                                    aria-label=(format!("Resume queue {}", queue.queue)) { "Resume" }
                                            } @else {
                                                button id=(format!("pause-queue-{row}")) type="submit" name="action" value="pause"
                                                    aria-label=(format!("Pause queue {}", queue.queue)) { "Pause" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }))
    };
    html_page(layout::page(Some(&viewer), "Queues", Section::Queues, body))
}

fn limits(queue: &QueueRow) -> String {
    let mut parts = Vec::new();
    if let Some(max) = queue.max_running {
        parts.push(format!("{max} running at most"));
    }
    if let Some(rate) = queue.rate {
        parts.push(format!(
            "{rate} per {}",
            queue.per.as_deref().unwrap_or("period")
        ));
    }
    if let Some(limit) = queue.key_limit {
        parts.push(format!("{limit} per key"));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A queue name as a path segment.
fn path_segment(name: &str) -> String {
    query_value(name).replace('+', "%20")
}

/// `POST /dashboard/queues/{queue}`: pause or resume.
pub async fn act(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(queue): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let back = "/dashboard/queues".to_owned();
    let params: [&(dyn ToSql + Sync); 1] = [&queue];
    let action = match form.action.as_str() {
        "pause" => Action {
            sql: "SELECT pdoflow.pause_queue($1)",
            params: &params,
            what: "pause queues",
            needs: "pdoflow_admin",
            done: format!("Queue {queue} is paused: its jobs wait until it is resumed."),
            unchanged: format!("Queue {queue} was paused already."),
            back,
        },
        "resume" => Action {
            sql: "SELECT pdoflow.resume_queue($1)",
            params: &params,
            what: "resume queues",
            needs: "pdoflow_admin",
            done: format!("Queue {queue} is running again."),
            unchanged: format!("Queue {queue} was not paused."),
            back,
        },
        _ => return actions::unknown(&form, &back, &headers),
    };
    actions::run(&state, &viewer, &headers, &form, action).await
}
