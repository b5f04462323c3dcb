//! The HTTP API (`pdoflow-server`) through real HTTP against the test
//! cluster: each resource's happy path, each problem type, authentication
//! and the roles' privileges, cursor pagination under concurrent inserts,
//! the OpenAPI document and the metrics.

use std::collections::HashSet;
use std::time::Duration;

use pdoflow_tests::http::{now, token, token_with, TestServer, SECRET};
use pdoflow_tests::TestDatabase;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn job_types_register_conflict_replace_and_delete() {
    let database = TestDatabase::create("http_job_types").await;
    let server = TestServer::start(&database, "jobtypes", |_| {}).await;
    let admin = server.roles.admin.clone();
    let schema = json!({"type": "object", "required": ["to"],
                        "properties": {"to": {"type": "string"}, "cc": {"type": "array", "items": {"type": "string"}}}});
    let name = "acme:mail:send";
    let body = json!({"name": name, "args_schema": schema, "description": "send mail"});

    let created = server.post("/v1/job-types", &admin, body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("location"), "/v1/job-types/acme:mail:send");
    assert_eq!(created.body["scope"], "acme");
    assert_eq!(created.body["category"], "mail");
    assert_eq!(created.body["args_schema"], schema);

    // The same schema again: 200, the description updated.
    let again = server
        .post(
            "/v1/job-types",
            &admin,
            json!({"name": name, "args_schema": schema, "description": "send e-mail"}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["description"], "send e-mail");

    // Another schema: SchemaConflict, unless replaced with PUT.
    let other = json!({"type": "object"});
    let conflict = server
        .post(
            "/v1/job-types",
            &admin,
            json!({"name": name, "args_schema": other}),
        )
        .await;
    conflict.assert_problem(409, "SchemaConflict");
    assert_eq!(conflict.body["job_type"], name);

    // Jobs are checked against the schema: the pointer names the field.
    let producer = server.roles.producer.clone();
    let violation = server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": name, "args": {"to": 5}}),
        )
        .await;
    violation.assert_problem(422, "SchemaViolation");
    assert_eq!(violation.body["pointer"], "/args/to", "{}", violation.text);
    let violation = server
        .post(
            "/v1/jobs/batch",
            &producer,
            json!({"jobs": [{"task": name, "args": {"to": "a@b"}},
                            {"task": name, "args": {"to": "c@d", "cc": ["x", 7]}}]}),
        )
        .await;
    violation.assert_problem(422, "SchemaViolation");
    assert_eq!(
        violation.body["pointer"], "/jobs/1/args/cc/1",
        "{}",
        violation.text
    );
    let missing = server
        .post("/v1/jobs", &producer, json!({"task": name, "args": {}}))
        .await;
    missing.assert_problem(422, "SchemaViolation");
    let job = server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": name, "args": {"to": "ada@example.com"}}),
        )
        .await;
    assert_eq!(job.status, 201, "{}", job.text);

    let replaced = server
        .put(
            "/v1/job-types/acme:mail:send",
            &admin,
            json!({"args_schema": other, "description": "anything"}),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["args_schema"], other);
    let new = server.put("/v1/job-types/report", &admin, json!({})).await;
    assert_eq!(new.status, 201, "{}", new.text);
    assert_eq!(new.body["scope"], "global");

    let acme = server.get("/v1/job-types?scope=acme", &producer).await;
    assert_eq!(acme.status, 200, "{}", acme.text);
    let names: Vec<&str> = acme.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![name]);
    let global = server.get("/v1/job-types?scope=global", &producer).await;
    assert_eq!(global.body["items"].as_array().unwrap().len(), 1);
    let one = server.get("/v1/job-types/acme:mail:send", &producer).await;
    assert_eq!(one.status, 200, "{}", one.text);
    server
        .get("/v1/job-types/nothing", &producer)
        .await
        .assert_problem(404, "NotFound");

    // Producers may not register.
    server
        .post("/v1/job-types", &producer, json!({"name": "mine"}))
        .await
        .assert_problem(403, "Forbidden");

    // Deleting keeps the jobs; registering again makes it active again.
    let deleted = server.delete("/v1/job-types/acme:mail:send", &admin).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    server
        .delete("/v1/job-types/acme:mail:send", &admin)
        .await
        .assert_problem(404, "NotFound");
    let kept = server
        .get(&format!("/v1/jobs/{}", id_of(&job.body)), &producer)
        .await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    let back = server.post("/v1/job-types", &admin, body).await;
    assert_eq!(back.status, 201, "{}", back.text);
    server.stop().await;
}

