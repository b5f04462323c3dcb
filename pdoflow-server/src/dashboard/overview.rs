//! The overview: jobs by state and queue, the oldest waiting job of each
//! queue, workers alive, and the last hour's throughput as a chart. The
//! live feed (`live`) reads it on its one connection and pushes it to every
//! browser; the page itself only shows the latest reading.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use tokio_postgres::Client;

use super::layout::{self, Section};
use super::read_problem;
use super::session::Viewer;
use super::throughput::{Series, Totals};
use crate::pool::Session;
use crate::problem::{Code, Problem};
use crate::sql_error::Ctx;
use crate::state::AppState;

/// One queue's row.
pub struct QueueRow {
    pub queue: String,
    pub paused: bool,
    pub waiting: i64,
    pub delayed: i64,
    pub blocked: i64,
    pub running: i64,
    pub throttled: i64,
    /// Seconds the oldest due job has waited.
    pub oldest_wait: Option<f64>,
    pub succeeded: i64,
    pub failed: i64,
}

/// What the overview shows, read at `taken_at`.
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    pub queues: Vec<QueueRow>,
    pub totals: Totals,
    /// Workers active and registered; None when the service role may not
    /// read `pdoflow.workers` (it needs `pdoflow_admin`).
    pub workers: Option<(i64, i64)>,
    /// Since when the counters count (the earliest `stats_reset`).
    pub counting_since: Option<DateTime<Utc>>,
}

/// Queues with active jobs, controls or counters, with the age of their
/// oldest due job. Active states only: the check constraint of
/// `finished_jobs` keeps its table out of the `state = 'queued'` scan.
const QUEUES: &str = "
    SELECT coalesce(q.queue, s.queue, '(other queues)') AS queue,
           coalesce(q.paused, false),
           coalesce(q.waiting, 0)::int8, coalesce(q.delayed, 0)::int8,
           coalesce(q.blocked, 0)::int8, coalesce(q.running, 0)::int8,
           coalesce(q.throttled, 0)::int8,
           extract(epoch FROM now() - o.oldest)::float8,
           coalesce(s.succeeded, 0)::int8, coalesce(s.failed, 0)::int8
    FROM pdoflow.queues AS q
    FULL JOIN pdoflow.stats AS s ON s.queue = q.queue
    LEFT JOIN (SELECT queue, min(run_at) AS oldest
               FROM pdoflow.jobs
               WHERE state = 'queued' AND run_at <= now()
               GROUP BY queue) AS o ON o.queue = coalesce(q.queue, s.queue)
    ORDER BY 1";

/// The counters, summed over every queue.
pub const TOTALS: &str = "
    SELECT coalesce(sum(enqueued), 0)::int8, coalesce(sum(claimed), 0)::int8,
           coalesce(sum(succeeded), 0)::int8, coalesce(sum(failed), 0)::int8,
           coalesce(sum(retried), 0)::int8, coalesce(sum(cancelled), 0)::int8,
           coalesce(sum(leases_expired), 0)::int8, min(stats_reset)
    FROM pdoflow.stats";

const WORKERS: &str = "
    SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM pdoflow.workers";

/// The counters, and since when they count.
pub async fn read_totals(
    client: &Client,
) -> Result<(Totals, Option<DateTime<Utc>>), tokio_postgres::Error> {
    let row = client.query_one(TOTALS, &[]).await?;
    Ok((
        Totals {
            enqueued: row.try_get(0)?,
            claimed: row.try_get(1)?,
            succeeded: row.try_get(2)?,
            failed: row.try_get(3)?,
            retried: row.try_get(4)?,
            cancelled: row.try_get(5)?,
            leases_expired: row.try_get(6)?,
        },
        row.try_get(7)?,
    ))
}

