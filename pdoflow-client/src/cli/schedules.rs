//! `schedules list|add|remove|pause|resume`: cron schedules.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::admin::{first_line, parse_json, OutputArgs};
use super::{connect, output};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};
use crate::schedule::{Schedule, ScheduleInfo};

#[derive(Debug, Subcommand)]
pub enum SchedulesAction {
    /// Every schedule, by name: when it runs next and what it did last.
    List(OutputArgs),
    /// Create a schedule, or replace the one of that name; prints its next run.
    Add(AddArgs),
    /// Remove a schedule (the jobs it enqueued stay).
    Remove { name: String },
    /// Stop a schedule from enqueueing jobs until it is resumed.
    Pause { name: String },
    /// Let a paused schedule run again, from its next occurrence after now.
    Resume { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The schedule's name (replaces a schedule of the same name).
    pub name: String,
    /// When it runs: five cron fields ('*/5 * * * *', '30 2 * * MON-FRI'),
    /// six with seconds first, '@hourly', '@daily', ..., or 'every 30 seconds'.
    #[arg(long)]
    pub cron: String,
    /// The task of its jobs.
    #[arg(long)]
    pub task: String,
    /// Arguments of its jobs, as a JSON value.
    #[arg(long, default_value = "{}", value_parser = parse_json)]
    pub args: Value,
    /// Queue of its jobs (default: default).
    #[arg(long)]
    pub queue: Option<String>,
    /// Priority of its jobs; higher runs first (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempts each of its jobs gets (default 5).
    #[arg(long)]
    pub max_attempts: Option<i32>,
    /// IANA time zone the pattern is read in, e.g. Europe/Berlin (default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// After downtime (the server or its sweeper stopped), skip the occurrences
    /// missed instead of running one job at once for the latest of them.
    #[arg(long)]
    pub no_catch_up: bool,
    /// Print the schedule as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn schedules(settings: &ConnectionSettings, action: SchedulesAction) -> Result<()> {
    let client = connect(settings).await?;
    match action {
        SchedulesAction::List(args) => {
            let schedules = client.schedules().await?;
            if args.json {
                return output::json(&schedules);
            }
            list(schedules);
            Ok(())
        }
        SchedulesAction::Add(args) => {
            let mut schedule = Schedule::new(&args.name, args.cron, args.task, &args.args)?;
            if let Some(queue) = args.queue {
                schedule = schedule.queue(queue);
            }
            if let Some(priority) = args.priority {
                schedule = schedule.priority(priority);
            }
            if let Some(max_attempts) = args.max_attempts {
                schedule = schedule.max_attempts(max_attempts);
            }
            if let Some(time_zone) = args.time_zone {
                schedule = schedule.time_zone(time_zone);
            }
            if args.no_catch_up {
                schedule = schedule.catch_up(false);
            }
            client.schedule(&schedule).await?;
            let saved = client
                .schedule_info(&args.name)
                .await?
                .ok_or_else(|| Error::NoSuchSchedule(args.name.clone()))?;
            if args.json {
                return output::json(&saved);
            }
            println!(
                "schedule {:?}: next run at {}",
                saved.name,
                time(saved.next_run_at).unwrap_or_else(|| "never".to_owned())
            );
            Ok(())
        }
        SchedulesAction::Remove { name } => {
            if !client.unschedule(&name).await? {
                return Err(Error::NoSuchSchedule(name));
            }
            println!("removed");
            Ok(())
        }
        SchedulesAction::Pause { name } => {
            let changed = client.pause_schedule(&name).await?;
            println!("{}", if changed { "paused" } else { "already paused" });
            Ok(())
        }
        SchedulesAction::Resume { name } => {
            let changed = client.resume_schedule(&name).await?;
            println!("{}", if changed { "resumed" } else { "not paused" });
            Ok(())
        }
    }
}

fn list(schedules: Vec<ScheduleInfo>) {
    output::table(
        &[
            "name",
            "cron",
            "time zone",
            "task",
            "queue",
            "next run",
            "last run",
            "last job",
            "paused",
            "last error",
        ],
        schedules
            .into_iter()
            .map(|schedule| {
                vec![
                    schedule.name,
                    schedule.cron,
                    schedule.time_zone,
                    schedule.task,
                    schedule.queue,
                    time(schedule.next_run_at).unwrap_or_else(|| "never".to_owned()),
                    time(schedule.last_run_at).unwrap_or_default(),
                    schedule
                        .last_job
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    if schedule.paused { "yes" } else { "no" }.to_owned(),
                    schedule
                        .last_error
                        .map(|error| first_line(&error))
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    );
}

/// A time as the other tables show them (UTC).
fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
}
