//! Claim floors never hide a job: producers, claimers and cancellers race
//! for a few seconds, with everything that can put a claimable job below a
//! floor another claim just raised (jobs due in the past, higher priorities,
//! delayed jobs falling due, commits that come late, claims and cancels
//! rolled back, claims from every queue and from named ones). Afterwards
//! claims must find every job still queued: a claim that returns nothing
//! while a due job is queued and unlocked is the bug this looks for.
//! (pgrx-tests/isolation/specs/claim-floors.spec shows each case alone.)

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pdoflow_tests::{describe, TestDatabase};
use tokio_postgres::Client;
use uuid::Uuid;

const RACE: Duration = Duration::from_secs(4);
const PRODUCERS: usize = 3;
const CLAIMERS: usize = 4;

/// A small deterministic generator per task (no need for a crate here).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_find_every_job_whatever_raced_them() {
    let database = TestDatabase::create("claim_floors").await;
    let stop = Arc::new(AtomicBool::new(false));
    let enqueued = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for producer in 0..PRODUCERS {
        let client = database.connect().await;
        let (stop, enqueued) = (stop.clone(), enqueued.clone());
        tasks.push(tokio::spawn(async move {
            produce(client, Dice(0x9e37_79b9 + producer as u64), stop, enqueued).await
        }));
    }
    for claimer in 0..CLAIMERS {
        let client = database.connect().await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            claim_and_finish(client, Dice(0x5bd1_e995 + claimer as u64), stop).await
        }));
    }
    {
        let client = database.connect().await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            cancel_and_roll_back(client, Dice(0x2545_f491), stop).await
        }));
    }
    tokio::time::sleep(RACE).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a racing task panicked");
    }
    // Every delayed job is due by now.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let client = database.connect().await;
    let queued_due =
        "SELECT count(*) FROM pdoflow.active_jobs WHERE state = 'queued' AND run_at <= now()";
    for queues in [Some(vec!["q1"]), Some(vec!["q1", "q2"]), None] {
        loop {
            let rows = client
                .query(
                    "SELECT id, attempt FROM pdoflow.claim(50, $1, worker => 'drain')",
                    &[&queues],
                )
                .await
                .unwrap_or_else(|error| panic!("draining: {}", describe(&error)));
            if rows.is_empty() {
                break;
            }
            finish(&client, &rows).await;
        }
        let left: i64 = match &queues {
            Some(queues) => client
                .query_one(&format!("{queued_due} AND queue = ANY ($1)"), &[queues])
                .await
                .unwrap()
                .get(0),
            None => client.query_one(queued_due, &[]).await.unwrap().get(0),
        };
        assert_eq!(
            left, 0,
            "claims from {queues:?} returned nothing while {left} due jobs were queued"
        );
    }
    let (active, finished): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM pdoflow.active_jobs), (SELECT count(*) FROM pdoflow.finished_jobs)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(active, 0, "jobs left behind");
    assert_eq!(
        finished,
        enqueued.load(Ordering::Relaxed),
        "every committed job ended"
    );
}

/// Jobs of two queues and three priorities, due an hour ago, now or in half
/// a second; some in transactions that commit late or roll back.
async fn produce(client: Client, mut dice: Dice, stop: Arc<AtomicBool>, enqueued: Arc<AtomicI64>) {
    while !stop.load(Ordering::Relaxed) {
        let queue = ["q1", "q2"][dice.roll(2) as usize];
        let priority = [0, 1, 5][dice.roll(3) as usize];
        let delay = ["-1 hour", "-1 second", "0", "0", "0.5 seconds"][dice.roll(5) as usize];
        let ending = dice.roll(10);
        if ending < 3 {
            client.batch_execute("BEGIN").await.unwrap();
        }
        client
            .query_one(
                "SELECT pdoflow.enqueue('race', queue => $1, priority => $2, \
                 run_at => now() + $3::text::interval)",
                &[&queue, &priority, &delay],
            )
            .await
            .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)));
        match ending {
            0 => client.batch_execute("ROLLBACK").await.unwrap(),
            1 | 2 => {
                // Commits after claims went on meanwhile.
                tokio::time::sleep(Duration::from_millis(dice.roll(20))).await;
                client.batch_execute("COMMIT").await.unwrap();
                enqueued.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                enqueued.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Claims from every queue or named ones; finishes, or rolls the claim back.
async fn claim_and_finish(client: Client, mut dice: Dice, stop: Arc<AtomicBool>) {
    let options: [Option<Vec<&str>>; 4] = [
        None,
        Some(vec!["q1"]),
        Some(vec!["q2"]),
        Some(vec!["q1", "q2"]),
    ];
    while !stop.load(Ordering::Relaxed) {
        let queues = &options[dice.roll(4) as usize];
        let n = 1 + dice.roll(5) as i32;
        let roll_back = dice.roll(5) == 0;
        client.batch_execute("BEGIN").await.unwrap();
        let rows = client
            .query(
                "SELECT id, attempt FROM pdoflow.claim($1, $2, worker => 'racer')",
                &[&n, queues],
            )
            .await
            .unwrap_or_else(|error| panic!("claim: {}", describe(&error)));
        if roll_back {
            tokio::time::sleep(Duration::from_millis(dice.roll(5))).await;
            client.batch_execute("ROLLBACK").await.unwrap();
            continue;
        }
        client.batch_execute("COMMIT").await.unwrap();
        if rows.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        } else {
            finish(&client, &rows).await;
        }
    }
}

/// Locks a queued job by cancelling it, then rolls the cancel back.
async fn cancel_and_roll_back(client: Client, mut dice: Dice, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        client.batch_execute("BEGIN").await.unwrap();
        client
            .query(
                "SELECT pdoflow.cancel(id) FROM (SELECT id FROM pdoflow.active_jobs \
                 WHERE state = 'queued' ORDER BY priority DESC, run_at, id LIMIT 1) AS first",
                &[],
            )
            .await
            .unwrap_or_else(|error| panic!("cancel: {}", describe(&error)));
        tokio::time::sleep(Duration::from_millis(dice.roll(10))).await;
        client.batch_execute("ROLLBACK").await.unwrap();
    }
}

async fn finish(client: &Client, rows: &[tokio_postgres::Row]) {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    let attempts: Vec<i32> = rows.iter().map(|row| row.get(1)).collect();
    client
        .query(
            "SELECT count(*) FROM pdoflow.finish_many($1, $2)",
            &[&ids, &attempts],
        )
        .await
        .unwrap_or_else(|error| panic!("finish_many: {}", describe(&error)));
}