#[tokio::test]
async fn jobs_submit_read_list_cancel_and_retry() {
    let database = TestDatabase::create("http_jobs").await;
    let server = TestServer::start(&database, "jobs", |_| {}).await;
    let producer = server.roles.producer.clone();
    let admin = server.roles.admin.clone();

    let created = server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": "resize", "args": {"image": 1}, "queue": "images", "priority": 3,
                   "delay": 60, "max_attempts": 2}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = id_of(&created.body);
    assert_eq!(created.header("location"), format!("/v1/jobs/{id}"));
    assert_eq!(created.body["queue"], "images");
    assert_eq!(created.body["priority"], 3);
    assert_eq!(created.body["state"], "queued");
    assert_eq!(created.body["enqueued_by"], producer.as_str());
    let read = server.get(&format!("/v1/jobs/{id}"), &producer).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["args"], json!({"image": 1}));
    assert_eq!(read.header("vary"), "Prefer");

    // A unique key held: the same job back, 200.
    let unique = json!({"task": "invoice", "unique_key": "order-7", "unique_for": 3600});
    let first = server.post("/v1/jobs", &producer, unique.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = server.post("/v1/jobs", &producer, unique).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["id"], first.body["id"]);

    let batch = server
        .post(
            "/v1/jobs/batch",
            &producer,
            json!({"jobs": [{"task": "a"}, {"task": "b", "delay": 5, "queue": "other"},
                            {"task": "c", "depends_on": [id], "dependency_mode": "any"}]}),
        )
        .await;
    assert_eq!(batch.status, 201, "{}", batch.text);
    let ids = batch.body["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 3);
    let child = server
        .get(&format!("/v1/jobs/{}", ids[2].as_str().unwrap()), &producer)
        .await;
    assert_eq!(child.body["state"], "blocked");
    assert_eq!(child.body["dependency_mode"], "any");

    // Bodies are checked: the pointer names what is wrong.
    for (path, body, pointer) in [
        (
            "/v1/jobs",
            json!({"task": "t", "priority": "high"}),
            "/priority",
        ),
        ("/v1/jobs", json!({"task": "t", "bogus": 1}), "/bogus"),
        ("/v1/jobs", json!({"args": {}}), "/task"),
        (
            "/v1/jobs",
            json!({"task": "t", "max_attempts": 0}),
            "/max_attempts",
        ),
        ("/v1/jobs", json!({"task": "", "args": {}}), "/task"),
        (
            "/v1/jobs",
            json!({"task": "t", "run_at": "2030-01-01T00:00:00Z", "delay": 1}),
            "/delay",
        ),
        (
            "/v1/jobs",
            json!({"task": "t", "depends_on": [Uuid::now_v7()]}),
            "/depends_on",
        ),
        (
            "/v1/jobs",
            json!({"task": "t", "dependency_mode": "some"}),
            "/dependency_mode",
        ),
        (
            "/v1/jobs/batch",
            json!({"jobs": [{"task": "t"}, {"task": "t"}, {"task": "t", "priority": "x"}]}),
            "/jobs/2/priority",
        ),
        (
            "/v1/jobs/batch",
            json!({"jobs": [{"task": "t"}, {"task": "t", "max_attempts": 0}]}),
            "/jobs/1/max_attempts",
        ),
        (
            "/v1/jobs/batch",
            json!({"jobs": [{"task": "t", "queue": " padded"}]}),
            "/jobs/0/queue",
        ),
    ] {
        let response = server.post(path, &producer, body.clone()).await;
        response.assert_problem(422, "ValidationFailed");
        assert_eq!(
            response.body["pointer"], pointer,
            "{body}: {}",
            response.text
        );
    }

    // Unknown and malformed ids.
    let unknown = Uuid::now_v7();
    let missing = server.get(&format!("/v1/jobs/{unknown}"), &producer).await;
    missing.assert_problem(404, "JobNotFound");
    assert_eq!(missing.body["job"], unknown.to_string());
    assert_eq!(missing.body["instance"], format!("/v1/jobs/{unknown}"));
    server
        .get("/v1/jobs/not-a-uuid", &producer)
        .await
        .assert_problem(404, "JobNotFound");

    // Lists, filtered; bad parameters named.
    let images = server
        .get("/v1/jobs?queue=images&state=queued", &producer)
        .await;
    assert_eq!(images.status, 200, "{}", images.text);
    assert_eq!(images.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(images.body["next_cursor"], Value::Null);
    for (query, parameter) in [
        ("state=sleeping", "state"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zzz", "cursor"),
        ("posting=x", "posting"),
        ("colour=red", "colour"),
    ] {
        let response = server.get(&format!("/v1/jobs?{query}"), &producer).await;
        response.assert_problem(422, "ValidationFailed");
        assert_eq!(
            response.body["parameter"], parameter,
            "{query}: {}",
            response.text
        );
    }

    // Cancel and retry are admins'; the database says so.
    let cancel = format!("/v1/jobs/{id}/cancel");
    server
        .post(&cancel, &producer, json!({}))
        .await
        .assert_problem(403, "Forbidden");
    let cancelled = server.post(&cancel, &admin, json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["state"], "cancelled");
    let again = server.post(&cancel, &admin, json!({})).await;
    assert_eq!(again.status, 200, "cancelling twice: {}", again.text);
    let retry = format!("/v1/jobs/{id}/retry");
    let retried = server.post(&retry, &admin, json!({})).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.body["state"], "queued");
    let refused = server.post(&retry, &admin, json!({})).await;
    refused.assert_problem(409, "InvalidTaskTransition");
    assert_eq!(refused.body["job"], id.as_str());
    assert!(refused.body["reason"].as_str().unwrap().contains("queued"));
    server
        .post(&format!("/v1/jobs/{unknown}/cancel"), &admin, json!({}))
        .await
        .assert_problem(404, "JobNotFound");
    server
        .post(&format!("/v1/jobs/{unknown}/retry"), &admin, json!({}))
        .await
        .assert_problem(404, "JobNotFound");
    server.stop().await;
}

#[tokio::test]
async fn a_jobs_attempts_say_how_each_claim_ended() {
    let database = TestDatabase::create("http_attempts").await;
    let server = TestServer::start(&database, "attempts", |_| {}).await;
    let producer = server.roles.producer.clone();
    let created = server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": "flaky", "queue": "attempts"}),
        )
        .await;
    let id = id_of(&created.body);
    let none = server
        .get(&format!("/v1/jobs/{id}/attempts"), &producer)
        .await;
    assert_eq!(none.status, 200, "{}", none.text);
    assert_eq!(none.body, json!({"items": []}));

    let client = database.connect().await;
    for statement in [
        "SET pdoflow.retry_backoff_base = 0",
        "SELECT pdoflow.progress(id, attempt, '{\"step\": 2}')
         FROM pdoflow.claim(1, ARRAY['attempts'], worker => 'w1')",
        "SELECT pdoflow.finish(id, attempt, error => 'disk full') FROM pdoflow.jobs WHERE task = 'flaky'",
        "SELECT pdoflow.release(id, attempt) FROM pdoflow.claim(1, ARRAY['attempts'], worker => 'w2')",
    ] {
        client.batch_execute(statement).await.unwrap();
    }
    let two = server
        .get(&format!("/v1/jobs/{id}/attempts"), &producer)
        .await;
    assert_eq!(two.status, 200, "{}", two.text);
    let items = two.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", two.text);
    assert_eq!(items[0]["attempt"], 1);
    assert_eq!(items[0]["worker"], "w1");
    assert_eq!(items[0]["outcome"], "failed");
    assert_eq!(items[0]["error"], "disk full");
    assert_eq!(items[0]["progress"], json!({"step": 2}));
    assert!(items[0]["started_at"].is_string() && items[0]["ended_at"].is_string());
    assert_eq!(items[1]["attempt"], 2);
    assert_eq!(items[1]["outcome"], "released");
    assert_eq!(items[1]["error"], Value::Null);

    let missing = server
        .get(
            &format!("/v1/jobs/{}/attempts", uuid::Uuid::nil()),
            &producer,
        )
        .await;
    missing.assert_problem(404, "JobNotFound");
    let not_an_id = server.get("/v1/jobs/abc/attempts", &producer).await;
    not_an_id.assert_problem(404, "JobNotFound");
    server.stop().await;
}

