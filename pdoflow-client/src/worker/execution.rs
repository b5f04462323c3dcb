//! Running one claimed job: its handler in a task of its own, bounded by the
//! job timeout, with a panic turned into the job's error.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::metrics::{HandlerOutcome, Running};
use super::progress::{ProgressBoard, ProgressSlot};
use crate::client::{ClaimedJob, Outcome};
use crate::task::{JobContext, TaskRegistry};

/// A job's end, as the worker loop receives it.
#[derive(Debug)]
pub struct Done {
    pub id: Uuid,
    pub attempt: i32,
    pub outcome: Outcome,
}

/// A job just started.
pub struct Started {
    /// Aborts its handler.
    pub abort: AbortHandle,
    /// Where its handler's progress reports wait to be sent.
    pub progress: Arc<ProgressSlot>,
}

/// Starts `job` and returns the handle that aborts it, and its progress
/// slot (on `board`). Its outcome arrives on `done` when it ends, unless it
/// is aborted first. With `refused`, the job does not run: that is its
/// error.
pub fn start(
    job: ClaimedJob,
    registry: &TaskRegistry,
    timeout: Option<Duration>,
    done: UnboundedSender<Done>,
    refused: Option<String>,
    board: &Arc<ProgressBoard>,
) -> Started {
    let progress = board.slot(job.id);
    let context = JobContext {
        id: job.id,
        task: job.task.clone(),
        queue: job.queue.clone(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        last_error: job.last_error.clone(),
        posting: job.posting,
        parent_results: parent_results(job.id, job.parent_results),
        progress_slot: Some(progress.clone()),
    };
    let handler = registry.start(job.args, context);
    let known: Vec<String> = registry.names().map(str::to_owned).collect();
    let running = Running::start(&job.task);
    let task = job.task;
    let handler_task = tokio::spawn(async move {
        if let Some(reason) = refused {
            return Err((reason, HandlerOutcome::Failed));
        }
        let Some(handler) = handler else {
            let hint = if task == crate::builtin::SHELL {
                "; shell jobs run only on workers started with --enable-shell"
            } else {
                ""
            };
            return Err((
                format!(
                    "no handler for task {task:?} in this worker (it runs: {}){hint}",
                    known.join(", ")
                ),
                HandlerOutcome::Failed,
            ));
        };
        let outcome = match timeout {
            None => handler.await,
            Some(limit) => match tokio::time::timeout(limit, handler).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err((
                        format!(
                            "timed out after {} (the worker's job timeout)",
                            humantime::format_duration(limit)
                        ),
                        HandlerOutcome::TimedOut,
                    ))
                }
            },
        };
        outcome.map_err(|message| (message, HandlerOutcome::Failed))
    });
    let abort = handler_task.abort_handle();
    let (id, attempt) = (job.id, job.attempt);
    tokio::spawn(async move {
        let outcome = match handler_task.await {
            Ok(Ok(result)) => {
                running.ended(HandlerOutcome::Succeeded);
                Ok(Some(without_nul_value(result)))
            }
            Ok(Err((message, how))) => {
                running.ended(how);
                Err(without_nul(&message))
            }
            // Aborted by the worker (shutdown, lost claim): nothing to report.
            Err(error) if error.is_cancelled() => {
                running.ended(HandlerOutcome::Aborted);
                return;
            }
            Err(error) => {
                running.ended(HandlerOutcome::Panicked);
                Err(without_nul(&format!(
                    "the handler panicked: {}",
                    panic_message(error.into_panic())
                )))
            }
        };
        let _ = done.send(Done {
            id,
            attempt,
            outcome,
        });
    });
    Started { abort, progress }
}

/// The claim's `parent_results` as the handler sees them: an object, empty
/// when the job has no parents.
fn parent_results(id: Uuid, results: Option<Value>) -> Map<String, Value> {
    match results {
        Some(Value::Object(results)) => results,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            // Not what the SQL API returns; run the job without them rather
            // than fail it for the server's sake.
            tracing::warn!(job = %id, results = %other, "parent results are not a JSON object; ignored");
            Map::new()
        }
    }
}

/// PostgreSQL text and jsonb cannot hold NUL characters: show them as `\0`
/// rather than have the database refuse the job's outcome.
fn without_nul(text: &str) -> String {
    text.replace('\0', "\\0")
}

pub(super) fn without_nul_value(value: Value) -> Value {
    match value {
        Value::String(text) if text.contains('\0') => Value::String(without_nul(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul_value).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (without_nul(&key), without_nul_value(value)))
                .collect(),
        ),
        other => other,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}
