//! Progress reports end to end: handlers run by the worker runtime (and by
//! `execute_job`) call `JobContext::progress` in hot loops; the worker sends
//! at most one report per job per progress interval, and the last report
//! is the one the job keeps. Also `Client::progress` on its own.
//!
//! The database writes are counted by a trigger that this test adds to
//! `pdoflow.active_jobs` in its own database, logging every write of a
//! progress value with its time: an exact count of the reports the worker
//! sent (statistics such as n_tup_upd also count claims, heartbeats and
//! finishes, and reach pg_stat views only after a delay), and their
//! spacing, which is what the interval promises.

use std::time::Duration;

use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::{
    Client, JobContext, NewJob, SweepMode, Task, TaskError, TaskRegistry, Worker, WorkerConfig,
};
use pdoflow_tests::{describe, TestDatabase};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);
const QUEUE: &str = "progress";

/// `{"times": n, "spread_ms": m}`: reports `{"done": i, "total": n}` for i
/// from 1 to n, as fast as it can, pausing 100 times for m/100 ms in all
/// when m > 0.
struct Count;

#[derive(Deserialize)]
struct CountArgs {
    times: u64,
    spread_ms: u64,
}

impl Task for Count {
    const NAME: &'static str = "count";
    type Args = CountArgs;
    type Output = Value;

