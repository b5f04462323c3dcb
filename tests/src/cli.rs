//! Running a command line built on `pdoflow_client::cli` (the tests'
//! `test-worker`, which shares `pdoflow-run`'s) against a test database.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::TestDatabase;

/// How long one command may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// `program` (the path of the binary) run against `database`, which it
/// finds through `PDOFLOW_DATABASE_URL`.
pub struct Cli<'a> {
    pub program: &'a str,
    pub database: &'a TestDatabase,
}

impl Cli<'_> {
    /// The command, stdin closed, stdout and stderr captured.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.program);
        command
            .env("PDOFLOW_DATABASE_URL", self.database.url())
            .env_remove("DATABASE_URL")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(PATIENCE, self.command(args).output())
            .await
            .expect("the command finishes")
            .expect("run the command")
    }

    /// Its stdout; fails the test when it does not succeed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Its stdout read as JSON (for `--json`).
    pub async fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args).await;
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{args:?}: {error}: {stdout}"))
    }

    /// Runs `args`, expecting exit code `code` and `message` in stderr.
    pub async fn fails(&self, args: &[&str], code: i32, message: &str) {
        let output = self.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

impl TestDatabase {
    /// `program` run against this database.
    pub fn cli<'a>(&'a self, program: &'a str) -> Cli<'a> {
        Cli {
            program,
            database: self,
        }
    }
}
