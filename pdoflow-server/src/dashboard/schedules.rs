//! Cron schedules: their pattern, next and last run, last job; pause and
//! resume (`pdoflow.pause_schedule`, `pdoflow.resume_schedule`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::html;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::actions::{self, Action, ActionForm};
use super::layout::{self, Section};
use super::session::Viewer;
use super::{html_page, problem_page, query_value, read, read_problem};
use crate::state::AppState;

const SCHEDULES: &str = "
    SELECT name, cron, task, queue, time_zone, next_run_at, last_run_at, last_job, paused
    FROM pdoflow.schedules ORDER BY name";

struct Schedule {
    name: String,
    cron: String,
    task: String,
    queue: String,
    time_zone: String,
    next_run_at: Option<DateTime<Utc>>,
    last_run_at: Option<DateTime<Utc>>,
    last_job: Option<Uuid>,
    paused: bool,
}

/// `GET /dashboard/schedules`
pub async fn page(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let rows = match read(&state, &viewer, SCHEDULES, &[]).await {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Schedules", "read schedules", problem),
    };
    let read = |row: &tokio_postgres::Row| -> Result<Schedule, tokio_postgres::Error> {
        Ok(Schedule {
            name: row.try_get(0)?,
            cron: row.try_get(1)?,
            task: row.try_get(2)?,
            queue: row.try_get(3)?,
            time_zone: row.try_get(4)?,
            next_run_at: row.try_get(5)?,
            last_run_at: row.try_get(6)?,
            last_job: row.try_get(7)?,
            paused: row.try_get(8)?,
        })
    };
    let schedules: Vec<Schedule> = match rows.iter().map(read).collect() {
        Ok(schedules) => schedules,
        Err(error) => return problem_page(&viewer, "Schedules", &error.to_string()),
    };
    let body = html! {
        h1 { "Schedules" }
        p.muted { "The background worker enqueues each due run once. Schedules are made in SQL (pdoflow.schedule) or with pdoflow-run schedules." }
        (layout::live_region("live-schedules", "/dashboard/schedules", html! {
            @if schedules.is_empty() {
                p.muted { "No schedules yet." }
            } @else {
                div.table-wrap {
                    table #schedules {
                        caption.visually-hidden { "Schedules" }
                        thead { tr {
                            th scope="col" { "Schedule" }
                            th scope="col" { "When" }
                            th scope="col" .wide { "Task" }
                            th scope="col" { "Next run" }
                            th scope="col" .wide { "Last run" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for (row, schedule) in schedules.iter().enumerate() {
                                @let action = format!("/dashboard/schedules/{}", query_value(&schedule.name).replace('+', "%20"));
                                tr data-schedule=(schedule.name) {
                                    th scope="row" { (schedule.name)
                                        @if schedule.paused { " " span.badge.state-paused { "paused" } } }
                                    td { code { (schedule.cron) } br; span.muted { (schedule.time_zone) } }
                                    td.wide { (schedule.task) " " span.muted { "in " (schedule.queue) } }
                                    td { @if schedule.paused { span.muted { "paused" } } @else { (layout::when(schedule.next_run_at)) } }
                                    td.wide {
                                        (layout::when(schedule.last_run_at))
                                        @if let Some(job) = schedule.last_job {
                                            " " a href=(format!("/dashboard/jobs/{job}")) { "its job" }
                                        }
                                    }
                                    td {
                                        form.actions method="post" action=(action.clone())
                                            hx-post=(action) hx-target="#flash" hx-swap="innerHTML" {
                                            input type="hidden" name="csrf" value=(viewer.csrf);
                                            @if schedule.paused {
                                                button id=(format!("resume-schedule-{row}")) type="submit" name="action" value="resume"
                                                    aria-label=(format!("Resume schedule {}", schedule.name)) { "Resume" }
                                            } @else {
                                                button id=(format!("pause-schedule-{row}")) type="submit" name="action" value="pause"
                                                    aria-label=(format!("Pause schedule {}", schedule.name)) { "Pause" }
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
        "Schedules",
        Section::Schedules,
        body,
    ))
}

/// `POST /dashboard/schedules/{name}`: pause or resume.
pub async fn act(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let back = "/dashboard/schedules".to_owned();
    let params: [&(dyn ToSql + Sync); 1] = [&name];
    let action = match form.action.as_str() {
        "pause" => Action {
            sql: "SELECT pdoflow.pause_schedule($1)",
            params: &params,
            what: "pause schedules",
            needs: "the schedule's owner (or a member of it) or pdoflow_admin",
            done: format!("Schedule {name} is paused."),
            unchanged: format!("Schedule {name} was paused already."),
            back,
        },
        "resume" => Action {
            sql: "SELECT pdoflow.resume_schedule($1)",
            params: &params,
            what: "resume schedules",
            needs: "the schedule's owner (or a member of it) or pdoflow_admin",
            done: format!("Schedule {name} runs again from its next occurrence."),
            unchanged: format!("Schedule {name} was not paused."),
            back,
        },
        _ => return actions::unknown(&form, &back, &headers),
    };
    actions::run(&state, &viewer, &headers, &form, action).await
}
