//! `pdoflow.enqueue`'s fast path keeps a copy of the task registrations per
//! session (`registered_tasks.rs`). These tests change registrations from a
//! second session, and in the enqueuing transaction itself, and check that
//! every enqueue sees the registrations its snapshot sees: a schema
//! registered elsewhere is enforced at once, an unregistered one no longer
//! is, and `pdoflow.require_registered_tasks` follows them too. The
//! cluster preloads pdoflow, so the shared state behind the copy is there.
//!
//! Also here: the fast path is never taken where SQL's INSERT would refuse
//! (read-only transactions), registrations copied in by logical replication
//! or a restore (session_replication_role = replica) reach the copy,
//! validating args against a costly schema can be cancelled, and
//! `check_consistency` reports what `active_jobs`' former CHECK constraints
//! rejected.

use pdoflow_tests::{describe, TestDatabase};
use tokio_postgres::Client;

const NEEDS_B: &str = r#"{"type": "object", "required": ["b"]}"#;

/// Enqueues a `task` job with args `{"a": 1}`; the error's text if it fails.
async fn enqueue(client: &Client, task: &str) -> Result<(), String> {
    client
        .query_one("SELECT pdoflow.enqueue($1, '{\"a\": 1}'::jsonb)", &[&task])
        .await
        .map(|_| ())
        .map_err(|error| describe(&error))
}

async fn register(client: &Client, task: &str, schema: Option<&str>) {
    client
        .execute(
            "SELECT pdoflow.register_task($1, $2::text::jsonb)",
            &[&task, &schema],
        )
        .await
        .unwrap_or_else(|error| panic!("register_task: {}", describe(&error)));
}

async fn unregister(client: &Client, task: &str) {
    client
        .execute("SELECT pdoflow.unregister_task($1)", &[&task])
        .await
        .unwrap_or_else(|error| panic!("unregister_task: {}", describe(&error)));
}

