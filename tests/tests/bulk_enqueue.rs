//! The bulk forms insert many jobs in one statement and return their ids in
//! input order; a rejected bulk writes nothing.

use std::time::Instant;

use pdoflow_tests::{sqlstate, TestDatabase};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_hundred_thousand_jobs_in_one_statement() {
    let database = TestDatabase::create("bulk_100k").await;
    let client = database.connect().await;
    let args: Vec<serde_json::Value> = (0..100_000).map(|n| json!({ "n": n })).collect();

    let started = Instant::now();
    let rows = client
        .query(
            "SELECT id FROM pdoflow.enqueue_many('bulk', $1::jsonb[])",
            &[&args],
        )
        .await
        .unwrap();
    // Reported, not asserted: speed is measured by the benchmarks.
    println!("enqueue_many: 100000 jobs in {:?}", started.elapsed());

    let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(ids.len(), 100_000);
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids follow input order"
    );
    let check = client
        .query_one(
            "SELECT count(*), bool_and((j.args->>'n')::int = i.ord - 1) \
             FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, ord) JOIN pdoflow.jobs AS j USING (id)",
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(check.get::<_, i64>(0), 100_000);
    assert!(
        check.get::<_, bool>(1),
        "each id holds the args at its position"
    );
}

#[tokio::test]
async fn a_mixed_document_of_ten_thousand_jobs() {
    let database = TestDatabase::create("bulk_document").await;
    let client = database.connect().await;
    let jobs: Vec<serde_json::Value> = (0..10_000)
        .map(|n| json!({ "task": format!("task-{}", n % 7), "queue": format!("q{}", n % 3), "priority": n % 5, "args": { "n": n } }))
        .collect();
    let rows = client
        .query(
            "SELECT id FROM pdoflow.enqueue_many($1::jsonb)",
            &[&serde_json::Value::Array(jobs)],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10_000);
    let per_queue = client
        .query(
            "SELECT queue, count(*) FROM pdoflow.jobs GROUP BY queue ORDER BY queue",
            &[],
        )
        .await
        .unwrap();
    let counts: Vec<(String, i64)> = per_queue
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("q0".into(), 3334),
            ("q1".into(), 3333),
            ("q2".into(), 3333)
        ]
    );
}

#[tokio::test]
async fn a_rejected_bulk_writes_nothing() {
    let database = TestDatabase::create("bulk_rejected").await;
    let client = database.connect().await;

    let mut jobs: Vec<serde_json::Value> = (0..1000)
        .map(|n| json!({ "task": "ok", "args": { "n": n } }))
        .collect();
    jobs.push(json!({ "task": "" }));
    let error = client
        .query(
            "SELECT pdoflow.enqueue_many($1::jsonb)",
            &[&serde_json::Value::Array(jobs)],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "22023");
    let message = error
        .as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_default();
    assert_eq!(message, "jobs[1000].task must not be empty");

    let mut args: Vec<Option<serde_json::Value>> =
        (0..1000).map(|n| Some(json!({ "n": n }))).collect();
    args.push(None);
    let error = client
        .query("SELECT pdoflow.enqueue_many('t', $1::jsonb[])", &[&args])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error), "22004");

    let count = client
        .query_one("SELECT count(*) FROM pdoflow.jobs", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 0, "nothing was half-written");
}
