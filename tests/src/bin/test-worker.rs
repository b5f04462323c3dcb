//! `pdoflow-run` with extra tasks for the tests: `panic` panics with the
//! message in its args, `fail` returns it as an error, `echo` returns its args,
//! `sum_parents` adds its `add` argument to its parents' sums, `stall_first`
//! sleeps `ms` milliseconds on its first attempt only.

use std::process::ExitCode;

use pdoflow_client::{JobContext, Task, TaskError, TaskRegistry};
use serde::Deserialize;
use serde_json::Value;

struct Panic;
impl Task for Panic {
    const NAME: &'static str = "panic";
    type Args = Value;
    type Output = Value;
    async fn run(&self, args: Value, _job: JobContext) -> Result<Value, TaskError> {
        panic!("{}", args["message"].as_str().unwrap_or("boom"));
    }
}

struct Fail;
impl Task for Fail {
    const NAME: &'static str = "fail";
    type Args = Value;
    type Output = Value;
    async fn run(&self, args: Value, _job: JobContext) -> Result<Value, TaskError> {
        Err(TaskError::new(args["message"].as_str().unwrap_or("failed")))
    }
}

struct Echo;
impl Task for Echo {
    const NAME: &'static str = "echo";
    type Args = Value;
    type Output = Value;
    async fn run(&self, args: Value, job: JobContext) -> Result<Value, TaskError> {
        Ok(serde_json::json!({ "args": args, "attempt": job.attempt }))
    }
}

/// `{"add": n}`: returns `{"sum": n + the parents' sums, "parents": [their keys]}`.
struct SumParents;

#[derive(Deserialize)]
struct Sum {
    sum: i64,
}

impl Task for SumParents {
    const NAME: &'static str = "sum_parents";
    type Args = Value;
    type Output = Value;
    async fn run(&self, args: Value, job: JobContext) -> Result<Value, TaskError> {
        let mut sum = args["add"].as_i64().unwrap_or(0);
        for key in job.parent_results().keys() {
            if let Some(parent) = job.parent_result::<Sum>(key)? {
                sum += parent.sum;
            }
        }
        let mut parents: Vec<&String> = job.parent_results().keys().collect();
        parents.sort();
        Ok(serde_json::json!({ "sum": sum, "parents": parents }))
    }
}

/// `{"ms": n}`: sleeps n ms on the first attempt, none on the others (a
/// job that a worker killed in the middle holds, and the next finishes).
struct StallFirst;

impl Task for StallFirst {
    const NAME: &'static str = "stall_first";
    type Args = Value;
    type Output = Value;
    async fn run(&self, args: Value, job: JobContext) -> Result<Value, TaskError> {
        if job.attempt == 1 {
            let ms = args["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Ok(serde_json::json!({ "attempt": job.attempt }))
    }
}

fn main() -> ExitCode {
    let mut registry = TaskRegistry::new();
    let registered = registry
        .register(Panic)
        .and_then(|registry| registry.register(Fail))
        .and_then(|registry| registry.register(Echo))
        .and_then(|registry| registry.register(SumParents))
        .and_then(|registry| registry.register(StallFirst));
    if let Err(error) = registered {
        eprintln!("{error}");
        return ExitCode::FAILURE;
    }
    pdoflow_client::cli::main(registry)
}
