//! Queue limits under load: 16 connections claiming at once never run more
//! than max_running jobs of a queue, nor more than key_limit of a key, nor
//! claim faster than the rate allows; slots that crashed workers held come
//! back when their leases are taken back; a queue at its limit does not
//! stop the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pdoflow_tests::TestDatabase;
use tokio_postgres::Client;
use uuid::Uuid;

const CLAIMERS: usize = 16;

/// Counts running jobs per (queue, key) every few milliseconds until
/// `stop`; returns the most seen at once per queue and per key.
fn watch(
    client: Client,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(HashMap<String, i64>, HashMap<String, i64>)> {
    tokio::spawn(async move {
        let mut per_queue: HashMap<String, i64> = HashMap::new();
        let mut per_key: HashMap<String, i64> = HashMap::new();
        while !stop.load(Ordering::SeqCst) {
            for row in client
                .query(
                    "SELECT queue, concurrency_key, count(*) FROM pdoflow.active_jobs
                     WHERE state = 'running' GROUP BY GROUPING SETS ((queue), (queue, concurrency_key))",
                    &[],
                )
                .await
                .unwrap()
            {
                let queue: String = row.get(0);
                let key: Option<String> = row.get(1);
                let count: i64 = row.get(2);
                let (map, name) = match key {
                    Some(key) => (&mut per_key, format!("{queue}/{key}")),
                    None => (&mut per_queue, queue),
                };
                let seen = map.entry(name).or_insert(0);
                *seen = (*seen).max(count);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (per_queue, per_key)
    })
}

/// Claims from `queues` (NULL: every queue) until `stop`, holding each job
/// a little while; returns how many it finished.
async fn claim_and_finish(
    client: Client,
    queues: Option<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut finished = 0;
    let mut round: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let n = 1 + (round % 4) as i32;
        let rows = client
            .query(
                "SELECT id, attempt FROM pdoflow.claim($1, $2, lease => '1 minute')",
                &[&n, &queues],
            )
            .await
            .unwrap();
        if rows.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(1 + round % 3)).await;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
        let attempts: Vec<i32> = rows.iter().map(|row| row.get(1)).collect();
        client
            .query(
                "SELECT * FROM pdoflow.finish_many($1, $2)",
                &[&ids, &attempts],
            )
            .await
            .unwrap();
        finished += ids.len();
    }
    finished
}

async fn enqueue(client: &Client, queue: &str, jobs: i32) {
    client
        .execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('work', array_fill('{}'::jsonb, ARRAY[$1::integer]), $2)",
            &[&jobs, &queue],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_running_holds_under_sixteen_claimers() {
    let database = TestDatabase::create("flow_max_running").await;
    let setup = database.connect().await;
    setup
        .execute(
            "SELECT pdoflow.set_queue_limits('limited', max_running => 5)",
            &[],
        )
        .await
        .unwrap();
    enqueue(&setup, "limited", 3_000).await;
    enqueue(&setup, "free", 1_500).await;

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(database.connect().await, stop.clone());
    let mut claimers = Vec::new();
    for claimer in 0..CLAIMERS {
        // Half claim from every queue, half from the limited one by name.
        let queues = (claimer % 2 == 1).then(|| vec!["limited".to_owned()]);
        claimers.push(tokio::spawn(claim_and_finish(
            database.connect().await,
            queues,
            stop.clone(),
        )));
    }
    // The free queue drains while the limited one is held to 5.
    let started = Instant::now();
    loop {
        let free_left: i64 = setup
            .query_one(
                "SELECT count(*) FROM pdoflow.active_jobs WHERE queue = 'free'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if free_left == 0 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut finished = 0;
    for claimer in claimers {
        finished += claimer.await.unwrap();
    }
    let (per_queue, _) = watcher.await.unwrap();

    let limited_done: i64 = setup
        .query_one(
            "SELECT count(*) FROM pdoflow.finished_jobs WHERE queue = 'limited'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        finished > 1_500,
        "the claimers finished only {finished} jobs"
    );
    assert!(
        limited_done > 100,
        "the limited queue ran only {limited_done} jobs"
    );
    assert_eq!(
        per_queue.get("limited").copied().unwrap_or(0).min(5),
        5,
        "the limited queue never had its 5 jobs running: {per_queue:?}"
    );
    assert!(
        per_queue.get("limited").copied().unwrap_or(0) <= 5,
        "more than max_running jobs ran at once: {per_queue:?}"
    );
    assert!(
        per_queue.get("free").copied().unwrap_or(0) > 5,
        "the free queue was held back too: {per_queue:?}"
    );
    // Every slot came back: with the claimers gone, 5 jobs can be claimed.
    let back: i64 = setup
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, 5);
    let problems = setup
        .query("SELECT * FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap();
    assert!(
        problems.is_empty(),
        "{} consistency problems",
        problems.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_limit_holds_under_sixteen_claimers() {
    let database = TestDatabase::create("flow_key_limit").await;
    let setup = database.connect().await;
    setup
        .execute("SELECT pdoflow.set_key_limit('imports', 2)", &[])
        .await
        .unwrap();
    setup
        .execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('import', array_fill('{}'::jsonb, ARRAY[1200]), 'imports',
                 concurrency_keys => (SELECT array_agg('customer-' || (i % 4)) FROM generate_series(1, 1200) AS i))",
            &[],
        )
        .await
        .unwrap();
    enqueue(&setup, "imports", 300).await; // without a key: not limited

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(database.connect().await, stop.clone());
    let mut claimers = Vec::new();
    for _ in 0..CLAIMERS {
        claimers.push(tokio::spawn(claim_and_finish(
            database.connect().await,
            None,
            stop.clone(),
        )));
    }
    let started = Instant::now();
    loop {
        let left: i64 = setup
            .query_one("SELECT count(*) FROM pdoflow.active_jobs", &[])
            .await
            .unwrap()
            .get(0);
        if left == 0 || started.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for claimer in claimers {
        claimer.await.unwrap();
    }
    let (_, per_key) = watcher.await.unwrap();
    let left: i64 = setup
        .query_one("SELECT count(*) FROM pdoflow.active_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the jobs were not all worked");
    assert_eq!(per_key.len(), 4, "{per_key:?}");
    for (key, most) in &per_key {
        assert!(*most <= 2, "{key}: {most} jobs ran at once");
    }
    assert!(
        per_key.values().any(|most| *most == 2),
        "no key ever had 2 running: {per_key:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_holds_under_sixteen_claimers() {
    const RATE: i64 = 300;
    const SECONDS: u64 = 4;
    let database = TestDatabase::create("flow_rate").await;
    let setup = database.connect().await;
    setup
        .execute(
            "SELECT pdoflow.set_queue_limits('api', rate => 300, per => '1 second')",
            &[],
        )
        .await
        .unwrap();
    enqueue(&setup, "api", 5_000).await;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut claimers = Vec::new();
    for _ in 0..CLAIMERS {
        let client = database.connect().await;
        let stop = stop.clone();
        claimers.push(tokio::spawn(async move {
            let mut claimed_at: Vec<Duration> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let rows = client
                    .query(
                        "SELECT id FROM pdoflow.claim(10, ARRAY['api'], wait => '100 milliseconds')",
                        &[],
                    )
                    .await
                    .unwrap();
                let at = started.elapsed();
                claimed_at.extend(rows.iter().map(|_| at));
            }
            claimed_at
        }));
    }
    tokio::time::sleep(Duration::from_secs(SECONDS)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all: Vec<Duration> = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = all.len() as f64;
    let burst = (RATE / 10) as f64;
    // At most rate per second plus the burst, and (16 eager claimers) not
    // much less.
    assert!(
        total <= RATE as f64 * elapsed + burst + 1.0,
        "{total} claims in {elapsed:.2} s at {RATE}/s"
    );
    assert!(
        total >= RATE as f64 * SECONDS as f64 * 0.9,
        "only {total} claims in {elapsed:.2} s at {RATE}/s"
    );
    // No second holds more than a second's worth and the burst, by the
    // times the server started the jobs (a claim's time, taken just before
    // its limiter granted them; the clients' clocks would add their
    // round trips).
    let started_at: Vec<f64> = setup
        .query(
            "SELECT extract(epoch FROM started_at)::float8 FROM pdoflow.jobs
             WHERE queue = 'api' AND started_at IS NOT NULL ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(started_at.len() as f64, total);
    for start in 0..started_at.len() {
        let window_end = started_at[start] + 1.0;
        let within = started_at[start..]
            .iter()
            .take_while(|at| **at < window_end)
            .count();
        assert!(
            within as f64 <= RATE as f64 * 1.05 + burst + 1.0,
            "{within} claims within one second from the {start}th"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_of_crashed_workers_come_back_with_their_leases() {
    let database = TestDatabase::create("flow_crashed_worker").await;
    let setup = database.connect().await;
    setup
        .execute(
            "SELECT pdoflow.set_queue_limits('limited', max_running => 3)",
            &[],
        )
        .await
        .unwrap();
    enqueue(&setup, "limited", 10).await;
    // A worker claims 3 and dies without finishing (its connection closes).
    {
        let doomed = database.connect().await;
        let claimed = doomed
            .query(
                "SELECT id FROM pdoflow.claim(10, ARRAY['limited'], worker => 'doomed', lease => '1 second')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 3);
    }
    let survivor = database.connect().await;
    let none: i64 = survivor
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "the dead worker's slots were given away");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let requeued: i64 = setup
        .query_one("SELECT expired_requeued FROM pdoflow.sweep()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(requeued, 3);
    let back: i64 = survivor
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(back, 3);

    // A claim whose backend is terminated mid-transaction gives its slots
    // back as it rolls back.
    setup
        .execute(
            "SELECT pdoflow.set_queue_limits('limited', max_running => 5)",
            &[],
        )
        .await
        .unwrap();
    let victim = database.connect().await;
    victim.batch_execute("BEGIN").await.unwrap();
    let taken: i64 = victim
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(taken, 2);
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    setup
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    pdoflow_tests::eventually("the victim to be gone", Duration::from_secs(10), || {
        let setup = &setup;
        async move {
            let gone: bool = setup
                .query_one(
                    "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)",
                    &[&pid],
                )
                .await
                .unwrap()
                .get(0);
            gone.then_some(())
        }
    })
    .await;
    let after: i64 = survivor
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(10, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_claim_wakes_when_a_slot_frees() {
    let database = TestDatabase::create("flow_wait_slot").await;
    let setup = database.connect().await;
    setup
        .execute(
            "SELECT pdoflow.set_queue_limits('limited', max_running => 1)",
            &[],
        )
        .await
        .unwrap();
    enqueue(&setup, "limited", 2).await;
    let first = setup
        .query_one(
            "SELECT id, attempt FROM pdoflow.claim(1, ARRAY['limited'])",
            &[],
        )
        .await
        .unwrap();
    let (id, attempt): (Uuid, i32) = (first.get(0), first.get(1));
    let waiter = database.connect().await;
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        let rows = waiter
            .query(
                "SELECT id FROM pdoflow.claim(1, ARRAY['limited'], wait => '20 seconds')",
                &[],
            )
            .await
            .unwrap();
        (rows.len(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup
        .execute("SELECT pdoflow.finish($1, $2)", &[&id, &attempt])
        .await
        .unwrap();
    let (claimed, waited) = waiting.await.unwrap();
    assert_eq!(claimed, 1);
    assert!(
        waited < Duration::from_secs(3),
        "the waiting claim took {waited:?}: not woken by the freed slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_worker_stops_beside_a_paused_queue() {
    let database = TestDatabase::create("flow_burst_paused").await;
    let setup = database.connect().await;
    setup
        .batch_execute("SELECT pdoflow.pause_queue('held')")
        .await
        .unwrap();
    setup
        .execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('echo', array_fill('{}'::jsonb, ARRAY[5]), 'held')",
            &[],
        )
        .await
        .unwrap();
    setup
        .execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('echo', array_fill('{}'::jsonb, ARRAY[5]), 'free')",
            &[],
        )
        .await
        .unwrap();
    let worker = database.cli(env!("CARGO_BIN_EXE_test-worker"));
    tokio::time::timeout(
        Duration::from_secs(60),
        worker.ok(&["worker", "--burst", "--poll-interval", "100ms"]),
    )
    .await
    .expect("the burst worker kept waiting for the paused queue's jobs");
    let rows = setup
        .query(
            "SELECT queue, state, count(*) FROM pdoflow.jobs GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<(String, String, i64)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("free".to_owned(), "succeeded".to_owned(), 5),
            ("held".to_owned(), "queued".to_owned(), 5)
        ]
    );
}
