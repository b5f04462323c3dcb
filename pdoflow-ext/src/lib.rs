//! pdoflow: a job queue that lives inside PostgreSQL (the extension).
//!
//! Most of the SQL API (`pdoflow.enqueue_many`, `claim`, `finish`, ...) is
//! SQL and PL/pgSQL under `sql/` at the repository root, which
//! `install_script.rs` puts into the extension's install script: payloads
//! (jsonb) pass through untouched and every statement's plan is cached per
//! session. This crate supplies the rest, one concern per module:
//!
//! - `api/`: SQL-callable functions written in Rust: single-job `enqueue`,
//!   job ids, the retry delay, the isolation-level guard, and the planning
//!   half of `submit_dag`;
//! - `input/`: checking what callers pass, with errors that name the bad
//!   value (`errors.rs`): the rules (`rules.rs`), the SQL-callable checks
//!   that apply them (`checks.rs`), the JSON documents of `enqueue_many` and
//!   `submit_dag`, and tasks' JSON Schemas;
//! - `tasks/`: what enqueue must know about a task: its registration and
//!   who may enqueue it, with the per-session copy that keeps that cheap;
//! - `claim_floors/`: where each priority level's claimable jobs begin, so
//!   that claims skip the entries of jobs already claimed (kept in shared
//!   memory, lowered when jobs are queued, raised by claims);
//! - `flow_control/`: the running slots and rate limiters behind queue
//!   limits, kept in shared memory and rebuilt from the table;
//! - `claim_wait/`: claims that sleep until jobs become available;
//! - `stats/`: cumulative counters per queue (`pdoflow.stats`), kept in
//!   shared memory;
//! - `backend.rs`: this process's database, PGPROC number and latch, as the
//!   shared-memory rooms and boards use them;
//! - `announce/`: telling idle workers that a queue has work, after the
//!   enqueuing transaction commits;
//! - `sweeper/`: the background worker that takes back expired claims,
//!   announces due jobs and deletes old history;
//! - `settings.rs`: the `pdoflow.*` settings (GUCs).
//!
//! `docs/architecture.md` follows a job through these files ("Life of a
//! job").

use pgrx::prelude::*;

mod announce;
mod api;
mod backend;
mod claim_floors;
mod claim_wait;
mod flow_control;
mod input;
mod install_script;
mod results;
mod schedules;
mod settings;
mod stats;
mod sweeper;
mod tasks;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

/// Runs when PostgreSQL loads the library: at server start when pdoflow is in
/// `shared_preload_libraries`, otherwise on a session's first call into it.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    // Background workers can only be registered while the postmaster loads
    // shared_preload_libraries; a session loading pdoflow later gets none.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        announce::board::init();
        claim_floors::table::init();
        results::waiters::init();
        flow_control::counts::init();
        claim_wait::room::init();
        stats::table::init();
        tasks::registered_tasks::init();
        sweeper::register_workers();
    }
}

/// Hooks for `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
