//! The tasks every `pdoflow-run` worker has: `shell`, `noop` and `sleep`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Result;
use crate::task::{JobContext, Task, TaskError, TaskRegistry};

/// How much of a failed command's stderr goes into the job's error.
const STDERR_TAIL_BYTES: usize = 2_000;

/// Registers the built-in tasks; `log_dir` is where `shell` writes output.
pub fn register_builtins(registry: &mut TaskRegistry, log_dir: PathBuf) -> Result<()> {
    registry.register(Shell { log_dir })?;
    registry.register(Noop)?;
    registry.register(Sleep)?;
    Ok(())
}

/// The default log directory: `$XDG_STATE_HOME/pdoflow/logs`, else
/// `~/.local/state/pdoflow/logs`.
pub fn default_log_dir() -> PathBuf {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".local")
            .join("state"),
    };
    base.join("pdoflow").join("logs")
}

/// `shell`: runs a program (no shell in between) and keeps its output.
pub struct Shell {
    pub log_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellArgs {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Working directory; the worker's when absent.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Task for Shell {
    const NAME: &'static str = "shell";
    type Args = ShellArgs;
    type Output = Value;

    async fn run(&self, args: ShellArgs, job: JobContext) -> Result<Value, TaskError> {
        let (program, arguments) = args
            .command
            .split_first()
            .ok_or_else(|| TaskError::new("command must name a program: got an empty list"))?;
        std::fs::create_dir_all(&self.log_dir).map_err(|error| {
            TaskError::new(format!("log directory {}: {error}", self.log_dir.display()))
        })?;
        let stdout_log = self.log_dir.join(format!("{}.stdout.log", job.id));
        let stderr_log = self.log_dir.join(format!("{}.stderr.log", job.id));
        let open = |path: &PathBuf| {
            std::fs::File::create(path)
                .map_err(|error| TaskError::new(format!("{}: {error}", path.display())))
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(arguments)
            .envs(&args.env)
            .stdin(Stdio::null())
            .stdout(open(&stdout_log)?)
            .stderr(open(&stderr_log)?)
            // A job that times out, or a worker that stops, must not leave
            // the program running.
            .kill_on_drop(true);
        if let Some(cwd) = &args.cwd {
            command.current_dir(cwd);
        }
        let status = command
            .status()
            .await
            .map_err(|error| TaskError::new(format!("cannot run {program:?}: {error}")))?;
        if status.success() {
            return Ok(json!({
                "exit_code": 0,
                "stdout_log": stdout_log,
                "stderr_log": stderr_log,
            }));
        }
        let how = match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let tail = stderr_tail(&stderr_log);
        Err(TaskError::new(if tail.is_empty() {
            format!(
                "{program:?} {how}; stderr is empty (log: {})",
                stderr_log.display()
            )
        } else {
            format!("{program:?} {how}; stderr ends with:\n{tail}")
        }))
    }
}

/// The last few lines of a log file, at most STDERR_TAIL_BYTES.
fn stderr_tail(path: &PathBuf) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..])
        .trim_end()
        .to_owned()
}

/// `noop`: succeeds at once (for benchmarks and demos).
pub struct Noop;

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Args = Value;
    type Output = Value;

    async fn run(&self, _args: Value, _job: JobContext) -> Result<Value, TaskError> {
        Ok(json!({}))
    }
}

/// `sleep`: waits `{"ms": N}` milliseconds, then succeeds.
pub struct Sleep;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    pub ms: u64,
}

impl Task for Sleep {
    const NAME: &'static str = "sleep";
    type Args = SleepArgs;
    type Output = Value;

    async fn run(&self, args: SleepArgs, _job: JobContext) -> Result<Value, TaskError> {
        tokio::time::sleep(Duration::from_millis(args.ms)).await;
        Ok(json!({ "slept_ms": args.ms }))
    }
}
