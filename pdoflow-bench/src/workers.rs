//! The workers the scenarios measure: `pdoflow-run` as a separate process,
//! or the same worker runtime in this process with a handler that records
//! what the scenario needs.

use std::process::Stdio;

use anyhow::{Context, Result};
use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::{TaskRegistry, Worker, WorkerConfig, WorkerReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Bench;

/// `pdoflow-run` on the benchmark database with `arguments`, logging
/// warnings only.
pub fn pdoflow_run(bench: &Bench, arguments: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&bench.pdoflow_run);
    command
        .arg("--database-url")
        .arg(&bench.url)
        .args(["--log-level", "warn"])
        .args(arguments)
        .stdin(Stdio::null());
    command
}

/// A worker running in this process until `stop`.
pub struct InProcess {
    stop: oneshot::Sender<()>,
    running: JoinHandle<pdoflow_client::Result<WorkerReport>>,
}

impl InProcess {
    /// Starts a worker with `registry` and `config` on the benchmark database.
    pub fn start(bench: &Bench, registry: TaskRegistry, config: WorkerConfig) -> Result<Self> {
        let settings = ConnectionSettings::from_url(&bench.url, "pdoflow-bench")
            .context("parsing the database URL")?;
        let worker = Worker::new(settings, registry, config)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        Ok(InProcess { stop, running })
    }

    /// Stops it gracefully and waits for it.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.running.await.context("the worker panicked")??;
        Ok(())
    }
}
