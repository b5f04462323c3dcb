//! Queue controls from the Rust client (`Client::pause_queue`,
//! `set_queue_limits`, `set_key_limit`, `queues`), concurrency keys on
//! enqueued jobs, claims that wait inside the database, and workers that
//! learn of new jobs without LISTEN: told to (`no_listen`,
//! `--no-listen`), or by themselves behind a pooler that refuses LISTEN.

use std::sync::Arc;
use std::time::Duration;

use pdoflow_client::config::ConnectionSettings;
use pdoflow_client::{
    ClaimRequest, Client, JobContext, NewJob, QueueInfo, QueueLimits, Rate, SweepMode, Task,
    TaskError, TaskRegistry, Worker, WorkerConfig,
};
use pdoflow_tests::{eventually, send_signal, TestDatabase};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(30);
const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");
/// How soon a job enqueued while a worker waits must be picked up: well
/// under the waits (and the poll intervals) of these tests.
const PROMPTLY: Duration = Duration::from_secs(1);

async fn client(database: &TestDatabase) -> Client {
    Client::connect(&database.url())
        .await
        .expect("connect the client")
}

fn claim_of<'a>(queues: &'a [String], wait: Option<Duration>) -> ClaimRequest<'a> {
    ClaimRequest {
        n: 10,
        queues: Some(queues),
        tasks: None,
        worker: "test",
        lease: Duration::from_secs(60),
        wait,
    }
}

fn queue_named<'a>(queues: &'a [QueueInfo], name: &str) -> Option<&'a QueueInfo> {
    queues.iter().find(|queue| queue.queue == name)
}

#[tokio::test]
async fn a_paused_queue_is_not_claimed_until_it_is_resumed() {
    let database = TestDatabase::create("queue_controls_pause").await;
    let client = client(&database).await;
    let mail = vec!["mail".to_owned()];

    assert!(client.pause_queue("mail").await.unwrap(), "was running");
    assert!(!client.pause_queue("mail").await.unwrap(), "paused already");
    let id = client
        .enqueue(&NewJob::new("send", &json!({})).unwrap().queue("mail"))
        .await
        .unwrap();
    let queues = client.queues().await.unwrap();
    let shown = queue_named(&queues, "mail").expect("the paused queue is listed");
    assert!(shown.paused);
    assert_eq!((shown.waiting, shown.throttled), (1, 1), "{shown:?}");
    assert!(client
        .claim(claim_of(&mail, None))
        .await
        .unwrap()
        .is_empty());

    assert!(client.resume_queue("mail").await.unwrap(), "was paused");
    assert!(!client.resume_queue("mail").await.unwrap(), "not paused");
    let queues = client.queues().await.unwrap();
    assert!(!queue_named(&queues, "mail").unwrap().paused);
    let claimed = client.claim(claim_of(&mail, None)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![id]
    );

    // A queue without jobs may be paused, and shows while it is.
    assert!(client.pause_queue("empty").await.unwrap());
    let queues = client.queues().await.unwrap();
    let empty = queue_named(&queues, "empty").expect("a paused queue without jobs");
    assert!(empty.paused);
    assert_eq!((empty.waiting, empty.running), (0, 0));
}

