//! pdoflow: a job queue that lives inside PostgreSQL.
//!
//! The SQL API (`pdoflow.enqueue`, `claim`, `finish`, ...) is written in SQL
//! and PL/pgSQL under `sql/` at the repository root: job payloads (jsonb) then
//! pass through untouched and every statement's plan is cached per session.
//! This crate supplies what SQL does badly: time-ordered job ids, input
//! validation with precise errors, the retry policy and the settings (GUCs).
//! See `docs/architecture.md` for the design.

use pgrx::prelude::*;

mod announce;
mod checks;
mod dag_document;
mod dag_plan;
mod enqueue;
mod errors;
mod ids;
mod isolation;
mod job_document;
mod kept_indexes;
mod kept_plan;
mod plain_insert;
mod registered_tasks;
mod retry_policy;
mod settings;
mod sql_api;
mod sweeper;
mod task_grants;
mod task_schema;
mod validate;

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
        registered_tasks::init();
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
