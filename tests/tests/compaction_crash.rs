//! A compaction killed halfway loses nothing: its truncation and copy are
//! one transaction, so the crash restart brings back the table as it was
//! before. The kill restarts every backend of the cluster, so this test
//! program runs alone (cargo runs test programs one after another).

use std::time::Duration;

use pdoflow_tests::{
    active_rows, await_crash_restart, connect_patiently, describe, eventually, send_signal,
    TestDatabase,
};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_compaction_killed_halfway_loses_nothing() {
    let database = TestDatabase::create("compaction_crash").await;
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT count(*) FROM pdoflow.enqueue_many('waiting', array_fill('{}'::jsonb, ARRAY[2000]));
             SELECT count(*) FROM pdoflow.enqueue_many('later', array_fill('{}'::jsonb, ARRAY[100]),
                                                       run_at => now() + interval '1 day');
             SELECT count(*) FROM pdoflow.claim(50, worker => 'survivor', lease => '1 hour');
             -- A trigger that stalls the copy on its first row, only while a
             -- compaction puts the jobs back (ALWAYS: it fires then too).
             CREATE FUNCTION public.stall_compaction() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF current_setting('session_replication_role') = 'replica' THEN
                     PERFORM pg_sleep(600);
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER stall BEFORE INSERT ON pdoflow.active_jobs
                 FOR EACH ROW EXECUTE FUNCTION public.stall_compaction();
             ALTER TABLE pdoflow.active_jobs ENABLE ALWAYS TRIGGER stall;",
        )
        .await
        .unwrap_or_else(|error| panic!("setting up: {}", describe(&error)));
    let before = active_rows(&client).await;
    assert_eq!(before.len(), 2100);

    let compactor = database.connect().await;
    let compacting = tokio::spawn(async move {
        compactor
            .query(
                "SELECT * FROM pdoflow.compact_active_jobs(force => true, lock_wait => '10 seconds')",
                &[],
            )
            .await
    });
    // Truncated, and stalled on the first job it puts back.
    let pid: i32 = eventually("the compaction stalled in its copy", PATIENCE, || async {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event = 'PgSleep'
                   AND query LIKE '%compact_active_jobs%'",
                &[],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    })
    .await;
    send_signal("-KILL", pid);
    let outcome = compacting.await.expect("the compacting task panicked");
    assert!(outcome.is_err(), "the killed compaction reported success");
    // (Connecting before the restart began could land in a backend it
    // then cuts off.)
    await_crash_restart(&client, PATIENCE).await;
    drop(client);

    let client = connect_patiently(&database, PATIENCE).await;
    client
        .batch_execute("DROP TRIGGER stall ON pdoflow.active_jobs")
        .await
        .unwrap();
    assert_eq!(
        active_rows(&client).await,
        before,
        "jobs changed by the crash"
    );
    let problems = client
        .query("SELECT * FROM pdoflow.check_consistency()", &[])
        .await
        .unwrap();
    assert!(problems.is_empty(), "{} inconsistencies", problems.len());

    // And they work on: the claims made before the crash finish, the rest
    // are claimed and finished.
    let claims: Vec<(Uuid, i32)> = client
        .query(
            "SELECT id, attempt FROM pdoflow.jobs WHERE state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(claims.len(), 50);
    for (id, attempt) in claims {
        let state: String = client
            .query_one("SELECT pdoflow.finish($1, $2)", &[&id, &attempt])
            .await
            .unwrap_or_else(|error| panic!("finishing a claim from before: {}", describe(&error)))
            .get(0);
        assert_eq!(state, "succeeded");
    }
    let claimed: i64 = client
        .query_one(
            "SELECT count(*) FROM pdoflow.claim(1000, worker => 'after')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, 1000);
}
