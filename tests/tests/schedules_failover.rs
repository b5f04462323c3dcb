//! Schedules across a failover: a primary with a synchronous standby runs a
//! schedule every second while a worker finishes its jobs; the primary is
//! killed (`kill -9` of the postmaster) and the standby promoted. Every
//! finish the worker saw acknowledged is there, the sweeper on the standby
//! starts at promotion (it waited while in recovery), and no occurrence is
//! enqueued twice: the schedule's progress commits with its job, so the
//! standby has both or neither.

use std::time::{Duration, Instant};

use pdoflow_tests::standby::Pair;
use pdoflow_tests::{describe, sqlstate};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_promoted_standby_runs_each_occurrence_once() {
    let pair = Pair::start("schedules-failover", "app", "").await;
    let primary = pair.primary.connect("app").await.expect("the primary");
    primary
        .batch_execute("SELECT pdoflow.schedule('tick', 'every 1 seconds', 'tick')")
        .await
        .unwrap();

    // A standby's sweeper waits for promotion; a sweep there is refused.
    let standby = pair.standby.connect("app").await.expect("the standby");
    let refused = standby
        .batch_execute("SELECT * FROM pdoflow.sweep()")
        .await
        .expect_err("a sweep on a standby");
    assert_eq!(sqlstate(&refused), "25006", "{}", describe(&refused));
    assert!(
        describe(&refused).contains("cannot run on a standby"),
        "{}",
        describe(&refused)
    );

    // A worker finishes the schedule's jobs; each finish it sees
    // acknowledged has reached the standby (synchronous commit).
    let mut finished: Vec<Uuid> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while finished.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the schedule's jobs did not come"
        );
        for row in primary
            .query(
                "SELECT c.id FROM pdoflow.claim(10, tasks => ARRAY['tick'], worker => 'w') AS c,
                        pdoflow.finish(c.id, c.attempt, result => '{\"ok\": true}') AS f",
                &[],
            )
            .await
            .unwrap()
        {
            finished.push(row.get(0));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before_kill: i64 = primary
        .query_one("SELECT count(*) FROM pdoflow.jobs WHERE task = 'tick'", &[])
        .await
        .unwrap()
        .get(0);
    drop(standby);

    pair.kill_primary();
    pair.promote().await;
    let promoted = pair
        .standby
        .connect("app")
        .await
        .expect("the promoted standby");
    let inherited: i64 = promoted
        .query_one("SELECT count(*) FROM pdoflow.jobs WHERE task = 'tick'", &[])
        .await
        .unwrap()
        .get(0);

    let kept: i64 = promoted
        .query_one(
            "SELECT count(*) FROM pdoflow.jobs WHERE id = ANY ($1) AND state = 'succeeded'",
            &[&finished],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        kept,
        finished.len() as i64,
        "an acknowledged finish was lost"
    );

    // The sweeper starts at promotion and the schedule goes on.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now: i64 = promoted
            .query_one("SELECT count(*) FROM pdoflow.jobs WHERE task = 'tick'", &[])
            .await
            .unwrap()
            .get(0);
        let after = now - inherited;
        if after >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no occurrence after the promotion ({after}): {}",
            pair.standby.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = promoted
        .query_one(
            "SELECT count(*), count(DISTINCT run_at) FROM pdoflow.jobs WHERE task = 'tick'",
            &[],
        )
        .await
        .unwrap();
    let (all, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(all, distinct, "an occurrence was enqueued twice");
    assert!(
        inherited >= before_kill,
        "jobs enqueued before the kill were lost"
    );
    let last_error: Option<String> = promoted
        .query_one(
            "SELECT last_error FROM pdoflow.schedules WHERE name = 'tick'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_error, None);
    // While in recovery the sweeper never ran (it starts at promotion):
    // nothing in the standby's log says a sweep failed.
    let log = pair.standby.log();
    assert!(
        !log.contains("read-only transaction"),
        "the standby's log: {log}"
    );
}
