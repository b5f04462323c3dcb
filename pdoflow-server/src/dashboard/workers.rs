//! Workers: who claimed or said hello, when they were last seen, the tasks
//! they serve and the jobs each is running. The registry is admin-only
//! (`pdoflow.workers`); other roles see why it is not shown.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::html;
use uuid::Uuid;

use super::layout::{self, Section};
use super::session::Viewer;
use super::{begin_read, html_page, problem_page, read_problem};
use crate::problem::Code;
use crate::sql_error::Ctx;
use crate::state::AppState;

const WORKERS: &str = "
    SELECT name, state, first_seen_at, last_seen_at, gone_at, tasks
    FROM pdoflow.workers
    ORDER BY state = 'active' DESC, last_seen_at DESC, name
    LIMIT 500";

/// Running jobs (the check constraint of `finished_jobs` keeps that table
/// out of the scan).
const RUNNING: &str = "
    SELECT worker, id, task, started_at, lease_expires_at
    FROM pdoflow.jobs WHERE state = 'running' AND worker IS NOT NULL
    ORDER BY started_at LIMIT 5000";

struct Worker {
    name: String,
    state: String,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    gone_at: Option<DateTime<Utc>>,
    tasks: Option<Vec<String>>,
}

struct Running {
    id: Uuid,
    task: String,
    started_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
}

/// `GET /dashboard/workers`
pub async fn page(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let mut session = match begin_read(&state, &viewer).await {
        Ok(session) => session,
        Err(problem) => return read_problem(&viewer, "Workers", "read workers", problem),
    };
    let ctx = Ctx::default();
    let workers = match session.rows(WORKERS, &[], &ctx).await {
        Ok(rows) => rows,
        Err(problem) if problem.code == Code::Forbidden => {
            let body = html! {
                h1 { "Workers" }
                p.notice role="note" {
                    "Your role " strong { (viewer.role.name) } " is not allowed to read the workers registry: that needs pdoflow_admin."
                }
            };
            return html_page(layout::page(
                Some(&viewer),
                "Workers",
                Section::Workers,
                body,
            ));
        }
        Err(problem) => return read_problem(&viewer, "Workers", "read workers", problem),
    };
    let running = match session.rows(RUNNING, &[], &ctx).await {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Workers", "read jobs", problem),
    };
    let _ = session.commit().await;
    let read_worker = |row: &tokio_postgres::Row| -> Result<Worker, tokio_postgres::Error> {
        Ok(Worker {
            name: row.try_get(0)?,
            state: row.try_get(1)?,
            first_seen_at: row.try_get(2)?,
            last_seen_at: row.try_get(3)?,
            gone_at: row.try_get(4)?,
            tasks: row.try_get(5)?,
        })
    };
    let workers: Vec<Worker> = match workers.iter().map(read_worker).collect() {
        Ok(workers) => workers,
        Err(error) => return problem_page(&viewer, "Workers", &error.to_string()),
    };
    let mut jobs: BTreeMap<String, Vec<Running>> = BTreeMap::new();
    for row in &running {
        let job = (|| -> Result<(String, Running), tokio_postgres::Error> {
            Ok((
                row.try_get(0)?,
                Running {
                    id: row.try_get(1)?,
                    task: row.try_get(2)?,
                    started_at: row.try_get(3)?,
                    lease_expires_at: row.try_get(4)?,
                },
            ))
        })();
        match job {
            Ok((worker, job)) => jobs.entry(worker).or_default().push(job),
            Err(error) => return problem_page(&viewer, "Workers", &error.to_string()),
        }
    }
    let none = Vec::new();
    let body = html! {
        h1 { "Workers" }
        p.muted { "Workers silent for pdoflow.worker_timeout are shown as gone; their jobs come back when their leases expire." }
        (layout::live_region("live-workers", "/dashboard/workers", html! {
            @if workers.is_empty() {
                p.muted { "No worker has claimed a job or registered yet." }
            } @else {
                div.table-wrap {
                    table #workers {
                        caption.visually-hidden { "Workers" }
                        thead { tr {
                            th scope="col" { "Worker" }
                            th scope="col" { "State" }
                            th scope="col" { "Last seen" }
                            th scope="col" .wide { "Tasks" }
                            th scope="col" { "Running" }
                        } }
                        tbody {
                            @for worker in &workers {
                                @let running = jobs.get(&worker.name).unwrap_or(&none);
                                tr data-worker=(worker.name) {
                                    th scope="row" {
                                        (worker.name)
                                        br; span.muted { "since " (layout::when(Some(worker.first_seen_at))) }
                                    }
                                    td { (layout::badge(&worker.state))
                                        @if let Some(gone) = worker.gone_at { br; span.muted { "gone " (layout::when(Some(gone))) } } }
                                    td { (layout::when(Some(worker.last_seen_at))) }
                                    td.wide { @match &worker.tasks {
                                        Some(tasks) => (tasks.join(", ")),
                                        None => span.muted { "any" },
                                    } }
                                    td {
                                        @if running.is_empty() { span.muted { "idle" } }
                                        @else {
                                            ul.running {
                                                @for job in running {
                                                    li {
                                                        a href=(format!("/dashboard/jobs/{}", job.id)) { (job.task) }
                                                        " " span.muted { "since " (layout::when(job.started_at)) }
                                                        @if let Some(lease) = job.lease_expires_at {
                                                            ", " span.muted { "lease ends " (layout::when(Some(lease))) }
                                                        }
                                                    }
                                                }
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
    html_page(layout::page(
        Some(&viewer),
        "Workers",
        Section::Workers,
        body,
    ))
}