fn assert_schema_error(result: Result<(), String>, task: &str) {
    let error = result.expect_err("args that break the task's schema were accepted");
    assert!(
        error.contains(&format!("JSON Schema of task \"{task}\"")),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn a_registration_committed_by_another_session_applies_to_the_next_enqueue() {
    let database = TestDatabase::create("fast_path_other_session").await;
    let producer = database.connect().await;
    let admin = database.connect().await;

    // The producer's copy: no registrations.
    enqueue(&producer, "report")
        .await
        .expect("unregistered task");

    register(&admin, "report", Some(NEEDS_B)).await;
    assert_schema_error(enqueue(&producer, "report").await, "report");
    // Other tasks still take the fast path.
    enqueue(&producer, "other").await.expect("other task");

    register(&admin, "report", None).await;
    enqueue(&producer, "report")
        .await
        .expect("schema dropped from the registration");

    register(&admin, "report", Some(NEEDS_B)).await;
    assert_schema_error(enqueue(&producer, "report").await, "report");
    unregister(&admin, "report").await;
    enqueue(&producer, "report")
        .await
        .expect("registration removed");

    register(&admin, "report", Some(NEEDS_B)).await;
    admin
        .batch_execute("TRUNCATE pdoflow.tasks")
        .await
        .expect("TRUNCATE pdoflow.tasks");
    enqueue(&producer, "report")
        .await
        .expect("registrations truncated");
}

#[tokio::test]
async fn a_registration_committed_during_a_transaction_applies_to_its_next_statement() {
    let database = TestDatabase::create("fast_path_read_committed").await;
    let producer = database.connect().await;
    let admin = database.connect().await;

    producer.batch_execute("BEGIN").await.expect("BEGIN");
    enqueue(&producer, "report")
        .await
        .expect("unregistered task");
    register(&admin, "report", Some(NEEDS_B)).await;
    // READ COMMITTED: this statement's snapshot sees the registration.
    assert_schema_error(enqueue(&producer, "report").await, "report");
    producer.batch_execute("ROLLBACK").await.expect("ROLLBACK");

    // REPEATABLE READ: the transaction's snapshot decides, before and after.
    unregister(&admin, "report").await;
    producer
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .expect("BEGIN");
    enqueue(&producer, "report")
        .await
        .expect("unregistered task");
    register(&admin, "report", Some(NEEDS_B)).await;
    enqueue(&producer, "report")
        .await
        .expect("registered after this transaction's snapshot");
    producer.batch_execute("COMMIT").await.expect("COMMIT");
    assert_schema_error(enqueue(&producer, "report").await, "report");
}

#[tokio::test]
async fn the_enqueuing_transactions_own_registrations_apply_and_roll_back() {
    let database = TestDatabase::create("fast_path_own_transaction").await;
    let producer = database.connect().await;

    enqueue(&producer, "report")
        .await
        .expect("unregistered task");
    producer.batch_execute("BEGIN").await.expect("BEGIN");
    register(&producer, "report", Some(NEEDS_B)).await;
    assert_schema_error(enqueue(&producer, "report").await, "report");
    producer.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    enqueue(&producer, "report")
        .await
        .expect("registration rolled back");
}

#[tokio::test]
async fn required_registration_follows_registrations_made_elsewhere() {
    let database = TestDatabase::create("fast_path_required").await;
    let producer = database.connect().await;
    let admin = database.connect().await;
    producer
        .batch_execute("SET pdoflow.require_registered_tasks = on")
        .await
        .expect("SET");

    let error = enqueue(&producer, "report")
        .await
        .expect_err("an unregistered task was accepted");
    assert!(error.contains("is not registered"), "{error}");
    register(&admin, "report", None).await;
    enqueue(&producer, "report").await.expect("registered task");
    unregister(&admin, "report").await;
    let error = enqueue(&producer, "report")
        .await
        .expect_err("an unregistered task was accepted");
    assert!(error.contains("is not registered"), "{error}");
}

async fn count_jobs(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM pdoflow.jobs", &[])
        .await
        .expect("count jobs")
        .get(0)
}

#[tokio::test]
async fn a_read_only_transaction_cannot_enqueue() {
    let database = TestDatabase::create("fast_path_read_only").await;
    let client = database.connect().await;
    // The session has its copy of the registrations: the fast path is open.
    enqueue(&client, "report").await.expect("enqueue");
    let before = count_jobs(&client).await;

    for (setup, begin) in [
        ("", "BEGIN READ ONLY"),
        ("", "BEGIN; SET TRANSACTION READ ONLY"),
        ("SET default_transaction_read_only = on", "BEGIN"),
    ] {
        client.batch_execute(setup).await.expect("SET");
        client.batch_execute(begin).await.expect("BEGIN");
        let error = enqueue(&client, "report")
            .await
            .expect_err("a read-only transaction enqueued");
        assert!(error.starts_with("25006"), "{begin}: {error}");
        client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
        client
            .batch_execute("RESET default_transaction_read_only")
            .await
            .expect("RESET");
    }
    // Outside a transaction block too, with the role's default read-only.
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .expect("SET");
    let error = enqueue(&client, "report")
        .await
        .expect_err("a read-only statement enqueued");
    assert!(error.starts_with("25006"), "{error}");
    client
        .batch_execute("RESET default_transaction_read_only")
        .await
        .expect("RESET");
    assert_eq!(count_jobs(&client).await, before, "nothing was committed");
    enqueue(&client, "report")
        .await
        .expect("a read-write transaction enqueues");
}

#[tokio::test]
async fn registrations_and_grants_written_as_a_replica_reach_other_sessions() {
    let database = TestDatabase::create("fast_path_replica").await;
    let producer = database.connect().await;
    let replica = database.connect().await;
    // The producer's copy: no registrations, no grants.
    enqueue(&producer, "report").await.expect("enqueue");

    // What logical replication or pg_restore do: write the tables with
    // session_replication_role = replica, where ordinary triggers are silent.
    replica
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             INSERT INTO pdoflow.tasks (name, args_schema) VALUES ('report', '{NEEDS_B}');"
        ))
        .await
        .unwrap_or_else(|error| panic!("replicated registration: {}", describe(&error)));
    assert_schema_error(enqueue(&producer, "report").await, "report");

    replica
        .batch_execute(
            "INSERT INTO pdoflow.task_privileges (task, grantee, granted_by)
             VALUES ('deploy', 'pdoflow_admin', 'replication')",
        )
        .await
        .unwrap_or_else(|error| panic!("replicated grant: {}", describe(&error)));
    producer
        .batch_execute("SET ROLE pdoflow_producer")
        .await
        .expect("SET ROLE");
    let error = enqueue(&producer, "deploy")
        .await
        .expect_err("a task granted to others was enqueued");
    assert!(error.starts_with("42501"), "{error}");
}