#[tokio::test]
async fn limits_are_set_together_cleared_and_shown() {
    let database = TestDatabase::create("queue_controls_limits").await;
    let client = client(&database).await;
    let per_minute = Rate {
        count: 600,
        per: Duration::from_secs(60),
    };
    client
        .set_queue_limits(
            "reports",
            QueueLimits {
                max_running: Some(2),
                rate: Some(per_minute),
            },
        )
        .await
        .unwrap();
    client.set_key_limit("reports", Some(1)).await.unwrap();
    client.pause_queue("reports").await.unwrap();
    let queues = client.queues().await.unwrap();
    let reports = queue_named(&queues, "reports").expect("a limited queue is listed");
    assert_eq!(reports.max_running, Some(2));
    assert_eq!(reports.rate, Some(per_minute));
    assert_eq!(reports.key_limit, Some(1));
    assert!(reports.paused);
    // The JSON the CLI prints for scripts.
    let shown = serde_json::to_value(reports).unwrap();
    assert_eq!(shown["rate"], json!({"count": 600, "per_seconds": 60.0}));
    assert_eq!(shown["max_running"], 2);

    // Setting the limits again replaces both; the pause and key limit stay.
    client
        .set_queue_limits(
            "reports",
            QueueLimits {
                max_running: None,
                rate: Some(Rate::per_second(5)),
            },
        )
        .await
        .unwrap();
    let queues = client.queues().await.unwrap();
    let reports = queue_named(&queues, "reports").unwrap();
    assert_eq!(reports.max_running, None);
    assert_eq!(reports.rate, Some(Rate::per_second(5)));
    assert_eq!(reports.key_limit, Some(1));
    assert!(reports.paused);

    client
        .set_queue_limits("reports", QueueLimits::default())
        .await
        .unwrap();
    client.set_key_limit("reports", None).await.unwrap();
    let queues = client.queues().await.unwrap();
    let reports = queue_named(&queues, "reports").expect("still paused");
    assert_eq!(
        (reports.max_running, reports.rate, reports.key_limit),
        (None, None, None)
    );
    client.resume_queue("reports").await.unwrap();
    let queues = client.queues().await.unwrap();
    assert!(
        queue_named(&queues, "reports").is_none(),
        "a queue without jobs or controls is not listed: {queues:?}"
    );

    // A running limit caps a claim.
    let batch = vec!["batch".to_owned()];
    let jobs: Vec<NewJob> = (0..3)
        .map(|n| NewJob::new("t", &json!({"n": n})).unwrap().queue("batch"))
        .collect();
    client.enqueue_many(&jobs).await.unwrap();
    client
        .set_queue_limits(
            "batch",
            QueueLimits {
                max_running: Some(1),
                rate: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(client.claim(claim_of(&batch, None)).await.unwrap().len(), 1);
    let queues = client.queues().await.unwrap();
    let shown = queue_named(&queues, "batch").unwrap();
    assert_eq!((shown.running, shown.waiting), (1, 2), "{shown:?}");
}

#[tokio::test]
async fn limits_below_one_are_refused_with_the_reason() {
    let database = TestDatabase::create("queue_controls_bad_limits").await;
    let client = client(&database).await;
    let refused = |error: pdoflow_client::Error, expected: &str| {
        assert_eq!(error.sqlstate(), Some("22023"), "{error}");
        let text = error.to_string();
        assert!(text.contains(expected), "{expected:?} in {text:?}");
    };
    for max_running in [0, -3] {
        let error = client
            .set_queue_limits(
                "q",
                QueueLimits {
                    max_running: Some(max_running),
                    rate: None,
                },
            )
            .await
            .expect_err("refused");
        refused(
            error,
            &format!("max_running must be at least 1 (NULL removes the limit), got {max_running}"),
        );
    }
    let error = client
        .set_queue_limits(
            "q",
            QueueLimits {
                max_running: None,
                rate: Some(Rate::per_second(0)),
            },
        )
        .await
        .expect_err("refused");
    refused(error, "rate must be at least 1, got 0");
    let error = client
        .set_queue_limits(
            "q",
            QueueLimits {
                max_running: None,
                rate: Some(Rate {
                    count: 1,
                    per: Duration::ZERO,
                }),
            },
        )
        .await
        .expect_err("refused");
    refused(error, "per must be between 1 millisecond and 1 year");
    let error = client
        .set_key_limit("q", Some(0))
        .await
        .expect_err("refused");
    refused(error, "max_running must be at least 1");
    let error = client
        .claim(claim_of(&["q".to_owned()], Some(Duration::from_secs(7200))))
        .await
        .expect_err("refused");
    refused(error, "wait must be 0 or between 1 millisecond and 1 hour");
    assert!(
        client.queues().await.unwrap().is_empty(),
        "nothing was changed"
    );
}

#[tokio::test]
async fn concurrency_keys_are_stored_and_limit_claims_per_key() {
    let database = TestDatabase::create("queue_controls_keys").await;
    let client = client(&database).await;
    let sql = database.connect().await;
    let job = |n: i32, key: Option<&str>| {
        let job = NewJob::new("sync", &json!({"n": n})).unwrap().queue("sync");
        match key {
            Some(key) => job.concurrency_key(key),
            None => job,
        }
    };
    let first = client.enqueue(&job(1, Some("customer-7"))).await.unwrap();
    let many = client
        .enqueue_many(&[
            job(2, Some("customer-7")),
            job(3, Some("customer-8")),
            job(4, None),
        ])
        .await
        .unwrap();
    let stored: Vec<(i32, Option<String>)> = sql
        .query(
            "SELECT (args ->> 'n')::int, concurrency_key FROM pdoflow.jobs ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        stored,
        vec![
            (1, Some("customer-7".to_owned())),
            (2, Some("customer-7".to_owned())),
            (3, Some("customer-8".to_owned())),
            (4, None),
        ]
    );
    let read_back = client.job(first).await.unwrap().expect("the job");
    assert_eq!(read_back.concurrency_key.as_deref(), Some("customer-7"));
    assert_eq!(
        client
            .job(many[2])
            .await
            .unwrap()
            .and_then(|job| job.concurrency_key),
        None
    );

    // One running job per key: customer-7's second job waits.
    client.set_key_limit("sync", Some(1)).await.unwrap();
    let sync = vec!["sync".to_owned()];
    let claimed = client.claim(claim_of(&sync, None)).await.unwrap();
    let mut numbers: Vec<i64> = claimed
        .iter()
        .filter_map(|job| job.args["n"].as_i64())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 3, 4]);
    let queues = client.queues().await.unwrap();
    let shown = queue_named(&queues, "sync").unwrap();
    assert_eq!(
        (shown.key_limit, shown.throttled),
        (Some(1), 1),
        "{shown:?}"
    );
}

