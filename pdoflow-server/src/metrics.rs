//! `GET /metrics`: Prometheus text, through the `metrics` crates.
//!
//! Two recorders, neither installed globally (tests run several servers in
//! one process): the server's own, holding its request latencies for its
//! whole life; and one made afresh at every scrape for what the database
//! says (pdoflow.stats, pdoflow.queues, the oldest due job, workers alive),
//! so that a queue that went away leaves no stale series behind. A scrape
//! whose queries fail is a 503 problem, never half a page.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::pool::Session;
use crate::problem::Problem;
use crate::sql_error::{self, Ctx};
use crate::state::AppState;

pub const REQUEST_DURATION: &str = "pdoflow_http_request_duration_seconds";
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The server's own metrics.
pub struct HttpMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        // Only an empty bucket list fails; without buckets the histogram
        // would be rendered as a summary.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_histogram!(
                REQUEST_DURATION,
                metrics::Unit::Seconds,
                "Time to answer HTTP requests, by method, route template and status."
            );
        });
        HttpMetrics { recorder, handle }
    }

    fn record(&self, method: String, route: String, status: String, seconds: f64) {
        metrics::with_local_recorder(&self.recorder, || {
            metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route, "status" => status)
                .record(seconds);
        });
    }
}

impl Default for HttpMetrics {
    fn default() -> HttpMetrics {
        HttpMetrics::new()
    }
}

/// Middleware: records every request's latency under its route template
/// (`/v1/jobs/{id}`, never the raw path; `unmatched` for unknown routes).
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics.record(
        method,
        route,
        response.status().as_u16().to_string(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// GET /metrics.
pub async fn scrape(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let database = database_metrics(&state).await.map_err(|problem| {
        tracing::warn!("metrics scrape failed: {}", problem.detail);
        Problem::unavailable(format!("cannot read the metrics: {}", problem.detail))
    })?;
    let mut body = database;
    body.push_str(&state.metrics.handle.render());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// What the database says, rendered by a recorder of its own.
async fn database_metrics(state: &AppState) -> Result<String, Problem> {
    let mut session = Session::begin_as(&state.pool, state.config.service_role.as_deref()).await?;
    let ctx = Ctx::default();
    let stats = session
        .rows(
            "SELECT coalesce(queue, ''), enqueued, claimed, succeeded, failed, retried, \
                    cancelled, leases_expired FROM pdoflow.stats",
            &[],
            &ctx,
        )
        .await?;
    let queues = session
        .rows(
            "SELECT queue, paused, waiting, delayed, blocked, running, throttled FROM pdoflow.queues",
            &[],
            &ctx,
        )
        .await?;
    // Constants, not parameters: the planner then leaves finished_jobs out
    // of pdoflow.jobs by its CHECK constraint.
    let oldest = session
        .rows(
            "SELECT queue, extract(epoch FROM now() - min(run_at))::float8 FROM pdoflow.jobs \
             WHERE state = 'queued' AND run_at <= now() GROUP BY queue",
            &[],
            &ctx,
        )
        .await?;
    let workers = session
        .rows(
            "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'gone') \
             FROM pdoflow.workers",
            &[],
            &ctx,
        )
        .await?;
    session.commit().await?;

    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let read = |error: tokio_postgres::Error| {
        Problem::internal(&format!("metrics row: {}", sql_error::describe(&error)))
    };
    metrics::with_local_recorder(&recorder, || -> Result<(), Problem> {
        describe();
        const COUNTERS: [&str; 7] = [
            "pdoflow_jobs_enqueued_total",
            "pdoflow_jobs_claimed_total",
            "pdoflow_jobs_succeeded_total",
            "pdoflow_jobs_failed_total",
            "pdoflow_jobs_retried_total",
            "pdoflow_jobs_cancelled_total",
            "pdoflow_leases_expired_total",
        ];
        for row in &stats {
            let queue: String = row.try_get(0).map_err(read)?;
            for (column, name) in COUNTERS.iter().enumerate() {
                let value: i64 = row.try_get(column + 1).map_err(read)?;
                metrics::counter!(*name, "queue" => queue.clone()).absolute(value.max(0) as u64);
            }
        }
        for row in &queues {
            let queue: String = row.try_get(0).map_err(read)?;
            let paused: bool = row.try_get(1).map_err(read)?;
            metrics::gauge!("pdoflow_queue_paused", "queue" => queue.clone()).set(if paused {
                1.0
            } else {
                0.0
            });
            for (column, state) in ["waiting", "delayed", "blocked", "running", "throttled"]
                .iter()
                .enumerate()
            {
                let count: i64 = row.try_get(column + 2).map_err(read)?;
                metrics::gauge!("pdoflow_jobs", "queue" => queue.clone(), "state" => *state)
                    .set(count as f64);
            }
        }
        for row in &oldest {
            let queue: String = row.try_get(0).map_err(read)?;
            let age: f64 = row.try_get(1).map_err(read)?;
            metrics::gauge!("pdoflow_oldest_due_job_age_seconds", "queue" => queue)
                .set(age.max(0.0));
        }
        if let Some(row) = workers.first() {
            let alive: i64 = row.try_get(0).map_err(read)?;
            let gone: i64 = row.try_get(1).map_err(read)?;
            metrics::gauge!("pdoflow_workers_alive").set(alive as f64);
            metrics::gauge!("pdoflow_workers_gone").set(gone as f64);
        }
        Ok(())
    })?;
    Ok(handle.render())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "pdoflow_jobs_enqueued_total",
        "Jobs enqueued per queue (pdoflow.stats)."
    );
    describe_counter!(
        "pdoflow_jobs_claimed_total",
        "Jobs claimed per queue (pdoflow.stats)."
    );
    describe_counter!(
        "pdoflow_jobs_succeeded_total",
        "Jobs succeeded per queue (pdoflow.stats)."
    );
    describe_counter!(
        "pdoflow_jobs_failed_total",
        "Jobs failed for good per queue (pdoflow.stats)."
    );
    describe_counter!(
        "pdoflow_jobs_retried_total",
        "Failed attempts queued again per queue (pdoflow.stats)."
    );
    describe_counter!(
        "pdoflow_jobs_cancelled_total",
        "Jobs cancelled per queue (pdoflow.stats)."
    );
    describe_counter!(
        "pdoflow_leases_expired_total",
        "Claims taken back after their lease expired, per queue (pdoflow.stats)."
    );
    describe_gauge!("pdoflow_jobs", "Active jobs per queue and state (pdoflow.queues): waiting (due), delayed, blocked, running, throttled.");
    describe_gauge!("pdoflow_queue_paused", "1 when the queue is paused.");
    describe_gauge!(
        "pdoflow_oldest_due_job_age_seconds",
        "How long the oldest due queued job of each queue has been due."
    );
    describe_gauge!(
        "pdoflow_workers_alive",
        "Workers active in pdoflow.workers."
    );
    describe_gauge!(
        "pdoflow_workers_gone",
        "Workers marked gone in pdoflow.workers."
    );
}
