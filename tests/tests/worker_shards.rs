//! `pdoflow-run worker --shard URL ...`: one worker over several shard
//! databases, each with pdoflow and no proxy in front. Every shard's jobs
//! are worked, side by side (an equal share of the concurrency each), and a
//! shard that is down stops only its share; in burst mode it is reported.

use std::process::Stdio;
use std::time::{Duration, Instant};

use pdoflow_tests::own_cluster::free_port;
use pdoflow_tests::TestDatabase;
use tokio::process::Command;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
const JOBS: i64 = 120;
const PATIENCE: Duration = Duration::from_secs(60);

async fn shards(label: &str) -> Vec<TestDatabase> {
    let mut shards = Vec::new();
    for n in 0..3 {
        let shard = TestDatabase::create(&format!("{label}_{n}")).await;
        shard
            .connect()
            .await
            .execute(
                "SELECT count(*) FROM pdoflow.enqueue_many('sleep',
                     array_fill('{\"ms\": 20}'::jsonb, ARRAY[$1::integer]))",
                &[&(JOBS as i32)],
            )
            .await
            .unwrap();
        shards.push(shard);
    }
    shards
}

fn worker(urls: &[String], extra: &[&str]) -> Command {
    let mut command = Command::new(WORKER);
    command.args(["worker", "--name", "sharded", "--concurrency", "6"]);
    for url in urls {
        command.args(["--shard", url]);
    }
    command
        .args(extra)
        .env_remove("PDOFLOW_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn succeeded(shard: &TestDatabase) -> i64 {
    shard
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE state = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_shard_is_worked_side_by_side_and_a_dead_one_stops_only_its_share() {
    let shards = shards("shards_live").await;
    let mut urls: Vec<String> = shards.iter().map(TestDatabase::url).collect();
    // A fourth shard that nothing answers for.
    urls.push(format!(
        "postgresql://postgres@127.0.0.1:{}/app",
        free_port()
    ));
    let mut child = worker(&urls, &[])
        .spawn()
        .expect("start the sharded worker");

    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut done = Vec::new();
        for shard in &shards {
            done.push(succeeded(shard).await);
        }
        if done.iter().all(|n| *n == JOBS) {
            break;
        }
        assert!(Instant::now() < deadline, "jobs left: {done:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker exited while a shard was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Side by side: when the first shard was half done, so (about) were
    // the others; none waited for another's backlog.
    let first = shards[0].connect().await;
    let halfway: String = first
        .query_one(
            "SELECT (percentile_disc(0.5) WITHIN GROUP (ORDER BY finished_at))::text FROM pdoflow.jobs",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for shard in &shards[1..] {
        let before: i64 = shard
            .connect()
            .await
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs WHERE finished_at <= $1::text::timestamptz",
                &[&halfway],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            before >= JOBS / 4,
            "{} had only {before} of {JOBS} jobs done when {} was half done",
            shard.name(),
            shards[0].name()
        );
        let named: i64 = shard
            .connect()
            .await
            .query_one(
                "SELECT count(*) FROM pdoflow.jobs WHERE worker = 'sharded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(named, JOBS);
    }
    // A stop ends every shard's loop, the dead one's too.
    let pid = child.id().expect("the worker's pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the worker stops")
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("cannot work this shard"), "{log}");
    assert!(log.contains("--shard 4"), "{log}");
}

#[tokio::test]
async fn burst_drains_every_shard_and_reports_one_it_could_not_reach() {
    let shards = shards("shards_burst").await;
    let urls: Vec<String> = shards.iter().map(TestDatabase::url).collect();
    let output = tokio::time::timeout(PATIENCE, worker(&urls, &["--burst"]).output())
        .await
        .expect("the burst ends")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for shard in &shards {
        assert_eq!(succeeded(shard).await, JOBS);
    }

    let mut with_dead = urls.clone();
    with_dead.push(format!(
        "postgresql://postgres@127.0.0.1:{}/app",
        free_port()
    ));
    let output = tokio::time::timeout(PATIENCE, worker(&with_dead, &["--burst"]).output())
        .await
        .expect("the burst ends")
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("shards not worked: --shard 4"), "{log}");

    let refused = worker(
        &[format!("{}?target_session_attrs=standby", urls[0])],
        &["--burst"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("--shard 1: target_session_attrs=standby"));
}