#[tokio::test]
async fn http_workers_claim_heartbeat_report_finish_and_release() {
    let database = TestDatabase::create("http_workers").await;
    let server = TestServer::start(&database, "workers", |_| {}).await;
    let producer = server.roles.producer.clone();
    let worker = server.roles.worker.clone();
    let admin = server.roles.admin.clone();

    let registered = server
        .put(
            "/v1/workers/node-1",
            &worker,
            json!({"job_types": ["mail"]}),
        )
        .await;
    assert_eq!(registered.status, 200, "{}", registered.text);
    assert_eq!(registered.body["name"], "node-1");
    assert_eq!(registered.body["state"], "active");
    assert_eq!(registered.body["job_types"], json!(["mail"]));
    server
        .put("/v1/workers/node-1", &producer, json!({}))
        .await
        .assert_problem(403, "Forbidden");

    for task in ["mail", "report", "mail"] {
        let response = server
            .post(
                "/v1/jobs",
                &producer,
                json!({"task": task, "args": {"n": 1}}),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
    }
    // Without job_types, the claim takes the worker's registered job types.
    let claimed = server
        .post(
            "/v1/workers/node-1/claim",
            &worker,
            json!({"n": 10, "lease": 60}),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.text);
    let jobs = claimed.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2, "{}", claimed.text);
    assert!(jobs.iter().all(|job| job["task"] == "mail"));
    let first = &jobs[0];
    let id = first["id"].as_str().unwrap().to_owned();
    let attempt = first["attempt"].as_i64().unwrap();
    assert_eq!(attempt, 1);
    assert!(first["lease_expires_at"].is_string());

    let heartbeat = server
        .post(
            &format!("/v1/jobs/{id}/heartbeat"),
            &worker,
            json!({"attempt": attempt, "lease": 120}),
        )
        .await;
    assert_eq!(heartbeat.status, 200, "{}", heartbeat.text);
    assert!(heartbeat.body["lease_expires_at"].is_string());
    let progress = server
        .post(
            &format!("/v1/jobs/{id}/progress"),
            &worker,
            json!({"attempt": attempt, "progress": {"done": 4, "total": 10}}),
        )
        .await;
    assert_eq!(progress.status, 204, "{}", progress.text);
    let read = server.get(&format!("/v1/jobs/{id}"), &producer).await;
    assert_eq!(read.body["progress"], json!({"done": 4, "total": 10}));
    assert_eq!(read.body["worker"], "node-1");

    // A claim number never handed out: refused, naming job, attempt and why.
    let stale = server
        .post(
            &format!("/v1/jobs/{id}/heartbeat"),
            &worker,
            json!({"attempt": 7}),
        )
        .await;
    stale.assert_problem(409, "InvalidTaskTransition");
    assert_eq!(stale.body["job"], id.as_str());
    assert_eq!(stale.body["attempt"], 7);
    assert!(stale.body["reason"]
        .as_str()
        .unwrap()
        .contains("never handed out"));

    let finished = server
        .post(
            &format!("/v1/jobs/{id}/finish"),
            &worker,
            json!({"attempt": attempt, "result": {"sent": true}}),
        )
        .await;
    assert_eq!(finished.status, 200, "{}", finished.text);
    assert_eq!(finished.body["state"], "succeeded");
    let twice = server
        .post(
            &format!("/v1/jobs/{id}/finish"),
            &worker,
            json!({"attempt": attempt}),
        )
        .await;
    twice.assert_problem(409, "InvalidTaskTransition");
    assert_eq!(twice.body["reason"], "the job already succeeded");
    assert_eq!(twice.body["attempt"], attempt);

    // A failure with attempts left: queued again.
    let other = jobs[1]["id"].as_str().unwrap().to_owned();
    let failed = server
        .post(
            &format!("/v1/jobs/{other}/finish"),
            &worker,
            json!({"attempt": 1, "error": "SMTP timeout"}),
        )
        .await;
    assert_eq!(failed.status, 200, "{}", failed.text);
    assert_eq!(failed.body["state"], "queued");
    let again = server
        .post(
            "/v1/workers/node-1/claim",
            &worker,
            json!({"job_types": ["report"], "wait": 1}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    let report = again.body["jobs"][0].clone();
    assert_eq!(report["task"], "report", "{}", again.text);
    let report_id = report["id"].as_str().unwrap().to_owned();
    let released = server
        .post(
            &format!("/v1/jobs/{report_id}/release"),
            &worker,
            json!({"attempt": report["attempt"]}),
        )
        .await;
    assert_eq!(released.status, 204, "{}", released.text);
    let released_again = server
        .post(
            &format!("/v1/jobs/{report_id}/release"),
            &worker,
            json!({"attempt": report["attempt"]}),
        )
        .await;
    released_again.assert_problem(409, "InvalidTaskTransition");

    let unknown = Uuid::now_v7();
    let missing = server
        .post(
            &format!("/v1/jobs/{unknown}/finish"),
            &worker,
            json!({"attempt": 1}),
        )
        .await;
    missing.assert_problem(404, "JobNotFound");
    assert_eq!(missing.body["job"], unknown.to_string());
    server
        .post(
            &format!("/v1/jobs/{unknown}/heartbeat"),
            &worker,
            json!({"attempt": 1}),
        )
        .await
        .assert_problem(404, "JobNotFound");
    server
        .post(
            &format!("/v1/jobs/{id}/finish"),
            &worker,
            json!({"result": 1}),
        )
        .await
        .assert_problem(422, "ValidationFailed");
    let bad_n = server
        .post("/v1/workers/node-1/claim", &worker, json!({"n": 0}))
        .await;
    bad_n.assert_problem(422, "ValidationFailed");
    assert_eq!(bad_n.body["pointer"], "/n", "{}", bad_n.text);

    // Producers may not claim; workers may not read the registry.
    server
        .post(
            "/v1/workers/node-1/claim",
            &producer,
            json!({"job_types": ["mail"]}),
        )
        .await
        .assert_problem(403, "Forbidden");
    server
        .get("/v1/workers", &worker)
        .await
        .assert_problem(403, "Forbidden");
    let workers = server.get("/v1/workers", &admin).await;
    assert_eq!(workers.status, 200, "{}", workers.text);
    assert_eq!(workers.body["items"][0]["name"], "node-1");
    let one = server.get("/v1/workers/node-1", &admin).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["job_types"], json!(["mail"]));
    server
        .get("/v1/workers/nobody", &admin)
        .await
        .assert_problem(404, "NotFound");
    server.stop().await;
}

#[tokio::test]
async fn postings_and_dags() {
    let database = TestDatabase::create("http_postings").await;
    let server = TestServer::start(&database, "postings", |_| {}).await;
    let producer = server.roles.producer.clone();
    let admin = server.roles.admin.clone();

    let created = server
        .post(
            "/v1/postings",
            &producer,
            json!({"name": "nightly import", "queue": "etl", "priority": 5}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let posting = id_of(&created.body);
    assert_eq!(
        created.header("location"),
        format!("/v1/postings/{posting}")
    );
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["progress"], 0.0);

    let dag = json!({"nodes": [
        {"name": "fetch", "task": "fetch", "args": {"url": "x"}},
        {"name": "parse", "task": "parse", "after": ["fetch"]},
        {"name": "checks", "after": ["parse"], "dag": {"nodes": [
            {"name": "a", "task": "check"}, {"name": "b", "task": "check"}]}}]});
    let submitted = server
        .post(
            "/v1/dags",
            &producer,
            json!({"dag": dag, "posting": posting}),
        )
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.text);
    let names: Vec<&str> = submitted.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["fetch", "parse", "checks/a", "checks/b"]);
    let cycle = server
        .post(
            "/v1/dags",
            &producer,
            json!({"dag": {"nodes": [{"name": "a", "task": "t", "after": ["b"]},
                                     {"name": "b", "task": "t", "after": ["a"]}]}}),
        )
        .await;
    cycle.assert_problem(422, "ValidationFailed");

    let status = server
        .get(&format!("/v1/postings/{posting}"), &producer)
        .await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.body["total"], 4);
    assert_eq!(status.body["queued"], 1);
    assert_eq!(status.body["blocked"], 3);

    let pause = format!("/v1/postings/{posting}/pause");
    server
        .post(&pause, &producer, json!({}))
        .await
        .assert_problem(403, "Forbidden");
    let paused = server.post(&pause, &admin, json!({})).await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(paused.body["status"], "paused");
    let resumed = server
        .post(&format!("/v1/postings/{posting}/resume"), &admin, json!({}))
        .await;
    assert_eq!(resumed.body["status"], "active");
    let list = server.get("/v1/postings?status=active", &producer).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["items"][0]["id"], posting.as_str());

    // Deleting needs every job ended.
    server
        .delete(&format!("/v1/postings/{posting}"), &admin)
        .await
        .assert_problem(409, "Conflict");
    let cancelled = server
        .post(&format!("/v1/postings/{posting}/cancel"), &admin, json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["complete"], true);
    assert_eq!(cancelled.body["progress"], 1.0);
    server
        .post(&pause, &admin, json!({}))
        .await
        .assert_problem(409, "Conflict");
    let deleted = server
        .delete(&format!("/v1/postings/{posting}"), &admin)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    server
        .get(&format!("/v1/postings/{posting}"), &producer)
        .await
        .assert_problem(404, "NotFound");
    server
        .post(
            &format!("/v1/postings/{}/pause", Uuid::now_v7()),
            &admin,
            json!({}),
        )
        .await
        .assert_problem(404, "NotFound");
    server.stop().await;
}

