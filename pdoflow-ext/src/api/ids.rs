//! Job ids: UUID version 7, so ids sort by creation time.

use pgrx::prelude::*;

pub fn new_id() -> pgrx::Uuid {
    // `now_v7` orders ids made by one process even within a millisecond, so a
    // bulk insert's ids follow its input order.
    pgrx::Uuid::from_bytes(uuid::Uuid::now_v7().into_bytes())
}

/// A new time-ordered (version 7) UUID.
#[pg_extern(volatile, parallel_safe)]
fn uuid_generate_v7() -> pgrx::Uuid {
    new_id()
}

/// `count` new version 7 UUIDs in ascending order (internal: bulk enqueue).
#[pg_extern(volatile, parallel_safe, name = "_uuid_v7_array")]
fn uuid_v7_array(count: i32) -> Vec<pgrx::Uuid> {
    (0..count.max(0)).map(|_| new_id()).collect()
}
