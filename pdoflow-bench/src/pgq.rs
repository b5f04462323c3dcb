//! PgQ (Skytools' queue, Debian's `postgresql-15-pgq3`) as the pressure
//! scenario's reference point: the design PgQue inherits, which rotates its
//! event tables and TRUNCATEs them instead of leaving dead rows behind.
//!
//! Worked the way PgQ is meant to be: producers `pgq.insert_event`, one
//! consumer takes whole batches (`next_batch`, `get_batch_events`,
//! `finish_batch`; PgQ hands a queue's batches to one consumer at a time),
//! and a ticker plus the maintenance operations run here in place of the
//! `pgqd` daemon: a tick every 50 ms, maintenance (table rotation, every
//! 10 s, retries, vacuum of PgQ's own tables) every second.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::Client;

use crate::db;
use crate::pressure::{lock, Counters, PRODUCER_BATCH};

const QUEUE: &str = "bench_pressure";
const CONSUMER: &str = "bench";

/// A fresh queue with one consumer.
pub async fn setup(db: &Client) -> Result<()> {
    db.batch_execute("CREATE EXTENSION IF NOT EXISTS pgq")
        .await
        .context("CREATE EXTENSION pgq (Debian: apt-get install postgresql-15-pgq3)")?;
    let exists: bool = db
        .query_one(
            "SELECT EXISTS (SELECT FROM pgq.queue WHERE queue_name = $1)",
            &[&QUEUE],
        )
        .await?
        .get(0);
    if exists {
        db.execute(
            "SELECT pgq.unregister_consumer($1, $2)",
            &[&QUEUE, &CONSUMER],
        )
        .await?;
        db.execute("SELECT pgq.drop_queue($1)", &[&QUEUE]).await?;
    }
    db.execute("SELECT pgq.create_queue($1)", &[&QUEUE]).await?;
    for (setting, value) in [
        ("rotation_period", "10 seconds"),
        ("ticker_max_lag", "50 milliseconds"),
        ("ticker_max_count", "500"),
    ] {
        db.execute(
            "SELECT pgq.set_queue_config($1, $2, $3)",
            &[&QUEUE, &setting, &value],
        )
        .await
        .with_context(|| format!("setting {setting}"))?;
    }
    db.execute("SELECT pgq.register_consumer($1, $2)", &[&QUEUE, &CONSUMER])
        .await?;
    Ok(())
}

/// The hot relations: PgQ's event tables (sizes and dead rows summed), and
/// the age of the oldest xmin.
pub const SIZES: &str = "
    SELECT coalesce(sum(pg_relation_size(c.oid)), 0)::bigint,
           coalesce(sum(pg_indexes_size(c.oid)), 0)::bigint,
           coalesce(sum(s.n_dead_tup), 0)::bigint,
           coalesce((SELECT max(age(backend_xmin)) FROM pg_stat_activity), 0)
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
    WHERE n.nspname = 'pgq' AND c.relkind = 'r' AND c.relname LIKE 'event\\_%'";

/// Keeps BACKLOG events waiting, PRODUCER_BATCH per transaction.
pub async fn produce(url: String, counters: Arc<Counters>) -> Result<()> {
    let db = db::connect(&url).await?;
    let insert = db
        .prepare("SELECT count(pgq.insert_event($1, 'job', '{}')) FROM generate_series(1, $2::int)")
        .await?;
    while !counters.stop.load(Ordering::Relaxed) {
        if counters.backlog_full() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        db.query_one(&insert, &[&QUEUE, &PRODUCER_BATCH])
            .await
            .context("the producer's insert_event")?;
        counters
            .produced
            .fetch_add(PRODUCER_BATCH as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// The consumer: a batch, its events, finished; again.
pub async fn consume(url: String, counters: Arc<Counters>) -> Result<()> {
    let db = db::connect(&url).await?;
    let next = db.prepare("SELECT pgq.next_batch($1, $2)").await?;
    let events = db
        .prepare("SELECT count(*) FROM pgq.get_batch_events($1)")
        .await?;
    let finish = db.prepare("SELECT pgq.finish_batch($1)").await?;
    while !counters.stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let batch: Option<i64> = db
            .query_one(&next, &[&QUEUE, &CONSUMER])
            .await
            .context("next_batch")?
            .get(0);
        let Some(batch) = batch else {
            lock(&counters.claims).push(asked.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let taken: i64 = db
            .query_one(&events, &[&batch])
            .await
            .context("get_batch_events")?
            .get(0);
        lock(&counters.claims).push(asked.elapsed());
        db.query_one(&finish, &[&batch])
            .await
            .context("finish_batch")?;
        counters
            .completed
            .fetch_add(taken as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// What pgqd does: ticks, and the maintenance operations PgQ lists.
pub async fn tick(url: String, counters: Arc<Counters>) -> Result<()> {
    let db = db::connect(&url).await?;
    let mut last_maintenance = Instant::now();
    while !counters.stop.load(Ordering::Relaxed) {
        db.batch_execute("SELECT pgq.ticker()")
            .await
            .context("pgq.ticker()")?;
        if last_maintenance.elapsed() >= Duration::from_secs(1) {
            last_maintenance = Instant::now();
            let operations = db
                .query(
                    "SELECT func_name, func_arg FROM pgq.maint_operations()",
                    &[],
                )
                .await
                .context("pgq.maint_operations()")?;
            for operation in operations {
                let function: String = operation.get(0);
                let argument: Option<String> = operation.get(1);
                let statement = match (function.as_str(), argument) {
                    ("vacuum", Some(table)) => format!("VACUUM {table}"),
                    (function, Some(argument)) => {
                        format!("SELECT {function}({})", quote_literal(&argument))
                    }
                    (function, None) => format!("SELECT {function}()"),
                };
                db.batch_execute(&statement)
                    .await
                    .with_context(|| format!("PgQ maintenance: {statement}"))?;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