/// Reads a snapshot on the live feed's connection (each statement on its
/// own: the workers registry may be out of the service role's reach),
/// with the counters the feed has just read (`read_totals`).
pub async fn read(
    client: &Client,
    (totals, counting_since): (Totals, Option<DateTime<Utc>>),
) -> Result<Snapshot, tokio_postgres::Error> {
    let mut queues = Vec::new();
    for row in client.query(QUEUES, &[]).await? {
        queues.push(QueueRow {
            queue: row.try_get(0)?,
            paused: row.try_get(1)?,
            waiting: row.try_get(2)?,
            delayed: row.try_get(3)?,
            blocked: row.try_get(4)?,
            running: row.try_get(5)?,
            throttled: row.try_get(6)?,
            oldest_wait: row.try_get(7)?,
            succeeded: row.try_get(8)?,
            failed: row.try_get(9)?,
        });
    }
    let workers = match client.query_one(WORKERS, &[]).await {
        Ok(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        Err(error)
            if error.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            None
        }
        Err(error) => return Err(error),
    };
    Ok(Snapshot {
        taken_at: Utc::now(),
        queues,
        totals,
        workers,
        counting_since,
    })
}

/// The part of the overview the live feed replaces.
pub fn render(snapshot: &Snapshot, series: &Series) -> Markup {
    let sum = |pick: fn(&QueueRow) -> i64| snapshot.queues.iter().map(pick).sum::<i64>();
    let (enqueued, succeeded, failed) = series.sums();
    let since = snapshot
        .counting_since
        .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "the server started".to_owned());
    let cards: [(&str, &str, i64, &str); 5] = [
        (
            "waiting",
            "Waiting",
            sum(|q| q.waiting),
            "due, not claimed yet",
        ),
        (
            "running",
            "Running",
            sum(|q| q.running),
            "claimed, lease held",
        ),
        ("delayed", "Delayed", sum(|q| q.delayed), "due later"),
        (
            "blocked",
            "Blocked",
            sum(|q| q.blocked),
            "waiting for parents",
        ),
        (
            "throttled",
            "Throttled",
            sum(|q| q.throttled),
            "held back by pauses and limits",
        ),
    ];
    let ended: [(&str, &str, i64); 4] = [
        ("succeeded", "Succeeded", snapshot.totals.succeeded),
        ("failed", "Failed", snapshot.totals.failed),
        ("retried", "Retried", snapshot.totals.retried),
        ("cancelled", "Cancelled", snapshot.totals.cancelled),
    ];
    html! {
        section aria-labelledby="now-heading" {
            h2 #now-heading { "Now" }
            div.cards {
                @for (key, label, value, hint) in cards {
                    a.card href=(format!("/dashboard/jobs?state={}", card_state(key))) data-testid=(format!("count-{key}")) {
                        span.value { (value) }
                        span.label { (label) }
                        span.hint { (hint) }
                    }
                }
            }
            h2 { "Ended since " (since) }
            div.cards {
                @for (key, label, value) in ended {
                    @if key == "retried" {
                        // Retried jobs are queued again (or ended since).
                        div.card data-testid=(format!("count-{key}")) {
                            span.value { (value) }
                            span.label { (label) }
                        }
                    } @else {
                        a.card href=(format!("/dashboard/jobs?state={key}")) data-testid=(format!("count-{key}")) {
                            span.value { (value) }
                            span.label { (label) }
                        }
                    }
                }
            }
            p.chart-summary #throughput-summary {
                "Last hour: " (enqueued) " enqueued, " (succeeded) " succeeded, " (failed) " failed."
            }
            h2 { "Queues" }
            @if snapshot.queues.is_empty() {
                p.muted { "No queue has jobs, controls or counts yet." }
            } @else {
                div.table-wrap {
                    table #queues-overview {
                        caption.visually-hidden { "Jobs per queue" }
                        thead { tr {
                            th scope="col" { "Queue" }
                            th scope="col" .num { "Waiting" }
                            th scope="col" .num { "Running" }
                            th scope="col" .num .wide { "Delayed" }
                            th scope="col" .num .wide { "Blocked" }
                            th scope="col" .num .wide { "Throttled" }
                            th scope="col" { "Oldest waiting" }
                            th scope="col" .num .wide { "Succeeded" }
                            th scope="col" .num .wide { "Failed" }
                        } }
                        tbody {
                            @for queue in &snapshot.queues {
                                tr data-queue=(queue.queue) {
                                    th scope="row" {
                                        a href=(format!("/dashboard/jobs?queue={}", super::query_value(&queue.queue))) { (queue.queue) }
                                        @if queue.paused { " " span.badge.state-paused { "paused" } }
                                    }
                                    td.num { (queue.waiting) }
                                    td.num { (queue.running) }
                                    td.num.wide { (queue.delayed) }
                                    td.num.wide { (queue.blocked) }
                                    td.num.wide { (queue.throttled) }
                                    td { @match queue.oldest_wait {
                                        Some(seconds) => (layout::age(seconds)),
                                        None => span.muted { "—" },
                                    } }
                                    td.num.wide { (queue.succeeded) }
                                    td.num.wide { (queue.failed) }
                                }
                            }
                        }
                    }
                }
            }
            p.muted.updated { "Updated " (layout::when(Some(snapshot.taken_at))) }
        }
    }
}