    async fn run(&self, args: CountArgs, job: JobContext) -> Result<Value, TaskError> {
        const PAUSES: u64 = 100;
        let pause = Duration::from_millis(args.spread_ms / PAUSES);
        for done in 1..=args.times {
            job.progress(json!({ "done": done, "total": args.times }))?;
            if args.spread_ms > 0 && done % (args.times / PAUSES).max(1) == 0 {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(json!({ "counted": args.times }))
    }
}

fn registry() -> TaskRegistry {
    let mut registry = TaskRegistry::new();
    registry.register(Count).expect("one handler");
    registry
}

/// Logs each write of a progress value into `public.progress_writes`.
async fn count_progress_writes(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE public.progress_writes (
                 job uuid, progress jsonb, at timestamptz DEFAULT clock_timestamp());
             CREATE FUNCTION public.log_progress_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO public.progress_writes (job, progress) VALUES (NEW.id, NEW.progress);
                 RETURN NEW;
             END $$;
             CREATE TRIGGER log_progress_write AFTER UPDATE OF progress ON pdoflow.active_jobs
                 FOR EACH ROW WHEN (NEW.progress IS NOT NULL)
                 EXECUTE FUNCTION public.log_progress_write();",
        )
        .await
        .unwrap_or_else(|error| panic!("the progress trigger: {}", describe(&error)));
}

/// The progress values written for `job`, in order, with the time since
/// the previous write.
async fn writes(client: &tokio_postgres::Client, job: Uuid) -> Vec<(Value, Option<f64>)> {
    client
        .query(
            "SELECT progress,
                    extract(epoch FROM at - lag(at) OVER (ORDER BY at))::float8
             FROM public.progress_writes WHERE job = $1 ORDER BY at",
            &[&job],
        )
        .await
        .unwrap_or_else(|error| panic!("reading the writes: {}", describe(&error)))
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// How long the job ran: from its claim to its finish, in milliseconds.
fn ran_ms(job: &pdoflow_client::Job) -> i64 {
    match (job.started_at, job.finished_at) {
        (Some(started), Some(finished)) => (finished - started).num_milliseconds(),
        times => panic!("the job's times: {times:?}"),
    }
}

fn count_job(times: u64, spread_ms: u64) -> NewJob {
    NewJob::new("count", &json!({ "times": times, "spread_ms": spread_ms }))
        .expect("JSON args")
        .queue(QUEUE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sends_one_report_per_interval_and_the_last_one_stays() {
    let database = TestDatabase::create("client_progress_worker").await;
    let sql = database.connect().await;
    count_progress_writes(&sql).await;
    let client = Client::connect(&database.url()).await.unwrap();
    let tight = client.enqueue(&count_job(10_000, 0)).await.unwrap();
    let spread = client.enqueue(&count_job(10_000, 2_000)).await.unwrap();

    let interval = Duration::from_millis(500);
    let settings = ConnectionSettings::from_url(&database.url(), "the test").unwrap();
    let config = WorkerConfig {
        queues: Some(vec![QUEUE.to_owned()]),
        burst: true,
        poll_interval: Duration::from_millis(100),
        sweep: SweepMode::Never,
        progress_interval: interval,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(settings, registry(), config).unwrap();
    let report = tokio::time::timeout(PATIENCE, worker.run(std::future::pending()))
        .await
        .expect("the burst worker finishes")
        .expect("the worker runs");
    assert_eq!((report.succeeded, report.failed), (2, 0));

    let last = json!({"done": 10_000, "total": 10_000});
    for id in [tight, spread] {
        let job = client.job(id).await.unwrap().expect("the job");
        assert_eq!(job.state, "succeeded");
        assert_eq!(job.progress.as_ref(), Some(&last), "the last report stays");
        let outcome = client.await_result(id, Duration::ZERO).await.unwrap();
        assert_eq!(outcome.progress.as_ref(), Some(&last));
    }

    // 10,000 reports in a few milliseconds: the first one the worker took,
    // and the last one, sent before the finish.
    let tight_writes = writes(&sql, tight).await;
    assert!(
        (1..=3).contains(&tight_writes.len()),
        "10,000 reports in a tight loop made {} writes: {tight_writes:?}",
        tight_writes.len()
    );
    assert_eq!(tight_writes.last().map(|(value, _)| value), Some(&last));

    // 10,000 reports over 2 s (or more, on a busy machine) at one per
    // 500 ms: one write at the start, one per interval the job ran, and the
    // last.
    let job = client.job(spread).await.unwrap().expect("the job");
    let ran = ran_ms(&job);
    let most = usize::try_from(ran / interval.as_millis() as i64).unwrap() + 2;
    let spread_writes = writes(&sql, spread).await;
    assert!(
        (3..=most).contains(&spread_writes.len()),
        "10,000 reports over {ran} ms made {} writes (at most {most}): {spread_writes:?}",
        spread_writes.len()
    );
    assert_eq!(spread_writes.last().map(|(value, _)| value), Some(&last));
    // Every write but the last (which goes when the job ends) waited an
    // interval after the previous one; 50 ms for the round trips.
    let paced = &spread_writes[..spread_writes.len() - 1];
    for (value, gap) in paced.iter().skip(1) {
        let gap = gap.expect("a previous write");
        assert!(
            gap >= interval.as_secs_f64() - 0.05,
            "a write {gap} s after the previous one ({value}): {spread_writes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_job_paces_reports_too() {
    let database = TestDatabase::create("client_progress_execute").await;
    let sql = database.connect().await;
    count_progress_writes(&sql).await;
    let client = Client::connect(&database.url()).await.unwrap();
    let id = client.enqueue(&count_job(10_000, 1_500)).await.unwrap();
    let executed = pdoflow_client::worker::execute_job(
        &client,
        &registry(),
        id,
        "progress-test",
        Duration::from_secs(60),
        None,
    )
    .await
    .unwrap();
    assert_eq!(executed.state, "succeeded");
    let last = json!({"done": 10_000, "total": 10_000});
    let written = writes(&sql, id).await;
    // 1.5 s (or more) at the default interval of 1 s: the first, one per
    // second, the last.
    let job = client.job(id).await.unwrap().expect("the job");
    let most = usize::try_from(ran_ms(&job) / 1_000).unwrap() + 2;
    assert!(
        (2..=most).contains(&written.len()),
        "{} writes (at most {most}): {written:?}",
        written.len()
    );
    assert_eq!(written.last().map(|(value, _)| value), Some(&last));
    assert_eq!(job.progress, Some(last));
}

#[tokio::test]
async fn client_progress_records_for_the_current_claim_only() {
    let database = TestDatabase::create("client_progress_direct").await;
    let client = Client::connect(&database.url()).await.unwrap();
    let id = client.enqueue(&count_job(1, 0)).await.unwrap();
    let claim = client
        .claim_job(id, "progress-test", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the job is queued");
    client
        .progress(id, claim.attempt, &json!({"step": "download"}))
        .await
        .unwrap();
    let job = client.job(id).await.unwrap().expect("the job");
    assert_eq!(job.progress, Some(json!({"step": "download"})));

    let stale = client
        .progress(id, claim.attempt + 1, &json!({"step": "late"}))
        .await
        .expect_err("not the current claim");
    assert_eq!(stale.sqlstate(), Some("55000"), "{stale}");
    client
        .finish_many(&[(id, claim.attempt, Ok(None))])
        .await
        .unwrap();
    let ended = client
        .progress(id, claim.attempt, &json!({"step": "after"}))
        .await
        .expect_err("the job has ended");
    assert_eq!(ended.sqlstate(), Some("55000"), "{ended}");
    let job = client.job(id).await.unwrap().expect("the job");
    assert_eq!(job.progress, Some(json!({"step": "download"})));
}
