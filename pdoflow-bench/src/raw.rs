//! The plain-SQL ceiling: what a hand-written queue table does on the same
//! cluster in the same run, with none of pdoflow's bookkeeping. Every pdoflow
//! figure is reported as a ratio to the matching one of these.

use std::sync::Arc;

use anyhow::Result;

use crate::db::{self, Session, Throughput};
use crate::report;
use crate::Bench;

/// The ceilings measured in this run, each once.
#[derive(Default)]
pub struct Ceilings {
    /// Single-row INSERTs, one per transaction, from `clients` connections.
    pub insert: Option<f64>,
    /// `INSERT ... SELECT` of 100,000 rows in one statement.
    pub bulk_insert: Option<f64>,
    /// Rows claimed (SKIP LOCKED, 10 per transaction, then UPDATE) and
    /// deleted (a second transaction) from `clients` connections.
    pub claim_delete: Option<f64>,
}

impl Ceilings {
    pub async fn insert(&mut self, bench: &Bench) -> Result<f64> {
        if let Some(rate) = self.insert {
            return Ok(rate);
        }
        let rate = insert_again(bench).await?;
        self.insert = Some(rate);
        Ok(rate)
    }

    pub async fn bulk_insert(&mut self, bench: &Bench) -> Result<f64> {
        if let Some(rate) = self.bulk_insert {
            return Ok(rate);
        }
        let db = db::connect(&bench.url).await?;
        db::reset(&db).await?;
        let took = db::timed_statement(
            &db,
            "INSERT INTO bench_raw_jobs (task, args) SELECT 'noop', '{}' FROM generate_series(1, 100000)",
        )
        .await?;
        let rate = 100_000.0 / took.as_secs_f64();
        self.bulk_insert = Some(rate);
        Ok(rate)
    }

    pub async fn claim_delete(&mut self, bench: &Bench) -> Result<f64> {
        if let Some(rate) = self.claim_delete {
            return Ok(rate);
        }
        let rate = raw_claim_delete(bench).await?.rows_per_second();
        self.claim_delete = Some(rate);
        Ok(rate)
    }
}

/// `raw`: measures and prints every ceiling.
pub async fn run(bench: &Bench, ceilings: &mut Ceilings) -> Result<()> {
    report::scenario(
        "raw",
        "the plain-SQL ceiling (table bench_raw_jobs: bigserial id, one partial claim index, no history)",
    );
    let clients = bench.clients;
    let insert = ceilings.insert(bench).await?;
    report::rate(
        &format!("single-row INSERT, {clients} clients"),
        insert,
        "rows",
        None,
    );
    let bulk = ceilings.bulk_insert(bench).await?;
    report::rate("INSERT ... SELECT of 100,000 rows", bulk, "rows", None);
    let claim = ceilings.claim_delete(bench).await?;
    report::rate(
        &format!("SKIP LOCKED claim of 10 + DELETE, {clients} clients"),
        claim,
        "rows",
        None,
    );
    Ok(())
}

/// The single-row INSERT ceiling measured anew (rows/s), for scenarios
/// that bracket their runs with it.
pub async fn insert_again(bench: &Bench) -> Result<f64> {
    Ok(raw_insert(bench).await?.rows_per_second())
}

async fn raw_insert(bench: &Bench) -> Result<Throughput> {
    let setup = db::connect(&bench.url).await?;
    db::reset(&setup).await?;
    db::timed_clients(
        &bench.url,
        bench.clients,
        bench.duration,
        "",
        &["INSERT INTO bench_raw_jobs (task, args) VALUES ('noop', '{}')"],
        |session, _| async move {
            session.db.execute(&session.statements[0], &[]).await?;
            Ok(1)
        },
    )
    .await
}

/// Claims 10 rows in one transaction (marking them running, as a queue must
/// so that a crashed worker's rows can be found), deletes them in a second:
/// the two commits of pdoflow's claim and finish.
async fn raw_claim_delete(bench: &Bench) -> Result<Throughput> {
    let setup = db::connect(&bench.url).await?;
    db::reset(&setup).await?;
    setup
        .batch_execute(
            "INSERT INTO bench_raw_jobs (task) SELECT 'noop' FROM generate_series(1, 1000000)",
        )
        .await?;
    setup.batch_execute("VACUUM ANALYZE bench_raw_jobs").await?;
    let throughput = db::timed_clients(
        &bench.url,
        bench.clients,
        bench.duration,
        "",
        &[
            "UPDATE bench_raw_jobs SET state = 'running'
             WHERE id IN (SELECT id FROM bench_raw_jobs WHERE state = 'queued'
                          ORDER BY priority DESC, id LIMIT 10 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            "DELETE FROM bench_raw_jobs WHERE id = ANY ($1)",
        ],
        |session, _| claim_delete_step(session),
    )
    .await?;
    db::reset(&setup).await?;
    Ok(throughput)
}

async fn claim_delete_step(session: Arc<Session>) -> Result<u64> {
    let claimed: Vec<i64> = session
        .db
        .query(&session.statements[0], &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if claimed.is_empty() {
        return Ok(0);
    }
    session
        .db
        .execute(&session.statements[1], &[&claimed])
        .await?;
    Ok(claimed.len() as u64)
}
