//! A worker binary with a handler of its own, next to the built-in tasks.
//! It takes every `pdoflow-run` command and flag:
//!
//! ```sh
//! cargo run -p pdoflow-client --example custom_worker -- worker --queues emails
//! cargo run -p pdoflow-client --example custom_worker -- enqueue --task send_email --args '{"to": "ada@example.com"}'
//! ```

use std::process::ExitCode;

use pdoflow_client::{JobContext, Task, TaskError, TaskRegistry};
use serde::{Deserialize, Serialize};

struct SendEmail;

#[derive(Deserialize)]
struct Email {
    to: String,
}

#[derive(Serialize)]
struct Sent {
    to: String,
    attempt: i32,
}

impl Task for SendEmail {
    const NAME: &'static str = "send_email";
    type Args = Email;
    type Output = Sent;

    async fn run(&self, email: Email, job: JobContext) -> Result<Sent, TaskError> {
        if !email.to.contains('@') {
            return Err(TaskError::new(format!("not an address: {:?}", email.to)));
        }
        Ok(Sent {
            to: email.to,
            attempt: job.attempt,
        })
    }
}

fn main() -> ExitCode {
    let mut registry = TaskRegistry::new();
    if let Err(error) = registry.register(SendEmail) {
        eprintln!("{error}");
        return ExitCode::FAILURE;
    }
    pdoflow_client::cli::main(registry)
}