/// Waits until `count` other sessions of the database are inside
/// `pdoflow.claim`.
async fn sessions_claiming(sql: &tokio_postgres::Client, count: i64) {
    eventually("sessions waiting in claim", PATIENCE, || async {
        let claiming: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'active'
                   AND query LIKE '%pdoflow.claim(%' AND query NOT LIKE '%pg_stat_activity%'
                   AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (claiming == count).then_some(())
    })
    .await;
}

/// The sessions of the database that sent LISTEN.
async fn listening_sessions(sql: &tokio_postgres::Client) -> i64 {
    sql.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE '%LISTEN pdoflow%'
           AND query NOT LIKE '%pg_stat_activity%' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// How long after its enqueue job `id` was claimed, by the server's clock.
async fn claimed_after(sql: &tokio_postgres::Client, id: uuid::Uuid) -> Duration {
    let seconds: f64 = sql
        .query_one(
            "SELECT extract(epoch FROM started_at - created_at)::float8 FROM pdoflow.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    Duration::from_secs_f64(seconds.max(0.0))
}

#[tokio::test]
async fn a_waiting_claim_returns_as_soon_as_another_connection_enqueues() {
    let database = TestDatabase::create("queue_controls_claim_wait").await;
    let producer = client(&database).await;
    let sql = database.connect().await;

    // Nothing comes: the claim returns empty after its wait.
    let waiter = client(&database).await;
    let inbox = vec!["inbox".to_owned()];
    let started = Instant::now();
    let nothing = waiter
        .claim(claim_of(&inbox, Some(Duration::from_millis(300))))
        .await
        .unwrap();
    assert!(nothing.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // A job enqueued (and committed) elsewhere ends the wait at once.
    let claiming = tokio::spawn(async move {
        let inbox = vec!["inbox".to_owned()];
        let claimed = waiter
            .claim(claim_of(&inbox, Some(Duration::from_secs(20))))
            .await;
        (claimed, Instant::now())
    });
    sessions_claiming(&sql, 1).await;
    // A job of another queue does not end it.
    producer
        .enqueue(&NewJob::new("t", &()).unwrap().queue("elsewhere"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!claiming.is_finished(), "woken by another queue's job");
    let enqueued_at = Instant::now();
    let id = producer
        .enqueue(&NewJob::new("t", &()).unwrap().queue("inbox"))
        .await
        .unwrap();
    let (claimed, returned_at) = tokio::time::timeout(PATIENCE, claiming)
        .await
        .expect("the claim returns")
        .unwrap();
    let claimed = claimed.unwrap();
    assert_eq!(
        claimed.iter().map(|job| job.id).collect::<Vec<_>>(),
        vec![id]
    );
    let latency = returned_at.duration_since(enqueued_at);
    assert!(latency < PROMPTLY, "the claim took {latency:?}");
    let on_server = claimed_after(&sql, id).await;
    assert!(on_server < PROMPTLY, "claimed {on_server:?} after enqueue");
}

/// `stamp`: sends the time it ran.
struct Stamp(mpsc::UnboundedSender<Instant>);

impl Task for Stamp {
    const NAME: &'static str = "stamp";
    type Args = Value;
    type Output = Value;
    async fn run(&self, _args: Value, _job: JobContext) -> Result<Value, TaskError> {
        let _ = self.0.send(Instant::now());
        Ok(json!({}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_listen_picks_up_a_new_job_at_once_and_stops_promptly() {
    let database = TestDatabase::create("queue_controls_no_listen").await;
    let sql = database.connect().await;
    let producer = client(&database).await;
    let (ran, mut runs) = mpsc::unbounded_channel();
    let mut registry = TaskRegistry::new();
    registry.register(Stamp(ran)).unwrap();
    let settings = ConnectionSettings::from_url(&database.url(), "the test").unwrap();
    let config = WorkerConfig {
        queues: Some(vec!["quiet".to_owned()]),
        // Only a waiting claim can pick a job up within these tests' second.
        poll_interval: Duration::from_secs(60),
        sweep: SweepMode::Never,
        no_listen: true,
        ..WorkerConfig::default()
    };
    assert!(!WorkerConfig::default().no_listen, "LISTEN by default");
    let worker = Worker::new(settings, registry, config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    // Idle: in a claim that waits, and not listening.
    sessions_claiming(&sql, 1).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    sessions_claiming(&sql, 1).await;
    assert_eq!(listening_sessions(&sql).await, 0, "no LISTEN connection");

    for round in 0..3 {
        let enqueued_at = Instant::now();
        let id = producer
            .enqueue(
                &NewJob::new("stamp", &json!({"round": round}))
                    .unwrap()
                    .queue("quiet"),
            )
            .await
            .unwrap();
        let ran_at = tokio::time::timeout(PATIENCE, runs.recv())
            .await
            .expect("the job runs")
            .expect("a stamp");
        let latency = ran_at.duration_since(enqueued_at);
        assert!(
            latency < PROMPTLY,
            "round {round}: ran {latency:?} after enqueue"
        );
        assert!(claimed_after(&sql, id).await < PROMPTLY);
        pdoflow_tests::wait_for_state(&sql, id, "succeeded", PATIENCE).await;
        // Back to waiting in a claim (after a while idle, too).
        sessions_claiming(&sql, 1).await;
        tokio::time::sleep(Duration::from_millis(300 * round)).await;
    }

    // Stopping while the claim waits takes at most one wait chunk.
    let asked = Instant::now();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the worker stops")
        .unwrap()
        .expect("the worker ran");
    let took = asked.elapsed();
    assert!(
        took < pdoflow_client::worker::CLAIM_WAIT_CHUNK + Duration::from_millis(800),
        "stopping took {took:?}"
    );
    assert_eq!(
        (report.succeeded, report.failed, report.released),
        (3, 0, 0)
    );
    sessions_claiming(&sql, 0).await;
}

/// Starts `test-worker worker` with `args` against `url`.
fn spawn_worker(url: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(WORKER)
        .env("PDOFLOW_DATABASE_URL", url)
        .env_remove("DATABASE_URL")
        .env_remove("PDOFLOW_NO_LISTEN")
        .arg("worker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start test-worker")
}

/// Enqueues an `echo` job into `queue` once a worker waits in a claim;
/// returns how long after its enqueue it was claimed.
async fn enqueue_and_time(database: &TestDatabase, queue: &str) -> Duration {
    let sql = database.connect().await;
    sessions_claiming(&sql, 1).await;
    let id: uuid::Uuid = sql
        .query_one("SELECT pdoflow.enqueue('echo', queue => $1)", &[&queue])
        .await
        .unwrap()
        .get(0);
    pdoflow_tests::wait_for_state(&sql, id, "succeeded", PATIENCE).await;
    claimed_after(&sql, id).await
}

/// SIGTERM to `child`; returns its stderr once it exited 0, and how long that took.
async fn terminate(child: tokio::process::Child) -> (String, Duration) {
    let asked = Instant::now();
    send_signal("-TERM", child.id().expect("running"));
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the worker exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (stderr, asked.elapsed())
}

#[tokio::test]
async fn pdoflow_run_worker_no_listen_works_jobs_without_listen() {
    let database = TestDatabase::create("queue_controls_cli_no_listen").await;
    let sql = database.connect().await;
    let worker = spawn_worker(
        &database.url(),
        &["--no-listen", "--queues", "cli", "--poll-interval", "60s"],
    );
    let latency = enqueue_and_time(&database, "cli").await;
    assert!(latency < PROMPTLY, "claimed {latency:?} after enqueue");
    assert_eq!(listening_sessions(&sql).await, 0);
    let (stderr, took) = terminate(worker).await;
    assert!(stderr.contains("waiting claims"), "{stderr}");
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");

    // The environment variable does the same.
    let mut command = tokio::process::Command::new(WORKER);
    command
        .env("PDOFLOW_DATABASE_URL", database.url())
        .env("PDOFLOW_NO_LISTEN", "true")
        .args(["worker", "--queues", "env", "--poll-interval", "60s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let worker = command.spawn().unwrap();
    let latency = enqueue_and_time(&database, "env").await;
    assert!(latency < PROMPTLY, "claimed {latency:?} after enqueue");
    assert_eq!(listening_sessions(&sql).await, 0);
    terminate(worker).await;
}

/// A stand-in for a pooler in transaction mode: forwards connections to the
/// test cluster byte for byte, but answers a query that holds LISTEN with
/// SQLSTATE 0A000 (feature_not_supported) instead of passing it on.
/// Returns the port it listens on.
async fn pooler_refusing_listen(server_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await {
                    let _ = forward(client, server).await;
                }
            });
        }
    });
    port
}

/// One connection through `pooler_refusing_listen`.
async fn forward(client: TcpStream, server: TcpStream) -> std::io::Result<()> {
    let (mut from_client, to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    let back = to_client.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(read) = from_server.read(&mut buffer).await {
            if read == 0 || back.lock().await.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = back.lock().await.shutdown().await;
    });
    // Untyped messages first: an SSLRequest (refused by this cluster, which
    // has no TLS), then the startup message.
    loop {
        let length = from_client.read_u32().await?;
        let mut body = vec![0u8; length.saturating_sub(4) as usize];
        from_client.read_exact(&mut body).await?;
        to_server.write_u32(length).await?;
        to_server.write_all(&body).await?;
        let ssl_request = length == 8 && body == 80_877_103u32.to_be_bytes();
        if !ssl_request {
            break;
        }
    }
    loop {
        let kind = from_client.read_u8().await?;
        let length = from_client.read_u32().await?;
        let mut body = vec![0u8; length.saturating_sub(4) as usize];
        from_client.read_exact(&mut body).await?;
        let text = String::from_utf8_lossy(&body).to_uppercase();
        if kind == b'Q' && text.contains("LISTEN") {
            let mut fields = Vec::new();
            for (code, value) in [
                (b'S', "ERROR"),
                (b'V', "ERROR"),
                (b'C', "0A000"),
                (b'M', "LISTEN is not supported in transaction pooling mode"),
            ] {
                fields.push(code);
                fields.extend_from_slice(value.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut reply = vec![b'E'];
            reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
            reply.extend_from_slice(&fields);
            reply.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
            to_client.lock().await.write_all(&reply).await?;
            continue;
        }
        to_server.write_u8(kind).await?;
        to_server.write_u32(length).await?;
        to_server.write_all(&body).await?;
    }
}

#[tokio::test]
async fn a_worker_whose_listen_is_refused_switches_to_waiting_claims() {
    let database = TestDatabase::create("queue_controls_listen_refused").await;
    let sql = database.connect().await;
    let port = pooler_refusing_listen(database.port()).await;
    let url = format!("postgresql://postgres@127.0.0.1:{port}/{}", database.name());
    let worker = spawn_worker(&url, &["--queues", "pooled", "--poll-interval", "60s"]);
    let latency = enqueue_and_time(&database, "pooled").await;
    assert!(latency < PROMPTLY, "claimed {latency:?} after enqueue");
    assert_eq!(listening_sessions(&sql).await, 0);
    let (stderr, took) = terminate(worker).await;
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("LISTEN does not work on this connection"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {stderr}");
    assert!(
        warnings[0].contains("0A000") && warnings[0].contains("WARN"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
}

#[tokio::test]
async fn waiting_claims_do_not_hold_back_heartbeats() {
    let database = TestDatabase::create("queue_controls_no_listen_leases").await;
    let sql = database.connect().await;
    // A lease of a second, renewed every third of it: a claim that waited
    // past a heartbeat would let it run out, and the sweeps below would
    // take the job back.
    let worker = spawn_worker(
        &database.url(),
        &[
            "--no-listen",
            "--queues",
            "long",
            "--lease",
            "1s",
            "--sweep",
            "never",
        ],
    );
    sessions_claiming(&sql, 1).await;
    let id: uuid::Uuid = sql
        .query_one(
            r#"SELECT pdoflow.enqueue('sleep', '{"ms": 3000}', queue => 'long')"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let taken_back: i64 = sql
            .query_one(
                "SELECT expired_requeued + expired_failed FROM pdoflow.sweep()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(taken_back, 0, "a lease ran out");
        let state = pdoflow_tests::job_state(&sql, id).await;
        if state.state == "succeeded" {
            assert_eq!(state.attempt, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    terminate(worker).await;
}
