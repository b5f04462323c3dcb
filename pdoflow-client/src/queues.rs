//! Queue controls: pausing a queue, limiting how many of its jobs run at
//! once and how fast they are claimed, limiting the running jobs per
//! concurrency key (`pdoflow.pause_queue` and its siblings), and reading
//! `pdoflow.queues`.
//!
//! Changing a queue's controls needs the `pdoflow_admin` role; reading
//! `pdoflow.queues` does not. The server checks every value and says what
//! is wrong with it (a limit below 1, say).
//!
//! ```no_run
//! # async fn example(client: &pdoflow_client::Client) -> pdoflow_client::Result<()> {
//! use std::time::Duration;
//! use pdoflow_client::{QueueLimits, Rate};
//!
//! client.pause_queue("emails").await?;
//! client
//!     .set_queue_limits(
//!         "emails",
//!         QueueLimits {
//!             max_running: Some(10),
//!             rate: Some(Rate { count: 100, per: Duration::from_secs(60) }),
//!         },
//!     )
//!     .await?;
//! client.set_key_limit("emails", Some(1)).await?; // one job per concurrency key
//! client.resume_queue("emails").await?;
//! for queue in client.queues().await? {
//!     println!("{}: {} waiting, {} running", queue.queue, queue.waiting, queue.running);
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use tokio_postgres::Row;

use crate::client::Client;
use crate::error::{Error, Result};

/// How fast a queue's jobs may be claimed: at most `count` claims per `per`,
/// spread evenly over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Claims allowed per period (from 1 to 1,000,000,000).
    pub count: i32,
    /// The period (from 1 ms to 1 year; sent to the microsecond).
    pub per: Duration,
}

impl Rate {
    /// `count` claims per second, the SQL function's default period.
    pub fn per_second(count: i32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(1),
        }
    }
}

/// Serialized as `{"count": 10, "per_seconds": 1.0}`.
impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut rate = serializer.serialize_struct("Rate", 2)?;
        rate.serialize_field("count", &self.count)?;
        rate.serialize_field("per_seconds", &self.per.as_secs_f64())?;
        rate.end()
    }
}

/// Both limits of a queue, set together by `Client::set_queue_limits`:
/// `None` removes a limit. `QueueLimits::default()` (both `None`) removes
/// both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// At most this many of the queue's jobs running at once (from 1 to
    /// 1,000,000); `None`: no limit (the default).
    pub max_running: Option<i32>,
    /// At most this many claims per period; `None`: no limit (the default).
    pub rate: Option<Rate>,
}

/// One row of `pdoflow.queues`: a queue that has jobs or controls, its
/// controls and its job counts.
#[derive(Clone, Debug, Serialize)]
pub struct QueueInfo {
    pub queue: String,
    /// Its jobs are not claimed (running ones finish; enqueue still works).
    pub paused: bool,
    /// At most this many of its jobs run at once; `None`: no limit.
    pub max_running: Option<i32>,
    /// At most this many claims per period; `None`: no limit.
    pub rate: Option<Rate>,
    /// At most this many running jobs per concurrency key; `None`: no limit.
    pub key_limit: Option<i32>,
    /// Due jobs not running yet.
    pub waiting: i64,
    /// Jobs not due yet.
    pub delayed: i64,
    /// Jobs waiting on parents.
    pub blocked: i64,
    pub running: i64,
    /// Waiting jobs held back right now by the pause, the running limit or a
    /// full key (those a rate limit holds back count as waiting only).
    pub throttled: i64,
    /// Running slots taken in this server's count; `None` until a claim
    /// counted them.
    pub running_slots: Option<i64>,
}

/// The columns `QueueInfo::from_row` reads, in order; the period in seconds.
const QUEUE_COLUMNS: &str = "queue, paused, max_running, rate, \
     extract(epoch FROM per)::float8, key_limit, waiting, delayed, blocked, running, throttled, \
     running_slots";

