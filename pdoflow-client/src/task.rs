//! Tasks: what a worker can run, by name.
//!
//! A handler implements [`Task`]: its name, the type its JSON arguments
//! deserialize into, and an async `run` returning any `Serialize` result or a
//! [`TaskError`]. A [`TaskRegistry`] maps names to handlers; registering a
//! name twice is an error.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::worker::progress::ProgressSlot;

/// What a running job knows about itself.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub id: Uuid,
    pub task: String,
    pub queue: String,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Why the previous attempt failed, if it did.
    pub last_error: Option<String>,
    /// The posting the job belongs to, if any.
    pub posting: Option<Uuid>,
    /// See `parent_results`.
    pub(crate) parent_results: Map<String, Value>,
    /// Where `progress` leaves reports for the worker; `None` outside one.
    pub(crate) progress_slot: Option<Arc<ProgressSlot>>,
}

impl JobContext {
    /// The results of the job's succeeded parents, keyed by the parent's DAG
    /// node name (`sub/inner`) for jobs submitted in a DAG, else (or when
    /// two parents share a name) by its job id; empty when none succeeded
    /// or the job has no parents.
    pub fn parent_results(&self) -> &Map<String, Value> {
        &self.parent_results
    }

    /// Reports how far the job got: any JSON value (`{"done": 10, "total":
    /// 100}`), shown as the job's `progress` in `pdoflow.jobs` (also after
    /// it ended), by `Client::job` and `Client::await_result`.
    ///
    /// Cheap enough for a hot loop: the value only replaces the one waiting
    /// to be sent, and the worker sends at most one per
    /// `WorkerConfig::progress_interval` (default 1 s), so a million calls
    /// make about one database call per interval. The value waiting when the
    /// handler returns is sent before the job is finished, so the last
    /// report is the one that stays. A report also renews the claim's lease.
    ///
    /// Fails only when `value` does not serialize; what the database then
    /// makes of it (a value over `pdoflow.max_payload_bytes` is refused) is
    /// logged by the worker. Outside a worker it does nothing.
    pub fn progress(&self, value: impl Serialize) -> Result<()> {
        let Some(slot) = &self.progress_slot else {
            return Ok(());
        };
        let value = serde_json::to_value(value).map_err(|source| Error::Json {
            context: format!("progress of job {}", self.id),
            source,
        })?;
        slot.report(value);
        Ok(())
    }

    /// The result of parent `key` as a `T`; `None` when no parent by that key
    /// succeeded. A result that does not fit `T` is an error naming both.
    pub fn parent_result<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(value) = self.parent_results.get(key) else {
            return Ok(None);
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|source| Error::Json {
                context: format!(
                    "the result of parent {key:?} is not a {}",
                    std::any::type_name::<T>()
                ),
                source,
            })
    }
}

/// A handler's failure: the message becomes the job's `last_error`.
pub struct TaskError(String);

