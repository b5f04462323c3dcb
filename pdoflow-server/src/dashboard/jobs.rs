//! Jobs: the list (filtered by state, queue, task, posting and text in
//! args or errors; newest first, a page at a time), a job's page (args,
//! result, progress, error, attempts, timeline, parents and children, its
//! DAG) and its cancel and retry buttons.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::actions::{self, Action, ActionForm};
use super::attempts::{self, Attempt};
use super::graph;
use super::layout::{self, Section};
use super::session::Viewer;
use super::throughput::first_uuid_v7_of;
use super::{begin_read, html_page, problem_page, query_value, read, read_problem};
use crate::sql_error::Ctx;
use crate::state::AppState;

/// Jobs on a page of the list.
const PAGE: i64 = 50;
/// The states a job can be in.
pub const STATES: [&str; 6] = [
    "queued",
    "blocked",
    "running",
    "succeeded",
    "failed",
    "cancelled",
];

/// The list's filters, as the form sends them (empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    state: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    task: String,
    #[serde(default)]
    posting: String,
    #[serde(default)]
    q: String,
    /// Jobs older than this id (the next page).
    #[serde(default)]
    before: String,
}

impl Filters {
    /// The query string for these filters, with `before` replaced.
    fn query(&self, before: Option<Uuid>) -> String {
        let mut pairs: Vec<(&str, String)> = [
            ("state", &self.state),
            ("queue", &self.queue),
            ("task", &self.task),
            ("posting", &self.posting),
            ("q", &self.q),
        ]
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| (name, value.trim().to_owned()))
        .collect();
        if let Some(before) = before {
            pairs.push(("before", before.to_string()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// `text` as a LIKE pattern that matches it anywhere, literally.
fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

struct ListRow {
    id: Uuid,
    task: String,
    queue: String,
    state: String,
    priority: i32,
    attempt: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    worker: Option<String>,
    last_error: Option<String>,
}

fn list_row(row: &Row) -> Result<ListRow, tokio_postgres::Error> {
    Ok(ListRow {
        id: row.try_get(0)?,
        task: row.try_get(1)?,
        queue: row.try_get(2)?,
        state: row.try_get(3)?,
        priority: row.try_get(4)?,
        attempt: row.try_get(5)?,
        max_attempts: row.try_get(6)?,
        run_at: row.try_get(7)?,
        created_at: row.try_get(8)?,
        finished_at: row.try_get(9)?,
        worker: row.try_get(10)?,
        last_error: row.try_get(11)?,
    })
}

/// `GET /dashboard/jobs`
pub async fn list(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Response {
    let mut notices = Vec::new();
    let word = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
    let job_state = word(&filters.state).filter(|value| {
        let known = STATES.contains(&value.as_str());
        if !known {
            notices.push(format!(
                "There is no state {value:?}: states are {}.",
                STATES.join(", ")
            ));
        }
        known
    });
    let queue = word(&filters.queue);
    let task = word(&filters.task);
    let posting = word(&filters.posting).and_then(|value| match value.parse::<Uuid>() {
        Ok(id) => Some(id),
        Err(_) => {
            notices.push(format!("{value:?} is not a posting id (a UUID)."));
            None
        }
    });
    let text = word(&filters.q).map(|text| contains_pattern(&text));
    let before = word(&filters.before).and_then(|value| value.parse::<Uuid>().ok());

    let mut sql = String::from(
        "SELECT id, task, queue, state, priority, attempt, max_attempts, run_at, created_at, \
                finished_at, worker, last_error
         FROM pdoflow.jobs WHERE true",
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(value) = &job_state {
        params.push(value);
        sql.push_str(&format!(" AND state = ${}", params.len()));
    }
    if let Some(value) = &queue {
        params.push(value);
        sql.push_str(&format!(" AND queue = ${}", params.len()));
    }
    if let Some(value) = &task {
        params.push(value);
        sql.push_str(&format!(" AND task = ${}", params.len()));
    }
    if let Some(value) = &posting {
        params.push(value);
        sql.push_str(&format!(" AND posting = ${}", params.len()));
    }
    if let Some(value) = &text {
        params.push(value);
        let n = params.len();
        sql.push_str(&format!(
            " AND (args::text ILIKE ${n} OR coalesce(last_error, '') ILIKE ${n})"
        ));
    }
    if let Some(value) = &before {
        params.push(value);
        sql.push_str(&format!(" AND id < ${}", params.len()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", PAGE + 1));

    let rows = match read(&state, &viewer, &sql, &params).await {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Jobs", "read jobs", problem),
    };
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        match list_row(row) {
            Ok(job) => jobs.push(job),
            Err(error) => return problem_page(&viewer, "Jobs", &error.to_string()),
        }
    }
    let more = jobs.len() as i64 > PAGE;
    jobs.truncate(PAGE as usize);
    let here = format!("/dashboard/jobs?{}", filters.query(before));
    let next = more
        .then(|| {
            jobs.last()
                .map(|job| format!("/dashboard/jobs?{}", filters.query(Some(job.id))))
        })
        .flatten();
    let body = html! {
        h1 { "Jobs" }
        (filter_form(&filters))
        @for notice in &notices { p.notice role="alert" { (notice) } }
        (layout::live_region("live-jobs", &here, html! {
            @if jobs.is_empty() {
                p.muted #no-jobs { "No job matches." }
            }
            div.table-wrap {
                table #jobs {
                    caption.visually-hidden { "Jobs, newest first" }
                    thead { tr {
                        th scope="col" { "Job" }
                        th scope="col" { "State" }
                        th scope="col" .wide { "Queue" }
                        th scope="col" .wide .num { "Priority" }
                        th scope="col" .wide { "Attempt" }
                        th scope="col" { "Created" }
                        th scope="col" .wide { "Due / finished" }
                        th scope="col" .wide { "Worker / error" }
                    } }
                    tbody {
                        @for job in &jobs {
                            tr data-job-id=(job.id) {
                                td.task {
                                    a.job-link href=(format!("/dashboard/jobs/{}", job.id)) { (job.task) }
                                    br; span.id.muted { (short_id(job.id)) }
                                }
                                td.state { (layout::badge(&job.state)) }
                                td.queue.wide { (job.queue) }
                                td.num.wide { (job.priority) }
                                td.wide { (job.attempt) " / " (job.max_attempts) }
                                td { (layout::when(Some(job.created_at))) }
                                td.wide { (layout::when(job.finished_at.or(Some(job.run_at)))) }
                                td.wide.clip {
                                    @if let Some(error) = &job.last_error { span.error-text title=(error) { (clip(error, 80)) } }
                                    @else if let Some(worker) = &job.worker { (worker) }
                                }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if before.is_some() {
                    a href=(format!("/dashboard/jobs?{}", filters.query(None))) { "Newest jobs" }
                }
                @if let Some(next) = &next {
                    a rel="next" href=(next) { "Older jobs →" }
                }
            }
        }))
    };
    html_page(layout::page(Some(&viewer), "Jobs", Section::Jobs, body))
}

fn filter_form(filters: &Filters) -> Markup {
    html! {
        form #job-filters method="get" action="/dashboard/jobs" role="search" aria-label="Filter jobs" {
            label {
                span { "State" }
                select name="state" {
                    option value="" selected[filters.state.is_empty()] { "any" }
                    @for state in STATES {
                        option value=(state) selected[filters.state == state] { (state) }
                    }
                }
            }
            label { span { "Queue" } input type="text" name="queue" value=(filters.queue) autocomplete="off"; }
            label { span { "Task" } input type="text" name="task" value=(filters.task) autocomplete="off"; }
            label { span { "Posting" } input type="text" name="posting" value=(filters.posting) placeholder="posting id" autocomplete="off"; }
            label.grow { span { "Text in args or error" } input type="search" name="q" value=(filters.q) autocomplete="off"; }
            div.buttons {
                button type="submit" { "Filter" }
                a href="/dashboard/jobs" { "Clear" }
            }
        }
    }
}

/// The last 8 hex digits of a UUID (its random part: the first ones are
/// the creation time, the same for jobs enqueued together), enough to tell
/// the jobs of a page apart.
fn short_id(id: Uuid) -> String {
    let text = id.simple().to_string();
    text[text.len() - 8..].to_owned()
}

/// `text` cut to `chars` characters.
fn clip(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars - 1).collect();
    cut.push('…');
    cut
}

/// Everything the job's page shows.
struct Job {
    id: Uuid,
    task: String,
    queue: String,
    priority: i32,
    state: String,
    attempt: i32,
    max_attempts: i32,
    args: serde_json::Value,
    result: Option<serde_json::Value>,
    last_error: Option<String>,
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
    worker: Option<String>,
    posting: Option<Uuid>,
    depends_on: Option<Vec<Uuid>>,
    dependency_mode: Option<String>,
    node: Option<String>,
    enqueued_by: Option<String>,
    unique_key: Option<String>,
    concurrency_key: Option<String>,
    progress: Option<serde_json::Value>,
}

const JOB: &str = "
    SELECT id, task, queue, priority, state, attempt, max_attempts, args, result, last_error,
           run_at, created_at, started_at, finished_at, lease_expires_at, heartbeat_at, worker,
           posting, depends_on, dependency_mode, node, enqueued_by, unique_key, concurrency_key,
           progress
    FROM pdoflow.jobs WHERE id = $1";

fn job_row(row: &Row) -> Result<Job, tokio_postgres::Error> {
    Ok(Job {
        id: row.try_get(0)?,
        task: row.try_get(1)?,
        queue: row.try_get(2)?,
        priority: row.try_get(3)?,
        state: row.try_get(4)?,
        attempt: row.try_get(5)?,
        max_attempts: row.try_get(6)?,
        args: row.try_get(7)?,
        result: row.try_get(8)?,
        last_error: row.try_get(9)?,
        run_at: row.try_get(10)?,
        created_at: row.try_get(11)?,
        started_at: row.try_get(12)?,
        finished_at: row.try_get(13)?,
        lease_expires_at: row.try_get(14)?,
        heartbeat_at: row.try_get(15)?,
        worker: row.try_get(16)?,
        posting: row.try_get(17)?,
        depends_on: row.try_get(18)?,
        dependency_mode: row.try_get(19)?,
        node: row.try_get(20)?,
        enqueued_by: row.try_get(21)?,
        unique_key: row.try_get(22)?,
        concurrency_key: row.try_get(23)?,
        progress: row.try_get(24)?,
    })
}

/// The job's ancestors (through `depends_on`, by primary key; each job
/// once, however many paths lead to it), at most 1,000.
const ANCESTORS: &str = "
    WITH RECURSIVE up(id) AS (
        SELECT unnest($1::uuid[])
        UNION
        SELECT unnest(j.depends_on)
        FROM up JOIN pdoflow.jobs AS j ON j.id = up.id)
    SELECT j.id, j.task, j.node, j.state, j.depends_on
    FROM pdoflow.jobs AS j
    WHERE j.id IN (SELECT id FROM up LIMIT 1000)";

/// The job's children: within its posting (whose index finds them), or,
/// for a job without one, among the jobs created in the day after it (a
/// range of the primary keys, which are UUIDv7: no scan of all history).
const CHILDREN_IN_POSTING: &str = "
    SELECT id, task, node, state, depends_on FROM pdoflow.jobs
    WHERE posting = $2 AND $1 = ANY (depends_on) ORDER BY id LIMIT 1000";
const CHILDREN: &str = "
    SELECT id, task, node, state, depends_on FROM pdoflow.jobs
    WHERE id > $1 AND id < $2 AND $1 = ANY (depends_on) ORDER BY id LIMIT 1000";

/// `GET /dashboard/jobs/{id}`
pub async fn page(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return super::not_found(&viewer, "Job", &format!("{id:?} is not a job id (a UUID)."));
    };
    let mut session = match begin_read(&state, &viewer).await {
        Ok(session) => session,
        Err(problem) => return read_problem(&viewer, "Job", "read jobs", problem),
    };
    let ctx = Ctx::default();
    let row = match session.row(JOB, &[&id], &ctx).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return super::not_found(
                &viewer,
                "Job",
                &format!("There is no job {id} (or it was removed by retention)."),
            )
        }
        Err(problem) => return read_problem(&viewer, "Job", "read jobs", problem),
    };
    let job = match job_row(&row) {
        Ok(job) => job,
        Err(error) => return problem_page(&viewer, "Job", &error.to_string()),
    };
    let logged = match session
        .rows(attempts::LOGGED, &[&id, &(attempts::SHOWN + 1)], &ctx)
        .await
    {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Job", "read jobs", problem),
    };
    let logged = match logged.iter().map(Attempt::read).collect() {
        Ok(logged) => logged,
        Err(error) => return problem_page(&viewer, "Job", &error.to_string()),
    };
    let (attempts, more_attempts) = attempts::all(logged, own_claim(&job));
    let parents_given = job.depends_on.clone().unwrap_or_default();
    let ancestors = match session.rows(ANCESTORS, &[&parents_given], &ctx).await {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Job", "read jobs", problem),
    };
    let children = match job.posting {
        Some(posting) => {
            session
                .rows(CHILDREN_IN_POSTING, &[&id, &posting], &ctx)
                .await
        }
        None => {
            let day_after = job.created_at.timestamp_millis().saturating_add(86_400_000);
            let until = first_uuid_v7_of(u64::try_from(day_after).unwrap_or(0));
            session.rows(CHILDREN, &[&id, &until], &ctx).await
        }
    };
    let children = match children {
        Ok(rows) => rows,
        Err(problem) => return read_problem(&viewer, "Job", "read jobs", problem),
    };
    // A read-only transaction: its end is of no interest.
    let _ = session.commit().await;
    let mut ancestors: Vec<graph::Node> = ancestors
        .iter()
        .filter_map(|row| graph::Node::read(row).ok())
        .collect();
    ancestors.sort_by_key(|relative| relative.id);
    let children: Vec<graph::Node> = children
        .iter()
        .filter_map(|row| graph::Node::read(row).ok())
        .collect();
    let parents: Vec<&graph::Node> = ancestors
        .iter()
        .filter(|relative| parents_given.contains(&relative.id))
        .collect();
    let title = format!("Job {}", job.task);
    let here = format!("/dashboard/jobs/{id}");
    let graph_nodes = graph_of(&job, &ancestors, &children);
    let body = html! {
        p.crumbs { a href="/dashboard/jobs" { "Jobs" } " / " span.id { (job.id) } }
        (layout::live_region("live-job", &here, html! {
            h1 { (job.task) " " (layout::badge(&job.state)) }
            div.job-head {
                p { "State: " strong data-testid="job-state" { (job.state) } }
                form.actions method="post" action=(here.clone())
                    hx-post=(here.clone()) hx-target="#flash" hx-swap="innerHTML" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button #cancel-job type="submit" name="action" value="cancel" .danger
                        disabled[!matches!(job.state.as_str(), "queued" | "blocked" | "running")] { "Cancel job" }
                    button #retry-job type="submit" name="action" value="retry"
                        disabled[!matches!(job.state.as_str(), "failed" | "cancelled")] { "Retry job" }
                }
            }
            dl.facts {
                dt { "Id" } dd.id { (job.id) }
                dt { "Queue" } dd { a href=(format!("/dashboard/jobs?queue={}", query_value(&job.queue))) { (job.queue) } }
                dt { "Priority" } dd { (job.priority) }
                dt { "Attempt" } dd { (job.attempt) " of " (job.max_attempts) }
                @if let Some(worker) = &job.worker { dt { "Worker" } dd { (worker) } }
                @if let Some(posting) = job.posting {
                    dt { "Posting" } dd { a href=(format!("/dashboard/postings/{posting}")) { (posting) } }
                }
                @if let Some(node) = &job.node { dt { "DAG node" } dd { (node) } }
                @if let Some(mode) = &job.dependency_mode { dt { "Waits for" } dd { (mode) " of its parents" } }
                @if let Some(by) = &job.enqueued_by { dt { "Enqueued by" } dd { (by) } }
                @if let Some(key) = &job.unique_key { dt { "Unique key" } dd { (key) } }
                @if let Some(key) = &job.concurrency_key { dt { "Concurrency key" } dd { (key) } }
            }
            div.panels {
                section { h2 { "Args" } (layout::json_block("job-args", Some(&job.args))) }
                section { h2 { "Result" } (layout::json_block("job-result", job.result.as_ref())) }
                section {
                    h2 { "Progress" }
                    @if let Some((done, total)) = job.progress.as_ref().and_then(progress_fraction) {
                        progress max=(total) value=(done.min(total))
                            aria-label=(format!("{done} of {total}")) { (done) " of " (total) }
                        " " span.progress-text { (done) " of " (total) }
                    }
                    (layout::json_block("job-progress", job.progress.as_ref()))
                }
                section {
                    h2 { "Latest error" }
                    @match &job.last_error {
                        Some(error) => pre.error-text #job-error tabindex="0" { (error) },
                        None => p.muted #job-error { "none" },
                    }
                }
            }
            section {
                h2 { "Attempts" }
                (attempts::table(&attempts, more_attempts))
            }
            section {
                h2 { "Timeline" }
                (timeline(&job, &attempts))
            }
            section.relatives {
                h2 { "Parents" }
                (relatives(&parents, "parents", "No parents."))
                h2 { "Children" }
                (relatives(&children.iter().collect::<Vec<_>>(), "children", "No children."))
            }
        }))
        @if graph_nodes.len() > 1 {
            section {
                h2 { "Graph" }
                p.muted { "Its ancestors and its children." }
                (graph::legend())
                div.graph-frame tabindex="0" { (graph::svg(&graph_nodes, Some(job.id))) }
            }
        }
    };
    html_page(layout::page(Some(&viewer), &title, Section::Jobs, body))
}

/// How far a progress report says the job got, when it says so in one of
/// the usual ways: `{"done": 40, "total": 100}` (or `current`/`total`), or
/// `{"percent": 40}`.
fn progress_fraction(progress: &serde_json::Value) -> Option<(f64, f64)> {
    let number = |key: &str| progress.get(key).and_then(serde_json::Value::as_f64);
    if let Some(percent) = number("percent") {
        return (0.0..=100.0).contains(&percent).then_some((percent, 100.0));
    }
    let done = number("done").or_else(|| number("current"))?;
    let total = number("total")?;
    (total > 0.0 && done >= 0.0).then_some((done, total))
}

fn graph_of(job: &Job, ancestors: &[graph::Node], children: &[graph::Node]) -> Vec<graph::Node> {
    let mut nodes: Vec<graph::Node> = ancestors.iter().chain(children).cloned().collect();
    nodes.push(graph::Node {
        id: job.id,
        label: job.node.clone().unwrap_or_else(|| job.task.clone()),
        state: job.state.clone(),
        parents: job.depends_on.clone().unwrap_or_default(),
    });
    nodes.sort_by_key(|node| node.id);
    nodes.dedup_by_key(|node| node.id);
    nodes
}

fn relatives(list: &[&graph::Node], id: &str, none: &str) -> Markup {
    html! {
        @if list.is_empty() {
            p.muted id=(id) { (none) }
        } @else {
            ul.relatives id=(id) {
                @for relative in list {
                    li {
                        a href=(format!("/dashboard/jobs/{}", relative.id)) { (relative.label) }
                        " " (layout::badge(&relative.state))
                    }
                }
            }
        }
    }
}

/// The claim the job's own row describes: running now, succeeded, or
/// (for history from before pdoflow 0.13.0, which kept no attempts) the
/// latest one; None before the first claim.
fn own_claim(job: &Job) -> Option<Attempt> {
    let started_at = job.started_at?;
    let outcome = match job.state.as_str() {
        "running" | "succeeded" | "failed" | "cancelled" => job.state.clone(),
        _ => "ended".to_owned(),
    };
    Some(Attempt {
        number: job.attempt,
        worker: job.worker.clone(),
        started_at: Some(started_at),
        heartbeat_at: job.heartbeat_at,
        ended_at: job.finished_at,
        error: (job.state == "failed")
            .then(|| job.last_error.clone())
            .flatten(),
        outcome,
        logged: false,
    })
}

/// What happened to the job, oldest first: its enqueue, each attempt, and
/// its end.
fn timeline(job: &Job, attempts: &[Attempt]) -> Markup {
    let mut events: Vec<(DateTime<Utc>, String)> = vec![(
        job.created_at,
        match &job.enqueued_by {
            Some(by) => format!("Enqueued into {} by {by}", job.queue),
            None => format!("Enqueued into {}", job.queue),
        },
    )];
    if job.run_at > job.created_at {
        events.push((job.run_at, "Due".to_owned()));
    }
    events.extend(attempts.iter().flat_map(Attempt::events));
    if let Some(lease) = job.lease_expires_at {
        events.push((lease, "Lease expires (unless renewed)".to_owned()));
    }
    if let Some(finished) = job.finished_at {
        events.push((finished, format!("Ended {}", job.state)));
    }
    events.sort_by_key(|(at, _)| *at);
    html! {
        ol #timeline .timeline {
            @for (at, what) in &events {
                li { (layout::when(Some(*at))) " — " (what) }
            }
        }
    }
}

/// `POST /dashboard/jobs/{id}`: cancel or retry.
pub async fn act(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let back = format!("/dashboard/jobs/{id}");
    let Ok(job) = id.parse::<Uuid>() else {
        return actions::unknown(&form, &back, &headers);
    };
    let params: [&(dyn ToSql + Sync); 1] = [&job];
    let action = match form.action.as_str() {
        "cancel" => Action {
            sql: "SELECT pdoflow.cancel($1)",
            params: &params,
            what: "cancel jobs",
            needs: "pdoflow_admin",
            done: "The job was cancelled.".into(),
            unchanged: "The job had already ended: nothing to cancel.".into(),
            back,
        },
        "retry" => Action {
            sql: "SELECT pdoflow.retry($1)",
            params: &params,
            what: "retry jobs",
            needs: "pdoflow_admin",
            done: "The job is queued again.".into(),
            unchanged: "The job is still active: nothing to retry.".into(),
            back,
        },
        _ => return actions::unknown(&form, &back, &headers),
    };
    actions::run(&state, &viewer, &headers, &form, action).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_that_say_how_far() {
        use serde_json::json;
        assert_eq!(
            progress_fraction(&json!({"done": 4, "total": 10})),
            Some((4.0, 10.0))
        );
        assert_eq!(
            progress_fraction(&json!({"current": 1, "total": 2})),
            Some((1.0, 2.0))
        );
        assert_eq!(
            progress_fraction(&json!({"percent": 55})),
            Some((55.0, 100.0))
        );
        assert_eq!(progress_fraction(&json!({"percent": 155})), None);
        assert_eq!(progress_fraction(&json!({"done": 4, "total": 0})), None);
        assert_eq!(progress_fraction(&json!({"stage": "copying"})), None);
        assert_eq!(progress_fraction(&json!([1, 2])), None);
    }

    #[test]
    fn text_filters_match_literally() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn filters_keep_what_was_asked() {
        let filters = Filters {
            state: "failed".into(),
            queue: " mail ".into(),
            q: "a b".into(),
            ..Filters::default()
        };
        assert_eq!(filters.query(None), "state=failed&queue=mail&q=a+b");
        let id = Uuid::from_u128(1);
        assert!(filters.query(Some(id)).ends_with(&format!("before={id}")));
    }
}
