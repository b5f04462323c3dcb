//! One queue over four shard clusters through PL/Proxy
//! (`sql/proxy/pdoflow_proxy.sql`, docs/scaling.md): jobs spread evenly
//! over the shards, are claimed and finished through the proxy once each,
//! a posting and its DAG stay on one shard, a unique key stays unique
//! across shards, and a shard that goes down stops only its share: the
//! proxy places new jobs on the others and claims from the others.

use std::collections::HashSet;
use std::path::PathBuf;

use pdoflow_tests::own_cluster::{as_postgres, free_port, initdb, pg_program, pg_root};
use pdoflow_tests::{count, describe, TestDatabase};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

const SHARDS: usize = 4;
const JOBS: i64 = 400;

/// A throwaway cluster holding one shard: database `app` with pdoflow and
/// its `pdoflow.shard`.
struct Shard {
    data: PathBuf,
    port: u16,
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Shard {
    async fn start(number: usize) -> Shard {
        let shard = Shard {
            data: pg_root().join(format!("shard{number}-test-{}", std::process::id())),
            port: free_port(),
        };
        let _ = std::fs::remove_dir_all(&shard.data);
        initdb(&shard.data);
        shard.launch();
        let admin = shard.connect("postgres").await;
        admin.batch_execute("CREATE DATABASE app").await.unwrap();
        admin
            .batch_execute(&format!("ALTER DATABASE app SET pdoflow.shard = {number}"))
            .await
            .unwrap();
        shard
            .connect("app")
            .await
            .batch_execute("CREATE EXTENSION pdoflow")
            .await
            .unwrap();
        shard
    }

    /// Starts the server on its data directory.
    fn launch(&self) {
        let data = self.data.display().to_string();
        let log = self.data.join("server.log").display().to_string();
        // As in production: pdoflow preloaded with its sweeper, durable
        // commits (the shard that goes down is stopped as a crash would,
        // and keeps what it committed).
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
             -c shared_preload_libraries=pdoflow -c pdoflow.database=app",
            self.port
        );
        let started = as_postgres(
            &pg_program("pg_ctl"),
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
        assert!(
            started.status.success(),
            "{} did not start: {}",
            self.data.display(),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    async fn connect(&self, database: &str) -> Client {
        let url = format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port);
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connect to a shard");
        tokio::spawn(connection);
        client
    }

    fn stop(&self) {
        let data = self.data.display().to_string();
        let _ = as_postgres(
            &pg_program("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}

/// Claims everything the proxy gives, finishing each claim through it;
/// returns the ids in the order claimed.
async fn drain(proxy: &Client) -> Vec<Uuid> {
    let mut claimed = Vec::new();
    loop {
        let rows = proxy
            .query(
                "SELECT id, attempt FROM pdoflow_proxy.claim(50, worker => 'through-proxy')",
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("claim: {}", describe(&error)));
        if rows.is_empty() {
            return claimed;
        }
        for row in rows {
            let (id, attempt): (Uuid, i32) = (row.get(0), row.get(1));
            let state: String = proxy
                .query_one(
                    "SELECT pdoflow_proxy.finish($1, $2, result => '{\"ok\": true}')",
                    &[&id, &attempt],
                )
                .await
                .unwrap_or_else(|error| panic!("finish: {}", describe(&error)))
                .get(0);
            assert_eq!(state, "succeeded");
            claimed.push(id);
        }
    }
}

#[tokio::test]
async fn one_queue_over_four_shards_through_pl_proxy() {
    let mut shards = Vec::new();
    for number in 0..SHARDS {
        shards.push(Shard::start(number).await);
    }
    let proxy_database = TestDatabase::create_empty("proxy").await;
    let proxy = proxy_database.connect().await;
    let partitions: Vec<String> = shards
        .iter()
        .enumerate()
        .map(|(number, shard)| {
            format!(
                "p{number} 'host=127.0.0.1 port={} dbname=app connect_timeout=2'",
                shard.port
            )
        })
        .collect();
    proxy
        .batch_execute(&format!(
            "CREATE EXTENSION plproxy;
             CREATE SERVER pdoflow_shards FOREIGN DATA WRAPPER plproxy OPTIONS ({});
             CREATE USER MAPPING FOR PUBLIC SERVER pdoflow_shards OPTIONS (user 'postgres');",
            partitions.join(", ")
        ))
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PL/Proxy (scripts/plproxy.sh installs it): {}",
                describe(&error)
            )
        });
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sql/proxy/pdoflow_proxy.sql"
    ))
    .unwrap();
    proxy
        .batch_execute(&script)
        .await
        .unwrap_or_else(|error| panic!("pdoflow_proxy.sql: {}", describe(&error)));
    assert_eq!(
        count(&proxy, "SELECT count(*) FROM pdoflow_proxy.check_shards()").await,
        SHARDS as i64
    );

    // Jobs spread evenly: each shard gets about a quarter.
    let ids: Vec<Uuid> = proxy
        .query(
            "SELECT pdoflow_proxy.enqueue('spread', jsonb_build_object('n', i))
             FROM generate_series(1, $1::integer) AS i",
            &[&(JOBS as i32)],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (number, shard) in shards.iter().enumerate() {
        let here = count(
            &shard.connect("app").await,
            "SELECT count(*) FROM pdoflow.jobs",
        )
        .await;
        let expected = JOBS / SHARDS as i64;
        assert!(
            (expected / 2..=expected * 3 / 2).contains(&here),
            "shard {number} has {here} of {JOBS} jobs"
        );
        let stamped = count(
            &shard.connect("app").await,
            &format!("SELECT count(*) FROM pdoflow.jobs WHERE pdoflow.shard_of(id) = {number}"),
        )
        .await;
        assert_eq!(stamped, here, "shard {number}'s ids carry its number");
    }

    // Claimed and finished through the proxy, each job once.
    let claimed = drain(&proxy).await;
    assert_eq!(claimed.len(), ids.len());
    let unique: HashSet<&Uuid> = claimed.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a job was claimed twice");
    assert_eq!(
        count(
            &proxy,
            "SELECT count(*) FROM pdoflow_proxy.jobs WHERE state = 'succeeded'"
        )
        .await,
        JOBS
    );

    // A posting and its DAG on one shard; a unique key unique across shards.
    let posting: Uuid = proxy
        .query_one("SELECT pdoflow_proxy.create_posting('nightly')", &[])
        .await
        .unwrap()
        .get(0);
    let dag = r#"{"nodes": [{"name": "a", "task": "step"}, {"name": "b", "task": "step", "after": ["a"]}]}"#;
    let home = count(
        &proxy,
        &format!("SELECT pdoflow_proxy.shard_of('{posting}')::bigint"),
    )
    .await;
    let dag_shards = count(
        &proxy,
        &format!(
            "SELECT count(DISTINCT pdoflow_proxy.shard_of(id)) FILTER (WHERE pdoflow_proxy.shard_of(id) = {home})
             FROM pdoflow_proxy.submit_dag('{dag}', '{posting}')"
        ),
    )
    .await;
    assert_eq!(dag_shards, 1, "the DAG left its posting's shard");
    let in_posting = count(
        &proxy,
        &format!(
            "SELECT pdoflow_proxy.shard_of(pdoflow_proxy.enqueue('report', posting => '{posting}'))::bigint"
        ),
    )
    .await;
    assert_eq!(in_posting, home);
    let first: Uuid = proxy
        .query_one(
            "SELECT pdoflow_proxy.enqueue('invoice', unique_key => 'order-7')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for _ in 0..5 {
        let again: Uuid = proxy
            .query_one(
                "SELECT pdoflow_proxy.enqueue('invoice', unique_key => 'order-7')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(again, first);
    }
    // A routing key keeps its jobs together, one at a time or in bulk.
    let routed = count(
        &proxy,
        "SELECT count(DISTINCT pdoflow_proxy.shard_of(id)) FROM (
             SELECT pdoflow_proxy.enqueue('routed', routing_key => 'tenant-42') AS id
             FROM generate_series(1, 8)
             UNION ALL
             SELECT e.id FROM pdoflow_proxy.enqueue_many('routed', array_fill('{}'::jsonb, ARRAY[5]),
                                                         routing_key => 'tenant-42') AS e) AS r",
    )
    .await;
    assert_eq!(routed, 1, "a routing key's jobs went to several shards");
    // The views over every shard.
    assert_eq!(
        count(
            &proxy,
            &format!("SELECT total FROM pdoflow_proxy.posting_status WHERE id = '{posting}'")
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &proxy,
            "SELECT waiting FROM pdoflow_proxy.priority_stats WHERE queue = 'default' AND priority = 0"
        )
        .await,
        count(
            &proxy,
            "SELECT count(*) FROM pdoflow_proxy.jobs WHERE state IN ('queued', 'blocked')"
        )
        .await
    );
    assert_eq!(
        count(
            &proxy,
            "SELECT sum(enqueued)::bigint FROM pdoflow_proxy.stats"
        )
        .await,
        count(&proxy, "SELECT count(*) FROM pdoflow_proxy.jobs").await
    );
    let refused = proxy
        .batch_execute(
            "SELECT pdoflow_proxy.enqueue_many('invoice', ARRAY['{}'::jsonb], unique_keys => ARRAY['k'])",
        )
        .await
        .expect_err("unique keys in a proxied bulk enqueue");
    assert_eq!(pdoflow_tests::sqlstate(&refused), "0A000");
    let cancelled: bool = proxy
        .query_one("SELECT pdoflow_proxy.cancel($1)", &[&first])
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    drain(&proxy).await;

    // Shard 2 goes down: only its share stops.
    let down = 2;
    let stranded: Uuid = shards[down]
        .connect("app")
        .await
        .query_one("SELECT pdoflow.enqueue('stranded')", &[])
        .await
        .unwrap()
        .get(0);
    shards[down].stop();
    // A call that meets the proxy's open connection to the stopped shard
    // fails (whether it was done there is unknown); from then on the proxy
    // finds the shard down and places new jobs on the others.
    let mut more: Vec<Uuid> = Vec::new();
    let mut lost = 0;
    for n in 0..100 {
        match proxy
            .query_one(
                "SELECT pdoflow_proxy.enqueue('after', jsonb_build_object('n', $1::integer))",
                &[&n],
            )
            .await
        {
            Ok(row) => more.push(row.get(0)),
            Err(error) if describe(&error).contains("server closed the connection") => lost += 1,
            Err(error) => panic!("enqueue with a shard down: {}", describe(&error)),
        }
    }
    assert!(lost <= 1, "{lost} enqueues lost their connection");
    let placed: HashSet<i64> = more.iter().map(|id| i64::from(id.as_bytes()[15])).collect();
    assert!(
        !placed.contains(&(down as i64)),
        "a job went to the shard that is down"
    );
    assert_eq!(
        placed.len(),
        SHARDS - 1,
        "the other shards share the jobs: {placed:?}"
    );
    let claimed = drain(&proxy).await;
    assert_eq!(
        claimed.len(),
        more.len(),
        "the live shards' jobs are claimed"
    );
    assert!(!claimed.contains(&stranded));
    let cut_off = proxy
        .query_one("SELECT pdoflow_proxy.cancel($1)", &[&stranded])
        .await
        .expect_err("a call about a job on the shard that is down");
    assert!(
        describe(&cut_off).contains("Connection refused"),
        "{}",
        describe(&cut_off)
    );
    // Back up, its jobs are claimed through the proxy again (a claim that
    // meets the proxy's stale connection to it skips it once).
    shards[down].launch();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut claimed = Vec::new();
    while !claimed.contains(&stranded) {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted shard's job was not claimed: {claimed:?}"
        );
        claimed.extend(drain(&proxy).await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(claimed, [stranded]);
}
