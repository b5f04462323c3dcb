//! What `pdoflow.enqueue` writes for a plain job (`enqueue.rs`: one INSERT
//! from a plan the session keeps): the row and every index entry (amcheck's
//! `bt_index_check` with `heapallindexed` finds any missing entry), and
//! that whatever a DBA does to the table from another session is honoured
//! by a session that already enqueued and so holds the plan: indexes
//! created (also CONCURRENTLY, while jobs go in), dropped, expression and
//! GIN indexes, CHECK constraints, triggers and new columns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pdoflow_tests::{describe, enqueue_took_the_sql_path, sqlstate, TestDatabase};
use tokio_postgres::Client;

async fn enqueue(client: &Client, queue: &str, args: &str) -> uuid::Uuid {
    client
        .query_one(
            "SELECT pdoflow.enqueue('t', $1::text::jsonb, queue => $2)",
            &[&args, &queue],
        )
        .await
        .unwrap_or_else(|error| panic!("enqueue: {}", describe(&error)))
        .get(0)
}

/// Every btree index of active_jobs holds exactly the rows it should.
async fn assert_indexes_complete(client: &Client) {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .await
        .expect("amcheck");
    let checked: i64 = client
        .query_one(
            "SELECT count(bt_index_check(i.indexrelid, heapallindexed => true))
               FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
               JOIN pg_am AS am ON am.oid = c.relam
              WHERE i.indrelid = 'pdoflow.active_jobs'::regclass AND am.amname = 'btree'",
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("bt_index_check: {}", describe(&error)))
        .get(0);
    assert!(checked >= 6, "only {checked} btree indexes checked");
    let problems = client
        .query("SELECT problem FROM pdoflow.check_consistency()", &[])
        .await
        .expect("check_consistency");
    assert!(problems.is_empty(), "inconsistent rows: {}", problems.len());
}

/// How many rows an index-only plan finds for `predicate` (sequential scans off).
async fn count_by_index(client: &Client, predicate: &str) -> i64 {
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .expect("set");
    let count = client
        .query_one(
            &format!("SELECT count(*) FROM pdoflow.active_jobs WHERE {predicate}"),
            &[],
        )
        .await
        .unwrap_or_else(|error| panic!("count: {}", describe(&error)))
        .get(0);
    client
        .batch_execute("RESET enable_seqscan")
        .await
        .expect("reset");
    count
}

