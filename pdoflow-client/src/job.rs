//! Jobs as the client sees them: new jobs to enqueue, and stored jobs read
//! back from `pdoflow.jobs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::{Error, Result};

/// A job to enqueue: a task name, JSON arguments and `pdoflow.enqueue`'s
/// options. Options left unset take the SQL function's defaults (queue
/// `default`, priority 0, due now, 5 attempts, no posting, no parents, not
/// unique, no concurrency key).
///
/// It serializes as one object of `pdoflow.enqueue_many(jsonb)`'s document,
/// with only the options that are set.
#[derive(Clone, Debug)]
pub struct NewJob {
    task: String,
    args: Value,
    queue: Option<String>,
    priority: Option<i32>,
    run_at: Option<DateTime<Utc>>,
    max_attempts: Option<i32>,
    unique_key: Option<String>,
    unique_for: Option<Duration>,
    concurrency_key: Option<String>,
    // `Dag` reads these, and sets the last two in place.
    pub(crate) posting: Option<Uuid>,
    pub(crate) depends_on: Vec<Uuid>,
    pub(crate) dependency_mode: Option<DependencyMode>,
}

/// Which of a job's parents must succeed before it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DependencyMode {
    /// Every parent (the default).
    #[default]
    All,
    /// Any one parent.
    Any,
}

impl DependencyMode {
    /// The name the SQL API takes: `all` or `any`.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyMode::All => "all",
            DependencyMode::Any => "any",
        }
    }
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
            unique_key: None,
            unique_for: None,
            concurrency_key: None,
            posting: None,
            depends_on: Vec::new(),
            dependency_mode: None,
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

    /// Makes the job unique by `key` within its task: while a job of the same
    /// task holding that key is blocked, queued or running (or succeeded less
    /// than `unique_for` ago), enqueueing returns that job's id instead of
    /// adding a new job. A job that failed or was cancelled lets its key go.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// How long a job with a `unique_key` keeps its key after it succeeded
    /// (default: not at all), so that a job that ran recently is not run
    /// again. Needs `unique_key`; sent to the microsecond.
    pub fn unique_for(mut self, keep: Duration) -> Self {
        self.unique_for = Some(keep);
        self
    }

    /// The job's concurrency key (default: none): the queue's per-key limit
    /// (`Client::set_key_limit`) caps how many jobs with the same key run
    /// at once. Jobs without a key are not limited by it.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// Into this posting (which then supplies queue and priority when they
    /// are left unset here).
    pub fn posting(mut self, posting: Uuid) -> Self {
        self.posting = Some(posting);
        self
    }

    /// Adds parents: the job stays `blocked` until they succeed (all of
    /// them, or one with `DependencyMode::Any`).
    pub fn depends_on(mut self, parents: impl IntoIterator<Item = Uuid>) -> Self {
        self.depends_on.extend(parents);
        self
    }

    pub fn dependency_mode(mut self, mode: DependencyMode) -> Self {
        self.dependency_mode = Some(mode);
        self
    }

    pub fn task(&self) -> &str {
        &self.task
    }

    /// The job as a document object: the keys of `enqueue_many(jsonb)`, only
    /// those set. Built by hand so that it cannot fail; `Dag` reuses it.
    pub(crate) fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("task".into(), Value::String(self.task.clone()));
        fields.insert("args".into(), self.args.clone());
        if let Some(queue) = &self.queue {
            fields.insert("queue".into(), Value::String(queue.clone()));
        }
        if let Some(priority) = self.priority {
            fields.insert("priority".into(), priority.into());
        }
        if let Some(run_at) = self.run_at {
            // The same form as chrono's serde: RFC 3339, UTC as `Z`.
            let text = run_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            fields.insert("run_at".into(), Value::String(text));
        }
        if let Some(max_attempts) = self.max_attempts {
            fields.insert("max_attempts".into(), max_attempts.into());
        }
        if let Some(key) = &self.unique_key {
            fields.insert("unique_key".into(), Value::String(key.clone()));
        }
        if let Some(keep) = self.unique_for {
            fields.insert("unique_for".into(), Value::String(interval_text(keep)));
        }
        if let Some(key) = &self.concurrency_key {
            fields.insert("concurrency_key".into(), Value::String(key.clone()));
        }
        if let Some(posting) = self.posting {
            fields.insert("posting".into(), Value::String(posting.to_string()));
        }
        if !self.depends_on.is_empty() {
            let parents = self
                .depends_on
                .iter()
                .map(|id| Value::String(id.to_string()));
            fields.insert("depends_on".into(), Value::Array(parents.collect()));
        }
        if let Some(mode) = self.dependency_mode {
            fields.insert("dependency_mode".into(), mode.as_str().into());
        }
        fields
    }
}

/// A duration as PostgreSQL interval input (`"3600 seconds"`,
/// `"1.500000 seconds"`), which the job documents take for `unique_for`.
pub(crate) fn interval_text(duration: Duration) -> String {
    match duration.subsec_micros() {
        0 => format!("{} seconds", duration.as_secs()),
        micros => format!("{}.{micros:06} seconds", duration.as_secs()),
    }
}

