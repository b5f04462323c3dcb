//! The long-poll hub: every `GET /v1/jobs/{id}` with `Prefer: wait=N` waits
//! here, in process, not on a database connection.
//!
//! One dedicated connection loops on `pdoflow.await_ended(ids, timeout)`
//! with every job id some request waits for. The call returns at once when
//! one of them has ended, and otherwise sleeps in the database until any
//! job of the database ends (or the timeout); the hub then wakes the
//! requests waiting for the ids it returned, and calls again with the ids
//! still awaited. A request registers its id here before it first reads
//! the job, so an end that comes between that read and its wait is in the
//! next call's answer. A thousand long-polls cost this one connection, plus
//! the pooled ones each uses briefly to read its job before and after.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::pool::{self, Connector};
use crate::sql_error;

/// The longest one `await_ended` call sleeps: its statement keeps a snapshot
/// (and so holds vacuum back) while it lasts.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two calls: each returns early whenever any job of
/// the database ends, which under load is all the time.
const MIN_GAP: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Slot {
    waiters: usize,
    /// The job's end state, once the hub saw it end.
    ended: watch::Sender<Option<String>>,
}

/// The ids awaited, and who awaits them.
#[derive(Default)]
pub struct Hub {
    slots: Mutex<HashMap<Uuid, Slot>>,
    /// Wakes the loop when the set of ids grew while it had none to wait for.
    grown: Notify,
}

impl Hub {
    fn slots(&self) -> MutexGuard<'_, HashMap<Uuid, Slot>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts waiting for job `id` to end; the wait ends when the `Waiter`
    /// is dropped.
    pub fn watch(self: &Arc<Hub>, id: Uuid) -> Waiter {
        let receiver = {
            let mut slots = self.slots();
            let slot = slots.entry(id).or_insert_with(|| Slot {
                waiters: 0,
                ended: watch::Sender::new(None),
            });
            slot.waiters += 1;
            slot.ended.subscribe()
        };
        self.grown.notify_one();
        Waiter {
            hub: Arc::clone(self),
            id,
            receiver,
        }
    }

    /// The ids waited for whose end has not been seen yet.
    fn awaited(&self) -> Vec<Uuid> {
        self.slots()
            .iter()
            .filter(|(_, slot)| slot.ended.borrow().is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    fn ended(&self, id: Uuid, state: String) {
        if let Some(slot) = self.slots().get(&id) {
            slot.ended.send_replace(Some(state));
        }
    }

    /// How many jobs are waited for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request's wait for one job.
pub struct Waiter {
    hub: Arc<Hub>,
    id: Uuid,
    receiver: watch::Receiver<Option<String>>,
}

impl Waiter {
    /// Waits until the job has ended (true), `deadline` has passed or the
    /// server stops (false).
    pub async fn ended(&mut self, deadline: Instant, stop: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            ended = self.receiver.wait_for(Option::is_some) => ended.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
            _ = stop.wait_for(|stopped| *stopped) => false,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut slots = self.hub.slots();
        if let Some(slot) = slots.get_mut(&self.id) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&self.id);
            }
        }
    }
}

/// The hub's loop, until `stop` turns true: connects (again, with backoff,
/// when the connection breaks; waiters meanwhile run into their deadlines),
/// then waits for the awaited jobs.
pub async fn run(
    hub: Arc<Hub>,
    connector: Connector,
    service_role: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        match serve(&hub, &connector, service_role.as_deref(), &mut stop).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    "long-poll hub: {error}; connecting again in {backoff:?} (long-polls meanwhile end at their deadline)"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: Ok when stopped, Err when the connection failed.
async fn serve(
    hub: &Hub,
    connector: &Connector,
    service_role: Option<&str>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let client = pool::service_connection(connector, service_role)
        .await?
        .client;
    let describe = |error: tokio_postgres::Error| sql_error::describe(&error);
    let statement = client
        .prepare(
            "SELECT id, state FROM pdoflow.await_ended($1::uuid[], \
             pg_catalog.make_interval(secs => $2::float8))",
        )
        .await
        .map_err(describe)?;
    tracing::debug!("long-poll hub connected");
    let timeout = CALL_TIMEOUT.as_secs_f64();
    loop {
        let grown = hub.grown.notified();
        tokio::pin!(grown);
        grown.as_mut().enable();
        let ids = hub.awaited();
        if ids.is_empty() {
            tokio::select! {
                _ = grown => continue,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            }
        }
        let started = Instant::now();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ids, &timeout];
        let rows = tokio::select! {
            rows = client.query(&statement, &params) => rows.map_err(describe)?,
            _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
        };
        for row in rows {
            let id: Uuid = row.try_get(0).map_err(describe)?;
            let state: String = row.try_get(1).map_err(describe)?;
            hub.ended(id, state);
        }
        let gap = MIN_GAP.saturating_sub(started.elapsed());
        if !gap.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_come_and_go() {
        let hub = Arc::new(Hub::default());
        let id = Uuid::now_v7();
        let first = hub.watch(id);
        let second = hub.watch(id);
        assert_eq!(hub.awaited(), vec![id]);
        hub.ended(id, "succeeded".into());
        assert!(
            hub.awaited().is_empty(),
            "an ended job is not asked for again"
        );
        drop(first);
        assert_eq!(hub.len(), 1);
        drop(second);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_its_job_ends() {
        let hub = Arc::new(Hub::default());
        let id = Uuid::now_v7();
        let mut waiter = hub.watch(id);
        let (_stop_sender, mut stop) = watch::channel(false);
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(!waiter.ended(deadline, &mut stop).await);
        hub.ended(id, "failed".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(waiter.ended(deadline, &mut stop).await);
    }
}
