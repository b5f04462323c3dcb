//! Cron schedules on a real cluster: the background sweeper enqueues every
//! occurrence once, on time, in each database it sweeps; producers own
//! their schedules; a schedule's jobs are enqueued as its owner, under that
//! role's task grants.

use std::time::Duration;

use pdoflow_tests::{describe, eventually, sqlstate, TestDatabase};
use tokio_postgres::Client;

const PATIENCE: Duration = Duration::from_secs(30);

/// The scheduled times of the jobs of `task`, in order.
async fn occurrences(client: &Client, task: &str) -> Vec<String> {
    client
        .query(
            "SELECT to_char(run_at AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM pdoflow.jobs
             WHERE task = $1 ORDER BY run_at",
            &[&task],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn the_sweeper_enqueues_every_occurrence_once() {
    let database = TestDatabase::swept("schedules").await;
    let client = database.connect().await;
    client
        .batch_execute("SELECT pdoflow.schedule('every-second', 'every 1 seconds', 'tick-sweeper')")
        .await
        .unwrap();
    let seen = eventually("five occurrences", PATIENCE, || async {
        let seen = occurrences(&client, "tick-sweeper").await;
        (seen.len() >= 6).then_some(seen)
    })
    .await;
    let seconds: Vec<i64> = client
        .query(
            "SELECT extract(epoch FROM run_at)::bigint FROM pdoflow.jobs
             WHERE task = 'tick-sweeper' ORDER BY run_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // None twice; and on time: a round of the sweeper late by more than a
    // second (a loaded machine) runs only the latest occurrence it missed,
    // so allow a gap now and then.
    let gaps: Vec<i64> = seconds.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(gaps.iter().all(|gap| *gap >= 1), "occurrences {seen:?}");
    let on_time = gaps.iter().filter(|gap| **gap == 1).count();
    assert!(on_time * 2 >= gaps.len(), "occurrences {seen:?}");
    let row = client
        .query_one(
            "SELECT last_job, last_run_at = (SELECT max(run_at) FROM pdoflow.jobs WHERE task = 'tick-sweeper')
                 OR last_run_at > (SELECT max(run_at) FROM pdoflow.jobs WHERE task = 'tick-sweeper'),
                    last_error
             FROM pdoflow.schedules WHERE name = 'every-second'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, Option<uuid::Uuid>>(0).is_some());
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Option<String>>(2), None);
    client
        .batch_execute("SELECT pdoflow.unschedule('every-second')")
        .await
        .unwrap();
}

/// Two databases, each with its own sweeper, each with a schedule of the
/// same name: each runs its own, every occurrence once, and an unschedule in
/// one leaves the other running.
#[tokio::test]
async fn each_database_runs_its_own_schedules_once() {
    let databases = [
        TestDatabase::swept("schedules").await,
        TestDatabase::swept("schedules_other").await,
    ];
    let mut clients = Vec::new();
    for (database, args) in databases.iter().zip(["{\"db\": 1}", "{\"db\": 2}"]) {
        let client = database.connect().await;
        client
            .execute(
                "SELECT pdoflow.schedule('twin', 'every 1 seconds', 'tick-twin', $1::text::jsonb)",
                &[&args],
            )
            .await
            .unwrap();
        clients.push(client);
    }
    for client in &clients {
        eventually("four occurrences in each database", PATIENCE, || async {
            (occurrences(client, "tick-twin").await.len() >= 4).then_some(())
        })
        .await;
    }
    clients[0]
        .batch_execute("SELECT pdoflow.unschedule('twin')")
        .await
        .unwrap();
    let stopped = occurrences(&clients[0], "tick-twin").await.len();
    let other = occurrences(&clients[1], "tick-twin").await.len();
    eventually(
        "the other database's schedule goes on",
        PATIENCE,
        || async { (occurrences(&clients[1], "tick-twin").await.len() >= other + 2).then_some(()) },
    )
    .await;
    assert_eq!(occurrences(&clients[0], "tick-twin").await.len(), stopped);
    for (client, db) in clients.iter().zip([1, 2]) {
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT run_at),
                        count(*) FILTER (WHERE args = jsonb_build_object('db', $1::int))
                 FROM pdoflow.jobs WHERE task = 'tick-twin'",
                &[&db],
            )
            .await
            .unwrap();
        let (all, distinct, own): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(all, distinct, "an occurrence ran twice in database {db}");
        assert_eq!(all, own, "database {db} ran another database's schedule");
    }
    clients[1]
        .batch_execute("SELECT pdoflow.unschedule('twin')")
        .await
        .unwrap();
}

