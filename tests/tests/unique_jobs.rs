//! Unique jobs under concurrency: many sessions enqueueing the same keys at
//! once, in every form and in opposite orders, get one job per key back,
//! with no error and no deadlock; and while workers end those jobs, no key
//! is ever held by two active jobs. (A transaction that takes several keys
//! one call at a time holds each until it commits, as with any unique
//! index: two of those taking keys in opposite orders can deadlock, which
//! docs/sql-api.md says; the bulk forms take their keys in order.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pdoflow_tests::{describe, TestDatabase};
use uuid::Uuid;

const SESSIONS: usize = 16;
const KEYS: usize = 20;

#[tokio::test]
async fn concurrent_duplicate_enqueues_make_one_job_per_key() {
    let database = Arc::new(TestDatabase::create("unique_concurrent").await);
    let mut sessions = Vec::new();
    for session in 0..SESSIONS {
        let database = Arc::clone(&database);
        sessions.push(tokio::spawn(async move {
            let client = database.connect().await;
            let mut handed_out: Vec<(String, Uuid)> = Vec::new();
            for round in 0..10 {
                // Half the sessions walk the keys forwards, half backwards:
                // one call per key (each its own transaction), or all keys
                // in one call of either bulk form.
                let mut keys: Vec<String> = (0..KEYS).map(|key| format!("key-{key}")).collect();
                if (session + round) % 2 == 1 {
                    keys.reverse();
                }
                let ids: Vec<Uuid> = match round % 3 {
                    0 => {
                        let mut ids = Vec::new();
                        for key in &keys {
                            let row = client
                                .query_one(
                                    "SELECT pdoflow.enqueue('sync', unique_key => $1)",
                                    &[key],
                                )
                                .await
                                .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)));
                            ids.push(row.get(0));
                        }
                        ids
                    }
                    1 => client
                        .query(
                            "SELECT id FROM pdoflow.enqueue_many('sync',
                                 array_fill('{}'::jsonb, ARRAY[cardinality($1::text[])]),
                                 unique_keys => $1)",
                            &[&keys],
                        )
                        .await
                        .unwrap_or_else(|error| panic!("enqueue_many: {}", describe(&error)))
                        .iter()
                        .map(|row| row.get(0))
                        .collect(),
                    _ => {
                        let document = serde_json::Value::Array(
                            keys.iter()
                                .map(|key| serde_json::json!({"task": "sync", "unique_key": key}))
                                .collect(),
                        );
                        client
                            .query(
                                "SELECT id FROM pdoflow.enqueue_many($1::jsonb)",
                                &[&document],
                            )
                            .await
                            .unwrap_or_else(|error| {
                                panic!("enqueue_many(jobs): {}", describe(&error))
                            })
                            .iter()
                            .map(|row| row.get(0))
                            .collect()
                    }
                };
                handed_out.extend(keys.into_iter().zip(ids));
            }
            handed_out
        }));
    }
    let mut ids_by_key: HashMap<String, HashSet<Uuid>> = HashMap::new();
    for session in sessions {
        for (key, id) in session.await.expect("a session panicked") {
            ids_by_key.entry(key).or_default().insert(id);
        }
    }
    assert_eq!(ids_by_key.len(), KEYS);
    for (key, ids) in &ids_by_key {
        assert_eq!(ids.len(), 1, "{key} was handed out as {} jobs", ids.len());
    }
    let client = database.connect().await;
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM pdoflow.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, KEYS as i64);
    let problems = client
        .query("SELECT problem FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap();
    assert!(problems.is_empty(), "{} inconsistencies", problems.len());
}

#[tokio::test]
async fn no_key_is_held_by_two_active_jobs_while_workers_end_them() {
    let database = Arc::new(TestDatabase::create("unique_churn").await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for producer in 0..6 {
        let database = Arc::clone(&database);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let client = database.connect().await;
            let mut calls = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key-{}", (calls as usize + producer) % 5);
                // Some keys are kept for a moment after succeeding.
                let keep = if calls.is_multiple_of(2) {
                    Some("50 milliseconds")
                } else {
                    None
                };
                client
                    .query_one(
                        "SELECT pdoflow.enqueue('churn', unique_key => $1,
                                                unique_for => $2::text::interval, max_attempts => 2)",
                        &[&key, &keep],
                    )
                    .await
                    .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)));
                calls += 1;
            }
            calls
        }));
    }
    for worker in 0..4 {
        let database = Arc::clone(&database);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let client = database.connect().await;
            let mut ended = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let claims = client
                    .query(
                        "SELECT id, attempt FROM pdoflow.claim(3, worker => $1)",
                        &[&format!("w{worker}")],
                    )
                    .await
                    .unwrap();
                for (index, claim) in claims.iter().enumerate() {
                    let (id, attempt): (Uuid, i32) = (claim.get(0), claim.get(1));
                    // Every third fails (and is retried once); one job in
                    // seven is cancelled instead of finished.
                    let outcome = if index % 3 == 2 { Some("flaky") } else { None };
                    let result = if ended % 7 == 6 {
                        client
                            .query_one("SELECT pdoflow.cancel($1)::text", &[&id])
                            .await
                    } else {
                        client
                            .query_one(
                                "SELECT pdoflow.finish($1, $2, $3)",
                                &[&id, &attempt, &outcome],
                            )
                            .await
                    };
                    result.unwrap_or_else(|error| panic!("ending a job: {}", describe(&error)));
                    ended += 1;
                }
            }
            ended
        }));
    }
    let watcher = database.connect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let doubled: i64 = watcher
            .query_one(
                "SELECT count(*) FROM (SELECT task, unique_key FROM pdoflow.active_jobs
                                       WHERE unique_key IS NOT NULL
                                       GROUP BY 1, 2 HAVING count(*) > 1) AS d",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(doubled, 0, "a key is held by two active jobs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut work = 0;
    for task in tasks {
        work += task.await.expect("a session panicked");
    }
    assert!(
        work > 100,
        "too little happened to prove anything: {work} calls"
    );
    let problems: Vec<String> = watcher
        .query("SELECT problem FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let ended: i64 = watcher
        .query_one("SELECT count(*) FROM pdoflow.finished_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ended > 10, "only {ended} jobs ended");
}
