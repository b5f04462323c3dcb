//! Rust client for pdoflow, the job queue inside PostgreSQL.
//!
//! A skeleton for now: the typed client, task registry and worker runtime
//! arrive with the `pdoflow-run` work. Until then, any PostgreSQL client can
//! use the SQL API directly (see `docs/sql-api.md`).

/// The channel pdoflow notifies (with the queue name as payload) when jobs
/// become available; idle workers `LISTEN` on it.
pub const NOTIFY_CHANNEL: &str = "pdoflow";
