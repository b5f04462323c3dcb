//! `limits`: what queue limits cost and how well they hold.
//!
//! - A drain by `pdoflow-run worker --burst` with a `max_running` limit ten
//!   times the worker's concurrency, against the same drain without one,
//!   rounds interleaved (these machines are noisy): the limit must cost
//!   less than 10%.
//! - The same drain beside a paused queue holding 100,000 older jobs,
//!   against the drain alone: a held-back backlog must cost nothing.
//! - A rate limit of 1,000 claims a second, claimed by eager SQL claimers
//!   for 30 s: the achieved rate, after the first second's burst.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use uuid::Uuid;

use crate::db;
use crate::drain::{drain_once, BEST_SETTINGS, DEFAULT_SETTINGS};
use crate::report;
use crate::Bench;

/// Rounds of each drain, interleaved.
const ROUNDS: usize = 5;
const RATE: i64 = 1_000;
const RATE_WINDOW: Duration = Duration::from_secs(30);
const RATE_CLAIMERS: usize = 4;

pub async fn run(bench: &Bench) -> Result<()> {
    let jobs = bench.drain_jobs;
    report::scenario(
        "limits",
        &format!(
            "{jobs} queued noop jobs drained by pdoflow-run with and without max_running \
             (10x its concurrency), {ROUNDS} rounds interleaved; then a rate limit of {RATE}/s \
             claimed by {RATE_CLAIMERS} SQL claimers for {}s",
            RATE_WINDOW.as_secs()
        ),
    );
    for (label, arguments, max_running) in [
        ("defaults", DEFAULT_SETTINGS, 1_000),
        ("best settings", BEST_SETTINGS, 10_000),
    ] {
        let limit =
            format!("SELECT pdoflow.set_queue_limits('default', max_running => {max_running})");
        let mut unlimited = Vec::new();
        let mut limited = Vec::new();
        for _ in 0..ROUNDS {
            unlimited.push(drain_once(bench, jobs, arguments, &[]).await?);
            limited.push(drain_once(bench, jobs, arguments, &[&limit]).await?);
        }
        let (unlimited, limited) = (median(unlimited), median(limited));
        report::rate(
            &format!("drain, {label}, no limit"),
            unlimited,
            "jobs",
            None,
        );
        report::rate(
            &format!("drain, {label}, max_running {max_running}"),
            limited,
            "jobs",
            None,
        );
        report::figure(
            &format!("limited / unlimited, {label}"),
            format!("{:.2}", limited / unlimited),
        );
    }
    // A paused queue's backlog, older than every job drained, must cost the
    // other queues' claims nothing: its jobs are out of the every-queue index.
    let backlog = [
        "SELECT pdoflow.pause_queue('held')",
        "SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{}'::jsonb, ARRAY[100000]), 'held')",
    ];
    // The same number of jobs waiting without controls (delayed a day):
    // what a bigger table costs by itself (vacuum, index pages).
    let delayed = [
        "SELECT count(*) FROM pdoflow.enqueue_many('noop', array_fill('{}'::jsonb, ARRAY[100000]), 'later', \
         run_at => now() + interval '1 day')",
    ];
    let mut plain = Vec::new();
    let mut beside = Vec::new();
    let mut beside_delayed = Vec::new();
    for _ in 0..ROUNDS {
        plain.push(drain_once(bench, jobs, DEFAULT_SETTINGS, &[]).await?);
        beside.push(drain_once(bench, jobs, DEFAULT_SETTINGS, &backlog).await?);
        beside_delayed.push(drain_once(bench, jobs, DEFAULT_SETTINGS, &delayed).await?);
    }
    let (plain, beside, beside_delayed) = (median(plain), median(beside), median(beside_delayed));
    report::rate("drain, defaults, alone", plain, "jobs", None);
    report::rate(
        "drain, defaults, beside a paused queue of 100,000 older jobs",
        beside,
        "jobs",
        None,
    );
    report::rate(
        "drain, defaults, beside 100,000 delayed jobs (no controls)",
        beside_delayed,
        "jobs",
        None,
    );
    report::figure(
        "beside a paused backlog / alone",
        format!("{:.2}", beside / plain),
    );
    report::figure(
        "beside a paused backlog / beside delayed jobs",
        format!("{:.2}", beside / beside_delayed),
    );
    rate_limit(bench).await
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Claims from a queue limited to RATE a second with eager claimers; counts
/// the claims that returned within RATE_WINDOW after the first second.
async fn rate_limit(bench: &Bench) -> Result<()> {
    let setup = db::connect(&bench.url).await?;
    db::reset(&setup).await?;
    setup
        .batch_execute(&format!(
            "SELECT pdoflow.set_queue_limits('rated', rate => {RATE}, per => '1 second')"
        ))
        .await
        .context("setting the rate limit")?;
    let jobs = (RATE as u64) * (RATE_WINDOW.as_secs() + 5);
    db::enqueue_noops(&setup, "noop", "rated", jobs).await?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut claimers = Vec::new();
    for _ in 0..RATE_CLAIMERS {
        let client = db::connect(&bench.url).await?;
        let stop = stop.clone();
        claimers.push(tokio::spawn(async move {
            let mut claimed_at: Vec<Duration> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let rows = client
                    .query(
                        "SELECT id, attempt FROM pdoflow.claim(100, ARRAY['rated'], wait => '1 second')",
                        &[],
                    )
                    .await?;
                let at = started.elapsed();
                claimed_at.extend(rows.iter().map(|_| at));
                let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
                let attempts: Vec<i32> = rows.iter().map(|row| row.get(1)).collect();
                client
                    .execute(
                        "SELECT count(*) FROM pdoflow.finish_many($1, $2)",
                        &[&ids, &attempts],
                    )
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(claimed_at)
        }));
    }
    tokio::time::sleep(RATE_WINDOW + Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let from = Duration::from_secs(1);
    let to = from + RATE_WINDOW;
    let mut in_window = 0usize;
    let mut total = 0usize;
    for claimer in claimers {
        let claimed_at = claimer.await.context("a claimer panicked")??;
        total += claimed_at.len();
        in_window += claimed_at
            .iter()
            .filter(|at| **at >= from && **at < to)
            .count();
    }
    let achieved = in_window as f64 / RATE_WINDOW.as_secs_f64();
    report::figure(
        &format!("rate limit {RATE}/s, {}s window", RATE_WINDOW.as_secs()),
        format!(
            "{achieved:.1} claims/s ({:+.2}%), {total} claims in all",
            (achieved / RATE as f64 - 1.0) * 100.0
        ),
    );
    Ok(())
}
