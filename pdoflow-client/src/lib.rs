//! Rust client for pdoflow, the job queue inside PostgreSQL.
//!
//! - [`Client`]: enqueue (typed arguments), cancel, retry, look up jobs and
//!   queue statistics; the raw claim/finish calls for loops of your own.
//! - [`Posting`]: a named group of jobs, paused, resumed, cancelled and
//!   followed together.
//! - [`Dag`]: jobs that wait for other jobs, submitted as one workflow.
//! - [`Schedule`]: jobs enqueued by pdoflow at the times a cron pattern
//!   names.
//! - [`QueueInfo`], [`QueueLimits`] and [`Rate`]: queues paused, resumed and
//!   limited (`Client::pause_queue`, `Client::set_queue_limits`, ...).
//! - [`JobOutcome`]: a job's end, waited for with `Client::await_result`.
//! - [`Task`] and [`TaskRegistry`]: handlers by task name.
//! - [`Worker`]: the runtime that runs registered handlers.
//! - [`cli`]: the `pdoflow-run` command line, reusable in your own binary.
//! - [`config`] and [`connect`]: where the connection settings come from,
//!   and how every connection is made (TLS as libpq does it, session
//!   timeouts).

mod attempts;
mod backoff;
pub mod builtin;
pub mod cli;
mod client;
pub mod config;
pub mod connect;
mod dag;
mod error;
mod job;
mod posting;
mod queues;
mod results;
mod schedule;
mod task;
pub mod worker;

pub use attempts::JobAttempt;
pub use client::{ClaimRequest, ClaimedJob, Client, Finished, Outcome, SweepReport};
pub use dag::{Dag, DagIds, DagJob, JobNode, SubDagNode};
pub use error::{Error, Result};
pub use job::{DependencyMode, Job, JobFilter, NewJob, PriorityCount, QueueCount};
pub use posting::{Posting, PostingBuilder, PostingState, PostingStatus};
pub use queues::{QueueInfo, QueueLimits, Rate};
pub use results::{JobOutcome, AWAIT_CHUNK};
pub use schedule::{Schedule, ScheduleInfo};
pub use task::{JobContext, Task, TaskError, TaskRegistry};
pub use worker::{SweepMode, Worker, WorkerConfig, WorkerReport};

/// The channel pdoflow notifies (with the queue name as payload) when jobs
/// become available; idle workers `LISTEN` on it.
pub const NOTIFY_CHANNEL: &str = "pdoflow";
