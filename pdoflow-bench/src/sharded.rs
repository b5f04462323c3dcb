//! `sharded`: the cost of PL/Proxy in front of pdoflow's shards
//! (`sql/proxy/pdoflow_proxy.sql`, docs/scaling.md). Four shard databases
//! and a proxy database on the benchmark's cluster; one enqueue per
//! transaction, and `claim(10)` then ten `finish` calls, each through the
//! proxy and directly on one shard, from `clients` connections. Needs
//! PL/Proxy (`scripts/plproxy.sh`).

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_postgres::config::Host;
use tokio_postgres::Config;
use uuid::Uuid;

use crate::db::{self, Session};
use crate::report;
use crate::Bench;

const SHARDS: usize = 4;
const PROXY_SCRIPT: &str = include_str!("../../sql/proxy/pdoflow_proxy.sql");
/// Jobs queued on each shard before the claim runs.
const QUEUED_PER_SHARD: u64 = 200_000;

pub async fn run(bench: &Bench) -> Result<()> {
    let clients = bench.clients;
    report::scenario(
        "sharded",
        &format!(
            "PL/Proxy over {SHARDS} shard databases against a direct call, {clients} clients: \
             one enqueue per transaction; claim(10) then 10 finish calls"
        ),
    );
    let config: Config = bench.url.parse().context("the benchmark URL")?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let url_of = |database: &str| format!("postgresql://{user}@{host}:{port}/{database}");
    let shard_names: Vec<String> = (0..SHARDS).map(|n| format!("bench_shard_{n}")).collect();

    let admin = db::connect(&bench.url).await?;
    for (number, name) in shard_names.iter().enumerate() {
        recreate(&admin, name).await?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} SET pdoflow.shard = {number}"
            ))
            .await?;
        db::connect(&url_of(name))
            .await?
            .batch_execute("CREATE EXTENSION pdoflow")
            .await?;
    }
    recreate(&admin, "bench_proxy").await?;
    let proxy = db::connect(&url_of("bench_proxy")).await?;
    let partitions: Vec<String> = shard_names
        .iter()
        .enumerate()
        .map(|(number, name)| format!("p{number} 'host={host} port={port} dbname={name}'"))
        .collect();
    proxy
        .batch_execute(&format!(
            "CREATE EXTENSION plproxy;
             CREATE SERVER pdoflow_shards FOREIGN DATA WRAPPER plproxy OPTIONS ({});
             CREATE USER MAPPING FOR PUBLIC SERVER pdoflow_shards OPTIONS (user '{user}');",
            partitions.join(", ")
        ))
        .await
        .context("PL/Proxy in the proxy database (scripts/plproxy.sh installs it)")?;
    proxy
        .batch_execute(PROXY_SCRIPT)
        .await
        .context("sql/proxy/pdoflow_proxy.sql")?;

    let direct_url = url_of(&shard_names[0]);
    let proxy_url = url_of("bench_proxy");
    let enqueue = |url: String, sql: &'static str| async move {
        db::timed_clients(
            &url,
            clients,
            bench.duration,
            "",
            &[sql],
            |session: Arc<Session>, _| async move {
                session.db.execute(&session.statements[0], &[]).await?;
                Ok(1)
            },
        )
        .await
    };
    let direct = enqueue(direct_url.clone(), "SELECT pdoflow.enqueue('noop')").await?;
    let proxied = enqueue(proxy_url.clone(), "SELECT pdoflow_proxy.enqueue('noop')").await?;
    compare(
        "enqueue",
        clients,
        direct.rows_per_second(),
        proxied.rows_per_second(),
    );

    for name in &shard_names {
        let shard = db::connect(&url_of(name)).await?;
        db::enqueue_noops(&shard, "noop", "default", QUEUED_PER_SHARD).await?;
        shard
            .batch_execute("VACUUM ANALYZE pdoflow.active_jobs")
            .await?;
    }
    let claim = |url: String, claim: &'static str, finish: &'static str| async move {
        db::timed_clients(
            &url,
            clients,
            bench.duration,
            "",
            &[claim, finish],
            |session: Arc<Session>, index| async move {
                let worker = format!("bench-{index}");
                let rows = session.db.query(&session.statements[0], &[&worker]).await?;
                for row in &rows {
                    let (id, attempt): (Uuid, i32) = (row.get(0), row.get(1));
                    session
                        .db
                        .execute(&session.statements[1], &[&id, &attempt])
                        .await?;
                }
                Ok(rows.len() as u64)
            },
        )
        .await
    };
    let direct = claim(
        direct_url,
        "SELECT id, attempt FROM pdoflow.claim(10, NULL, $1)",
        "SELECT pdoflow.finish($1, $2)",
    )
    .await?;
    let proxied = claim(
        proxy_url,
        "SELECT id, attempt FROM pdoflow_proxy.claim(10, NULL, $1)",
        "SELECT pdoflow_proxy.finish($1, $2)",
    )
    .await?;
    compare(
        "claim(10) + 10 finish",
        clients,
        direct.rows_per_second(),
        proxied.rows_per_second(),
    );

    drop(proxy);
    for name in shard_names
        .iter()
        .map(String::as_str)
        .chain(["bench_proxy"])
    {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

async fn recreate(admin: &tokio_postgres::Client, name: &str) -> Result<()> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))
}

/// Prints the direct and proxied rates of `what` (jobs/s), their ratio,
/// and what the proxy adds to each job's time from one client's view.
fn compare(what: &str, clients: usize, direct: f64, proxied: f64) {
    report::rate(
        &format!("{what}, direct on one shard"),
        direct,
        "jobs",
        None,
    );
    report::rate(&format!("{what}, through PL/Proxy"), proxied, "jobs", None);
    let added_ms = (clients as f64 / proxied - clients as f64 / direct) * 1000.0;
    report::figure(
        &format!("{what}: proxied / direct"),
        format!(
            "{:.2} (about {added_ms:.2} ms more per job and client)",
            proxied / direct
        ),
    );
}
