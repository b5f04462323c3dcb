//! `bulk` and `enqueue`: putting jobs in, in one statement and one job per
//! transaction, next to the plain-SQL INSERT of the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db;
use crate::raw::{self, Ceilings};
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

/// The `pdoflow.notify` modes the enqueue scenario runs, in order.
const MODES: [&str; 3] = ["off", "direct", "coalesced"];

/// `enqueue`: one `pdoflow.enqueue` per transaction from `clients`
/// connections, with each `pdoflow.notify` mode, while one session listens;
/// `--enqueue-rounds` times, each round bracketed by raw INSERT runs and
/// starting with the next mode.
pub async fn single(bench: &Bench, ceilings: &mut Ceilings) -> Result<()> {
    let clients = bench.clients;
    let rounds = bench.enqueue_rounds;
    report::scenario(
        "enqueue",
        &format!(
            "one pdoflow.enqueue per transaction, {clients} clients, each pdoflow.notify mode"
        ),
    );
    let mut before = ceilings.insert(bench).await?;
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for round in 1..=rounds {
        // Each round starts with the next mode, so that no mode always runs
        // last (after the others' jobs, nearer the raw run after).
        let mut measured = vec![(0.0, 0, 0); MODES.len()];
        for step in 0..MODES.len() {
            let index = (step + round - 1) % MODES.len();
            measured[index] = enqueue_with(bench, MODES[index]).await?;
        }
        // One round: against the raw run before it, as every other scenario.
        let after = if rounds > 1 {
            raw::insert_again(bench).await?
        } else {
            before
        };
        let ceiling = (before + after) / 2.0;
        if rounds > 1 {
            report::figure(
                &format!("round {round} of {rounds}"),
                format!("raw INSERT {before:.0} rows/s before, {after:.0} after"),
            );
        }
        for ((mode, (rate, heard, jobs)), ratios) in MODES.iter().zip(measured).zip(&mut ratios) {
            report::rate(
                &format!("pdoflow.notify = {mode}"),
                rate,
                "jobs",
                Some(ceiling),
            );
            report::figure(
                "    notifications a listener received",
                format!("{heard} for {jobs} jobs"),
            );
            ratios.push(rate / ceiling);
        }
        before = after;
    }
    if rounds > 1 {
        for (mode, ratios) in MODES.iter().zip(&mut ratios) {
            ratios.sort_by(f64::total_cmp);
            report::figure(
                &format!("pdoflow.notify = {mode}, median of {rounds}"),
                format!(
                    "{:.2} of the plain-SQL ceiling (rounds: {})",
                    ratios[ratios.len() / 2],
                    ratios
                        .iter()
                        .map(|ratio| format!("{ratio:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// One timed run of single-job enqueues with `pdoflow.notify = mode`: the
/// rate (jobs/s), the notifications a listener got, and the jobs enqueued.
async fn enqueue_with(bench: &Bench, mode: &str) -> Result<(f64, u64, u64)> {
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    let listened = Arc::new(AtomicU64::new(0));
    let listener = tokio::spawn(count_notifications(bench.url.clone(), listened.clone()));
    // Let the LISTEN take effect before the clients start.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let throughput = db::timed_clients(
        &bench.url,
        bench.clients,
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
    Ok((
        throughput.rows_per_second(),
        listened.load(Ordering::Relaxed),
        throughput.rows,
    ))
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