impl TaskError {
    pub fn new(message: impl Into<String>) -> TaskError {
        TaskError(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Any error converts, so handlers can use `?`.
impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> TaskError {
        TaskError(error.to_string())
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskError({:?})", self.0)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job handler.
///
/// ```no_run
/// use pdoflow_client::{JobContext, Task, TaskError};
/// use serde::Deserialize;
///
/// struct SendEmail;
///
/// #[derive(Deserialize)]
/// struct Email { to: String }
///
/// impl Task for SendEmail {
///     const NAME: &'static str = "send_email";
///     type Args = Email;
///     type Output = serde_json::Value;
///
///     async fn run(&self, args: Email, _job: JobContext) -> Result<serde_json::Value, TaskError> {
///         Ok(serde_json::json!({ "sent_to": args.to }))
///     }
/// }
/// ```
pub trait Task: Send + Sync + 'static {
    /// The task name jobs are enqueued with.
    const NAME: &'static str;
    /// Run a job only when the role that enqueued it holds a grant of this
    /// task now (`pdoflow.job_is_granted`; default false). For handlers that
    /// act with the worker's own powers, such as the built-in `shell`: a job
    /// enqueued before the task was granted, by a role whose grant was
    /// revoked since, or while the task had no grants at all, fails
    /// without running.
    const GRANTED_ONLY: bool = false;
    /// The job's arguments; a job whose args do not deserialize fails.
    type Args: DeserializeOwned + Send + 'static;
    /// Stored as the job's result.
    type Output: Serialize + Send + 'static;

    fn run(
        &self,
        args: Self::Args,
        job: JobContext,
    ) -> impl Future<Output = std::result::Result<Self::Output, TaskError>> + Send;
}

pub(crate) type TaskFuture =
    Pin<Box<dyn Future<Output = std::result::Result<Value, String>> + Send>>;

/// A handler with its types erased, as the registry stores it.
trait ErasedTask: Send + Sync {
    fn call(self: Arc<Self>, args: Value, job: JobContext) -> TaskFuture;
}

struct Typed<T>(T);

impl<T: Task> ErasedTask for Typed<T> {
    fn call(self: Arc<Self>, args: Value, job: JobContext) -> TaskFuture {
        Box::pin(async move {
            let args: T::Args = serde_json::from_value(args)
                .map_err(|error| format!("arguments do not fit task {:?}: {error}", T::NAME))?;
            let output = self.0.run(args, job).await.map_err(|error| error.0)?;
            serde_json::to_value(output)
                .map_err(|error| format!("result of task {:?} is not JSON: {error}", T::NAME))
        })
    }
}

/// A registered handler, and whether it runs granted jobs only.
#[derive(Clone)]
struct Registered {
    handler: Arc<dyn ErasedTask>,
    granted_only: bool,
}

/// Task names to handlers.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    tasks: BTreeMap<String, Registered>,
}

impl TaskRegistry {
    pub fn new() -> TaskRegistry {
        TaskRegistry::default()
    }

    /// Adds a handler; a second handler for the same name is an error.
    pub fn register<T: Task>(&mut self, task: T) -> Result<&mut Self> {
        if self.tasks.contains_key(T::NAME) {
            return Err(Error::DuplicateTask(T::NAME.to_owned()));
        }
        self.tasks.insert(
            T::NAME.to_owned(),
            Registered {
                handler: Arc::new(Typed(task)),
                granted_only: T::GRANTED_ONLY,
            },
        );
        Ok(self)
    }

    /// Whether `name`'s handler runs only jobs whose enqueuer holds a grant
    /// of the task (`Task::GRANTED_ONLY`).
    pub fn granted_only(&self, name: &str) -> bool {
        self.tasks
            .get(name)
            .is_some_and(|registered| registered.granted_only)
    }

    /// The registered task names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tasks.contains_key(name)
    }

    /// Starts the handler of `job.task` on `args`; `None` if there is none.
    pub(crate) fn start(&self, args: Value, job: JobContext) -> Option<TaskFuture> {
        let task = self.tasks.get(&job.task)?.handler.clone();
        Some(task.call(args, job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Task for Echo {
        const NAME: &'static str = "echo";
        type Args = Value;
        type Output = Value;
        async fn run(
            &self,
            args: Value,
            _job: JobContext,
        ) -> std::result::Result<Value, TaskError> {
            Ok(args)
        }
    }

    fn context(parent_results: Value) -> JobContext {
        JobContext {
            id: Uuid::nil(),
            task: "t".into(),
            queue: "default".into(),
            attempt: 1,
            max_attempts: 5,
            last_error: None,
            posting: None,
            parent_results: match parent_results {
                Value::Object(results) => results,
                _ => Map::new(),
            },
            progress_slot: None,
        }
    }

    #[test]
    fn parent_results_are_read_by_key_and_type() {
        let job = context(serde_json::json!({"fetch": {"rows": 3}, "sub/count": 7}));
        assert_eq!(job.parent_results().len(), 2);
        assert_eq!(job.parent_result::<i64>("sub/count").ok(), Some(Some(7)));
        assert_eq!(job.parent_result::<i64>("missing").ok(), Some(None));
        let error = job
            .parent_result::<i64>("fetch")
            .err()
            .map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(
                |error| error.starts_with("the result of parent \"fetch\" is not a i64: ")
            ),
            "{error:?}"
        );
        assert!(context(Value::Null).parent_results().is_empty());
    }

    #[test]
    fn progress_goes_to_the_slot_and_is_a_no_op_outside_a_worker() {
        let mut job = context(Value::Null);
        assert!(job.progress(serde_json::json!({"done": 1})).is_ok());
        let board = crate::worker::progress::ProgressBoard::new();
        let slot = board.slot(job.id);
        job.progress_slot = Some(slot.clone());
        assert!(job.progress([1, 2]).is_ok());
        assert_eq!(slot.take(), Some(serde_json::json!([1, 2])));
        let mut not_json = std::collections::HashMap::new();
        not_json.insert((1, 2), 3);
        assert!(
            job.progress(not_json).is_err(),
            "a map with non-string keys"
        );
    }

    #[test]
    fn a_name_registered_twice_is_an_error() {
        let mut registry = TaskRegistry::new();
        registry.register(Echo).unwrap();
        let error = registry.register(Echo).err().unwrap();
        assert_eq!(error.to_string(), "task \"echo\" is registered twice");
        assert_eq!(registry.names().collect::<Vec<_>>(), ["echo"]);
    }
}
