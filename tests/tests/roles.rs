//! Privileges: the three group roles the extension creates, what each may
//! do, that nobody can change the tables directly, that PUBLIC gets nothing,
//! and that a caller's search_path cannot hijack the API functions.

use pdoflow_tests::{sqlstate, TestDatabase};
use tokio_postgres::Client;

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

/// Login roles for this test, members of the pdoflow group roles (roles are
/// cluster-wide, so they are made afresh each run).
const LOGINS: [(&str, Option<&str>); 4] = [
    ("pdoflow_it_producer", Some("pdoflow_producer")),
    ("pdoflow_it_worker", Some("pdoflow_worker")),
    ("pdoflow_it_admin", Some("pdoflow_admin")),
    ("pdoflow_it_nobody", None),
];

async fn make_logins(superuser: &Client) {
    for (login, group) in LOGINS {
        superuser
            .batch_execute(&format!("DROP ROLE IF EXISTS {login}"))
            .await
            .unwrap_or_else(|error| panic!("drop {login}: {error}"));
        let member = group
            .map(|group| format!(" IN ROLE {group}"))
            .unwrap_or_default();
        superuser
            .batch_execute(&format!("CREATE ROLE {login} LOGIN{member}"))
            .await
            .unwrap_or_else(|error| panic!("create {login}: {error}"));
    }
}

/// The SQLSTATE of running `sql`, or "ok".
async fn outcome(db: &Client, sql: &str) -> String {
    match db.batch_execute(sql).await {
        Ok(()) => "ok".to_owned(),
        Err(error) => sqlstate(&error).to_owned(),
    }
}

