//! Long-polls (`GET /v1/jobs/{id}` with `Prefer: wait=N`) through real
//! HTTP: woken within 50 ms of the commit that ends the job, or answered
//! after N seconds; and a thousand at once held by the pool plus the hub's
//! one connection.

use std::time::{Duration, Instant};

use pdoflow_tests::http::{token, TestServer};
use pdoflow_tests::TestDatabase;
use reqwest::Method;
use uuid::Uuid;

/// The most a long-poll may answer after the finish's commit.
const WOKEN_WITHIN: Duration = Duration::from_millis(50);

async fn connections(client: &tokio_postgres::Client, application_name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_when_the_job_ends() {
    let database = TestDatabase::create("http_poll_end").await;
    let server = TestServer::start(&database, "pollend", |_| {}).await;
    let client = database.connect().await;
    let id: Uuid = client
        .query_one("SELECT pdoflow.enqueue('slow')", &[])
        .await
        .unwrap()
        .get(0);
    let claim = client
        .query_one("SELECT id, attempt FROM pdoflow.claim(1)", &[])
        .await
        .unwrap();
    let attempt: i32 = claim.get(1);

    // Warm up (connections made, statements prepared), as a server that
    // has been running would be.
    let warm = server
        .get(&format!("/v1/jobs/{id}"), &server.roles.producer)
        .await;
    assert_eq!(warm.status, 200);

    let request = server
        .request(
            Method::GET,
            &format!("/v1/jobs/{id}"),
            Some(&token(&server.roles.producer)),
        )
        .header("Prefer", "wait=5");
    let waiting = tokio::spawn(async move {
        let response = request.send().await.expect("an answer");
        let answered = Instant::now();
        (response, answered)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "the long-poll answered before the job ended"
    );
    client
        .execute(
            "SELECT pdoflow.finish($1, $2, result => '{\"ok\": true}')",
            &[&id, &attempt],
        )
        .await
        .unwrap();
    let committed = Instant::now();
    let (response, answered) = waiting.await.unwrap();
    let lag = answered.saturating_duration_since(committed);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["preference-applied"], "wait=5");
    assert_eq!(response.headers()["vary"], "Prefer");
    let job: serde_json::Value = response.json().await.unwrap();
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"], serde_json::json!({"ok": true}));
    eprintln!("long-poll answered {lag:?} after the finish's commit");
    assert!(
        lag <= WOKEN_WITHIN,
        "answered {lag:?} after the commit (at most {WOKEN_WITHIN:?})"
    );

    // An ended job answers at once.
    let started = Instant::now();
    let ended = server
        .send(
            server
                .request(
                    Method::GET,
                    &format!("/v1/jobs/{id}"),
                    Some(&token(&server.roles.producer)),
                )
                .header("Prefer", "wait=5"),
        )
        .await;
    assert_eq!(ended.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));

    // An unknown job is a 404 at once, waiting or not.
    let unknown = server
        .send(
            server
                .request(
                    Method::GET,
                    &format!("/v1/jobs/{}", Uuid::now_v7()),
                    Some(&token(&server.roles.producer)),
                )
                .header("Prefer", "wait=5"),
        )
        .await;
    unknown.assert_problem(404, "JobNotFound");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_gives_up_after_n_seconds() {
    let database = TestDatabase::create("http_poll_timeout").await;
    let server = TestServer::start(&database, "polltimeout", |config| {
        config.max_wait = Duration::from_secs(2);
    })
    .await;
    let client = database.connect().await;
    let id: Uuid = client
        .query_one("SELECT pdoflow.enqueue('never')", &[])
        .await
        .unwrap()
        .get(0);
    for (prefer, applied) in [
        ("wait=1", "wait=1"),
        ("respond-async, wait=\"30\"", "wait=2"),
    ] {
        let started = Instant::now();
        let response = server
            .send(
                server
                    .request(
                        Method::GET,
                        &format!("/v1/jobs/{id}"),
                        Some(&token(&server.roles.producer)),
                    )
                    .header("Prefer", prefer),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.header("preference-applied"), applied);
        assert_eq!(response.body["state"], "queued");
        let expected = Duration::from_secs(applied[5..].parse().unwrap());
        assert!(
            took >= expected && took <= expected + Duration::from_millis(500),
            "{prefer}: answered after {took:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_long_polls_hold_no_connection_each() {
    const POLLS: usize = 1000;
    const POOL: usize = 8;
    let database = TestDatabase::create("http_poll_many").await;
    let server = TestServer::start(&database, "pollmany", |config| {
        config.pool_size = POOL;
        config.pool_timeout = Duration::from_secs(20);
    })
    .await;
    let client = database.connect().await;
    let ids: Vec<Uuid> = client
        .query(
            "SELECT id FROM pdoflow.enqueue_many('held',
                 (SELECT array_agg('{}'::jsonb) FROM generate_series(1, $1::integer)))",
            &[&(POLLS as i32)],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let token = token(&server.roles.producer);
    // One HTTP connection per long-poll, as a thousand clients would have.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut polls = Vec::new();
    for id in &ids {
        let request = http
            .get(server.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(&token)
            .header("Prefer", "wait=30");
        polls.push(tokio::spawn(async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, body)
        }));
    }

    // While they wait: the pool, the hub and the dashboard's live feed, no
    // more.
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        most = most.max(connections(&client, &server.application_name).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{POLLS} long-polls: at most {most} server connections (pool {POOL} + hub 1 + live feed 1)"
    );
    assert!(most <= (POOL + 2) as i64, "{most} connections");
    assert!(most >= 2, "the hub and the pool were used: {most}");
    assert!(
        polls.iter().all(|poll| !poll.is_finished()),
        "every poll still waits"
    );

    // Every job ends: every poll answers with its end.
    let started = Instant::now();
    client
        .execute(
            "SELECT pdoflow.cancel(id) FROM unnest($1::uuid[]) AS id",
            &[&ids],
        )
        .await
        .unwrap();
    for poll in polls {
        let (status, body) = poll.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "cancelled");
    }
    eprintln!(
        "{POLLS} long-polls answered {:?} after their jobs were cancelled",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(connections(&client, &server.application_name).await <= (POOL + 2) as i64);
    server.stop().await;
}
