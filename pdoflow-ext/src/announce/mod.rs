//! Announcing work: `NOTIFY pdoflow, '<queue>'` when jobs become available,
//! so that idle workers LISTENing wake at once instead of at their next poll.
//!
//! PostgreSQL serialises the commits of transactions that sent a NOTIFY (one
//! lock held through the commit's WAL flush), so a NOTIFY in every enqueueing
//! transaction makes concurrent producers commit one at a time. By default
//! (`pdoflow.notify = coalesced`) a transaction only notes its queues; after
//! it commits, they go on the announcement board (`board.rs`) and the
//! database's sweeper sends one NOTIFY per queue for everything that
//! committed meanwhile, from a transaction that does not wait for the disk.
//! Without a sweeper for the database the transaction notifies itself
//! (`direct`), as it always does with `pdoflow.notify = direct`.

pub mod board;

use std::cell::RefCell;
use std::ffi::CString;

use pgrx::prelude::*;
use pgrx::{register_xact_callback, PgXactCallbackEvent};

use crate::settings::{self, NotifyMode};

/// The channel workers LISTEN on; the payload is the queue's name.
pub const CHANNEL: &std::ffi::CStr = c"pdoflow";

/// The queues this transaction announces after its commit.
struct Pending {
    queues: Vec<String>,
}

thread_local! {
    /// `None` outside a transaction that announced something.
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// Announces that `queue` has work, as `pdoflow.notify` says. Internal: the
/// API functions call it where they used to call `pg_notify`.
#[pg_extern(volatile, parallel_unsafe, name = "_announce")]
pub fn announce(queue: &str) {
    match settings::NOTIFY.get() {
        NotifyMode::Off => {}
        NotifyMode::Direct => notify_now(queue),
        NotifyMode::Coalesced => {
            if queue.len() > board::QUEUE_NAME_MAX || !remember(queue) {
                notify_now(queue);
            }
        }
    }
}

/// Notes `queue` for after the commit; false when no sweeper would announce it.
fn remember(queue: &str) -> bool {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if pending.is_none() {
            if !board::notifier_running() {
                return false;
            }
            *pending = Some(Pending { queues: Vec::new() });
            register_xact_callback(PgXactCallbackEvent::Commit, after_commit);
            register_xact_callback(PgXactCallbackEvent::Abort, forget);
            register_xact_callback(PgXactCallbackEvent::Prepare, forget);
        }
        if let Some(pending) = pending.as_mut() {
            if !pending.queues.iter().any(|known| known == queue) {
                pending.queues.push(queue.to_owned());
            }
        }
        true
    })
}

/// Runs after the commit, when the jobs are visible: hands the queues to
/// the sweeper. If the sweeper went away meanwhile, nobody announces them;
/// workers find the jobs at their next poll.
fn after_commit() {
    if let Some(pending) = PENDING.with(|pending| pending.borrow_mut().take()) {
        board::post(&pending.queues);
    }
}

/// A rolled back (or prepared) transaction announces nothing.
fn forget() {
    PENDING.with(|pending| pending.borrow_mut().take());
}

/// PostgreSQL's NOTIFY, which pgrx's bindings leave out.
mod postgres {
    use std::ffi::c_char;
    extern "C-unwind" {
        pub fn Async_Notify(channel: *const c_char, payload: *const c_char);
    }
}

/// `pg_notify('pdoflow', queue)` in the current transaction.
pub fn notify_now(queue: &str) {
    // A queue name holds no NUL (checked at enqueue); never raise for one.
    let Ok(payload) = CString::new(queue) else {
        return;
    };
    // The guard turns an ERROR raised inside (a full notification queue)
    // into a Rust unwind that pgrx reports as that ERROR.
    unsafe {
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            postgres::Async_Notify(CHANNEL.as_ptr(), payload.as_ptr())
        })
    };
}