#[tokio::test]
async fn producers_own_their_schedules_and_enqueue_under_their_grants() {
    let database = TestDatabase::create("schedule_roles").await;
    let superuser = database.connect().await;
    for (login, group) in [
        ("pdoflow_it_scheduler", "pdoflow_producer"),
        ("pdoflow_it_other_producer", "pdoflow_producer"),
        ("pdoflow_it_schedule_admin", "pdoflow_admin"),
    ] {
        superuser
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {login}; CREATE ROLE {login} LOGIN IN ROLE {group};"
            ))
            .await
            .unwrap_or_else(|error| panic!("{login}: {}", describe(&error)));
    }
    let owner = database.connect_as("pdoflow_it_scheduler").await;
    let other = database.connect_as("pdoflow_it_other_producer").await;
    let admin = database.connect_as("pdoflow_it_schedule_admin").await;

    owner
        .batch_execute("SELECT pdoflow.schedule('reports', '@hourly', 'report')")
        .await
        .unwrap_or_else(|error| panic!("a producer schedules: {}", describe(&error)));
    // Everyone reads the view; only the owner and admins change it.
    let owner_name: String = other
        .query_one(
            "SELECT owner FROM pdoflow.schedules WHERE name = 'reports'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner_name, "pdoflow_it_scheduler");
    for sql in [
        "SELECT pdoflow.pause_schedule('reports')",
        "SELECT pdoflow.schedule('reports', '@daily', 'report')",
        "SELECT pdoflow.unschedule('reports')",
    ] {
        let error = other.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&error), "42501", "{sql}: {}", describe(&error));
    }
    admin
        .batch_execute(
            "SELECT pdoflow.pause_schedule('reports'); SELECT pdoflow.resume_schedule('reports');",
        )
        .await
        .unwrap_or_else(|error| panic!("an admin changes it: {}", describe(&error)));

    // Due now: the job is the owner's.
    superuser
        .batch_execute(
            "UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '1 second';
             SELECT pdoflow.sweep();",
        )
        .await
        .unwrap();
    let enqueued_by: String = superuser
        .query_one(
            "SELECT enqueued_by FROM pdoflow.jobs WHERE task = 'report'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(enqueued_by, "pdoflow_it_scheduler");

    // Once the task is granted to others only, the schedule stops enqueueing
    // it and says why; a producer cannot schedule it either.
    superuser
        .batch_execute(
            "SELECT pdoflow.grant_task('report', 'pdoflow_it_other_producer');
             UPDATE pdoflow.cron_schedules SET next_run_at = now() - interval '1 second';
             SET client_min_messages = error;
             SELECT pdoflow.sweep();",
        )
        .await
        .unwrap();
    let row = superuser
        .query_one(
            "SELECT (SELECT count(*) FROM pdoflow.jobs WHERE task = 'report'), last_error
             FROM pdoflow.schedules WHERE name = 'reports'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the refused occurrence made a job");
    let last_error: String = row.get(1);
    assert!(
        last_error.contains("may not enqueue task \"report\""),
        "{last_error}"
    );
    let error = owner
        .batch_execute("SELECT pdoflow.schedule('reports-2', '@hourly', 'report')")
        .await
        .expect_err("scheduling a task the role may not enqueue");
    assert_eq!(sqlstate(&error), "42501", "{}", describe(&error));
}