#[tokio::test]
async fn a_plain_job_gets_the_row_and_index_entries_an_insert_makes() {
    let database = TestDatabase::create("enqueue_row_row").await;
    let client = database.connect().await;
    client.batch_execute("BEGIN").await.expect("begin");
    let id = enqueue(&client, "mail", r#"{"to": "a@example.com"}"#).await;
    let delayed: uuid::Uuid = client
        .query_one(
            "SELECT pdoflow.enqueue('t', '{}', priority => 7, max_attempts => 2,
                                    run_at => now() + interval '1 hour')",
            &[],
        )
        .await
        .expect("delayed enqueue")
        .get(0);
    // The rows are visible to the enqueuing transaction's next statement.
    let row = client
        .query_one(
            "SELECT task, queue, state, priority, attempt, max_attempts, args::text,
                    run_at = now() AND created_at = now(),
                    num_nulls(posting, started_at, heartbeat_at, lease_expires_at,
                              parents_pending, worker, dependency_mode, node,
                              last_error, depends_on)
               FROM pdoflow.active_jobs WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the row");
    assert_eq!(row.get::<_, &str>(0), "t");
    assert_eq!(row.get::<_, &str>(1), "mail");
    assert_eq!(row.get::<_, &str>(2), "queued");
    assert_eq!(row.get::<_, i32>(3), 0);
    assert_eq!(row.get::<_, i32>(4), 0);
    assert_eq!(row.get::<_, i32>(5), 5);
    assert_eq!(row.get::<_, &str>(6), r#"{"to": "a@example.com"}"#);
    assert!(row.get::<_, bool>(7), "run_at and created_at are now()");
    assert_eq!(row.get::<_, i32>(8), 10, "the other columns are NULL");
    client.batch_execute("COMMIT").await.expect("commit");

    let due = client
        .query(
            "SELECT id FROM pdoflow.claim(10, queues => ARRAY['default'])",
            &[],
        )
        .await
        .expect("claim");
    assert!(due.is_empty(), "the delayed job was claimable at once");
    assert_eq!(
        count_by_index(&client, "state = 'queued' AND run_at > created_at").await,
        1,
        "the delayed job is in the delayed index"
    );
    let delayed_row = client
        .query_one(
            "SELECT priority, max_attempts FROM pdoflow.active_jobs WHERE id = $1",
            &[&delayed],
        )
        .await
        .expect("delayed row");
    assert_eq!(
        (delayed_row.get::<_, i32>(0), delayed_row.get::<_, i32>(1)),
        (7, 2)
    );
    assert_eq!(
        count_by_index(&client, "state = 'queued' AND queue = 'mail'").await,
        1
    );
    assert_indexes_complete(&client).await;
    assert!(
        !enqueue_took_the_sql_path(&client).await,
        "a plain job went through pdoflow._enqueue_general"
    );
}

#[tokio::test]
async fn indexes_a_dba_creates_or_drops_elsewhere_are_kept_up_to_date() {
    let database = TestDatabase::create("enqueue_row_indexes").await;
    let producer = database.connect().await;
    let admin = database.connect().await;
    // The producer keeps the descriptions of the original indexes.
    enqueue(&producer, "default", r#"{"k": "x"}"#).await;

    admin
        .batch_execute(
            "CREATE INDEX extra_expression_idx ON pdoflow.active_jobs ((args->>'k'))
                 WHERE queue = 'q2';
             CREATE INDEX extra_args_idx ON pdoflow.active_jobs USING gin (args jsonb_path_ops);
             -- A whole-row reference is compiled for each insert, not kept.
             CREATE INDEX extra_whole_row_idx ON pdoflow.active_jobs (id)
                 WHERE (active_jobs).queue = 'q2';",
        )
        .await
        .expect("create indexes");
    for _ in 0..3 {
        enqueue(&producer, "q2", r#"{"k": "x"}"#).await;
    }
    enqueue(&producer, "q3", r#"{"k": "y"}"#).await;
    assert_eq!(
        count_by_index(&admin, "queue = 'q2' AND args->>'k' = 'x'").await,
        3,
        "the expression index"
    );
    assert_eq!(
        count_by_index(&admin, r#"args @> '{"k": "x"}'"#).await,
        4,
        "the GIN index"
    );
    assert_eq!(
        count_by_index(&admin, "(active_jobs).queue = 'q2'").await,
        3,
        "the index whose predicate reads the whole row"
    );
    assert_indexes_complete(&admin).await;

    admin
        .batch_execute(
            "DROP INDEX pdoflow.extra_expression_idx, pdoflow.extra_args_idx,
                        pdoflow.extra_whole_row_idx",
        )
        .await
        .expect("drop indexes");
    enqueue(&producer, "q2", r#"{"k": "x"}"#).await;
    assert_indexes_complete(&admin).await;
}

#[tokio::test]
async fn an_index_created_concurrently_while_jobs_go_in_is_complete() {
    let database = TestDatabase::create("enqueue_row_concurrently").await;
    let admin = database.connect().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for _ in 0..2 {
        let producer = database.connect().await;
        let stop = stop.clone();
        producers.push(tokio::spawn(async move {
            let mut count = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                enqueue(&producer, "default", r#"{"k": "x"}"#).await;
                count += 1;
            }
            count
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for round in 0..3 {
        admin
            .batch_execute(&format!(
                "CREATE INDEX CONCURRENTLY concurrent_{round}_idx
                     ON pdoflow.active_jobs (priority, created_at) WHERE state = 'queued'"
            ))
            .await
            .unwrap_or_else(|error| panic!("create index concurrently: {}", describe(&error)));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut enqueued = 0;
    for producer in producers {
        enqueued += producer.await.expect("producer");
    }
    assert!(enqueued > 0);
    assert_indexes_complete(&admin).await;
    let total: i64 = admin
        .query_one("SELECT count(*) FROM pdoflow.active_jobs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(total, i64::try_from(enqueued).expect("count fits"));
}

#[tokio::test]
async fn a_check_constraint_a_dba_adds_is_enforced() {
    let database = TestDatabase::create("enqueue_row_check").await;
    let producer = database.connect().await;
    let admin = database.connect().await;
    enqueue(&producer, "default", "{}").await;
    admin
        .batch_execute(
            "ALTER TABLE pdoflow.active_jobs
                 ADD CONSTRAINT small_priorities CHECK (priority < 100) NOT VALID",
        )
        .await
        .expect("add constraint");
    let error = producer
        .query_one("SELECT pdoflow.enqueue('t', '{}', priority => 500)", &[])
        .await
        .expect_err("the CHECK constraint was not enforced");
    assert_eq!(sqlstate(&error), "23514", "{}", describe(&error));
    assert!(
        describe(&error).contains("small_priorities"),
        "{}",
        describe(&error)
    );
    producer
        .query_one("SELECT pdoflow.enqueue('t', '{}', priority => 50)", &[])
        .await
        .expect("a job the constraint allows");
}

#[tokio::test]
async fn a_trigger_or_a_new_column_a_dba_adds_is_honoured() {
    let database = TestDatabase::create("enqueue_row_trigger").await;
    let producer = database.connect().await;
    let admin = database.connect().await;
    enqueue(&producer, "default", "{}").await;

    admin
        .batch_execute(
            "CREATE TABLE audit (job uuid);
             CREATE FUNCTION audit_job() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN INSERT INTO public.audit VALUES (NEW.id); RETURN NEW; END $$;
             CREATE TRIGGER audit AFTER INSERT ON pdoflow.active_jobs
                 FOR EACH ROW EXECUTE FUNCTION audit_job();",
        )
        .await
        .expect("trigger");
    let audited = enqueue(&producer, "default", "{}").await;
    let seen: i64 = admin
        .query_one("SELECT count(*) FROM audit WHERE job = $1", &[&audited])
        .await
        .expect("audit")
        .get(0);
    assert_eq!(seen, 1, "the trigger did not fire");
    admin
        .batch_execute("DROP TRIGGER audit ON pdoflow.active_jobs")
        .await
        .expect("drop trigger");

    admin
        .batch_execute("ALTER TABLE pdoflow.active_jobs ADD COLUMN origin text DEFAULT 'unknown'")
        .await
        .expect("add column");
    let with_column = enqueue(&producer, "default", "{}").await;
    let origin: String = admin
        .query_one(
            "SELECT origin FROM pdoflow.active_jobs WHERE id = $1",
            &[&with_column],
        )
        .await
        .expect("origin")
        .get(0);
    assert_eq!(
        origin, "unknown",
        "the new column's default was not applied"
    );

    admin
        .batch_execute("ALTER TABLE pdoflow.active_jobs DROP COLUMN origin")
        .await
        .expect("drop column");
    enqueue(&producer, "default", "{}").await;
    assert_indexes_complete(&admin).await;
}

#[tokio::test]
async fn a_plain_job_is_the_row_every_other_path_writes() {
    // The Rust enqueue writes a plain job's row itself; every SQL path goes
    // through pdoflow._insert_jobs. In one transaction (one now()), the same
    // job through each must be the same row but for its id.
    let database = TestDatabase::create("enqueue_row_shape").await;
    let client = database.connect().await;
    let rows: Vec<String> = client
        .simple_query(
            r#"BEGIN;
               SELECT pdoflow.enqueue('same', '{"a": 1}', queue => 'q', priority => 3, max_attempts => 4);
               SELECT pdoflow.enqueue_many('same', ARRAY['{"a": 1}']::jsonb[], queue => 'q', priority => 3,
                                           max_attempts => 4);
               SELECT pdoflow.enqueue_many('[{"task": "same", "args": {"a": 1}, "queue": "q",
                                             "priority": 3, "max_attempts": 4}]');
               SELECT pdoflow.submit_dag('{"nodes": [{"name": "n", "task": "same", "args": {"a": 1},
                                                      "queue": "q", "priority": 3, "max_attempts": 4}]}');
               SELECT (to_jsonb(j) - 'id' - 'node')::text FROM pdoflow.active_jobs AS j ORDER BY j.id;
               COMMIT;"#,
        )
        .await
        .unwrap_or_else(|error| panic!("enqueue four ways: {}", describe(&error)))
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) if row.len() == 1 && row.columns()[0].name() == "text" => {
                row.get(0).map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(
        rows.iter().all(|row| row == &rows[0]),
        "the paths wrote different rows: {rows:#?}"
    );
}
