//! `pdoflow.stats` on a real cluster: counters exact with many sessions
//! enqueueing, claiming and finishing at once (rolled-back work never
//! counted), and `pdoflow.await_ended`, which lets one session watch many
//! jobs: it returns when a job of its set ends, and also, with no rows,
//! when any other job of the database does (so a watcher whose set grew
//! while it slept looks again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pdoflow_tests::TestDatabase;
use uuid::Uuid;

const SESSIONS: usize = 8;
const JOBS_PER_SESSION: usize = 60;

#[tokio::test]
async fn counters_are_exact_with_many_sessions() {
    let database = Arc::new(TestDatabase::create("stats_exact").await);
    let mut sessions = Vec::new();
    for session in 0..SESSIONS {
        let database = Arc::clone(&database);
        sessions.push(tokio::spawn(async move {
            let mut client = database.connect().await;
            let mut committed = 0_i64;
            for n in 0..JOBS_PER_SESSION {
                // Every third job is enqueued in a transaction that rolls back.
                let transaction = client.transaction().await.unwrap();
                transaction
                    .execute(
                        "SELECT pdoflow.enqueue('t', jsonb_build_object('s', $1::int, 'n', $2::int),
                                                'counted', max_attempts => 1)",
                        &[&(session as i32), &(n as i32)],
                    )
                    .await
                    .unwrap();
                if n % 3 == 0 {
                    transaction.rollback().await.unwrap();
                } else {
                    transaction.commit().await.unwrap();
                    committed += 1;
                }
            }
            // Claim in batches and finish: even jobs succeed, odd ones fail
            // (one attempt: they end failed).
            let (mut succeeded, mut failed) = (0_i64, 0_i64);
            loop {
                let claims = client
                    .query(
                        "SELECT id, attempt, (args->>'n')::int FROM pdoflow.claim(7, ARRAY['counted'])",
                        &[],
                    )
                    .await
                    .unwrap();
                if claims.is_empty() {
                    break;
                }
                let ids: Vec<Uuid> = claims.iter().map(|row| row.get(0)).collect();
                let attempts: Vec<i32> = claims.iter().map(|row| row.get(1)).collect();
                let errors: Vec<Option<String>> = claims
                    .iter()
                    .map(|row| (row.get::<_, i32>(2) % 2 == 1).then(|| "odd".to_owned()))
                    .collect();
                succeeded += errors.iter().filter(|error| error.is_none()).count() as i64;
                failed += errors.iter().filter(|error| error.is_some()).count() as i64;
                client
                    .query(
                        "SELECT * FROM pdoflow.finish_many($1, $2, $3)",
                        &[&ids, &attempts, &errors],
                    )
                    .await
                    .unwrap();
            }
            (committed, succeeded, failed)
        }));
    }
    let (mut committed, mut succeeded, mut failed) = (0, 0, 0);
    for session in sessions {
        let (c, s, f) = session.await.expect("a session panicked");
        committed += c;
        succeeded += s;
        failed += f;
    }
    let client = database.connect().await;
    // A claim may find no job while others still hold some: drain the rest.
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE state IN ('queued', 'running')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "every committed job was claimed and finished");
    let row = client
        .query_one(
            "SELECT enqueued, claimed, succeeded, failed, retried, cancelled, leases_expired
             FROM pdoflow.stats WHERE queue = 'counted'",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<i64> = (0..7).map(|i| row.get(i)).collect();
    assert_eq!(
        counts,
        vec![committed, committed, succeeded, failed, 0, 0, 0],
        "enqueued, claimed, succeeded, failed, retried, cancelled, leases_expired"
    );
    assert_eq!(committed, (SESSIONS * JOBS_PER_SESSION * 2 / 3) as i64);
}

#[tokio::test]
async fn await_ended_returns_for_its_jobs_and_wakes_for_any() {
    let database = TestDatabase::create("await_ended").await;
    let client = database.connect().await;
    let watched: Uuid = client
        .query_one("SELECT pdoflow.enqueue('watched')", &[])
        .await
        .unwrap()
        .get(0);
    let other: Uuid = client
        .query_one("SELECT pdoflow.enqueue('other')", &[])
        .await
        .unwrap()
        .get(0);

    // Another job ends: the watcher wakes with no rows, long before its
    // timeout, so that it can look again with the set it has then.
    let watcher = database.connect().await;
    let call = tokio::spawn(async move {
        let started = Instant::now();
        let rows = watcher
            .query(
                "SELECT id, state FROM pdoflow.await_ended(ARRAY[$1]::uuid[], '20 seconds')",
                &[&watched],
            )
            .await
            .unwrap();
        (rows.len(), started.elapsed(), watcher)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .execute("SELECT pdoflow.cancel($1)", &[&other])
        .await
        .unwrap();
    let (rows, waited, watcher) = call.await.unwrap();
    assert_eq!(
        rows, 0,
        "woken by another job's end, with nothing of its own"
    );
    assert!(
        waited < Duration::from_secs(5),
        "woken by the commit, not the 20 s timeout or the 5 s safety look: {waited:?}"
    );

    // Its own job ends while it waits: returned with its end state.
    let call = tokio::spawn(async move {
        let rows = watcher
            .query(
                "SELECT id, state FROM pdoflow.await_ended(ARRAY[$1]::uuid[], '20 seconds')",
                &[&watched],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| (row.get::<_, Uuid>(0), row.get::<_, String>(1)))
            .collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    client
        .query("SELECT pdoflow.cancel($1)", &[&watched])
        .await
        .unwrap();
    let ended = call.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ended, vec![(watched, "cancelled".to_owned())]);

    // Nothing ends: it returns at its timeout with no rows.
    let started = Instant::now();
    let rows = client
        .query(
            "SELECT id FROM pdoflow.await_ended(ARRAY[gen_random_uuid()], '300 milliseconds')",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
}
