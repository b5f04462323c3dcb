//! Upgrades: a database that installed the frozen 0.1.0 script
//! (tests/fixtures/pdoflow--0.1.0.sql, installed here) and holds jobs is
//! updated one step of the upgrade chain at a time (pdoflow-ext/sql/, as
//! `cargo pgrx install` installs it); after every step its jobs are intact,
//! and at the end the API works on them and its schema is, object by
//! object, a fresh install's. A schema change without its upgrade script
//! fails the comparison. Runs on whichever PostgreSQL `make test PG=NN`
//! tests.

use pdoflow_tests::{enqueue_took_the_sql_path, TestDatabase};
use tokio_postgres::Client;

/// Every pdoflow object's definition, as text, in a fixed order: functions
/// (with their privileges), columns, constraints, indexes, views, tables'
/// privileges and options, and the tables pg_dump keeps.
async fn schema(db: &Client) -> Vec<String> {
    let queries = [
        "SELECT p.oid::regprocedure::text || ' ' || pg_get_functiondef(p.oid) || ' ' || coalesce(p.proacl::text, '')
         FROM pg_proc AS p WHERE p.pronamespace = 'pdoflow'::regnamespace AND p.prokind = 'f' ORDER BY 1",
        "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(co.collname, '')
         FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
         LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         LEFT JOIN pg_collation AS co ON co.oid = a.attcollation AND a.attcollation <> 100
         WHERE c.relnamespace = 'pdoflow'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
         FROM pg_constraint WHERE connamespace = 'pdoflow'::regnamespace ORDER BY 1",
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
         WHERE c.relnamespace = 'pdoflow'::regnamespace ORDER BY 1",
        "SELECT c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '') || ' ' || coalesce(c.reloptions::text, '')
                || ' ' || coalesce(pg_get_viewdef(c.oid), '')
         FROM pg_class AS c WHERE c.relnamespace = 'pdoflow'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1",
        "SELECT extconfig::regclass[]::text FROM pg_extension WHERE extname = 'pdoflow'",
    ];
    let mut lines = Vec::new();
    for query in queries {
        for row in db
            .query(query, &[])
            .await
            .unwrap_or_else(|error| panic!("{query}: {error}"))
        {
            lines.push(row.get(0));
        }
    }
    lines
}

/// Every job, every column (but enqueued_by, which 0.4.0 added, unique_key
/// and progress, which 0.10.0 added, and concurrency_key, which 0.11.0
/// added), as text, in id order.
async fn jobs(db: &Client) -> Vec<String> {
    db.query(
        "SELECT (to_jsonb(j) - 'enqueued_by' - 'unique_key' - 'progress' - 'concurrency_key')::text
         FROM pdoflow.jobs AS j ORDER BY id",
        &[],
    )
    .await
    .expect("read the jobs")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Installs the frozen install script of the oldest version the chain
/// starts from, where CREATE EXTENSION ... VERSION '0.1.0' finds it.
fn install_oldest_version() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pdoflow--0.1.0.sql");
    let target = std::path::Path::new(&pdoflow_tests::pg_config("--sharedir"))
        .join("extension/pdoflow--0.1.0.sql");
    std::fs::copy(fixture, &target)
        .unwrap_or_else(|error| panic!("copy {fixture} to {}: {error}", target.display()));
}