#[tokio::test]
async fn validating_args_against_a_costly_pattern_can_be_cancelled() {
    let database = TestDatabase::create("fast_path_cancel_validation").await;
    let client = database.connect().await;
    // Each string takes this backtracking pattern milliseconds to match (it
    // does match): thousands of them take far longer than the timeout.
    register(
        &client,
        "costly",
        Some(r#"{"type": "array", "items": {"type": "string", "pattern": "^((a|aa)*)\\1$"}}"#),
    )
    .await;
    let args = serde_json::Value::Array(vec![serde_json::json!("a".repeat(50)); 5_000]);
    let enqueue_costly = "SELECT pdoflow.enqueue('costly', $1::jsonb)";

    // statement_timeout.
    client
        .batch_execute("SET statement_timeout = '500ms'")
        .await
        .expect("SET");
    let started = std::time::Instant::now();
    let error = client
        .query_one(enqueue_costly, &[&args])
        .await
        .expect_err("the validation finished within the timeout");
    assert_eq!(
        pdoflow_tests::sqlstate(&error),
        "57014",
        "{}",
        describe(&error)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "statement_timeout took {:?} to stop the validation",
        started.elapsed()
    );
    client
        .batch_execute("RESET statement_timeout")
        .await
        .expect("RESET");

    // pg_cancel_backend from another session.
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let canceller = database.connect().await;
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        canceller
            .query_one("SELECT pg_cancel_backend($1)", &[&pid])
            .await
            .expect("pg_cancel_backend")
            .get::<_, bool>(0)
    });
    let started = std::time::Instant::now();
    let error = client
        .query_one(enqueue_costly, &[&args])
        .await
        .expect_err("the validation was not cancelled");
    assert!(
        cancel.await.expect("the canceller"),
        "the backend was signalled"
    );
    assert_eq!(
        pdoflow_tests::sqlstate(&error),
        "57014",
        "{}",
        describe(&error)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "pg_cancel_backend took {:?} to stop the validation",
        started.elapsed()
    );
    assert_eq!(count_jobs(&client).await, 0);
}

#[tokio::test]
async fn check_consistency_reports_what_the_table_constraints_used_to_reject() {
    let database = TestDatabase::create("fast_path_consistency").await;
    let client = database.connect().await;
    enqueue(&client, "report").await.expect("enqueue");
    for (change, problem) in [
        ("SET state = 'lost'", "active job has state 'lost'"),
        (
            "SET dependency_mode = 'all'",
            "active job has only one of depends_on and dependency_mode",
        ),
        ("SET lease_expires_at = now()", "queued job has a lease"),
        ("SET state = 'running'", "running job lacks a lease"),
        ("SET attempt = 6", "active job is at attempt 6 of 5"),
    ] {
        client
            .batch_execute(&format!(
                "BEGIN; UPDATE pdoflow.active_jobs {change}; \
                 CREATE TEMP TABLE found ON COMMIT DROP AS SELECT * FROM pdoflow.check_consistency()"
            ))
            .await
            .unwrap_or_else(|error| panic!("{change}: {}", describe(&error)));
        let found: Vec<String> = client
            .query("SELECT problem FROM found", &[])
            .await
            .expect("problems")
            .iter()
            .map(|row| row.get(0))
            .collect();
        client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
        assert_eq!(found, vec![problem.to_owned()], "after {change}");
    }
    let rows = client
        .query("SELECT * FROM pdoflow.check_consistency()", &[])
        .await
        .expect("check_consistency");
    assert!(rows.is_empty(), "the untouched job is consistent");
}
