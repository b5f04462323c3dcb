//! This process as the server knows it: its database, its PGPROC number and
//! its latch. The shared-memory boards and waiting rooms (`announce/`,
//! `claim_floors/`, `flow_control/`, `results/`, `claim_wait/`) name
//! processes and databases, and wake and sleep, through these.

use std::time::Duration;

use pgrx::prelude::*;

/// The OID of this process's database.
pub fn database() -> u32 {
    // SAFETY: MyDatabaseId is set for every backend connected to a database.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// This process's place in `ProcGlobal->allProcs` (what PostgreSQL 15 kept
/// in `PGPROC.pgprocno` and 17 calls `MyProcNumber`): the same on every
/// version.
pub fn procno() -> Option<usize> {
    // SAFETY: MyProc points into the allProcs array for every backend and
    // background worker that can reach this code.
    let offset = unsafe { pg_sys::MyProc.offset_from((*pg_sys::ProcGlobal).allProcs) };
    usize::try_from(offset).ok()
}

/// Sets the latch of the process at `procno` in `ProcGlobal->allProcs`
/// (one that wrote its number into a board or room); a number outside the
/// array is ignored.
pub fn set_latch(procno: usize) {
    // SAFETY: the index is checked against the array's length; setting
    // another process's latch is what latches are for.
    unsafe {
        let procs = &*pg_sys::ProcGlobal;
        if procno >= procs.allProcCount as usize {
            return;
        }
        let process = procs.allProcs.add(procno);
        pg_sys::SetLatch(&mut (*process).procLatch);
    }
}

/// Sleeps on this process's latch for at most `pause` (rounded up to a
/// whole millisecond, at least one: a sleep of 0 ms would spin); returns
/// early when the latch is set, and raises on cancel, statement_timeout or
/// termination.
pub fn sleep_on_latch(pause: Duration) {
    let millis = i64::try_from(pause.as_micros().div_ceil(1_000))
        .unwrap_or(i64::MAX)
        .max(1);
    // SAFETY: waits on this process's own latch, then resets it, as every
    // latch user does; interrupts are handled right after.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            millis as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    check_for_interrupts!();
}