#[tokio::test]
async fn a_database_of_0_1_0_updates_step_by_step_to_the_current_version_and_keeps_working() {
    install_oldest_version();
    let old = TestDatabase::create_empty("upgrade_old").await;
    let db = old.connect().await;
    db.batch_execute(
        r#"
        SET client_min_messages = warning;
        CREATE EXTENSION pdoflow VERSION '0.1.0';
        SELECT pdoflow.create_posting('batch');
        SELECT pdoflow.enqueue('queued', '{"n": 1.50}', posting => (SELECT id FROM pdoflow.postings));
        SELECT pdoflow.enqueue('running');
        SELECT count(*) FROM pdoflow.claim(1, worker => 'w', tasks => ARRAY['running']);
        SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "step"}, {"name": "b", "task": "step", "after": ["a"]}]}');
        SELECT pdoflow.register_task('typed', '{"type": "object"}');
        "#,
    )
    .await
    .expect("jobs in a 0.1.0 database");
    let mut before = jobs(&db).await;
    let made_in_0_1_0 = before.len();

    // Every step of the chain, in order: each upgrade script on its own.
    let current: String = db
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pdoflow'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let path: String = db
        .query_one(
            "SELECT path FROM pg_extension_update_paths('pdoflow')
             WHERE source = '0.1.0' AND target = $1",
            &[&current],
        )
        .await
        .expect("the update paths")
        .try_get(0)
        .expect("no upgrade path from 0.1.0 to the current version");
    let steps: Vec<&str> = path.split("--").skip(1).collect();
    assert!(
        steps.len() >= 4,
        "the chain 0.1.0 -> ... -> {current} skips versions: {path}"
    );
    for step in &steps {
        db.batch_execute(&format!("ALTER EXTENSION pdoflow UPDATE TO '{step}'"))
            .await
            .unwrap_or_else(|error| panic!("update to {step}: {error}"));
        let jobs_now = jobs(&db).await;
        assert_eq!(jobs_now, before, "the jobs changed in the update to {step}");
        if *step == "0.10.0" {
            // What 0.10.0 brought must live through the later steps too.
            // (Made through SQL functions: the library loaded is the
            // newest, whose enqueue does not fit 0.10.0's declaration.)
            db.batch_execute(
                "SELECT pdoflow.schedule('kept', '15 3 * * *', 'nightly', '{\"full\": true}',
                                         time_zone => 'Europe/Berlin');
                 SELECT pdoflow.pause_schedule('kept');
                 SELECT pdoflow.submit_dag('{\"nodes\": [{\"name\": \"u\", \"task\": \"unique\",
                                                              \"unique_key\": \"order-1\"}]}');",
            )
            .await
            .expect("a schedule and a unique job in 0.10.0");
            before = jobs(&db).await;
        }
    }
    let kept: String = db
        .query_one(
            "SELECT concat_ws(' ', name, cron, task, time_zone, paused, next_run_at IS NOT NULL)
             FROM pdoflow.schedules",
            &[],
        )
        .await
        .expect("the schedule made in 0.10.0")
        .get(0);
    assert_eq!(kept, "kept 15 3 * * * nightly Europe/Berlin t t");
    let duplicate: i64 = db
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs
             WHERE id = pdoflow.enqueue('unique', unique_key => 'order-1')",
            &[],
        )
        .await
        .expect("an enqueue of the unique job's key")
        .get(0);
    assert_eq!(duplicate, 1, "the unique key made in 0.10.0 was lost");
    let current: String = db
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pdoflow'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let updated: String = db
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pdoflow'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(updated, current);
    assert_ne!(updated, "0.1.0");

    // The jobs are as they were (without a known enqueuer), and the API
    // works on them.
    let after = jobs(&db).await;
    assert_eq!(after, before);
    let unknown: i64 = db
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE enqueued_by IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unknown, i64::try_from(made_in_0_1_0).unwrap());
    db.batch_execute(
        "SELECT pdoflow.finish(id, 1) FROM pdoflow.jobs WHERE task = 'running';
         SELECT pdoflow.finish(c.id, c.attempt) FROM pdoflow.claim(1, tasks => ARRAY['step']) AS c;",
    )
    .await
    .expect("finish after the update");
    let released: String = db
        .query_one("SELECT state FROM pdoflow.jobs WHERE node = 'b'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(released, "queued");
    let refused = db
        .batch_execute("SELECT pdoflow.enqueue('typed', '[]')")
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|code| code.code()), Some("22023"));
    assert!(
        !enqueue_took_the_sql_path(&db).await,
        "after the update, a plain job goes through _enqueue_general"
    );
    // What 0.4.0 added works on the updated database: enqueuers are
    // recorded, and grants restrict a task.
    db.batch_execute(
        "SELECT pdoflow.grant_task('guarded', 'pdoflow_admin');
         SELECT pdoflow.enqueue('guarded');",
    )
    .await
    .expect("grant_task and an enqueue by a superuser");
    let enqueuer: Option<String> = db
        .query_one(
            "SELECT enqueued_by FROM pdoflow.jobs WHERE task = 'guarded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(enqueuer.as_deref(), Some("postgres"));
    assert!(db
        .query("SELECT * FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap()
        .is_empty());

    // Object by object, the updated schema is a fresh install's.
    let fresh = TestDatabase::create("upgrade_fresh").await;
    let expected = schema(&fresh.connect().await).await;
    let got = schema(&db).await;
    let missing: Vec<&String> = expected.iter().filter(|line| !got.contains(line)).collect();
    let extra: Vec<&String> = got.iter().filter(|line| !expected.contains(line)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the upgrade script does not produce a fresh install's schema.\nmissing after the update: {missing:#?}\nleft over: {extra:#?}"
    );
}
