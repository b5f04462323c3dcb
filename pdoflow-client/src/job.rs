//! Jobs as the client sees them: new jobs to enqueue, and stored jobs read
//! back from `pdoflow.jobs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{Error, Result};

/// A job to enqueue: a task name, JSON arguments and `pdoflow.enqueue`'s
/// options. Options left unset take the SQL function's defaults (queue
/// `default`, priority 0, due now, 5 attempts).
#[derive(Clone, Debug, Serialize)]
pub struct NewJob {
    task: String,
    args: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<i32>,
}

impl NewJob {
    /// A job of `task` with `args` (any `Serialize` value) as its arguments.
    pub fn new(task: impl Into<String>, args: &impl Serialize) -> Result<NewJob> {
        let task = task.into();
        let args = serde_json::to_value(args).map_err(|source| Error::Json {
            context: format!("arguments of task {task:?}"),
            source,
        })?;
        Ok(NewJob {
            task,
            args,
            queue: None,
            priority: None,
            run_at: None,
            max_attempts: None,
        })
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Higher runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Not before this time.
    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    /// Not before `delay` from now.
    pub fn delay(self, delay: Duration) -> Self {
        // A delay beyond the calendar becomes the latest time there is,
        // which PostgreSQL then refuses by name.
        let run_at = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|delay| Utc::now().checked_add_signed(delay))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.run_at(run_at)
    }

    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    pub fn task(&self) -> &str {
        &self.task
    }
}

/// One job as `pdoflow.jobs` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: Uuid,
    pub task: String,
    pub queue: String,
    pub priority: i32,
    pub state: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub args: Value,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
}

/// The columns `Job::from_row` reads, in order.
pub(crate) const JOB_COLUMNS: &str =
    "id, task, queue, priority, state, attempt, max_attempts, args, result, \
     last_error, run_at, created_at, started_at, finished_at, lease_expires_at, worker";

impl Job {
    pub(crate) fn from_row(row: &Row) -> Result<Job, tokio_postgres::Error> {
        Ok(Job {
            id: row.try_get(0)?,
            task: row.try_get(1)?,
            queue: row.try_get(2)?,
            priority: row.try_get(3)?,
            state: row.try_get(4)?,
            attempt: row.try_get(5)?,
            max_attempts: row.try_get(6)?,
            args: row.try_get(7)?,
            result: row.try_get(8)?,
            last_error: row.try_get(9)?,
            run_at: row.try_get(10)?,
            created_at: row.try_get(11)?,
            started_at: row.try_get(12)?,
            finished_at: row.try_get(13)?,
            lease_expires_at: row.try_get(14)?,
            worker: row.try_get(15)?,
        })
    }
}

/// Which jobs `Client::jobs` lists; unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub task: Option<String>,
    /// Page size (default 50).
    pub limit: Option<i64>,
    /// Jobs to skip, for the following pages.
    pub offset: Option<i64>,
}

/// How many jobs a queue has in one state.
#[derive(Clone, Debug, Serialize)]
pub struct QueueCount {
    pub queue: String,
    pub state: String,
    pub jobs: i64,
}

/// How many jobs wait (or run) at one priority.
#[derive(Clone, Debug, Serialize)]
pub struct PriorityCount {
    pub queue: String,
    pub priority: i32,
    pub queued: i64,
    pub running: i64,
}
