//! Who may enqueue which task: the grants of `pdoflow.grant_task`
//! (sql/api/tasks.sql), enforced for every way a job is enqueued.
//!
//! A task with at least one grant may be enqueued only by a role that has
//! the privileges of a granted role (its members through INHERIT, as for
//! table privileges), by `pdoflow_admin` members and by superusers. A task
//! without grants is open to every producer.
//!
//! The role checked is the *calling role*: the session's current role
//! outside any function (the login role, or the one chosen with SET ROLE, as
//! PostgREST does per request). The API functions run as the extension's
//! owner (SECURITY DEFINER), so `current_user` inside them is not the
//! caller, and PostgreSQL keeps no record of who called them; a SECURITY
//! DEFINER function of the user's own that calls pdoflow does not change
//! the calling role either. The same role is recorded in every job's
//! `enqueued_by`.
//!
//! Inside a security-restricted operation (ANALYZE or CREATE INDEX running
//! a table owner's index expressions, REFRESH MATERIALIZED VIEW, ...)
//! PostgreSQL runs the table owner's functions for whoever started the
//! operation, autovacuum's superuser included: the session's role says
//! nothing about who wrote the code asking for the job. A task with grants
//! is refused there.

// See checks.rs: an ErrorReport keeps its SQLSTATE only when returned as is.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::ffi::CStr;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::input::errors::InputError;
use crate::input::rules::{name, present};
use crate::tasks::registered_tasks;

/// The calling role (see the module documentation).
pub fn calling_role() -> pg_sys::Oid {
    // SAFETY: reads the session's outer user id.
    unsafe { pg_sys::GetOuterUserId() }
}

/// A role's name; its oid in digits when it no longer exists.
fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; with noerr the result is NULL when missing.
    unsafe {
        let found = pg_sys::GetUserNameFromId(role, true);
        if found.is_null() {
            return role.to_u32().to_string();
        }
        CStr::from_ptr(found).to_string_lossy().into_owned()
    }
}

/// Whether `role` may enqueue a task granted to `grantees`: the task has no
/// grant, or `role` has the privileges of a grantee or of pdoflow_admin
/// (superusers have every role's). The one place this rule is written: the
/// enqueue paths ask it for the calling role, `pdoflow.job_is_granted` for
/// the role that enqueued a job.
fn may_enqueue(role: pg_sys::Oid, grantees: &[pg_sys::Oid]) -> bool {
    if grantees.is_empty() {
        return true;
    }
    // SAFETY: role lookups through the syscache and the membership cache.
    unsafe {
        let admin = pg_sys::get_role_oid(c"pdoflow_admin".as_ptr(), true);
        (admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(role, admin))
            || grantees
                .iter()
                .any(|&grantee| pg_sys::has_privs_of_role(role, grantee))
    }
}

/// Whether a security-restricted operation is under way (see the module
/// documentation).
fn in_restricted_operation() -> bool {
    // SAFETY: reads the current security context's flags.
    unsafe { pg_sys::InSecurityRestrictedOperation() }
}

/// Refuses (42501) a job of `task` when the calling role may not enqueue it.
pub fn check(task: &str, grantees: &[pg_sys::Oid]) -> Result<(), ErrorReport> {
    if grantees.is_empty() {
        return Ok(());
    }
    if in_restricted_operation() {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("task \"{task}\" may not be enqueued inside a security-restricted operation"),
            "pdoflow",
        )
        .set_detail(format!(
            "ANALYZE, CREATE INDEX, REFRESH MATERIALIZED VIEW and the like run a table owner's \
             functions for whoever started them, so pdoflow cannot tell who asks for the job; \
             task \"{task}\" is granted to particular roles only (see pdoflow.task_grants)."
        ))
        .set_hint(
            "Enqueue jobs of granted tasks from ordinary statements, not from index \
                   expressions or materialized views.",
        ));
    }
    let caller = calling_role();
    if may_enqueue(caller, grantees) {
        return Ok(());
    }
    let caller = role_name(caller);
    Err(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("role \"{caller}\" may not enqueue task \"{task}\""),
        "pdoflow",
    )
    .set_detail(format!(
        "Task \"{task}\" is granted to particular roles only (see pdoflow.task_grants)."
    ))
    .set_hint(format!(
        "An admin can allow it with SELECT pdoflow.grant_task('{}', '{}');",
        task.replace('\'', "''"),
        caller.replace('\'', "''")
    )))
}

/// `pdoflow._check_task_grants(tasks)`: raises 42501 for the first of
/// `tasks` (in name order) that the calling role may not enqueue. NULL
/// elements (refused elsewhere) and a NULL array pass.
#[pg_extern(volatile, name = "_check_task_grants")]
fn check_task_grants(tasks: Option<Vec<Option<String>>>) -> Result<(), ErrorReport> {
    let tasks: BTreeSet<String> = tasks.unwrap_or_default().into_iter().flatten().collect();
    if tasks.is_empty() {
        return Ok(());
    }
    Spi::connect_mut(|client| {
        for task in &tasks {
            let grantees = registered_tasks::rules(client, task)?.grantees;
            if let Err(refused) = check(task, &grantees) {
                return Ok(Err(refused));
            }
        }
        Ok(Ok(()))
    })
    .map_err(|error| internal("_check_task_grants", error))?
}

/// `pdoflow._may_enqueue(role, task)`: whether `role` may enqueue `task`
/// under its current grants (see `may_enqueue`).
#[pg_extern(stable, name = "_may_enqueue")]
fn may_enqueue_task(role: pg_sys::Oid, task: &str) -> Result<bool, ErrorReport> {
    let grantees = Spi::connect_mut(|client| registered_tasks::rules(client, task))
        .map_err(|error| internal("_may_enqueue", error))?
        .grantees;
    Ok(may_enqueue(role, &grantees))
}

/// An SPI failure that is not an SQL error (those propagate as they are).
fn internal(function: &str, error: pgrx::spi::SpiError) -> ErrorReport {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("pdoflow.{function}: {error}"),
        "pdoflow",
    )
}

/// `pdoflow._calling_role()`: the name of the role that calls pdoflow
/// (see the module documentation), for `enqueued_by` and `granted_by`.
#[pg_extern(volatile, parallel_safe, name = "_calling_role")]
pub fn calling_role_name() -> String {
    role_name(calling_role())
}

/// The arguments of `grant_task` and `revoke_task`.
#[pg_extern(stable, parallel_safe, name = "_check_task_grant")]
fn check_task_grant(task: Option<&str>, grantee: Option<pg_sys::Oid>) -> Result<(), ErrorReport> {
    name("task", present("task", task, None)?)?;
    let grantee = present(
        "grantee",
        grantee,
        Some("Name a role: pdoflow.grant_task('task', 'role_name')."),
    )?;
    if grantee == pg_sys::InvalidOid {
        return Err(InputError::WrongType {
            param: "grantee".into(),
            expected: "a role",
            found: "- (no role)".into(),
        }
        .into());
    }
    Ok(())
}