#[tokio::test]
async fn queues_and_stats() {
    let database = TestDatabase::create("http_queues").await;
    let server = TestServer::start(&database, "queues", |_| {}).await;
    let producer = server.roles.producer.clone();
    let admin = server.roles.admin.clone();
    server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": "t", "queue": "emails"}),
        )
        .await;
    let paused = server
        .post("/v1/queues/emails/pause", &admin, json!({}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    assert_eq!(
        paused.body,
        json!({"queue": "emails", "paused": true, "changed": true})
    );
    server
        .post("/v1/queues/emails/pause", &producer, json!({}))
        .await
        .assert_problem(403, "Forbidden");
    let queues = server.get("/v1/queues", &producer).await;
    assert_eq!(queues.status, 200, "{}", queues.text);
    let emails = &queues.body["items"][0];
    assert_eq!(emails["queue"], "emails");
    assert_eq!(emails["paused"], true);
    assert_eq!(emails["waiting"], 1);
    assert_eq!(emails["throttled"], 1);
    let resumed = server
        .post("/v1/queues/emails/resume", &admin, json!({}))
        .await;
    assert_eq!(resumed.body["paused"], false);

    let stats = server.get("/v1/stats", &producer).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert!(stats.body["items"].is_array());
    server.stop().await;
}

#[tokio::test]
async fn every_error_is_a_problem() {
    let database = TestDatabase::create("http_problems").await;
    let server = TestServer::start(&database, "problems", |config| {
        config.body_limit = 4096;
    })
    .await;
    let producer = server.roles.producer.clone();
    let token = token(&producer);

    let unknown = server.get("/v1/nothing-here", &producer).await;
    unknown.assert_problem(404, "NotFound");
    assert_eq!(unknown.body["instance"], "/v1/nothing-here");
    server
        .get("/elsewhere", &producer)
        .await
        .assert_problem(404, "NotFound");

    let method = server.delete("/v1/jobs", &producer).await;
    method.assert_problem(405, "MethodNotAllowed");
    assert!(
        method.header("allow").contains("POST"),
        "{:?}",
        method.headers
    );

    let text = server
        .send(
            server
                .request(Method::POST, "/v1/jobs", Some(&token))
                .header("content-type", "text/plain")
                .body("task=t"),
        )
        .await;
    text.assert_problem(415, "UnsupportedMediaType");

    let broken = server
        .send(
            server
                .request(Method::POST, "/v1/jobs", Some(&token))
                .header("content-type", "application/json")
                .body("{\"task\": "),
        )
        .await;
    broken.assert_problem(400, "BadRequest");

    // JSON's whitespace is space, tab, LF and CR: a form feed is not JSON,
    // and a body of whitespace alone is no value (schemathesis found a
    // claim that read "\x0c" as an absent body).
    for body in ["\x0c", " \t\r\n", "\x0c{}"] {
        let not_json = server
            .send(
                server
                    .request(Method::POST, "/v1/workers/w/claim", Some(&token))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        not_json.assert_problem(400, "BadRequest");
    }
    // No body at all is an empty claim request.
    let no_body = server
        .send(server.request(Method::POST, "/v1/workers/w/claim", Some(&token)))
        .await;
    assert_ne!(no_body.status, 400, "{}", no_body.text);

    let large = server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": "t", "args": {"blob": "x".repeat(10_000)}}),
        )
        .await;
    large.assert_problem(413, "PayloadTooLarge");

    let wrong_type = server.post("/v1/jobs", &producer, json!(["t"])).await;
    wrong_type.assert_problem(422, "ValidationFailed");
    assert_eq!(wrong_type.body["pointer"], "");
    server.stop().await;
}

#[tokio::test]
async fn tokens_and_roles() {
    let database = TestDatabase::create("http_auth").await;
    let server = TestServer::start(&database, "auth", |config| {
        config.jwt.audience = Some("pdoflow".into());
    })
    .await;
    let producer = server.roles.producer.clone();
    let admin = server.roles.admin.clone();
    let claims = |role: &str| json!({"role": role, "aud": "pdoflow", "exp": now() + 60});
    let send = |token: Option<String>| {
        let request = server.request(Method::GET, "/v1/jobs", token.as_deref());
        server.send(request)
    };

    let ok = send(Some(token_with(claims(&producer), SECRET))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let none = send(None).await;
    none.assert_problem(401, "Unauthorized");
    assert_eq!(none.header("www-authenticate"), "Bearer");

    for (token, why) in [
        (
            token_with(claims(&producer), b"another secret, not ours"),
            "signature",
        ),
        (
            token_with(
                json!({"role": producer, "aud": "pdoflow", "exp": now() - 1}),
                SECRET,
            ),
            "expired",
        ),
        (
            token_with(
                json!({"role": producer, "aud": "pdoflow", "nbf": now() + 600}),
                SECRET,
            ),
            "not valid yet",
        ),
        (
            token_with(json!({"aud": "pdoflow"}), SECRET),
            "no role claim",
        ),
        (
            token_with(json!({"role": producer, "aud": "other"}), SECRET),
            "aud",
        ),
        (token_with(json!({"role": producer}), SECRET), "aud"),
        (token_with(claims("none"), SECRET), "\"none\""),
        ("not.a.token".to_owned(), "malformed"),
    ] {
        let response = send(Some(token)).await;
        response.assert_problem(401, "Unauthorized");
        assert!(
            response
                .header("www-authenticate")
                .starts_with("Bearer error=\"invalid_token\""),
            "{why}: {:?}",
            response.headers
        );
        assert!(
            response.body["detail"].as_str().unwrap().contains(why),
            "{why}: {}",
            response.text
        );
    }

    // Roles the database does not have, or the login may not become.
    for role in [
        "http_auth_no_such_role".to_owned(),
        server.roles.stranger.clone(),
    ] {
        let response = send(Some(token_with(claims(&role), SECRET))).await;
        response.assert_problem(401, "Unauthorized");
        assert_eq!(response.body["role"], role.as_str());
    }

    // The database decides what a role may do: a producer cancelling.
    let job = server
        .send(
            server
                .request(
                    Method::POST,
                    "/v1/jobs",
                    Some(&token_with(claims(&producer), SECRET)),
                )
                .json(&json!({"task": "t"})),
        )
        .await;
    let cancel = format!("/v1/jobs/{}/cancel", id_of(&job.body));
    let forbidden = server
        .send(
            server
                .request(
                    Method::POST,
                    &cancel,
                    Some(&token_with(claims(&producer), SECRET)),
                )
                .json(&json!({})),
        )
        .await;
    forbidden.assert_problem(403, "Forbidden");
    let allowed = server
        .send(
            server
                .request(
                    Method::POST,
                    &cancel,
                    Some(&token_with(claims(&admin), SECRET)),
                )
                .json(&json!({})),
        )
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);

    // No token needed on these.
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        let response = server.send(server.request(Method::GET, path, None)).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text);
    }
    server.stop().await;

    // An anonymous role: requests without a token run as it.
    let anonymous = TestServer::start(&database, "auth", |config| {
        config.anon_role = Some("http_auth_producer".into());
        config.jwt.secret = None;
    })
    .await;
    let listed = anonymous
        .send(anonymous.request(Method::GET, "/v1/jobs", None))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let created = anonymous
        .send(
            anonymous
                .request(Method::POST, "/v1/jobs", None)
                .json(&json!({"task": "anon"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["enqueued_by"], "http_auth_producer");
    // With no key configured, no token can be checked.
    anonymous
        .get("/v1/jobs", "http_auth_producer")
        .await
        .assert_problem(401, "Unauthorized");
    anonymous.stop().await;
}

#[tokio::test]
async fn es256_tokens_with_a_public_key() {
    let database = TestDatabase::create("http_es256").await;
    let key = rcgen::KeyPair::generate().expect("an EC key");
    let public = key.public_key_pem();
    let server = TestServer::start(&database, "es256", |config| {
        config.jwt.secret = None;
        config.jwt.public_key = Some(pdoflow_server::PublicKey::Pem(public.into_bytes()));
    })
    .await;
    let sign = |algorithm, role: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(algorithm),
            &json!({"role": role, "exp": now() + 60}),
            &jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let producer = server.roles.producer.clone();
    let ok = server
        .send(server.request(
            Method::GET,
            "/v1/jobs",
            Some(&sign(jsonwebtoken::Algorithm::ES256, &producer)),
        ))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // HS256 is not accepted where only a public key is configured.
    let hs = server
        .send(server.request(Method::GET, "/v1/jobs", Some(&token(&producer))))
        .await;
    hs.assert_problem(401, "Unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn rs256_tokens_with_a_public_key_file() {
    // A 2048-bit RSA key pair made for this test only (openssl genpkey).
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let private = std::fs::read(fixtures.join("rs256-test-private.pem")).expect("the test key");
    let database = TestDatabase::create("http_rs256").await;
    let server = TestServer::start(&database, "rs256", |config| {
        config.jwt.secret = None;
        config.jwt.public_key = Some(pdoflow_server::PublicKey::File(
            fixtures.join("rs256-test-public.pem"),
        ));
    })
    .await;
    let sign = |algorithm, role: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(algorithm),
            &json!({"role": role, "exp": now() + 60}),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap()
    };
    let producer = server.roles.producer.clone();
    let ok = server
        .send(server.request(
            Method::GET,
            "/v1/jobs",
            Some(&sign(jsonwebtoken::Algorithm::RS256, &producer)),
        ))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // Another RSA algorithm with the same key is not accepted: RS256 only.
    let ps = server
        .send(server.request(
            Method::GET,
            "/v1/jobs",
            Some(&sign(jsonwebtoken::Algorithm::RS512, &producer)),
        ))
        .await;
    ps.assert_problem(401, "Unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn pages_are_stable_while_jobs_are_added() {
    let database = TestDatabase::create("http_pages").await;
    let server = TestServer::start(&database, "pages", |_| {}).await;
    let producer = server.roles.producer.clone();
    let client = database.connect().await;
    let existing: HashSet<String> = client
        .query(
            "SELECT id::text FROM pdoflow.enqueue_many('page',
                 (SELECT array_agg('{}'::jsonb) FROM generate_series(1, 250)))",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();

    // Another session adds jobs all along.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let inserter = database.connect().await;
    let adding = tokio::spawn(async move {
        let mut added = 0;
        loop {
            if stopped.try_recv().is_ok() {
                return added;
            }
            inserter
                .execute("SELECT pdoflow.enqueue('page')", &[])
                .await
                .unwrap();
            added += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/jobs?task=page&limit=17&cursor={cursor}"),
            None => "/v1/jobs?task=page&limit=17".to_owned(),
        };
        let page = server.get(&path, &producer).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 17);
        seen.extend(
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    let added = adding.await.unwrap();
    assert!(added > 0, "jobs were added while paging");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no job twice");
    for id in &existing {
        assert!(unique.contains(id), "job {id} skipped");
    }
    let sorted = {
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        sorted
    };
    assert_eq!(seen, sorted, "newest first");
    server.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let database = TestDatabase::create("http_openapi").await;
    let server = TestServer::start(&database, "openapi", |_| {}).await;
    let document = server
        .send(server.request(Method::GET, "/v1/openapi.json", None))
        .await;
    assert_eq!(document.status, 200, "{}", document.text);
    let document = document.body;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        document["openapi"]
    );
    let routes = [
        ("/v1/job-types", &["get", "post"][..]),
        ("/v1/job-types/{name}", &["get", "put", "delete"]),
        ("/v1/jobs", &["get", "post"]),
        ("/v1/jobs/batch", &["post"]),
        ("/v1/jobs/{id}", &["get"]),
        ("/v1/jobs/{id}/cancel", &["post"]),
        ("/v1/jobs/{id}/retry", &["post"]),
        ("/v1/jobs/{id}/attempts", &["get"]),
        ("/v1/jobs/{id}/heartbeat", &["post"]),
        ("/v1/jobs/{id}/progress", &["post"]),
        ("/v1/jobs/{id}/finish", &["post"]),
        ("/v1/jobs/{id}/release", &["post"]),
        ("/v1/workers", &["get"]),
        ("/v1/workers/{name}", &["get", "put"]),
        ("/v1/workers/{name}/claim", &["post"]),
        ("/v1/postings", &["get", "post"]),
        ("/v1/postings/{id}", &["get", "delete"]),
        ("/v1/postings/{id}/pause", &["post"]),
        ("/v1/postings/{id}/resume", &["post"]),
        ("/v1/postings/{id}/cancel", &["post"]),
        ("/v1/dags", &["post"]),
        ("/v1/queues", &["get"]),
        ("/v1/queues/{name}/pause", &["post"]),
        ("/v1/queues/{name}/resume", &["post"]),
        ("/v1/stats", &["get"]),
        ("/v1/openapi.json", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ];
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        routes.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in routes {
        for method in methods {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path}");
            if path.starts_with("/v1/") && path != "/v1/openapi.json" {
                assert_eq!(
                    operation["security"],
                    json!([{"bearer": []}]),
                    "{method} {path}"
                );
                assert!(responses.contains_key("401"), "{method} {path}");
                assert!(responses.contains_key("403"), "{method} {path}");
            }
            if operation.get("requestBody").is_some() {
                assert!(responses.contains_key("422"), "{method} {path}");
            }
        }
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        paths["/v1/jobs/{id}"]["get"]["responses"]["404"]["content"]["application/problem+json"]
            ["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_in_prometheus_text() {
    let database = TestDatabase::create("http_metrics").await;
    let server = TestServer::start(&database, "metrics", |_| {}).await;
    let producer = server.roles.producer.clone();
    let worker = server.roles.worker.clone();
    for _ in 0..3 {
        server
            .post("/v1/jobs", &producer, json!({"task": "m", "queue": "mq"}))
            .await;
    }
    server
        .put("/v1/workers/metrics-worker", &worker, json!({}))
        .await;
    let claimed = server
        .post(
            "/v1/workers/metrics-worker/claim",
            &worker,
            json!({"job_types": ["m"]}),
        )
        .await;
    let job = claimed.body["jobs"][0].clone();
    server
        .post(
            &format!("/v1/jobs/{}/finish", job["id"].as_str().unwrap()),
            &worker,
            json!({"attempt": job["attempt"]}),
        )
        .await;
    server
        .get(&format!("/v1/jobs/{}", Uuid::now_v7()), &producer)
        .await;

    let metrics = server
        .send(server.request(Method::GET, "/metrics", None))
        .await;
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    assert!(metrics.header("content-type").starts_with("text/plain"));
    let text = metrics.text;
    for expected in [
        "pdoflow_jobs{queue=\"mq\",state=\"waiting\"} 2",
        "pdoflow_jobs{queue=\"mq\",state=\"running\"} 0",
        "pdoflow_oldest_due_job_age_seconds{queue=\"mq\"}",
        "pdoflow_workers_alive 1",
        "pdoflow_queue_paused{queue=\"mq\"} 0",
        "# TYPE pdoflow_http_request_duration_seconds histogram",
        "pdoflow_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/jobs\",status=\"201\",le=\"",
        "pdoflow_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/jobs/{id}\",status=\"404\"} 1",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|line| line.contains("route=\"/v1/jobs/")
                && !line.contains("route=\"/v1/jobs/{id}")),
        "routes are templates, not paths:\n{text}"
    );
    for expected in [
        "pdoflow_jobs_enqueued_total{queue=\"mq\"} 3",
        "pdoflow_jobs_claimed_total{queue=\"mq\"} 1",
        "pdoflow_jobs_succeeded_total{queue=\"mq\"} 1",
        "# TYPE pdoflow_jobs_failed_total counter",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let database = TestDatabase::create("http_health").await;
    let server = TestServer::start(&database, "health", |_| {}).await;
    let healthz = server
        .send(server.request(Method::GET, "/healthz", None))
        .await;
    assert_eq!(
        (healthz.status, healthz.body.clone()),
        (200, json!({"status": "ok"}))
    );
    let readyz = server
        .send(server.request(Method::GET, "/readyz", None))
        .await;
    assert_eq!(readyz.status, 200, "{}", readyz.text);
    server.stop().await;

    // A database that cannot be reached: up, not ready, and the API says 503.
    let roles = pdoflow_tests::http::Roles::create(&database, "health").await;
    let mut config = pdoflow_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    config.jwt.secret = Some(SECRET.to_vec());
    config.pool_timeout = Duration::from_millis(500);
    let unreachable: pdoflow_server::Connector = std::sync::Arc::new(|| {
        Box::pin(async { Err("connection refused (the test's)".to_owned()) })
    });
    let down = pdoflow_server::Server::bind(config, unreachable)
        .await
        .unwrap();
    let address = down.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(down.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let healthz = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(readyz.headers()["content-type"], "application/problem+json");
    let jobs = client
        .get(format!("http://{address}/v1/jobs"))
        .bearer_auth(token(&roles.producer))
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), 503);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_database_without_pdoflow_0_13_is_a_503_that_says_so() {
    let database = TestDatabase::create_empty("http_no_extension").await;
    let server = TestServer::start(&database, "noext", |config| {
        config.pool_timeout = Duration::from_secs(2);
    })
    .await;
    let expected = format!(
        "pdoflow 0.13.0 or later is needed in database {} (found none): CREATE EXTENSION pdoflow",
        database.name()
    );
    let jobs = server.get("/v1/jobs", &server.roles.login).await;
    let problem = jobs.assert_problem(503, "ServiceUnavailable");
    assert_eq!(problem["detail"], expected.as_str(), "{}", jobs.text);
    let readyz = server
        .send(server.request(Method::GET, "/readyz", None))
        .await;
    readyz.assert_problem(503, "ServiceUnavailable");
    assert!(
        readyz.body["detail"].as_str().unwrap().ends_with(&expected),
        "{}",
        readyz.text
    );
    server.stop().await;
}

#[tokio::test]
async fn json_the_database_keeps_is_read_back_as_kept() {
    // jsonb keeps numbers as numeric: one at f64's edge must not make the
    // job unreadable (the server passes stored JSON on unparsed).
    let database = TestDatabase::create("http_raw_json").await;
    let server = TestServer::start(&database, "rawjson", |_| {}).await;
    let producer = server.roles.producer.clone();
    let created = server
        .post(
            "/v1/jobs",
            &producer,
            json!({"task": "edge", "args": {"big": 1.7976931348623157e308}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    // The test's own parser rounds that number past f64::MAX too: the
    // answer is checked as text.
    assert!(
        created.text.contains("1797693134862315"),
        "{}",
        created.text
    );
    let location = created.header("location").to_owned();
    let read = server.get(&location, &producer).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert!(read.text.contains("\"big\""), "{}", read.text);
    let listed = server.get("/v1/jobs?task=edge", &producer).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    server.stop().await;
}
