//! Checking what callers pass to the SQL API before anything is written:
//! `rules.rs` states each rule once as a pure function, `checks.rs` applies
//! them to SQL arguments (the `pdoflow._check_*` functions the PL/pgSQL API
//! calls first), `errors.rs` turns a broken rule into an error with a
//! SQLSTATE that names the parameter and the value. The JSON documents of
//! `enqueue_many(jobs jsonb)` and `submit_dag` and the JSON Schemas of
//! registered tasks are read here too.

pub mod checks;
pub mod dag_document;
pub mod errors;
pub mod job_document;
pub mod queue_controls;
pub mod rules;
pub mod task_schema;