impl Serialize for NewJob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields().serialize(serializer)
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
    pub posting: Option<Uuid>,
    /// The parents' ids; empty when the job has none.
    pub depends_on: Vec<Uuid>,
    /// `all` or `any` (of the parents).
    pub dependency_mode: Option<String>,
    /// The DAG node's full name (`sub/inner`) for a job from `submit_dag`.
    pub node: Option<String>,
    /// The role that enqueued it (`None` for jobs from before pdoflow 0.4.0).
    pub enqueued_by: Option<String>,
    /// The key that makes it unique within its task (`NewJob::unique_key`).
    pub unique_key: Option<String>,
    /// What its handler last reported (`JobContext::progress`); kept after
    /// the job ended.
    pub progress: Option<Value>,
    /// Its concurrency key (`NewJob::concurrency_key`), which the queue's
    /// per-key limit counts by.
    pub concurrency_key: Option<String>,
}

/// The columns `Job::from_row` reads, in order.
pub(crate) const JOB_COLUMNS: &str =
    "id, task, queue, priority, state, attempt, max_attempts, args, result, \
     last_error, run_at, created_at, started_at, finished_at, lease_expires_at, worker, \
     posting, depends_on, dependency_mode, node, enqueued_by, unique_key, progress, \
     concurrency_key";

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
            posting: row.try_get(16)?,
            depends_on: row.try_get::<_, Option<Vec<Uuid>>>(17)?.unwrap_or_default(),
            dependency_mode: row.try_get(18)?,
            node: row.try_get(19)?,
            enqueued_by: row.try_get(20)?,
            unique_key: row.try_get(21)?,
            progress: row.try_get(22)?,
            concurrency_key: row.try_get(23)?,
        })
    }
}

/// Which jobs `Client::jobs` lists; unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<String>,
    pub queue: Option<String>,
    pub task: Option<String>,
    pub posting: Option<Uuid>,
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

/// How many jobs wait (or run) at one priority, as `pdoflow.priority_stats`
/// counts them.
#[derive(Clone, Debug, Serialize)]
pub struct PriorityCount {
    pub queue: String,
    pub priority: i32,
    /// Not started yet: queued, paused or blocked.
    pub waiting: i64,
    /// Queued and due: claimable now.
    pub due: i64,
    pub paused: i64,
    /// Waiting on parents.
    pub blocked: i64,
    pub running: i64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dependency_modes_serialize_as_the_sql_api_names() {
        assert_eq!(
            serde_json::to_value(DependencyMode::All).ok(),
            Some(json!("all"))
        );
        assert_eq!(
            serde_json::to_value(DependencyMode::Any).ok(),
            Some(json!("any"))
        );
        assert_eq!(DependencyMode::default(), DependencyMode::All);
    }

    #[test]
    fn a_new_job_serializes_only_what_is_set() -> Result<()> {
        let job = NewJob::new("t", &json!({"n": 1}))?;
        assert_eq!(
            serde_json::to_value(&job).ok(),
            Some(json!({"task": "t", "args": {"n": 1}}))
        );
        Ok(())
    }

    #[test]
    fn a_new_job_serializes_its_posting_and_parents() -> Result<()> {
        let (posting, a, b) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let run_at = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.5Z")
            .map_err(|error| Error::Invalid(error.to_string()))?
            .with_timezone(&Utc);
        let job = NewJob::new("t", &())?
            .queue("q")
            .priority(-2)
            .run_at(run_at)
            .max_attempts(3)
            .posting(posting)
            .depends_on([a])
            .depends_on([b])
            .dependency_mode(DependencyMode::Any);
        assert_eq!(
            serde_json::to_value([&job]).ok(),
            Some(json!([{
                "task": "t",
                "args": null,
                "queue": "q",
                "priority": -2,
                "run_at": "2030-01-02T03:04:05.500Z",
                "max_attempts": 3,
                "posting": posting.to_string(),
                "depends_on": [a.to_string(), b.to_string()],
                "dependency_mode": "any",
            }]))
        );
        // The same form as chrono's own serde, which the SQL side parses.
        assert_eq!(
            serde_json::to_value(run_at).ok(),
            Some(json!("2030-01-02T03:04:05.500Z"))
        );
        Ok(())
    }

    #[test]
    fn a_concurrency_key_is_sent_when_set() -> Result<()> {
        let job = NewJob::new("t", &())?.concurrency_key("customer-7");
        assert_eq!(
            serde_json::to_value(&job).ok(),
            Some(json!({"task": "t", "args": null, "concurrency_key": "customer-7"}))
        );
        Ok(())
    }

    #[test]
    fn a_unique_job_serializes_its_key_and_how_long_it_keeps_it() -> Result<()> {
        let job = NewJob::new("t", &())?
            .unique_key("report:2030-01-02")
            .unique_for(Duration::from_secs(3600));
        assert_eq!(
            serde_json::to_value(&job).ok(),
            Some(json!({
                "task": "t",
                "args": null,
                "unique_key": "report:2030-01-02",
                "unique_for": "3600 seconds",
            }))
        );
        assert_eq!(
            interval_text(Duration::from_micros(1_500_001)),
            "1.500001 seconds"
        );
        assert_eq!(interval_text(Duration::from_millis(20)), "0.020000 seconds");
        Ok(())
    }
}
