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

use std::cell::{Cell, RefCell};
use std::ffi::CString;

use pgrx::prelude::*;

use crate::settings::{self, NotifyMode};

/// The channel workers LISTEN on; the payload is the queue's name.
pub const CHANNEL: &std::ffi::CStr = c"pdoflow";

thread_local! {
    /// The queues this transaction announces after its commit; `None`
    /// outside a transaction that announced something.
    static PENDING: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    /// Whether this session registered `at_transaction_end`.
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
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
        let queues = match pending.as_mut() {
            Some(queues) => queues,
            None => {
                if !board::notifier_running() {
                    return false;
                }
                register_callback();
                pending.insert(Vec::new())
            }
        };
        if !queues.iter().any(|known| known == queue) {
            queues.push(queue.to_owned());
        }
        true
    })
}

/// Registers `at_transaction_end` once per session: registering it for
/// every announcing transaction cost single-job enqueue allocations each time.
fn register_callback() {
    if REGISTERED.get() {
        return;
    }
    // SAFETY: registers a plain function that lives as long as the library.
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    REGISTERED.set(true);
}

/// After the commit, when the jobs are visible, the queues go to the
/// sweeper (if it went away meanwhile, nobody announces them: workers find
/// the jobs at their next poll). A rolled back or prepared transaction
/// announces nothing.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _argument: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            if let Some(queues) = PENDING.with(RefCell::take) {
                board::post(&queues);
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            PENDING.with(RefCell::take);
        }
        _ => {}
    }
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
