//! What a worker reports about its handlers through the `metrics` facade:
//! each handler's duration per task (a histogram), its outcomes, and the
//! jobs running now. Without an installed recorder (`pdoflow-run worker
//! --metrics-listen` installs a Prometheus one: `cli/worker_metrics.rs`)
//! every call here is a no-op, so a library user pays nothing for them.

use std::time::Instant;

/// Handler run time in seconds, per task and outcome.
pub const HANDLER_DURATION: &str = "pdoflow_worker_handler_duration_seconds";
/// Handlers that ended, per task and outcome.
pub const JOBS: &str = "pdoflow_worker_jobs_total";
/// Handlers running now, per task.
pub const IN_FLIGHT: &str = "pdoflow_worker_jobs_in_flight";

/// How a handler ended, as the `outcome` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// It returned a result.
    Succeeded,
    /// It returned an error (or the job could not run here: no handler,
    /// refused).
    Failed,
    /// It ran past the job timeout.
    TimedOut,
    /// It panicked.
    Panicked,
    /// The worker aborted it (shutdown, lost claim).
    Aborted,
}

impl HandlerOutcome {
    fn label(self) -> &'static str {
        match self {
            HandlerOutcome::Succeeded => "succeeded",
            HandlerOutcome::Failed => "failed",
            HandlerOutcome::TimedOut => "timed_out",
            HandlerOutcome::Panicked => "panicked",
            HandlerOutcome::Aborted => "aborted",
        }
    }
}

/// A handler in flight: counted in `IN_FLIGHT` from its creation until it
/// is dropped, however the handler ends.
pub struct Running {
    task: String,
    started: Instant,
}

impl Running {
    pub fn start(task: &str) -> Running {
        metrics::gauge!(IN_FLIGHT, "task" => task.to_owned()).increment(1.0);
        Running {
            task: task.to_owned(),
            started: Instant::now(),
        }
    }

    /// Records the handler's end and how long it ran.
    pub fn ended(self, outcome: HandlerOutcome) {
        let labels = [
            ("task", self.task.clone()),
            ("outcome", outcome.label().to_owned()),
        ];
        metrics::histogram!(HANDLER_DURATION, &labels).record(self.started.elapsed().as_secs_f64());
        metrics::counter!(JOBS, &labels).increment(1);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT, "task" => self.task.clone()).decrement(1.0);
    }
}
