//! `wait`: until the queues have drained, or, with `--job`, until one job
//! has ended, with an exit code that says how it ended.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use uuid::Uuid;

use super::progress::{Progress, POLL_INTERVAL};
use super::{connect, output};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::results::JobOutcome;

/// `wait --job`'s exit code when the job was still not over at `--timeout`.
pub const EXIT_STILL_RUNNING: u8 = 3;
/// `wait --job`'s exit code when the job ended failed or cancelled.
pub const EXIT_JOB_FAILED: u8 = 4;

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Queues to wait for, comma-separated (default: every queue).
    #[arg(long, value_delimiter = ',', conflicts_with = "job")]
    pub queues: Option<Vec<String>>,
    /// Wait for this job to end instead, and print how it ended. Exit 0 if
    /// it succeeded, 4 if it failed or was cancelled, 3 if it had not ended
    /// by --timeout.
    #[arg(long)]
    pub job: Option<Uuid>,
    /// Give up after this long (exit 1; with --job, exit 3).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Show a progress bar while waiting (on a terminal).
    #[arg(long, conflicts_with = "job")]
    pub progress: bool,
    /// With --job: print the job's outcome as JSON.
    #[arg(long, requires = "job")]
    pub json: bool,
}

pub async fn wait(settings: &ConnectionSettings, args: WaitArgs) -> Result<ExitCode> {
    match args.job {
        Some(id) => wait_for_job(settings, id, args.timeout, args.json).await,
        None => {
            wait_for_queues(settings, args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `wait --job ID`: waits in the database (`Client::await_result`, in
/// server-side waits of at most 30 s), prints the job's state, result,
/// error and progress, and exits with the code its end calls for.
async fn wait_for_job(
    settings: &ConnectionSettings,
    id: Uuid,
    timeout: Option<Duration>,
    json: bool,
) -> Result<ExitCode> {
    let client = connect(settings).await?;
    let outcome = client
        .await_result(id, timeout.unwrap_or(Duration::MAX))
        .await?;
    if json {
        output::json(&outcome)?;
    } else {
        show(&outcome);
    }
    if outcome.succeeded() {
        return Ok(ExitCode::SUCCESS);
    }
    let state = &outcome.state;
    if outcome.is_finished() {
        match &outcome.last_error {
            Some(error) => eprintln!(
                "pdoflow-run: job {id} {state}: {}",
                super::admin::first_line(error)
            ),
            None => eprintln!("pdoflow-run: job {id} {state}"),
        }
        return Ok(ExitCode::from(EXIT_JOB_FAILED));
    }
    let waited = timeout.map_or_else(String::new, |limit| {
        format!(" after {}", humantime::format_duration(limit))
    });
    eprintln!("pdoflow-run: job {id} still {state}{waited}");
    Ok(ExitCode::from(EXIT_STILL_RUNNING))
}

fn show(outcome: &JobOutcome) {
    let optional = |value: Option<&Value>| value.map(Value::to_string).unwrap_or_default();
    output::fields(&[
        ("id", outcome.id.to_string()),
        ("state", outcome.state.clone()),
        ("result", optional(outcome.result.as_ref())),
        ("last error", outcome.last_error.clone().unwrap_or_default()),
        (
            "finished",
            outcome
                .finished_at
                .map(|at| at.to_rfc3339())
                .unwrap_or_default(),
        ),
        ("progress", optional(outcome.progress.as_ref())),
    ]);
}

/// `wait` without `--job`: returns once the queues hold no queued, running
/// or blocked job.
async fn wait_for_queues(settings: &ConnectionSettings, args: WaitArgs) -> Result<()> {
    let client = connect(settings).await?;
    let started = std::time::Instant::now();
    let remaining = || async {
        let row = client
            .postgres()
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs
                 WHERE state IN ('queued', 'running', 'blocked') AND ($1::text[] IS NULL OR queue = ANY ($1))",
                &[&args.queues],
            )
            .await?;
        Ok::<i64, Error>(row.try_get(0)?)
    };
    let first = remaining().await?;
    let progress = Progress::new(args.progress, 0, first as u64);
    let mut total = first;
    let mut left = first;
    while left > 0 {
        if let Some(limit) = args.timeout {
            if started.elapsed() >= limit {
                progress.abandon();
                return Err(Error::Invalid(format!(
                    "{left} jobs still queued or running after {}",
                    humantime::format_duration(limit)
                )));
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        left = remaining().await?;
        // Jobs enqueued meanwhile grow the total rather than move the bar back.
        total = total.max(left);
        progress.update((total - left) as u64, total as u64);
    }
    progress.finish("(queues empty)");
    Ok(())
}
