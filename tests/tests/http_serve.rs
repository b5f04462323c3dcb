//! `pdoflow-run serve` as a program (the tests' `test-worker`, which has
//! pdoflow-run's command line): it listens where `--listen` says, answers
//! /healthz and /readyz, serves the API, and stops on SIGTERM.

use std::time::{Duration, Instant};

use pdoflow_tests::http::{token, Roles, SECRET};
use pdoflow_tests::{send_signal, TestDatabase};

const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

#[tokio::test]
async fn serve_listens_answers_and_stops_on_sigterm() {
    let database = TestDatabase::create("http_serve").await;
    let roles = Roles::create(&database, "serve").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = String::from_utf8(SECRET.to_vec()).unwrap();
    let mut child = database
        .cli(WORKER)
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--pool-size",
            "2",
        ])
        .env(
            "PDOFLOW_DATABASE_URL",
            format!(
                "postgresql://{}@127.0.0.1:{}/{}",
                roles.login,
                database.port(),
                database.name()
            ),
        )
        .env("PDOFLOW_JWT_SECRET", &secret)
        // No db.conf of the machine's: the settings are the flags'.
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env_remove("PDOFLOW_CONFIG")
        .env_remove("PDOFLOW_LISTEN")
        .spawn()
        .expect("start serve");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.get(format!("{base}/healthz")).send().await {
            Ok(response) if response.status() == 200 => break,
            _ if Instant::now() > deadline => panic!("serve did not answer /healthz"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        if let Ok(Some(status)) = child.try_wait() {
            let output = child.wait_with_output().await.unwrap();
            panic!(
                "serve exited ({status}): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let created = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(token(&roles.producer))
        .json(&serde_json::json!({"task": "served"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let names: Vec<String> = database
        .connect()
        .await
        .query(
            "SELECT DISTINCT application_name FROM pg_stat_activity WHERE usename = $1",
            &[&roles.login],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(names, vec!["pdoflow-server".to_owned()]);

    send_signal("-TERM", child.id().expect("a pid"));
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("serve stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
