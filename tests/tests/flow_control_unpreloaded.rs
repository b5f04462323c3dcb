//! Flow control on a server without pdoflow in shared_preload_libraries
//! (managed PostgreSQL): pauses and per-key limits work, commits that end
//! marked jobs or change controls touch no shared memory that was never
//! made, running and rate limits are refused with a clear error, and a
//! waiting claim polls. The same holds for the other shared-memory
//! features: `pdoflow.stats` stays empty (every count a no-op) and
//! `await_ended` polls. Runs a throwaway cluster of its own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pdoflow_tests::count;
use pdoflow_tests::own_cluster::{as_postgres, free_port, initdb, pg_program, pg_root};
use tokio_postgres::NoTls;

struct Cluster {
    data: PathBuf,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = as_postgres(
            &pg_program("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            std::env::var(pdoflow_tests::URL_VARIABLE).is_ok(),
            "{} is not set: run the integration tests with `make test`",
            pdoflow_tests::URL_VARIABLE
        );
        let port = free_port();
        let cluster = Cluster {
            data: pg_root().join(format!("unpreloaded-test-{}", std::process::id())),
            port,
        };
        let data = cluster.data.display().to_string();
        let _ = std::fs::remove_dir_all(&cluster.data);
        initdb(&cluster.data);
        let log = cluster.data.join("server.log").display().to_string();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
             -c shared_preload_libraries="
        );
        let started = as_postgres(
            &pg_program("pg_ctl"),
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
        if !started.status.success() {
            let log = std::fs::read_to_string(cluster.data.join("server.log")).unwrap_or_default();
            panic!("the cluster did not start: {log}");
        }
        cluster
    }

    async fn connect(&self) -> tokio_postgres::Client {
        let url = format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port);
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .expect("connect to the cluster without preload");
        tokio::spawn(connection);
        client
    }
}

#[tokio::test]
async fn flow_control_without_shared_preload_libraries() {
    let cluster = Cluster::start();
    let client = cluster.connect().await;
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(preload, "");
    client
        .batch_execute("CREATE EXTENSION pdoflow")
        .await
        .unwrap();

    // Each statement its own transaction: every commit runs the callbacks.
    client
        .batch_execute(
            "SELECT pdoflow.pause_queue('held');
             SELECT pdoflow.enqueue('t', '{}', 'held');
             SELECT pdoflow.set_key_limit('keyed', 1);
             SELECT pdoflow.enqueue('t', '{}', 'keyed', concurrency_key => 'a');
             SELECT pdoflow.enqueue('t', '{}', 'keyed', concurrency_key => 'a');",
        )
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.claim(10)").await,
        1
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM (SELECT pdoflow.finish(id, attempt) FROM pdoflow.active_jobs
                                   WHERE state = 'running') AS f"
        )
        .await,
        1
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.claim(10)").await,
        1
    );
    client
        .batch_execute("SELECT pdoflow.resume_queue('held')")
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.claim(10)").await,
        1
    );

    let refused = client
        .batch_execute("SELECT pdoflow.set_queue_limits('x', max_running => 1)")
        .await
        .expect_err("a running limit without shared memory");
    assert_eq!(pdoflow_tests::sqlstate(&refused), "55000");
    assert!(
        pdoflow_tests::describe(&refused).contains("shared_preload_libraries"),
        "{}",
        pdoflow_tests::describe(&refused)
    );

    let started = Instant::now();
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pdoflow.claim(1, wait => '300 milliseconds')"
        )
        .await,
        0
    );
    assert!(started.elapsed() >= Duration::from_millis(280));
    // A job enqueued while a claim waits is found by its next look.
    let waiter = cluster.connect().await;
    let waiting = tokio::spawn(async move {
        count(
            &waiter,
            "SELECT count(*) FROM pdoflow.claim(1, ARRAY['later'], wait => '10 seconds')",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let enqueued = Instant::now();
    client
        .batch_execute("SELECT pdoflow.enqueue('t', '{}', 'later')")
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap(), 1);
    assert!(enqueued.elapsed() < Duration::from_secs(2));
    // No counters without shared memory, and resetting them is harmless.
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.stats").await,
        0
    );
    client
        .batch_execute("SELECT pdoflow.stats_reset(); SELECT pdoflow.stats_reset('later')")
        .await
        .unwrap();
    // await_ended polls: a job that ends while it waits is found.
    let job: uuid::Uuid = client
        .query_one("SELECT pdoflow.enqueue('t', '{}', 'watched')", &[])
        .await
        .unwrap()
        .get(0);
    let watcher = cluster.connect().await;
    let watching = tokio::spawn(async move {
        count(
            &watcher,
            &format!(
                "SELECT count(*) FROM pdoflow.await_ended(ARRAY['{job}']::uuid[], '10 seconds')"
            ),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cancelled = Instant::now();
    client
        .query("SELECT pdoflow.cancel($1)", &[&job])
        .await
        .unwrap();
    assert_eq!(watching.await.unwrap(), 1);
    assert!(cancelled.elapsed() < Duration::from_secs(2));
    // The server is still up and well.
    assert_eq!(
        count(&client, "SELECT count(*) FROM pdoflow.check_consistency()").await,
        0
    );
}
