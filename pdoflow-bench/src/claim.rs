//! `claim`: pdoflow's claim and finish through SQL alone, shaped like the
//! plain-SQL ceiling (10 per claim, the finish in a second transaction, from
//! `clients` connections), so the ratio isolates pdoflow's bookkeeping.

use std::sync::Arc;

use anyhow::Result;
use uuid::Uuid;

use crate::db::{self, Session};
use crate::raw::Ceilings;
use crate::report;
use crate::Bench;

pub async fn run(bench: &Bench, ceilings: &mut Ceilings) -> Result<()> {
    let clients = bench.clients;
    report::scenario(
        "claim",
        &format!("pdoflow.claim(10) then pdoflow.finish_many, two transactions per batch, {clients} clients"),
    );
    let ceiling = ceilings.claim_delete(bench).await?;
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    db::enqueue_noops(&db, "noop", "default", 1_000_000).await?;
    db.batch_execute("VACUUM ANALYZE pdoflow.active_jobs")
        .await?;
    let throughput = db::timed_clients(
        &bench.url,
        clients,
        bench.duration,
        "",
        &[
            "SELECT id, attempt FROM pdoflow.claim(10, NULL, $1)",
            "SELECT count(*) FROM pdoflow.finish_many($1, $2)",
        ],
        step,
    )
    .await?;
    report::figure(
        "batches",
        format!("{:.0}/s", throughput.operations_per_second()),
    );
    report::rate(
        "claim(10) + finish_many",
        throughput.rows_per_second(),
        "jobs",
        Some(ceiling),
    );
    db::reset(&db).await?;
    Ok(())
}

async fn step(session: Arc<Session>, index: usize) -> Result<u64> {
    let worker = format!("bench-{index}");
    let rows = session.db.query(&session.statements[0], &[&worker]).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    let attempts: Vec<i32> = rows.iter().map(|row| row.get(1)).collect();
    session
        .db
        .execute(&session.statements[1], &[&ids, &attempts])
        .await?;
    Ok(ids.len() as u64)
}
