//! The tasks `pdoflow-run` workers have: `noop` and `sleep` always, and
//! `shell` only when started with `--enable-shell`.
//!
//! `shell` runs whatever command its job's args name, as the worker's OS
//! user, with the worker's environment and files (its database password
//! among them), and stores the end of its output in the job's result, which
//! every producer can read. So enabling it means trusting every role that
//! may enqueue it; `pdoflow-run worker --enable-shell` refuses to start until
//! `pdoflow.grant_task('shell', ...)` has limited who that is (see
//! docs/security.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Result;
use crate::task::{JobContext, Task, TaskError, TaskRegistry};

/// How much of a log goes into a job's result (stdout) or error (stderr).
const LOG_TAIL_BYTES: usize = 2_000;

/// The name of the `shell` task, the one that runs commands.
pub const SHELL: &str = Shell::NAME;

/// Which built-in tasks a worker registers.
#[derive(Clone, Debug)]
pub struct Builtins {
    /// Register `shell` (default false: see the module documentation).
    pub shell: bool,
    /// Where `shell` writes each job's output.
    pub log_dir: PathBuf,
}

/// Registers the built-in tasks: `noop`, `sleep`, and `shell` when asked.
pub fn register_builtins(registry: &mut TaskRegistry, builtins: Builtins) -> Result<()> {
    if builtins.shell {
        registry.register(Shell {
            log_dir: builtins.log_dir,
        })?;
    }
    registry.register(Noop)?;
    registry.register(Sleep)?;
    Ok(())
}

/// The default log directory: `$XDG_STATE_HOME/pdoflow/logs`, else
/// `~/.local/state/pdoflow/logs`.
pub fn default_log_dir() -> PathBuf {
    crate::config::xdg_dir("XDG_STATE_HOME", ".local/state")
        .unwrap_or_else(|| PathBuf::from(".local/state"))
        .join("pdoflow")
        .join("logs")
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
    // Whoever may enqueue it runs commands here: only the roles granted it.
    const GRANTED_ONLY: bool = true;
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
            // What the job knows about itself, for scripts; in a DAG, what
            // its parents produced (a JSON object, see JobContext).
            .env("PDOFLOW_JOB_ID", job.id.to_string())
            .env("PDOFLOW_ATTEMPT", job.attempt.to_string())
            .env(
                "PDOFLOW_PARENT_RESULTS",
                Value::Object(job.parent_results().clone()).to_string(),
            )
            .envs(&args.env)
            .stdin(Stdio::null())
            .stdout(open(&stdout_log)?)
            .stderr(open(&stderr_log)?)
            // Its own process group, so that everything it starts can be
            // stopped with it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &args.cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|error| TaskError::new(format!("cannot run {program:?}: {error}")))?;
        // A job that times out, or a worker that stops, drops this future:
        // the guard then kills the whole process group, not just the program.
        let _group = child.id().map(ProcessGroupGuard);
        let status = child
            .wait()
            .await
            .map_err(|error| TaskError::new(format!("waiting for {program:?}: {error}")))?;
        if status.success() {
            // The end of stdout goes into the result, so that the job's
            // children can use what it printed.
            return Ok(json!({
                "exit_code": 0,
                "stdout_tail": log_tail(&stdout_log),
                "stdout_log": stdout_log.to_string_lossy(),
                "stderr_log": stderr_log.to_string_lossy(),
            }));
        }
        let how = match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let tail = log_tail(&stderr_log);
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

/// Kills a process group when dropped (SIGKILL; no-op once it is gone).
struct ProcessGroupGuard(u32);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        if let Ok(group) = libc::pid_t::try_from(self.0) {
            // SAFETY: kill(2) on the process group this task created.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// The end of a log file: at most LOG_TAIL_BYTES, read from the end.
fn log_tail(path: &PathBuf) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let start = length.saturating_sub(LOG_TAIL_BYTES as u64);
    let mut bytes = Vec::with_capacity(LOG_TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).trim_end().to_owned()
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
