//! `pdoflow-run` with extra tasks for the tests: `panic` panics with the
//! message in its args, `fail` returns it as an error, `echo` returns its args.

use std::process::ExitCode;

use pdoflow_client::{JobContext, Task, TaskError, TaskRegistry};
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

fn main() -> ExitCode {
    let mut registry = TaskRegistry::new();
    let registered = registry
        .register(Panic)
        .and_then(|registry| registry.register(Fail))
        .and_then(|registry| registry.register(Echo));
    if let Err(error) = registered {
        eprintln!("{error}");
        return ExitCode::FAILURE;
    }
    pdoflow_client::cli::main(registry)
}
