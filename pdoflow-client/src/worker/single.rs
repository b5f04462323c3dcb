//! Running one particular job in the foreground (`pdoflow-run execute-job`):
//! the normal claim, heartbeat and finish path, for debugging a job.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::execution;
use super::progress::{self, Pace, ProgressBoard, Sent, DEFAULT_PROGRESS_INTERVAL};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::task::TaskRegistry;

/// How an executed job ended.
#[derive(Clone, Debug)]
pub struct ExecutedJob {
    pub id: Uuid,
    pub attempt: i32,
    /// The job's state after the finish: `succeeded`, `failed`, or `queued`
    /// when a failure will be retried.
    pub state: String,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// Sends one progress report; one the database refuses is logged, not fatal.
async fn report(client: &Client, id: Uuid, attempt: i32, value: &Value) -> Result<()> {
    match progress::send(client, id, attempt, value).await? {
        Sent::Stored => {}
        Sent::ClaimLost(error) | Sent::Refused(error) => {
            tracing::warn!(job = %id, %error, "a progress report was not stored");
        }
    }
    Ok(())
}

/// Completes at `at`, never without it.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Claims the queued job `id` (due or not), runs its handler here, keeps its
/// lease alive, sends its progress reports (at most one per
/// `DEFAULT_PROGRESS_INTERVAL`) and finishes it. Fails when the job is not
/// queued.
pub async fn execute_job(
    client: &Client,
    registry: &TaskRegistry,
    id: Uuid,
    worker: &str,
    lease: Duration,
    timeout: Option<Duration>,
) -> Result<ExecutedJob> {
    let Some(job) = client.claim_job(id, worker, lease).await? else {
        return Err(match client.job(id).await? {
            None => Error::NoSuchJob(id),
            Some(job) => Error::Invalid(format!(
                "job {id} is {}; only a queued job can be executed{}",
                job.state,
                if matches!(job.state.as_str(), "failed" | "cancelled") {
                    " (retry it first: pdoflow-run job retry ID)"
                } else {
                    ""
                }
            )),
        });
    };
    let attempt = job.attempt;
    let refused = super::granted::refusals(client, registry, std::slice::from_ref(&job))
        .await
        .remove(&id);
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let board = ProgressBoard::new();
    let started = execution::start(job, registry, timeout, sender, refused, &board);
    let _abort = started.abort;
    let mut renew_at = Instant::now() + lease / 3;
    let mut pace = Pace::default();
    let done = loop {
        let progress_due = pace.due;
        tokio::select! {
            done = receiver.recv() => break done,
            () = tokio::time::sleep_until(renew_at) => {
                client.heartbeat(id, attempt, lease).await?;
                renew_at = Instant::now() + lease / 3;
            }
            () = board.announced() => {
                board.take_announced();
                pace.announced(Instant::now(), DEFAULT_PROGRESS_INTERVAL);
            }
            () = sleep_until_some(progress_due) => {
                pace.sent(Instant::now());
                if let Some(value) = started.progress.take() {
                    report(client, id, attempt, &value).await?;
                    renew_at = Instant::now() + lease / 3;
                }
            }
        }
    };
    // The report still waiting goes before the finish, to stay the last.
    if let Some(last) = started.progress.close() {
        report(client, id, attempt, &last).await?;
    }
    let done =
        done.ok_or_else(|| Error::Invalid(format!("job {id} stopped without an outcome")))?;
    let finished = client
        .finish_many(&[(id, attempt, done.outcome.clone())])
        .await?;
    let finished = finished
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid("finish returned nothing".into()))?;
    if let Some(reason) = finished.rejected {
        return Err(Error::Invalid(format!("the finish was rejected: {reason}")));
    }
    let (result, error) = match done.outcome {
        Ok(result) => (result, None),
        Err(error) => (None, Some(error)),
    };
    Ok(ExecutedJob {
        id,
        attempt,
        state: finished.state.unwrap_or_default(),
        result,
        error,
    })
}
