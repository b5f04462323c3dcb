//! Ids of jobs and postings: UUID version 7, so ids sort by creation time.
//! In a shard of a sharded queue (`pdoflow.shard` set), the last byte, one
//! of the version's random ones, holds the shard's number, so that the id
//! says where its job lives (`pdoflow.shard_of`).

use pgrx::prelude::*;

use crate::settings::SHARD;

pub fn new_id() -> pgrx::Uuid {
    // `now_v7` orders ids made by one process even within a millisecond, so a
    // bulk insert's ids follow its input order. Its counter lies above the
    // last 32 random bits, so the shard's byte leaves that order alone.
    let mut bytes = uuid::Uuid::now_v7().into_bytes();
    if let Ok(shard) = u8::try_from(SHARD.get()) {
        bytes[15] = shard;
    }
    pgrx::Uuid::from_bytes(bytes)
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