#[tokio::test]
async fn each_role_can_do_its_part_and_nothing_more() {
    let database = TestDatabase::create("roles").await;
    let superuser = database.connect().await;
    make_logins(&superuser).await;
    let producer = database.connect_as("pdoflow_it_producer").await;
    let worker = database.connect_as("pdoflow_it_worker").await;
    let admin = database.connect_as("pdoflow_it_admin").await;
    let nobody = database.connect_as("pdoflow_it_nobody").await;

    let denied = "42501";
    let checks: &[(&Client, &str, &str)] = &[
        // Producers enqueue and read, and nothing else.
        (&producer, "SELECT pdoflow.enqueue('t')", "ok"),
        (
            &producer,
            "SELECT pdoflow.enqueue_many('t', ARRAY['{}']::jsonb[])",
            "ok",
        ),
        (
            &producer,
            r#"SELECT pdoflow.enqueue_many('[{"task": "t"}]')"#,
            "ok",
        ),
        (&producer, "SELECT pdoflow.create_posting('p')", "ok"),
        (
            &producer,
            r#"SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t"}]}')"#,
            "ok",
        ),
        (&producer, "SELECT count(*) FROM pdoflow.jobs", "ok"),
        (
            &producer,
            "SELECT count(*) FROM pdoflow.posting_status",
            "ok",
        ),
        (
            &producer,
            "SELECT count(*) FROM pdoflow.priority_stats",
            "ok",
        ),
        (&producer, "SELECT pdoflow.claim(1)", denied),
        (
            &producer,
            "SELECT pdoflow.finish('00000000-0000-7000-8000-000000000000', 1)",
            denied,
        ),
        (
            &producer,
            "SELECT pdoflow.heartbeat('00000000-0000-7000-8000-000000000000', 1)",
            denied,
        ),
        (
            &producer,
            "SELECT pdoflow.cancel('00000000-0000-7000-8000-000000000000')",
            denied,
        ),
        (&producer, "SELECT count(*) FROM pdoflow.workers", denied),
        // Workers work jobs, and cannot cancel or retry them.
        (&worker, "SELECT pdoflow.enqueue('w')", "ok"),
        (
            &worker,
            "SELECT pdoflow.finish(id, attempt) FROM pdoflow.claim(1, worker => 'w1')",
            "ok",
        ),
        (
            &worker,
            "SELECT pdoflow.heartbeat(id, attempt) FROM pdoflow.claim(1, worker => 'w1')",
            "ok",
        ),
        (
            &worker,
            "SELECT pdoflow.release(id, attempt) FROM pdoflow.jobs WHERE state = 'running'",
            "ok",
        ),
        (&worker, "SELECT pdoflow.register_worker('w1')", "ok"),
        (&worker, "SELECT * FROM pdoflow.sweep()", "ok"),
        (
            &worker,
            "SELECT pdoflow.cancel(id) FROM pdoflow.jobs LIMIT 1",
            denied,
        ),
        (
            &worker,
            "SELECT pdoflow.retry(id) FROM pdoflow.jobs LIMIT 1",
            denied,
        ),
        (
            &worker,
            "SELECT pdoflow.set_posting_status(id, 'paused') FROM pdoflow.postings LIMIT 1",
            denied,
        ),
        (
            &worker,
            "SELECT pdoflow.set_posting_status(id, 'paused') FROM pdoflow.posting_status LIMIT 1",
            denied,
        ),
        // Admins do everything through the functions.
        (
            &admin,
            "SELECT pdoflow.cancel(id) FROM pdoflow.jobs WHERE state = 'queued' LIMIT 1",
            "ok",
        ),
        (
            &admin,
            "SELECT pdoflow.retry(id) FROM pdoflow.jobs WHERE state = 'cancelled'",
            "ok",
        ),
        (
            &admin,
            "SELECT pdoflow.set_posting_status(id, 'paused') FROM pdoflow.posting_status",
            "ok",
        ),
        (&admin, "SELECT count(*) FROM pdoflow.workers", "ok"),
        (&admin, "SELECT * FROM pdoflow.check_consistency()", "ok"),
        (&admin, "SELECT * FROM pdoflow.compact_active_jobs()", "ok"),
        (
            &worker,
            "SELECT * FROM pdoflow.compact_active_jobs()",
            denied,
        ),
        (
            &producer,
            "SELECT * FROM pdoflow.compact_active_jobs(true)",
            denied,
        ),
        (
            &admin,
            r#"SELECT pdoflow.register_task('typed', '{"type": "object"}')"#,
            "ok",
        ),
        (&producer, "SELECT pdoflow.register_task('mine')", denied),
        (&producer, "SELECT count(*) FROM pdoflow.tasks", "ok"),
        (&producer, "SELECT pdoflow.enqueue('typed', '[]')", "22023"),
        // Nobody writes (or reads) the tables directly, whatever their role.
        (
            &admin,
            "UPDATE pdoflow.active_jobs SET priority = 100",
            denied,
        ),
        (&admin, "DELETE FROM pdoflow.finished_jobs", denied),
        (
            &admin,
            "INSERT INTO pdoflow.postings (id, name) VALUES (gen_random_uuid(), 'x')",
            denied,
        ),
        (&worker, "SELECT count(*) FROM pdoflow.active_jobs", denied),
        (
            &producer,
            "UPDATE pdoflow.postings SET status = 'cancelled'",
            denied,
        ),
        // The internal functions are nobody's to call.
        (
            &admin,
            "SELECT pdoflow._end_jobs(ARRAY[gen_random_uuid()], ARRAY['cancelled'])",
            denied,
        ),
        (
            &admin,
            "SELECT pdoflow._move_to_history(NULL, NULL, NULL, NULL)",
            denied,
        ),
        // PUBLIC gets nothing, not even the schema.
        (&nobody, "SELECT pdoflow.enqueue('t')", denied),
        (&nobody, "SELECT count(*) FROM pdoflow.jobs", denied),
        (&nobody, "SELECT pdoflow.uuid_generate_v7()", denied),
    ];
    let mut wrong = Vec::new();
    for (db, sql, expected) in checks {
        let got = outcome(db, sql).await;
        if got != *expected {
            wrong.push(format!("{sql}: expected {expected}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let problems = superuser
        .query("SELECT * FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap();
    assert!(problems.is_empty());
}

#[tokio::test]
async fn a_shadowing_function_in_the_callers_search_path_has_no_effect() {
    let database = TestDatabase::create("roles_search_path").await;
    let superuser = database.connect().await;
    superuser
        .batch_execute(
            "DROP ROLE IF EXISTS pdoflow_it_attacker;
             CREATE ROLE pdoflow_it_attacker LOGIN IN ROLE pdoflow_producer;
             CREATE SCHEMA evil AUTHORIZATION pdoflow_it_attacker;",
        )
        .await
        .unwrap();
    let attacker = database.connect_as("pdoflow_it_attacker").await;
    // Functions that would run with the extension owner's rights if the API
    // resolved names through the caller's search_path.
    attacker
        .batch_execute(
            "CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql
                 AS $$ SELECT '2000-01-01'::timestamptz $$;
             CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE sql
                 AS $$ SELECT NULL::void $$;
             CREATE FUNCTION evil.jsonb_array_length(jsonb) RETURNS integer LANGUAGE sql
                 AS $$ SELECT 0 $$;
             SET search_path = evil, pg_catalog;
             SELECT pdoflow.enqueue('t', run_at => NULL);
             SELECT pdoflow.create_posting('p');",
        )
        .await
        .unwrap();
    let row = superuser
        .query_one(
            "SELECT created_at > now() - interval '1 hour', run_at > now() - interval '1 hour'
             FROM pdoflow.jobs WHERE task = 't'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0) && row.get::<_, bool>(1),
        "the job's times came from evil.now()"
    );
    // A bulk document sized with jsonb_array_length: all three jobs made.
    let made = attacker
        .query(
            r#"SELECT id FROM pdoflow.enqueue_many('[{"task": "b"}, {"task": "b"}, {"task": "b"}]')"#,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(made.len(), 3);
}

/// `pdoflow.enqueue` is the one SECURITY DEFINER function that does not pin
/// its search_path (it cost single-job enqueue 8%): every statement it runs
/// must resolve nothing through the caller's. A caller whose schema comes
/// first shadows the comparison operators those statements use, on every
/// path (the kept INSERT, a registered task with an args schema, a granted
/// task, postings and parents, the task lookup made in REPEATABLE READ),
/// from the first call of a session, when the statements are prepared.
#[tokio::test]
async fn enqueue_resolves_nothing_through_the_callers_search_path() {
    let database = TestDatabase::create("roles_enqueue_search_path").await;
    let superuser = database.connect().await;
    superuser
        .batch_execute(
            "DROP ROLE IF EXISTS pdoflow_it_shadower;
             CREATE ROLE pdoflow_it_shadower LOGIN IN ROLE pdoflow_producer;
             CREATE SCHEMA evil AUTHORIZATION pdoflow_it_shadower;
             SELECT pdoflow.register_task('checked', '{\"type\": \"object\"}');
             SELECT pdoflow.grant_task('granted', 'pdoflow_it_shadower');",
        )
        .await
        .unwrap();
    let posting: uuid::Uuid = superuser
        .query_one("SELECT pdoflow.create_posting('p')", &[])
        .await
        .unwrap()
        .get(0);
    let parent: uuid::Uuid = superuser
        .query_one("SELECT pdoflow.enqueue('parent')", &[])
        .await
        .unwrap()
        .get(0);
    let attacker = database.connect_as("pdoflow_it_shadower").await;
    let mut shadows = String::new();
    for operand in [
        "text",
        "uuid",
        "integer",
        "oid",
        "jsonb",
        "timestamptz",
        "uuid[]",
    ] {
        let name = operand.replace("[]", "_array");
        shadows.push_str(&format!(
            "CREATE FUNCTION evil.hijacked_{name}({operand}, {operand}) RETURNS boolean
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'hijacked: evil.=({operand})'; END $$;
             CREATE OPERATOR evil.= (LEFTARG = {operand}, RIGHTARG = {operand},
                                     FUNCTION = evil.hijacked_{name});
             CREATE OPERATOR evil.<> (LEFTARG = {operand}, RIGHTARG = {operand},
                                      FUNCTION = evil.hijacked_{name});\n"
        ));
    }
    shadows.push_str(
        "CREATE FUNCTION evil.array_agg(oid) RETURNS oid[] LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'hijacked: evil.array_agg'; END $$;
         CREATE TABLE evil.active_jobs (id uuid);
         CREATE TEMP TABLE active_jobs (id uuid);",
    );
    attacker.batch_execute(&shadows).await.unwrap();
    attacker
        .batch_execute(&format!(
            "SET search_path = evil, pg_catalog, pdoflow;
             SELECT pdoflow.enqueue('plain');
             SELECT pdoflow.enqueue('checked', '{{\"n\": 1}}');
             SELECT pdoflow.enqueue('granted');
             SELECT pdoflow.enqueue('in_posting', posting => '{posting}');
             SELECT pdoflow.enqueue('child', depends_on => ARRAY['{parent}']::uuid[]);
             SELECT pdoflow.enqueue('later', run_at => now() + interval '1 hour');"
        ))
        .await
        .unwrap_or_else(|error| panic!("enqueue under a shadowing search_path: {error:?}"));
    // A batch's statements before BEGIN would run in a transaction of their own.
    attacker
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             SELECT pdoflow.enqueue('granted', queue => 'repeatable');
             SELECT pdoflow.enqueue('plain', queue => 'repeatable');
             COMMIT;",
        )
        .await
        .unwrap_or_else(|error| panic!("enqueue in REPEATABLE READ: {error:?}"));
    let made: Vec<(String, String)> = superuser
        .query(
            "SELECT task, queue FROM pdoflow.jobs WHERE enqueued_by = 'pdoflow_it_shadower'
             ORDER BY task, queue",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let expected = [
        ("checked", "default"),
        ("child", "default"),
        ("granted", "default"),
        ("granted", "repeatable"),
        ("in_posting", "default"),
        ("later", "default"),
        ("plain", "default"),
        ("plain", "repeatable"),
    ]
    .map(|(task, queue)| (task.to_owned(), queue.to_owned()));
    assert_eq!(made, expected);
    // Nothing went into the caller's tables of the same name.
    let stray: i64 = attacker
        .query_one(
            "SELECT (SELECT count(*) FROM evil.active_jobs) + (SELECT count(*) FROM pg_temp.active_jobs)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray, 0);
    let problems = superuser
        .query("SELECT * FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap();
    assert!(problems.is_empty());
}

#[tokio::test]
async fn pdoflow_run_works_jobs_as_a_worker_role() {
    let database = TestDatabase::create("roles_pdoflow_run").await;
    let superuser = database.connect().await;
    superuser
        .batch_execute(
            "DROP ROLE IF EXISTS pdoflow_it_node;
             CREATE ROLE pdoflow_it_node LOGIN IN ROLE pdoflow_worker;",
        )
        .await
        .unwrap();
    let producer = database.connect_as("pdoflow_it_node").await;
    producer
        .batch_execute(
            r#"SELECT pdoflow.enqueue('echo', '{"n": 1}');
               SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "echo"},
                                                     {"name": "b", "task": "echo", "after": ["a"]}]}');"#,
        )
        .await
        .unwrap();
    let url = database.url().replacen("postgres@", "pdoflow_it_node@", 1);
    let output = tokio::process::Command::new(WORKER)
        .env("PDOFLOW_DATABASE_URL", &url)
        .env_remove("DATABASE_URL")
        .args(["worker", "--burst", "--poll-interval", "100ms"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let done: i64 = superuser
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE state = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 3);
}
