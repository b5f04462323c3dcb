//! The admin commands: enqueue, status, jobs, job show|cancel|retry,
//! priority-stats.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::Value;
use uuid::Uuid;

use super::{connect, output};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::job::{DependencyMode, Job, JobFilter, NewJob};

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The task to run.
    #[arg(long)]
    pub task: String,
    /// Arguments, as a JSON value.
    #[arg(long, default_value = "{}", value_parser = parse_json)]
    pub args: Value,
    #[arg(long)]
    pub queue: Option<String>,
    /// Higher runs first.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Run no sooner than this from now (e.g. 30s, 5m, 2h).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "run_at")]
    pub delay: Option<Duration>,
    /// Run no sooner than this time (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long)]
    pub run_at: Option<DateTime<Utc>>,
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// Into this posting (its queue and priority apply when not given here).
    #[arg(long)]
    pub posting: Option<Uuid>,
    /// Run after this job (repeat, or comma-separate, for several parents).
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<Uuid>,
    /// Whether all parents or any one must succeed first.
    #[arg(long, value_enum, requires = "depends_on")]
    pub dependency_mode: Option<DependencyMode>,
    /// Make the job unique by this key within its task: while a job of the
    /// task holding the key is blocked, queued or running (or succeeded
    /// within --unique-for), print that job's id instead of adding one.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// With --unique-key: how long a job that succeeded keeps its key (e.g.
    /// 10m, 1h).
    #[arg(long, value_parser = humantime::parse_duration, requires = "unique_key")]
    pub unique_for: Option<Duration>,
    /// The job's concurrency key: a queue's per-key limit (`queues
    /// key-limit`) caps how many jobs with the same key run at once.
    #[arg(long)]
    pub concurrency_key: Option<String>,
    /// Print the new job as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn parse_json(text: &str) -> std::result::Result<Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// queued, paused, blocked, running, succeeded, failed or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub task: Option<String>,
    /// Only the jobs of this posting.
    #[arg(long)]
    pub posting: Option<Uuid>,
    /// Jobs per page.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobAction {
    /// Everything about one job.
    Show {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Its attempts that ended without success: failed, lease expired,
    /// released, cancelled while running.
    Attempts {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running job.
    Cancel { id: Uuid },
    /// Queue a failed or cancelled job again.
    Retry { id: Uuid },
}

pub async fn enqueue(settings: &ConnectionSettings, args: EnqueueArgs) -> Result<()> {
    let mut job = NewJob::new(args.task, &args.args)?;
    if let Some(queue) = args.queue {
        job = job.queue(queue);
    }
    if let Some(priority) = args.priority {
        job = job.priority(priority);
    }
    if let Some(delay) = args.delay {
        job = job.delay(delay);
    }
    if let Some(run_at) = args.run_at {
        job = job.run_at(run_at);
    }
    if let Some(max_attempts) = args.max_attempts {
        job = job.max_attempts(max_attempts);
    }
    if let Some(posting) = args.posting {
        job = job.posting(posting);
    }
    job = job.depends_on(args.depends_on);
    if let Some(mode) = args.dependency_mode {
        job = job.dependency_mode(mode);
    }
    if let Some(key) = args.unique_key {
        job = job.unique_key(key);
    }
    if let Some(keep) = args.unique_for {
        job = job.unique_for(keep);
    }
    if let Some(key) = args.concurrency_key {
        job = job.concurrency_key(key);
    }
    let client = connect(settings).await?;
    let id = client.enqueue(&job).await?;
    if args.json {
        output::json(&serde_json::json!({ "id": id }))
    } else {
        println!("{id}");
        Ok(())
    }
}

pub async fn status(settings: &ConnectionSettings, args: OutputArgs) -> Result<()> {
    let counts = connect(settings).await?.queue_counts().await?;
    if args.json {
        return output::json(&counts);
    }
    output::table(
        &["queue", "state", "jobs"],
        counts
            .into_iter()
            .map(|count| vec![count.queue, count.state, count.jobs.to_string()])
            .collect(),
    );
    Ok(())
}

pub async fn jobs(settings: &ConnectionSettings, args: JobsArgs) -> Result<()> {
    if args.page < 1 {
        return Err(Error::Invalid(format!(
            "--page must be at least 1, got {}",
            args.page
        )));
    }
    let filter = JobFilter {
        state: args.state,
        queue: args.queue,
        task: args.task,
        posting: args.posting,
        limit: Some(args.limit),
        offset: Some((args.page - 1).saturating_mul(args.limit)),
    };
    let jobs = connect(settings).await?.jobs(&filter).await?;
    if args.json {
        return output::json(&jobs);
    }
    output::table(
        &[
            "id",
            "task",
            "queue",
            "state",
            "attempt",
            "priority",
            "created",
            "last error",
        ],
        jobs.into_iter()
            .map(|job| {
                vec![
                    job.id.to_string(),
                    job.task,
                    job.queue,
                    job.state,
                    format!("{}/{}", job.attempt, job.max_attempts),
                    job.priority.to_string(),
                    job.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    job.last_error
                        .map(|error| first_line(&error))
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(())
}

pub async fn job(settings: &ConnectionSettings, action: JobAction) -> Result<()> {
    let client = connect(settings).await?;
    match action {
        JobAction::Show { id, json } => {
            let job = client.job(id).await?.ok_or(Error::NoSuchJob(id))?;
            if json {
                output::json(&job)
            } else {
                show(&job);
                Ok(())
            }
        }
        JobAction::Attempts { id, json } => {
            let attempts = client.job_attempts(id).await?;
            if json {
                return output::json(&attempts);
            }
            let time = |at: Option<DateTime<Utc>>| at.map(|at| at.to_rfc3339()).unwrap_or_default();
            output::table(
                &["attempt", "outcome", "worker", "started", "ended", "error"],
                attempts
                    .into_iter()
                    .map(|attempt| {
                        vec![
                            attempt.attempt.to_string(),
                            attempt.outcome,
                            attempt.worker.unwrap_or_default(),
                            time(attempt.started_at),
                            attempt.ended_at.to_rfc3339(),
                            attempt.error.as_deref().map(first_line).unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        JobAction::Cancel { id } => {
            let cancelled = client.cancel(id).await?;
            println!(
                "{}",
                if cancelled {
                    "cancelled"
                } else {
                    "not cancelled: the job had already ended"
                }
            );
            Ok(())
        }
        JobAction::Retry { id } => {
            let retried = client.retry(id).await?;
            println!(
                "{}",
                if retried {
                    "queued again"
                } else {
                    "not retried: the job is queued or running"
                }
            );
            Ok(())
        }
    }
}

pub async fn priority_stats(settings: &ConnectionSettings, args: OutputArgs) -> Result<()> {
    let counts = connect(settings).await?.priority_counts().await?;
    if args.json {
        return output::json(&counts);
    }
    output::table(
        &[
            "queue", "priority", "waiting", "due", "paused", "blocked", "running",
        ],
        counts
            .into_iter()
            .map(|count| {
                vec![
                    count.queue,
                    count.priority.to_string(),
                    count.waiting.to_string(),
                    count.due.to_string(),
                    count.paused.to_string(),
                    count.blocked.to_string(),
                    count.running.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}

fn show(job: &Job) {
    let time = |at: Option<DateTime<Utc>>| at.map(|at| at.to_rfc3339()).unwrap_or_default();
    let fields = [
        ("id", job.id.to_string()),
        ("task", job.task.clone()),
        ("queue", job.queue.clone()),
        ("state", job.state.clone()),
        (
            "attempt",
            format!("{} of {}", job.attempt, job.max_attempts),
        ),
        ("priority", job.priority.to_string()),
        ("args", job.args.to_string()),
        (
            "result",
            job.result
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default(),
        ),
        ("last error", job.last_error.clone().unwrap_or_default()),
        ("worker", job.worker.clone().unwrap_or_default()),
        ("enqueued by", job.enqueued_by.clone().unwrap_or_default()),
        (
            "posting",
            job.posting.map(|id| id.to_string()).unwrap_or_default(),
        ),
        ("node", job.node.clone().unwrap_or_default()),
        (
            "depends on",
            job.depends_on
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("mode", job.dependency_mode.clone().unwrap_or_default()),
        ("unique key", job.unique_key.clone().unwrap_or_default()),
        (
            "concurrency key",
            job.concurrency_key.clone().unwrap_or_default(),
        ),
        (
            "progress",
            job.progress
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default(),
        ),
        ("run at", job.run_at.to_rfc3339()),
        ("created", job.created_at.to_rfc3339()),
        ("started", time(job.started_at)),
        ("finished", time(job.finished_at)),
        ("lease expires", time(job.lease_expires_at)),
    ];
    output::fields(&fields);
}

pub(super) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(59).collect::<String>())
    } else {
        line.to_owned()
    }
}
