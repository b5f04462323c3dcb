//! `postings list` and `posting create|status|set-status|delete`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use uuid::Uuid;

use super::admin::OutputArgs;
use super::progress::{Progress, POLL_INTERVAL};
use super::{connect, output};
use crate::client::Client;
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::posting::{PostingState, PostingStatus};

#[derive(Debug, Subcommand)]
pub enum PostingsAction {
    /// Every posting, newest first, with its job counts.
    List(OutputArgs),
}

#[derive(Debug, Subcommand)]
pub enum PostingAction {
    /// Create a posting (active); prints its id.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// The queue of its jobs that name none.
        #[arg(long)]
        queue: Option<String>,
        /// The priority of its jobs that set none.
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
        /// Print the new posting's id as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A posting's status and job counts.
    Status {
        id: Uuid,
        /// Follow the posting, with a progress bar, until every job has ended.
        #[arg(long)]
        follow: bool,
        /// With --follow: give up (exit 1) after this long.
        #[arg(long, value_parser = humantime::parse_duration, requires = "follow")]
        timeout: Option<Duration>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause, resume (active) or cancel a posting.
    SetStatus {
        id: Uuid,
        #[arg(value_enum)]
        status: PostingState,
    },
    /// Delete a posting whose jobs have all ended, with those jobs.
    Delete { id: Uuid },
}

pub async fn postings(settings: &ConnectionSettings, action: PostingsAction) -> Result<()> {
    let PostingsAction::List(args) = action;
    let postings = connect(settings).await?.postings().await?;
    if args.json {
        return output::json(&postings);
    }
    output::table(
        &[
            "id",
            "name",
            "status",
            "total",
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "blocked",
            "complete",
        ],
        postings
            .into_iter()
            .map(|posting| {
                vec![
                    posting.id.to_string(),
                    posting.name,
                    posting.status,
                    posting.total.to_string(),
                    posting.queued.to_string(),
                    posting.running.to_string(),
                    posting.succeeded.to_string(),
                    posting.failed.to_string(),
                    posting.cancelled.to_string(),
                    posting.blocked.to_string(),
                    yes_no(posting.complete).to_owned(),
                ]
            })
            .collect(),
    );
    Ok(())
}

pub async fn posting(settings: &ConnectionSettings, action: PostingAction) -> Result<()> {
    let client = connect(settings).await?;
    match action {
        PostingAction::Create {
            name,
            description,
            queue,
            priority,
            json,
        } => {
            let mut builder = client.posting(name);
            if let Some(description) = description {
                builder = builder.description(description);
            }
            if let Some(queue) = queue {
                builder = builder.queue(queue);
            }
            if let Some(priority) = priority {
                builder = builder.priority(priority);
            }
            let id = builder.create().await?.id();
            if json {
                output::json(&serde_json::json!({ "id": id }))
            } else {
                println!("{id}");
                Ok(())
            }
        }
        PostingAction::Status {
            id,
            follow,
            timeout,
            json,
        } => {
            let status = if follow {
                follow_until_complete(&client, id, timeout).await?
            } else {
                client
                    .posting_status(id)
                    .await?
                    .ok_or(Error::NoSuchPosting(id))?
            };
            if json {
                output::json(&status)
            } else {
                show(&status);
                Ok(())
            }
        }
        PostingAction::SetStatus { id, status } => {
            let changed = client.set_posting_status(id, status).await?;
            if changed {
                println!("{}", status.as_str());
            } else {
                println!("not changed: the posting was already {}", status.as_str());
            }
            Ok(())
        }
        PostingAction::Delete { id } => {
            if !client.delete_posting(id).await? {
                return Err(Error::NoSuchPosting(id));
            }
            println!("deleted");
            Ok(())
        }
    }
}

/// Polls the posting, moving a progress bar (jobs ended out of all its
/// jobs), until it is complete; returns its last status.
async fn follow_until_complete(
    client: &Client,
    id: Uuid,
    timeout: Option<Duration>,
) -> Result<PostingStatus> {
    let started = Instant::now();
    let read = || async {
        client
            .posting_status(id)
            .await?
            .ok_or(Error::NoSuchPosting(id))
    };
    let mut status = read().await?;
    let progress = Progress::new(true, finished(&status), total(&status));
    while !status.complete {
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                progress.abandon();
                return Err(Error::Invalid(format!(
                    "posting {id} not complete after {}: {} of {} jobs ended",
                    humantime::format_duration(limit),
                    status.finished(),
                    status.total
                )));
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        status = read().await?;
        progress.update(finished(&status), total(&status));
    }
    progress.finish("(posting complete)");
    Ok(status)
}

fn finished(status: &PostingStatus) -> u64 {
    u64::try_from(status.finished()).unwrap_or(0)
}

fn total(status: &PostingStatus) -> u64 {
    u64::try_from(status.total).unwrap_or(0)
}

fn show(status: &PostingStatus) {
    let optional = |value: Option<String>| value.unwrap_or_default();
    output::fields(&[
        ("id", status.id.to_string()),
        ("name", status.name.clone()),
        ("description", optional(status.description.clone())),
        ("status", status.status.clone()),
        ("queue", optional(status.queue.clone())),
        (
            "priority",
            optional(status.priority.map(|priority| priority.to_string())),
        ),
        ("created", status.created_at.to_rfc3339()),
        (
            "status changed",
            optional(status.status_changed_at.map(|at| at.to_rfc3339())),
        ),
        ("jobs", status.total.to_string()),
        ("queued", status.queued.to_string()),
        ("blocked", status.blocked.to_string()),
        ("running", status.running.to_string()),
        ("succeeded", status.succeeded.to_string()),
        ("failed", status.failed.to_string()),
        ("cancelled", status.cancelled.to_string()),
        ("complete", yes_no(status.complete).to_owned()),
    ]);
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}
