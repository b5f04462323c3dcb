//! `pdoflow.await_ended(ids, timeout)`: one session watching many jobs.
//!
//! `await_result` takes a session per job waited for. A server that holds
//! many waits at once (the HTTP API's long-polls) watches them all from one
//! session instead: it calls this with every job it waits for, and calls
//! again with the set as it is then. The call waits in the waiting room for
//! *any* job of the database to end, so it returns, possibly with no rows,
//! whenever some job ended: also one the caller started waiting for after
//! the call began. The caller then looks again with its new set, and no
//! end is missed.

// pgrx raises a returned `ErrorReport` with its own SQLSTATE and hint only when
// it is returned as is.
#![allow(clippy::result_large_err)]

use std::time::Instant;

use pgrx::datum::Interval;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::{waiters, SAFETY_LOOK, UNREGISTERED_POLL};
use crate::backend;
use crate::input::rules;

/// The most ids one call may watch.
const MAX_IDS: usize = 100_000;

const LOOK: &str = "SELECT f.id, f.state::text FROM pdoflow.finished_jobs AS f
                    WHERE f.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY f.id";

/// `pdoflow.await_ended(ids, timeout)`: the jobs among `ids` that have
/// ended, at once if any has; otherwise after the next end of any job of
/// this database, or `timeout`.
#[pg_extern(sql = false)]
fn await_ended(
    ids: Option<Vec<Option<pgrx::Uuid>>>,
    timeout: Option<Interval>,
) -> Result<TableIterator<'static, (name!(id, pgrx::Uuid), name!(state, String))>, ErrorReport> {
    let ids: Vec<pgrx::Uuid> = rules::present("ids", ids, None)?
        .into_iter()
        .flatten()
        .collect();
    if ids.len() > MAX_IDS {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("ids has {} elements; the limit is {MAX_IDS}", ids.len()),
            "pdoflow",
        )
        .set_hint("Watch the jobs from several sessions."));
    }
    let deadline = super::wait_deadline(
        "pdoflow.await_ended",
        timeout,
        "It looks at the jobs again when woken; a transaction that reads one snapshot \
         would never see them end.",
    )?;
    // Registered before the first look: an end committed after the look's
    // snapshot sets the latch, which the sleep then finds set.
    let registration = waiters::register_any();
    let pause = if registration.is_some() {
        SAFETY_LOOK
    } else {
        UNREGISTERED_POLL
    };
    loop {
        let ended = look(&ids)?;
        let left = deadline.saturating_duration_since(Instant::now());
        // Registered, a job's end is enough (not a latch set for anything
        // else): the caller looks again with the jobs it waits for then.
        // Polling, only its own jobs count.
        let woken = registration.as_ref().is_some_and(|r| r.take_woken());
        if !ended.is_empty() || left.is_zero() || woken {
            drop(registration);
            return Ok(TableIterator::new(ended));
        }
        backend::sleep_on_latch(left.min(pause));
    }
}

/// The jobs among `ids` that have ended, as committed now.
fn look(ids: &[pgrx::Uuid]) -> Result<Vec<(pgrx::Uuid, String)>, ErrorReport> {
    Spi::connect_mut(|client| {
        let rows = client.update(LOOK, None, &[ids.to_vec().into()])?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in rows {
            if let (Some(id), Some(state)) = (row.get::<pgrx::Uuid>(1)?, row.get::<String>(2)?) {
                ended.push((id, state));
            }
        }
        Ok(ended)
    })
    .map_err(|error: pgrx::spi::SpiError| {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("pdoflow.await_ended: {error}"),
            "pdoflow",
        )
    })
}
