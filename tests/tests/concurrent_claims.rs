//! Many workers claiming and finishing at once: every job is worked exactly
//! once, and every finish is accepted.

use std::collections::HashSet;

use pdoflow_tests::TestDatabase;
use uuid::Uuid;

const JOBS: i32 = 4_000;
const WORKERS: usize = 8;
const BATCH: i32 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_job_is_claimed_exactly_once() {
    let database = TestDatabase::create("concurrent_claims").await;
    let setup = database.connect().await;
    setup
        .execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('work', \
             (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, $1) AS i), \
             queue => 'q')",
            &[&JOBS],
        )
        .await
        .unwrap();

    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let client = database.connect().await;
        workers.push(tokio::spawn(async move {
            let name = format!("worker-{worker}");
            let mut claimed: Vec<Uuid> = Vec::new();
            loop {
                let rows = client
                    .query(
                        "SELECT id, attempt FROM pdoflow.claim($1, worker => $2)",
                        &[&BATCH, &name],
                    )
                    .await
                    .unwrap();
                if rows.is_empty() {
                    return claimed;
                }
                let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
                let attempts: Vec<i32> = rows.iter().map(|row| row.get(1)).collect();
                let outcomes = client
                    .query(
                        "SELECT state, rejected FROM pdoflow.finish_many($1, $2)",
                        &[&ids, &attempts],
                    )
                    .await
                    .unwrap();
                for outcome in outcomes {
                    let rejected: Option<String> = outcome.get(1);
                    assert_eq!(rejected, None, "{name}: a finish was rejected");
                    assert_eq!(outcome.get::<_, String>(0), "succeeded");
                }
                claimed.extend(ids);
            }
        }));
    }

    let mut seen = HashSet::new();
    let mut total = 0;
    for worker in workers {
        for id in worker.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(total, JOBS as usize);

    let row = setup
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE attempt = 1), \
             (SELECT count(*) FROM pdoflow.active_jobs) FROM pdoflow.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), i64::from(JOBS), "all succeeded");
    assert_eq!(
        row.get::<_, i64>(1),
        i64::from(JOBS),
        "each on its first attempt"
    );
    assert_eq!(row.get::<_, i64>(2), 0, "the hot table is empty again");
}
