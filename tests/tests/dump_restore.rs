//! pg_dump and pg_restore: a database with pdoflow, restored into a fresh
//! database, keeps every job (in every state, with who enqueued it),
//! posting, dependency, unique key, cron schedule, task registration and
//! task grant, and the restored queue goes on working.

use pdoflow_tests::TestDatabase;
use tokio::process::Command;
use tokio_postgres::Client;

/// A PostgreSQL client program of the server's version (pg_dump, pg_restore).
fn pg_program(name: &str) -> Command {
    Command::new(pdoflow_tests::pg_bindir().join(name))
}

async fn run(mut command: Command) {
    let output = command.output().await.expect("run the program");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every row of pdoflow's tables that a dump must keep, as text, in a fixed order.
async fn contents(db: &Client) -> Vec<String> {
    let mut rows = Vec::new();
    for query in [
        "SELECT to_jsonb(a)::text FROM pdoflow.active_jobs AS a ORDER BY id",
        "SELECT to_jsonb(f)::text FROM pdoflow.finished_jobs AS f ORDER BY id",
        "SELECT to_jsonb(a)::text FROM pdoflow.job_attempts AS a ORDER BY job, attempt",
        "SELECT to_jsonb(p)::text FROM pdoflow.postings AS p ORDER BY id",
        "SELECT to_jsonb(s)::text FROM pdoflow.posting_status AS s ORDER BY id",
        "SELECT to_jsonb(t)::text FROM pdoflow.tasks AS t ORDER BY name",
        "SELECT to_jsonb(g)::text FROM pdoflow.task_grants AS g ORDER BY task, grantee::text",
        "SELECT to_jsonb(u)::text FROM pdoflow.unique_keys AS u ORDER BY task, unique_key",
        "SELECT to_jsonb(c)::text FROM pdoflow.schedules AS c ORDER BY name",
    ] {
        for row in db.query(query, &[]).await.expect(query) {
            rows.push(row.get(0));
        }
    }
    rows
}

#[tokio::test]
async fn a_restored_dump_keeps_every_job_posting_and_dependency() {
    let source = TestDatabase::create("dump_source").await;
    let db = source.connect().await;
    db.batch_execute(
        r#"
        SET pdoflow.retry_backoff_base = 0;
        SELECT pdoflow.register_task('load', '{"type": "object"}', 'loads a file');
        SELECT pdoflow.grant_task('load', 'pdoflow_admin'), pdoflow.grant_task('load', 'pdoflow_worker');
        SET ROLE pdoflow_worker;
        SELECT pdoflow.enqueue('enqueued_by_a_worker');
        RESET ROLE;
        SELECT pdoflow.create_posting('nightly', 'kept across a dump', 3, 'etl');
        SELECT pdoflow.create_posting('on hold');
        SELECT pdoflow.enqueue('load', '{"exact": 1.000000000000000000001}',
                               posting => (SELECT id FROM pdoflow.postings WHERE name = 'nightly'));
        SELECT pdoflow.enqueue('held', posting => (SELECT id FROM pdoflow.postings WHERE name = 'on hold'));
        SELECT pdoflow.set_posting_status((SELECT id FROM pdoflow.postings WHERE name = 'on hold'), 'paused');
        SELECT pdoflow.enqueue('later', run_at => now() + interval '1 day');
        SELECT pdoflow.enqueue('ok'), pdoflow.enqueue('broken', max_attempts => 1),
               pdoflow.enqueue('retried'), pdoflow.enqueue('running'), pdoflow.enqueue('cancelled');
        SELECT pdoflow.cancel(id) FROM pdoflow.jobs WHERE task = 'cancelled';
        SELECT count(*) FROM pdoflow.claim(10, worker => 'w', tasks => ARRAY['ok', 'broken', 'retried', 'running']);
        SELECT pdoflow.finish(id, 1, result => '{"rows": 7}') FROM pdoflow.jobs WHERE task = 'ok';
        SELECT pdoflow.finish(id, 1, error => 'for good') FROM pdoflow.jobs WHERE task = 'broken';
        SELECT pdoflow.finish(id, 1, error => 'once') FROM pdoflow.jobs WHERE task = 'retried';
        SELECT count(*) FROM pdoflow.submit_dag('{"nodes": [
            {"name": "first", "task": "step"},
            {"name": "then", "task": "step", "after": ["first"]},
            {"name": "either", "task": "step", "mode": "any", "after": ["first", "then"]}]}');
        SELECT pdoflow.enqueue('deduplicated', unique_key => 'order-7', unique_for => '1 day');
        SELECT pdoflow.schedule('nightly-load', '30 2 * * *', 'nightly', '{"full": true}',
                                time_zone => 'Europe/Berlin');
        SET ROLE pdoflow_worker;
        SELECT pdoflow.schedule('workers-own', '@hourly', 'hourly');
        RESET ROLE;
        SELECT pdoflow.pause_schedule('workers-own');
        "#,
    )
    .await
    .expect("the source's jobs");
    let before = contents(&db).await;
    assert_eq!(
        before.len(),
        10 + 3 + 2 + 2 + 2 + 1 + 2 + 1 + 2,
        "{before:?}"
    );
    assert!(
        before
            .iter()
            .any(|row| row.contains(r#""enqueued_by": "pdoflow_worker""#)),
        "{before:?}"
    );

    let dump = std::env::temp_dir().join(format!("pdoflow-test-{}.dump", source.name()));
    let mut pg_dump = pg_program("pg_dump");
    pg_dump
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(source.url());
    run(pg_dump).await;
    let target = TestDatabase::create_empty("dump_target").await;
    let mut pg_restore = pg_program("pg_restore");
    pg_restore
        .args(["--exit-on-error", "--dbname", &target.url()])
        .arg(&dump);
    run(pg_restore).await;
    std::fs::remove_file(&dump).ok();

    let restored = target.connect().await;
    assert_eq!(contents(&restored).await, before);

    // The restored queue works: the running claim finishes, its DAG child is
    // released, the paused posting stays paused until resumed.
    let state: String = restored
        .query_one(
            "SELECT pdoflow.finish(id, 1) FROM pdoflow.jobs WHERE task = 'running'",
            &[],
        )
        .await
        .expect("finish the restored claim")
        .get(0);
    assert_eq!(state, "succeeded");
    restored
        .batch_execute(
            "SELECT pdoflow.finish(c.id, c.attempt, result => '1')
             FROM pdoflow.claim(1, tasks => ARRAY['step']) AS c",
        )
        .await
        .expect("work the DAG's first node");
    let released: Vec<String> = restored
        .query(
            "SELECT node FROM pdoflow.jobs WHERE state = 'queued' AND node IS NOT NULL ORDER BY node",
            &[],
        )
        .await
        .expect("released children")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(released, ["either", "then"]);
    let claimed: Vec<String> = restored
        .query("SELECT task FROM pdoflow.claim(100) ORDER BY task", &[])
        .await
        .expect("claim everything due")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        claimed,
        [
            "deduplicated",
            "enqueued_by_a_worker",
            "load",
            "retried",
            "step",
            "step"
        ]
    );
    // The unique key still holds, and the schedules keep their owners.
    let same: bool = restored
        .query_one(
            "SELECT pdoflow.enqueue('deduplicated', unique_key => 'order-7')
                    = (SELECT id FROM pdoflow.jobs WHERE task = 'deduplicated')",
            &[],
        )
        .await
        .expect("enqueue the restored key again")
        .get(0);
    assert!(same, "the restored unique key did not hold");
    let refused = restored
        .batch_execute(
            "SET ROLE pdoflow_producer; SELECT pdoflow.unschedule('workers-own'); RESET ROLE;",
        )
        .await
        .expect_err("another role removed the worker's restored schedule");
    assert_eq!(pdoflow_tests::sqlstate(&refused), "42501");
    restored.batch_execute("RESET ROLE").await.ok();
    // The grants hold after the restore: a producer may not enqueue 'load'.
    let refused = restored
        .batch_execute("SET ROLE pdoflow_producer; SELECT pdoflow.enqueue('load');")
        .await
        .expect_err("the restored grants let a producer enqueue 'load'");
    assert_eq!(pdoflow_tests::sqlstate(&refused), "42501");
}