/// The job list's state filter a card links to.
fn card_state(key: &str) -> &str {
    match key {
        "waiting" | "delayed" | "throttled" => "queued",
        other => other,
    }
}

/// What a viewer may see of the overview: the figures (`pdoflow.queues`
/// and `pdoflow.stats`, which every pdoflow role reads) and the workers
/// registry (admins). Asked as the viewer's role, which also proves the
/// role usable.
pub struct Sight {
    pub figures: bool,
    pub workers: bool,
}

pub async fn sight(state: &AppState, viewer: &Viewer) -> Result<Sight, Problem> {
    let rows = Session::run(
        &state.pool,
        &viewer.role,
        "SELECT pg_catalog.has_table_privilege('pdoflow.queues', 'SELECT')
                AND pg_catalog.has_table_privilege('pdoflow.stats', 'SELECT'),
                pg_catalog.has_table_privilege('pdoflow.workers', 'SELECT')",
        &[],
        &Ctx::default(),
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| Problem::internal("reading privileges: no row"))?;
    let read = |index: usize| {
        row.try_get::<_, bool>(index)
            .map_err(|error| Problem::internal(&format!("reading privileges: {error}")))
    };
    Ok(Sight {
        figures: read(0)?,
        workers: read(1)?,
    })
}

/// The workers card (its own event: only admins get it).
pub fn render_workers(workers: Option<(i64, i64)>) -> Markup {
    html! {
        div.card data-testid="count-workers" {
            span.value {
                @match workers {
                    Some((active, _)) => (active),
                    None => "—",
                }
            }
            span.label { "Workers alive" }
            span.hint {
                @match workers {
                    Some((_, all)) => (format!("{all} registered")),
                    None => "the server's role may not read pdoflow.workers",
                }
            }
        }
    }
}

/// `GET /dashboard/`
pub async fn page(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let sight = match sight(&state, &viewer).await {
        Ok(sight) => sight,
        Err(problem) => return read_problem(&viewer, "Overview", "read the overview", problem),
    };
    if !sight.figures {
        return read_problem(
            &viewer,
            "Overview",
            "read the overview",
            Problem::new(
                Code::Forbidden,
                "it may not read pdoflow.queues and pdoflow.stats (pdoflow_producer may)",
            ),
        );
    }
    let live = &state.dashboard.live;
    let (overview, workers, series) = live.latest_overview();
    let body = html! {
        h1 { "Overview" }
        div #overview sse-swap="overview" hx-swap="innerHTML" {
            @match overview {
                Some(markup) => (markup),
                None => p.muted { "Reading the queues…" },
            }
        }
        @if sight.workers {
            h2 { "Workers" }
            div.cards {
                div #workers-card sse-swap="workers" hx-swap="innerHTML" {
                    @if let Some(workers) = workers { (workers) }
                }
            }
            p { a href="/dashboard/workers" { "Every worker and what it runs" } }
        }
        section aria-labelledby="throughput-heading" {
            h2 #throughput-heading { "Throughput, last hour (jobs per minute)" }
            div #throughput .chart
                role="img"
                aria-label="Jobs enqueued, succeeded and failed per minute over the last hour; the numbers are summed up above"
                sse-swap="throughput"
                hx-swap="none"
                data-series=(series) {}
        }
    };
    Html(layout::page(Some(&viewer), "Overview", Section::Overview, body).into_string())
        .into_response()
}
