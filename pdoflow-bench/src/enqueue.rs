//! `bulk` and `enqueue`: putting jobs in, in one statement and one job per
//! transaction, next to the plain-SQL INSERT of the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db;
use crate::raw::Ceilings;
use crate::report;
use crate::Bench;

const BULK_JOBS: i32 = 100_000;

/// `bulk`: `enqueue_many(task, jsonb[])` of 100,000 jobs, three times.
pub async fn bulk(bench: &Bench, ceilings: &mut Ceilings) -> Result<()> {
    report::scenario(
        "bulk",
        "100,000 jobs in one statement: pdoflow.enqueue_many('noop', jsonb[]), best of 3",
    );
    let ceiling = ceilings.bulk_insert(bench).await?;
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    let statement = format!(
        "SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{{}}'::jsonb, ARRAY[{BULK_JOBS}]))"
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(db::timed_statement(&db, &statement).await?);
    }
    let best = runs.iter().min().copied().unwrap_or_default();
    report::figure(
        "each run",
        runs.iter()
            .map(|run| report::millis(*run))
            .collect::<Vec<_>>()
            .join(", "),
    );
    report::rate(
        "enqueue_many, best run",
        f64::from(BULK_JOBS) / best.as_secs_f64(),
        "jobs",
        Some(ceiling),
    );
    db::reset(&db).await?;
    Ok(())
}

/// `enqueue`: one `pdoflow.enqueue` per transaction from `clients`
/// connections, with each `pdoflow.notify` mode, while one session listens.
pub async fn single(bench: &Bench, ceilings: &mut Ceilings) -> Result<()> {
    let clients = bench.clients;
    report::scenario(
        "enqueue",
        &format!(
            "one pdoflow.enqueue per transaction, {clients} clients, each pdoflow.notify mode"
        ),
    );
    let ceiling = ceilings.insert(bench).await?;
    for mode in ["off", "direct", "coalesced"] {
        let db = db::connect(&bench.url).await?;
        db::reset(&db).await?;
        let listened = Arc::new(AtomicU64::new(0));
        let listener = tokio::spawn(count_notifications(bench.url.clone(), listened.clone()));
        // Let the LISTEN take effect before the clients start.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let throughput = db::timed_clients(
            &bench.url,
            clients,
            bench.duration,
            &format!("SET pdoflow.notify = '{mode}'"),
            &["SELECT pdoflow.enqueue('noop', '{}')"],
            |session, _| async move {
                session.db.execute(&session.statements[0], &[]).await?;
                Ok(1)
            },
        )
        .await?;
        // Coalesced notifications follow the commits by a moment.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        listener.abort();
        report::rate(
            &format!("pdoflow.notify = {mode}"),
            throughput.rows_per_second(),
            "jobs",
            Some(ceiling),
        );
        report::figure(
            "    notifications a listener received",
            format!(
                "{} for {} jobs",
                listened.load(Ordering::Relaxed),
                throughput.rows
            ),
        );
    }
    Ok(())
}

/// LISTENs on pdoflow's channel and counts what arrives, until aborted.
async fn count_notifications(url: String, count: Arc<AtomicU64>) -> Result<()> {
    let (client, mut connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .context("connecting the listener")?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {}", pdoflow_client::NOTIFY_CHANNEL);
    {
        // The connection must be polled for LISTEN to complete.
        let listening = client.batch_execute(&statement);
        tokio::pin!(listening);
        loop {
            tokio::select! {
                result = &mut listening => { result?; break; }
                message = messages.next() => if message.is_none() { return Ok(()); },
            }
        }
    }
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(_) = message? {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(client);
    Ok(())
}