impl QueueInfo {
    fn from_row(row: &Row) -> Result<QueueInfo> {
        let count: Option<i32> = row.try_get(3)?;
        let per_seconds: Option<f64> = row.try_get(4)?;
        let rate = match (count, per_seconds) {
            (Some(count), Some(seconds)) => Some(Rate {
                count,
                per: Duration::try_from_secs_f64(seconds).map_err(|error| {
                    Error::Invalid(format!("the rate period {seconds} s: {error}"))
                })?,
            }),
            _ => None,
        };
        Ok(QueueInfo {
            queue: row.try_get(0)?,
            paused: row.try_get(1)?,
            max_running: row.try_get(2)?,
            rate,
            key_limit: row.try_get(5)?,
            waiting: row.try_get(6)?,
            delayed: row.try_get(7)?,
            blocked: row.try_get(8)?,
            running: row.try_get(9)?,
            throttled: row.try_get(10)?,
            running_slots: row.try_get(11)?,
        })
    }
}

impl Client {
    /// Stops claims of `queue`'s jobs until it is resumed: running jobs
    /// finish, enqueue still works. A queue need not have jobs to be
    /// paused. False when it was paused already. Needs `pdoflow_admin`.
    pub async fn pause_queue(&self, queue: &str) -> Result<bool> {
        self.queue_call("SELECT pdoflow.pause_queue($1)", queue)
            .await
    }

    /// Lets a paused queue's jobs be claimed again; false when it was not
    /// paused. Needs `pdoflow_admin`.
    pub async fn resume_queue(&self, queue: &str) -> Result<bool> {
        self.queue_call("SELECT pdoflow.resume_queue($1)", queue)
            .await
    }

    async fn queue_call(&self, sql: &str, queue: &str) -> Result<bool> {
        let row = self.postgres().query_one(sql, &[&queue]).await?;
        Ok(row.try_get(0)?)
    }

    /// Sets both limits of `queue` at once (`pdoflow.set_queue_limits`): a
    /// limit left `None` is removed, so `QueueLimits::default()` removes
    /// both. Keeps the queue's pause and per-key limit. A limit below 1 is
    /// refused (SQLSTATE 22023) with a message that says why. Needs
    /// `pdoflow_admin`.
    pub async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        let count = limits.rate.map(|rate| rate.count);
        // The SQL function's default period when there is no rate (it is
        // not stored then).
        let per = limits
            .rate
            .map_or(Duration::from_secs(1), |rate| rate.per)
            .as_secs_f64();
        self.postgres()
            .execute(
                "SELECT pdoflow.set_queue_limits($1, $2, $3, make_interval(secs => $4))",
                &[&queue, &limits.max_running, &count, &per],
            )
            .await?;
        Ok(())
    }

    /// At most `max_running` running jobs of `queue` per distinct
    /// concurrency key (`NewJob::concurrency_key`; jobs without one are not
    /// limited); `None` removes the limit. Keeps the queue's pause and other
    /// limits. Needs `pdoflow_admin`.
    pub async fn set_key_limit(&self, queue: &str, max_running: Option<i32>) -> Result<()> {
        self.postgres()
            .execute(
                "SELECT pdoflow.set_key_limit($1, $2)",
                &[&queue, &max_running],
            )
            .await?;
        Ok(())
    }

    /// Every queue with jobs or controls (`pdoflow.queues`), by name.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM pdoflow.queues ORDER BY queue");
        let rows = self.postgres().query(&sql, &[]).await?;
        rows.iter().map(QueueInfo::from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_rate_serializes_its_period_in_seconds() {
        let rate = Rate {
            count: 10,
            per: Duration::from_millis(1_500),
        };
        assert_eq!(
            serde_json::to_value(rate).ok(),
            Some(json!({"count": 10, "per_seconds": 1.5}))
        );
        assert_eq!(Rate::per_second(3).per, Duration::from_secs(1));
        assert_eq!(
            QueueLimits::default(),
            QueueLimits {
                max_running: None,
                rate: None
            }
        );
    }
}
