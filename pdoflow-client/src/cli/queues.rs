//! `queues list|pause|resume|limit|key-limit`: queue controls.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::admin::OutputArgs;
use super::{connect, output};
use crate::config::ConnectionSettings;
use crate::error::Result;
use crate::queues::{QueueInfo, QueueLimits, Rate};

#[derive(Debug, Subcommand)]
pub enum QueuesAction {
    /// Every queue with jobs or controls: paused or not, its limits, and its
    /// waiting, delayed, blocked, running and throttled jobs.
    List(OutputArgs),
    /// Stop claims of a queue's jobs until it is resumed (running jobs
    /// finish; enqueue still works). Needs pdoflow_admin.
    Pause { queue: String },
    /// Let a paused queue's jobs be claimed again. Needs pdoflow_admin.
    Resume { queue: String },
    /// Set both limits of a queue at once; a limit not given is removed, so
    /// `limit QUEUE` alone removes both. Keeps the pause and the per-key
    /// limit. Needs pdoflow_admin.
    Limit(LimitArgs),
    /// At most N running jobs per concurrency key in a queue (jobs without a
    /// key are not limited), or --clear to remove the limit. Keeps the
    /// pause and the other limits. Needs pdoflow_admin.
    KeyLimit(KeyLimitArgs),
}

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The queue.
    pub queue: String,
    /// At most this many of the queue's jobs running at once (default: no
    /// limit; removes the one set).
    #[arg(long, allow_negative_numbers = true)]
    pub max_running: Option<i32>,
    /// At most this many claims per --per, spread evenly (default: no limit;
    /// removes the one set).
    #[arg(long, allow_negative_numbers = true)]
    pub rate: Option<i32>,
    /// With --rate: the period of the rate (e.g. 1s, 500ms, 1m).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, requires = "rate")]
    pub per: Duration,
}

#[derive(Debug, Args)]
pub struct KeyLimitArgs {
    /// The queue.
    pub queue: String,
    /// At most this many running jobs per concurrency key.
    #[arg(
        allow_negative_numbers = true,
        required_unless_present = "clear",
        conflicts_with = "clear"
    )]
    pub max_running: Option<i32>,
    /// Remove the queue's per-key limit.
    #[arg(long)]
    pub clear: bool,
}

pub async fn queues(settings: &ConnectionSettings, action: QueuesAction) -> Result<()> {
    let client = connect(settings).await?;
    match action {
        QueuesAction::List(args) => {
            let queues = client.queues().await?;
            if args.json {
                return output::json(&queues);
            }
            list(queues);
        }
        QueuesAction::Pause { queue } => {
            let changed = client.pause_queue(&queue).await?;
            println!("{}", if changed { "paused" } else { "already paused" });
        }
        QueuesAction::Resume { queue } => {
            let changed = client.resume_queue(&queue).await?;
            println!("{}", if changed { "resumed" } else { "not paused" });
        }
        QueuesAction::Limit(args) => {
            let limits = QueueLimits {
                max_running: args.max_running,
                rate: args.rate.map(|count| Rate {
                    count,
                    per: args.per,
                }),
            };
            client.set_queue_limits(&args.queue, limits).await?;
            println!("queue {:?}: {}", args.queue, describe_limits(&limits));
        }
        QueuesAction::KeyLimit(args) => {
            // --clear, or a limit: clap requires one of them.
            let limit = args.max_running.filter(|_| !args.clear);
            client.set_key_limit(&args.queue, limit).await?;
            match limit {
                Some(limit) => println!(
                    "queue {:?}: at most {limit} running per concurrency key",
                    args.queue
                ),
                None => println!("queue {:?}: no per-key limit", args.queue),
            }
        }
    }
    Ok(())
}

/// The limits as a person reads them: "at most 5 running, 10 claims per 1s".
fn describe_limits(limits: &QueueLimits) -> String {
    let mut parts = Vec::new();
    if let Some(max_running) = limits.max_running {
        parts.push(format!("at most {max_running} running"));
    }
    if let Some(rate) = limits.rate {
        parts.push(rate_text(&rate));
    }
    if parts.is_empty() {
        return "no limits".to_owned();
    }
    parts.join(", ")
}

/// "10 claims per 1s".
fn rate_text(rate: &Rate) -> String {
    format!(
        "{} claims per {}",
        rate.count,
        humantime::format_duration(rate.per)
    )
}

fn list(queues: Vec<QueueInfo>) {
    let limit = |value: Option<i32>| value.map(|value| value.to_string()).unwrap_or_default();
    output::table(
        &[
            "queue",
            "paused",
            "max running",
            "rate",
            "key limit",
            "waiting",
            "delayed",
            "blocked",
            "running",
            "throttled",
        ],
        queues
            .into_iter()
            .map(|queue| {
                vec![
                    queue.queue,
                    if queue.paused { "yes" } else { "no" }.to_owned(),
                    limit(queue.max_running),
                    queue.rate.as_ref().map(rate_text).unwrap_or_default(),
                    limit(queue.key_limit),
                    queue.waiting.to_string(),
                    queue.delayed.to_string(),
                    queue.blocked.to_string(),
                    queue.running.to_string(),
                    queue.throttled.to_string(),
                ]
            })
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_written() {
        assert_eq!(describe_limits(&QueueLimits::default()), "no limits");
        assert_eq!(
            describe_limits(&QueueLimits {
                max_running: Some(5),
                rate: Some(Rate {
                    count: 10,
                    per: Duration::from_millis(500)
                }),
            }),
            "at most 5 running, 10 claims per 500ms"
        );
    }
}
