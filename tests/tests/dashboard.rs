//! The web dashboard over HTTP (the browser tests in tests/dashboard/ drive
//! it in Chromium): signing in with a cookie, pages as the signed-in role,
//! actions with CSRF tokens and polite refusals, the live feed's single
//! connection, and the GoodJob-style JSON.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pdoflow_tests::http::{token, TestServer};
use pdoflow_tests::TestDatabase;
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use serde_json::Value;
use uuid::Uuid;

/// A browser: no redirects followed, so that they can be checked.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

struct Page {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        attribute_after(&self.text, "name=\"csrf\" value=\"").expect("a CSRF field")
    }
}

/// The text from `marker` to the next double quote.
fn attribute_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_owned())
}

async fn fetch(request: reqwest::RequestBuilder) -> Page {
    let response = request.send().await.expect("the server answers");
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.expect("a body"),
    }
}

/// The sign-in cookie of `role`: one token per role for the whole test
/// run (a token minted a second later is another token, whose pages carry
/// other CSRF tokens).
fn cookie(role: &str) -> String {
    static TOKENS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let mut tokens = TOKENS.lock().unwrap();
    let token = tokens
        .get_or_insert_with(HashMap::new)
        .entry(role.to_owned())
        .or_insert_with(|| token(role))
        .clone();
    format!("pdoflow_session={token}")
}

async fn get(server: &TestServer, path: &str, role: &str) -> Page {
    fetch(
        browser()
            .get(server.url(path))
            .header("cookie", cookie(role)),
    )
    .await
}

/// An action as htmx sends it: the button's form, the CSRF header.
async fn act(server: &TestServer, path: &str, role: &str, csrf: &str, action: &str) -> Page {
    fetch(
        browser()
            .post(server.url(path))
            .header("cookie", cookie(role))
            .header("hx-request", "true")
            .header("x-csrf-token", csrf)
            .form(&[("action", action)]),
    )
    .await
}

async fn job_state(database: &TestDatabase, id: Uuid) -> String {
    database
        .connect()
        .await
        .query_one("SELECT state FROM pdoflow.jobs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn enqueue(database: &TestDatabase, task: &str, args: &str, queue: &str) -> Uuid {
    database
        .connect()
        .await
        .query_one(
            "SELECT pdoflow.enqueue($1, $2::text::jsonb, queue => $3)",
            &[&task, &args, &queue],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn signing_in_keeps_the_token_in_a_strict_http_only_cookie() {
    let database = TestDatabase::create("dash_sign_in").await;
    let server = TestServer::start(&database, "dash_sign_in", |_| {}).await;
    let producer = server.roles.producer.clone();
    let client = browser();

    let unsigned = fetch(client.get(server.url("/dashboard/jobs?state=failed"))).await;
    assert_eq!(unsigned.status, 303);
    assert_eq!(
        unsigned.header("location"),
        "/dashboard/login?next=%2Fdashboard%2Fjobs%3Fstate%3Dfailed"
    );
    let htmx = fetch(
        client
            .get(server.url("/dashboard/jobs"))
            .header("hx-request", "true"),
    )
    .await;
    assert_eq!(htmx.status, 204);
    assert!(htmx.header("hx-redirect").starts_with("/dashboard/login"));
    let root = fetch(client.get(server.url("/"))).await;
    assert_eq!(root.header("location"), "/dashboard/");

    let form = fetch(client.get(server.url("/dashboard/login"))).await;
    assert_eq!(form.status, 200);
    assert!(form.text.contains("id=\"login-form\""), "{}", form.text);
    assert!(form
        .header("content-security-policy")
        .contains("script-src 'self'"));

    let bad = fetch(
        client
            .post(server.url("/dashboard/login"))
            .form(&[("token", "not.a.token")]),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.text.contains("role=\"alert\""), "{}", bad.text);
    assert!(bad.header("set-cookie").is_empty());
    // A well-signed token for a role the server cannot switch to.
    let unknown = fetch(
        client
            .post(server.url("/dashboard/login"))
            .form(&[("token", token("dash_no_such_role").as_str())]),
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert!(
        unknown.text.contains("dash_no_such_role"),
        "{}",
        unknown.text
    );

    let signed = fetch(client.post(server.url("/dashboard/login")).form(&[
        ("token", token(&producer).as_str()),
        ("next", "https://evil.example/"),
    ]))
    .await;
    assert_eq!(signed.status, 303, "{}", signed.text);
    assert_eq!(signed.header("location"), "/dashboard/");
    let set_cookie = signed.header("set-cookie");
    assert!(set_cookie.starts_with("pdoflow_session=ey"), "{set_cookie}");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(part), "{part} in {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let behind_tls = fetch(
        client
            .post(server.url("/dashboard/login"))
            .header("x-forwarded-proto", "https")
            .form(&[("token", token(&producer).as_str())]),
    )
    .await;
    assert!(behind_tls.header("set-cookie").contains("Secure"));

    let page = get(&server, "/dashboard/jobs", &producer).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text
            .contains(&format!("id=\"signed-in-role\">{producer}<")),
        "{}",
        page.text
    );
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.header("content-type").starts_with("text/html"));

    // A cookie holding a token signed with another key.
    let forged = fetch(client.get(server.url("/dashboard/")).header(
        "cookie",
        "pdoflow_session=eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoieCJ9.AAAA",
    ))
    .await;
    assert_eq!(forged.status, 303);
    assert!(
        forged.header("location").ends_with("&why=invalid"),
        "{}",
        forged.header("location")
    );
    let said = fetch(client.get(server.url("/dashboard/login?why=invalid"))).await;
    assert!(said.text.contains("no longer accepted"), "{}", said.text);
    // No text from the URL reaches the page.
    let planted = fetch(client.get(server.url("/dashboard/login?why=Call+us+at+555"))).await;
    assert!(!planted.text.contains("555"), "{}", planted.text);
    // An expired token in the cookie: back to the login page, which says so.
    let expired = pdoflow_tests::http::token_with(
        serde_json::json!({"role": producer, "exp": pdoflow_tests::http::now() - 10}),
        pdoflow_tests::http::SECRET,
    );
    let stale = fetch(
        client
            .get(server.url("/dashboard/queues"))
            .header("cookie", format!("pdoflow_session={expired}")),
    )
    .await;
    assert_eq!(
        stale.header("location"),
        "/dashboard/login?next=%2Fdashboard%2Fqueues&why=expired"
    );
    let unknown_page = get(&server, "/dashboard/nowhere", &producer).await;
    assert_eq!(unknown_page.status, 404);
    assert!(unknown_page.header("content-type").starts_with("text/html"));

    let csrf = page.csrf();
    let out = fetch(
        client
            .post(server.url("/dashboard/logout"))
            .header("cookie", cookie(&producer))
            .form(&[("csrf", csrf.as_str())]),
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let refused = fetch(
        client
            .post(server.url("/dashboard/logout"))
            .header("cookie", cookie(&producer))
            .form(&[("csrf", "forged")]),
    )
    .await;
    assert_eq!(refused.status, 403);
    server.stop().await;
}

#[tokio::test]
async fn actions_run_as_the_signed_in_role_and_need_the_csrf_token() {
    let database = TestDatabase::create("dash_actions").await;
    let server = TestServer::start(&database, "dash_actions", |_| {}).await;
    let producer = server.roles.producer.clone();
    let admin = server.roles.admin.clone();
    let job = enqueue(&database, "dash-act", r#"{"n": 1}"#, "dq").await;
    let path = format!("/dashboard/jobs/{job}");

    // A producer sees the page and its buttons, and is told politely that
    // cancelling is not for its role.
    let page = get(&server, &path, &producer).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("value=\"cancel\""), "{}", page.text);
    let producer_csrf = page.csrf();
    let refused = act(&server, &path, &producer, &producer_csrf, "cancel").await;
    assert_eq!(refused.status, 200, "htmx swaps only 2xx answers");
    assert!(refused.text.contains("flash-refused"), "{}", refused.text);
    assert!(
        refused.text.contains("not allowed to cancel jobs"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("pdoflow_admin"), "{}", refused.text);
    assert_eq!(job_state(&database, job).await, "queued");

    // The admin's own token, nothing else, opens the door.
    let admin_csrf = get(&server, &path, &admin).await.csrf();
    assert_ne!(admin_csrf, producer_csrf);
    for csrf in ["", "forged", producer_csrf.as_str()] {
        let answer = act(&server, &path, &admin, csrf, "cancel").await;
        assert!(
            answer.text.contains("security token"),
            "{csrf}: {}",
            answer.text
        );
    }
    let cross_site = fetch(
        browser()
            .post(server.url(&path))
            .header("cookie", cookie(&admin))
            .header("hx-request", "true")
            .header("x-csrf-token", &admin_csrf)
            .header("origin", "http://evil.example")
            .form(&[("action", "cancel")]),
    )
    .await;
    assert!(
        cross_site.text.contains("security token"),
        "{}",
        cross_site.text
    );
    let fetched_cross_site = fetch(
        browser()
            .post(server.url(&path))
            .header("cookie", cookie(&admin))
            .header("hx-request", "true")
            .header("x-csrf-token", &admin_csrf)
            .header("sec-fetch-site", "cross-site")
            .form(&[("action", "cancel")]),
    )
    .await;
    assert!(
        fetched_cross_site.text.contains("security token"),
        "{}",
        fetched_cross_site.text
    );
    assert_eq!(job_state(&database, job).await, "queued");

    let cancelled = act(&server, &path, &admin, &admin_csrf, "cancel").await;
    assert_eq!(cancelled.status, 200);
    assert!(cancelled.text.contains("flash-done"), "{}", cancelled.text);
    assert_eq!(cancelled.header("hx-trigger"), "pdoflow:refresh");
    assert_eq!(job_state(&database, job).await, "cancelled");
    let again = act(&server, &path, &admin, &admin_csrf, "cancel").await;
    assert!(again.text.contains("already ended"), "{}", again.text);

    // A form sent without htmx (the CSRF token as a field) goes back to
    // the job's page.
    let plain = fetch(
        browser()
            .post(server.url(&path))
            .header("cookie", cookie(&admin))
            .form(&[("action", "retry"), ("csrf", admin_csrf.as_str())]),
    )
    .await;
    assert_eq!(plain.status, 303, "{}", plain.text);
    assert_eq!(plain.header("location"), path);
    assert_eq!(job_state(&database, job).await, "queued");
    let unknown = act(&server, &path, &admin, &admin_csrf, "explode").await;
    assert!(unknown.text.contains("no action"), "{}", unknown.text);

    // Postings, queues, schedules.
    let client = database.connect().await;
    let posting: Uuid = client
        .query_one("SELECT pdoflow.create_posting('dash posting')", &[])
        .await
        .unwrap()
        .get(0);
    let posting_path = format!("/dashboard/postings/{posting}");
    let refused = act(&server, &posting_path, &producer, &producer_csrf, "pause").await;
    assert!(
        refused.text.contains("not allowed to pause postings"),
        "{}",
        refused.text
    );
    let paused = act(&server, &posting_path, &admin, &admin_csrf, "pause").await;
    assert!(paused.text.contains("flash-done"), "{}", paused.text);
    let status: String = client
        .query_one(
            "SELECT status FROM pdoflow.posting_status WHERE id = $1",
            &[&posting],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "paused");

    let queue_path = "/dashboard/queues/dq";
    act(&server, queue_path, &admin, &admin_csrf, "pause").await;
    let paused: bool = client
        .query_one("SELECT paused FROM pdoflow.queues WHERE queue = 'dq'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(paused);
    let queues = get(&server, "/dashboard/queues", &producer).await;
    assert!(queues.text.contains("data-queue=\"dq\""), "{}", queues.text);

    // Schedules are their owners' to pause (producers), and admins'.
    client
        .batch_execute(&format!(
            "SET ROLE {producer};
             SELECT pdoflow.schedule('dash-nightly', '0 3 * * *', 'report');
             RESET ROLE;
             SELECT pdoflow.schedule('dash-other', '0 4 * * *', 'report');"
        ))
        .await
        .unwrap();
    let not_its = act(
        &server,
        "/dashboard/schedules/dash-other",
        &producer,
        &producer_csrf,
        "pause",
    )
    .await;
    assert!(
        not_its.text.contains("belongs to role postgres"),
        "{}",
        not_its.text
    );
    let schedule = act(
        &server,
        "/dashboard/schedules/dash-nightly",
        &producer,
        &producer_csrf,
        "pause",
    )
    .await;
    assert!(schedule.text.contains("is paused"), "{}", schedule.text);
    let schedules = get(&server, "/dashboard/schedules", &producer).await;
    assert!(
        schedules.text.contains("value=\"resume\""),
        "{}",
        schedules.text
    );
    server.stop().await;
}

#[tokio::test]
async fn pages_show_filters_pages_graphs_and_what_a_role_may_not_read() {
    let database = TestDatabase::create("dash_pages").await;
    let server = TestServer::start(&database, "dash_pages", |_| {}).await;
    let producer = server.roles.producer.clone();
    let admin = server.roles.admin.clone();
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT pdoflow.enqueue('page-job', jsonb_build_object('n', i), queue => 'many')
             FROM generate_series(1, 60) AS i;
             SELECT pdoflow.enqueue('needle', '{\"city\": \"Zanzibar\"}', queue => 'other');",
        )
        .await
        .unwrap();
    let posting: Uuid = client
        .query_one("SELECT pdoflow.create_posting('graph')", &[])
        .await
        .unwrap()
        .get(0);
    let dag = r#"{"nodes": [{"name": "fetch", "task": "fetch"},
                            {"name": "left", "task": "parse", "after": ["fetch"]},
                            {"name": "right", "task": "parse", "after": ["fetch"]},
                            {"name": "join", "task": "join", "after": ["left", "right"]}]}"#;
    let nodes = client
        .query(
            "SELECT name, id FROM pdoflow.submit_dag($1::text::jsonb, $2)",
            &[&dag, &posting],
        )
        .await
        .unwrap();
    let left: Uuid = nodes
        .iter()
        .find(|row| row.get::<_, String>(0) == "left")
        .unwrap()
        .get(1);

    let all = get(&server, "/dashboard/jobs?queue=many", &producer).await;
    assert_eq!(all.text.matches("<tr data-job-id=").count(), 50);
    let next = attribute_after(&all.text, "rel=\"next\" href=\"")
        .expect("a next page")
        .replace("&amp;", "&");
    assert!(next.contains("queue=many"), "{next}");
    let rest = get(&server, &next, &producer).await;
    assert_eq!(rest.text.matches("<tr data-job-id=").count(), 10);
    assert!(!rest.text.contains("rel=\"next\""));

    let found = get(&server, "/dashboard/jobs?q=zanzi", &producer).await;
    assert_eq!(
        found.text.matches("<tr data-job-id=").count(),
        1,
        "{}",
        found.text
    );
    assert!(found.text.contains(">needle<"));
    let literal = get(&server, "/dashboard/jobs?q=%25", &producer).await;
    assert_eq!(literal.text.matches("<tr data-job-id=").count(), 0);
    let blocked = get(&server, "/dashboard/jobs?state=blocked", &producer).await;
    assert_eq!(blocked.text.matches("<tr data-job-id=").count(), 3);
    let bad = get(
        &server,
        "/dashboard/jobs?state=sleeping&posting=nope",
        &producer,
    )
    .await;
    assert_eq!(bad.status, 200);
    assert!(bad.text.contains("There is no state"), "{}", bad.text);
    assert!(bad.text.contains("is not a posting id"), "{}", bad.text);

    let job = get(&server, &format!("/dashboard/jobs/{left}"), &producer).await;
    assert_eq!(job.status, 200);
    assert!(
        job.text.contains("data-testid=\"job-state\">blocked<"),
        "{}",
        job.text
    );
    assert!(job.text.contains("id=\"timeline\""));
    assert!(job.text.contains("<svg id=\"dag\""), "{}", job.text);
    let parents = &job.text[job.text.find("id=\"parents\"").unwrap()..];
    assert!(parents.contains(">fetch<"), "{parents}");
    let children = &job.text[job.text.find("id=\"children\"").unwrap()..];
    assert!(children.contains(">join<"), "{children}");

    let graph = get(
        &server,
        &format!("/dashboard/postings/{posting}"),
        &producer,
    )
    .await;
    assert_eq!(
        graph.text.matches("<g class=\"node").count(),
        4,
        "{}",
        graph.text
    );
    assert_eq!(graph.text.matches("<path class=\"edge\"").count(), 4);
    let postings = get(&server, "/dashboard/postings", &producer).await;
    assert!(postings
        .text
        .contains(&format!("data-posting-id=\"{posting}\"")));
    assert!(postings.text.contains("<progress"), "{}", postings.text);

    let missing = get(
        &server,
        &format!("/dashboard/jobs/{}", Uuid::nil()),
        &producer,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("content-type").starts_with("text/html"));
    assert!(missing.text.contains("There is no job"), "{}", missing.text);
    let not_uuid = get(&server, "/dashboard/jobs/abc", &producer).await;
    assert_eq!(not_uuid.status, 404);

    // The workers registry is the admins': a producer is told so, in a
    // page that works.
    client
        .batch_execute("SELECT pdoflow.register_worker('dash-worker', ARRAY['page-job'])")
        .await
        .unwrap();
    let workers = get(&server, "/dashboard/workers", &producer).await;
    assert_eq!(workers.status, 200);
    assert!(workers
        .text
        .contains("not allowed to read the workers registry"));
    let workers = get(&server, "/dashboard/workers", &admin).await;
    assert!(
        workers.text.contains("data-worker=\"dash-worker\""),
        "{}",
        workers.text
    );

    // Every page loads its scripts from the server, hashed and cacheable.
    let overview = get(&server, "/dashboard/", &producer).await;
    let script = attribute_after(&overview.text, "<script src=\"").unwrap();
    assert!(script.starts_with("/dashboard/assets/"), "{script}");
    let asset = fetch(browser().get(server.url(&script))).await;
    assert_eq!(asset.status, 200);
    assert!(asset.header("content-type").starts_with("text/javascript"));
    assert!(asset.header("cache-control").contains("immutable"));
    assert!(
        !overview.text.contains("http://") && !overview.text.contains("https://"),
        "no page loads anything from elsewhere"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_jobs_page_lists_every_attempt_with_its_worker_and_error() {
    let database = TestDatabase::create("dash_attempts").await;
    let server = TestServer::start(&database, "dash_attempts", |_| {}).await;
    let producer = server.roles.producer.clone();
    let id = enqueue(&database, "flaky", "{}", "attempts").await;
    let client = database.connect().await;
    // Attempt 1 fails, 2 loses its lease, 3 is released, 4 fails for good:
    // each statement in its own transaction, as workers and the sweeper do.
    for statement in [
        "SET pdoflow.retry_backoff_base = 0",
        "SELECT pdoflow.finish(id, attempt, error => 'first <failure>')
         FROM pdoflow.claim(1, ARRAY['attempts'], worker => 'worker-one')",
        "SELECT count(*) FROM pdoflow.claim(1, ARRAY['attempts'], worker => 'worker-two',
                                            lease => '1 millisecond')",
        "SELECT pg_sleep(0.01)",
        "SELECT expired_requeued FROM pdoflow.sweep()",
        // Due now, whoever took the lease back (and with what backoff).
        "UPDATE pdoflow.active_jobs SET run_at = now() WHERE task = 'flaky'",
        "SELECT pdoflow.release(id, attempt)
         FROM pdoflow.claim(1, ARRAY['attempts'], worker => 'worker-three')",
    ] {
        client.batch_execute(statement).await.unwrap();
    }
    let page = get(&server, &format!("/dashboard/jobs/{id}"), &producer).await;
    assert_eq!(page.status, 200);
    let attempts = &page.text[page
        .text
        .find("id=\"attempts\"")
        .expect("an attempts table")..];
    let attempts = &attempts[..attempts.find("</table>").unwrap()];
    for expected in [
        "first &lt;failure&gt;",
        "worker-one",
        "state-failed",
        "worker-two",
        "state-lease-expired",
        "lease of attempt 2 expired",
        "worker-three",
        "state-released",
    ] {
        assert!(attempts.contains(expected), "{expected} in {attempts}");
    }
    let timeline = &page.text[page.text.find("id=\"timeline\"").unwrap()..];
    assert!(
        timeline.contains("Attempt 1 claimed by worker-one"),
        "{timeline}"
    );
    assert!(
        timeline.contains("Attempt 1 failed: first &lt;failure&gt;"),
        "{timeline}"
    );
    assert!(timeline.contains("Attempt 3 released"), "{timeline}");

    // The last attempt fails for good: listed once, with its error.
    client
        .batch_execute("UPDATE pdoflow.active_jobs SET max_attempts = 4 WHERE task = 'flaky'")
        .await
        .unwrap();
    client
        .batch_execute(
            "SELECT pdoflow.finish(id, attempt, error => 'for good')
             FROM pdoflow.claim(1, ARRAY['attempts'], worker => 'worker-four')",
        )
        .await
        .unwrap();
    assert_eq!(job_state(&database, id).await, "failed");
    let page = get(&server, &format!("/dashboard/jobs/{id}"), &producer).await;
    let attempts = &page.text[page.text.find("id=\"attempts\"").unwrap()..];
    let attempts = &attempts[..attempts.find("</table>").unwrap()];
    assert_eq!(attempts.matches("<tr>").count(), 1 + 4, "{attempts}");
    assert_eq!(attempts.matches("for good").count(), 1, "{attempts}");
    server.stop().await;
}

/// The server's connections to the database, by its application_name.
async fn connections(database: &TestDatabase, application_name: &str) -> i64 {
    database
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

/// Reads server-sent events from `response` until one named `name` comes
/// (None when the stream ends or `patience` passes).
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    name: &str,
    patience: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + patience;
    let marker = format!("event: {name}\n");
    loop {
        if let Some(start) = buffer.find(&marker) {
            let rest = &buffer[start + marker.len()..];
            if let Some(end) = rest.find("\n\n") {
                let data = rest[..end]
                    .lines()
                    .map(|line| line.strip_prefix("data:").unwrap_or(line).trim_start())
                    .collect::<Vec<_>>()
                    .join("\n");
                buffer.replace_range(..start + marker.len() + end + 2, "");
                return Some(data);
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .ok()?;
        match chunk {
            Ok(Some(bytes)) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn one_connection_feeds_every_browser_live() {
    let database = TestDatabase::create("dash_live").await;
    let server = TestServer::start(&database, "dash_live", |_| {}).await;
    let producer = server.roles.producer.clone();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut response = browser()
            .get(server.url("/dashboard/events"))
            .header("cookie", cookie(&producer))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let mut buffer = String::new();
        let overview = next_event(
            &mut response,
            &mut buffer,
            "overview",
            Duration::from_secs(10),
        )
        .await
        .expect("a first overview");
        assert!(overview.contains("count-waiting"), "{overview}");
        streams.push((response, buffer));
    }
    // 20 browsers watch through one connection (the feed's), beside the
    // long-poll hub's and the pooled one each stream borrowed for a moment
    // at its start (to check its role's privileges).
    let open = connections(&database, &server.application_name).await;
    assert!(open <= 3, "{open} connections for 20 live browsers");

    enqueue(&database, "dash-live", "{}", "live").await;
    for (response, buffer) in &mut streams {
        // Overviews read before the enqueue may come first.
        loop {
            let overview = next_event(response, buffer, "overview", Duration::from_secs(10))
                .await
                .expect("the overview with the new job");
            if overview.contains("data-queue=\"live\"") {
                break;
            }
        }
        let changed = next_event(response, buffer, "changed", Duration::from_secs(10)).await;
        assert!(changed.is_some());
        let throughput = next_event(response, buffer, "throughput", Duration::from_secs(15))
            .await
            .expect("chart data");
        let series: Value = serde_json::from_str(&throughput).unwrap();
        assert_eq!(series["t"].as_array().unwrap().len(), 60);
        let enqueued: i64 = series["enqueued"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_i64().unwrap())
            .sum();
        assert!(enqueued >= 1, "{series}");
    }
    let open = connections(&database, &server.application_name).await;
    assert!(open <= 3, "{open} connections for 20 live browsers");

    // The workers card is the admins' (pdoflow.workers): a producer's
    // stream never carries it, an admin's does.
    let admin = server.roles.admin.clone();
    let mut admin_stream = browser()
        .get(server.url("/dashboard/events"))
        .header("cookie", cookie(&admin))
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let card = next_event(
        &mut admin_stream,
        &mut buffer,
        "workers",
        Duration::from_secs(15),
    )
    .await
    .expect("the workers card");
    assert!(card.contains("count-workers"), "{card}");
    let (producer_stream, producer_buffer) = &mut streams[0];
    assert!(
        next_event(
            producer_stream,
            producer_buffer,
            "workers",
            Duration::from_secs(3)
        )
        .await
        .is_none(),
        "a producer's stream carried the workers card"
    );
    let overview = get(&server, "/dashboard/", &producer).await;
    assert!(!overview.text.contains("workers-card"), "{}", overview.text);
    let overview = get(&server, "/dashboard/", &admin).await;
    assert!(overview.text.contains("workers-card"), "{}", overview.text);

    // Without a sign-in there is no feed.
    let unsigned = browser()
        .get(server.url("/dashboard/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 303);
    drop(streams);
    // The server stops although browsers were watching (their streams end).
    server.stop().await;
}

#[tokio::test]
async fn goodjob_style_json_at_api_stats_and_api_jobs() {
    let database = TestDatabase::create("dash_compat").await;
    let server = TestServer::start(&database, "dash_compat", |_| {}).await;
    let producer = server.roles.producer.clone();
    let client = database.connect().await;
    client
        .batch_execute(
            "SELECT pdoflow.enqueue('c', '{\"k\": 1}', queue => 'cq') FROM generate_series(1, 3);
             SELECT pdoflow.enqueue('c', '{}', run_at => now() + interval '1 hour');",
        )
        .await
        .unwrap();
    let claimed = client
        .query(
            "SELECT id, attempt FROM pdoflow.claim(2, ARRAY['cq'], worker => 'w')",
            &[],
        )
        .await
        .unwrap();
    let (done, attempt): (Uuid, i32) = (claimed[0].get(0), claimed[0].get(1));
    client
        .execute(
            "SELECT pdoflow.finish($1, $2, NULL, '{\"ok\": true}')",
            &[&done, &attempt],
        )
        .await
        .unwrap();

    let stats = server.get("/api/stats", &producer).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    for (field, value) in [
        ("queued", 2),
        ("scheduled", 1),
        ("running", 1),
        ("finished", 1),
        ("failed", 0),
        ("total", 4),
    ] {
        assert_eq!(stats.body[field], value, "{field}: {}", stats.text);
    }
    // The sign-in cookie works too.
    let by_cookie = fetch(
        browser()
            .get(server.url("/api/stats"))
            .header("cookie", cookie(&producer)),
    )
    .await;
    assert_eq!(by_cookie.status, 200);

    let queued = server.get("/api/jobs?status=queued", &producer).await;
    let jobs = queued.body.as_array().expect("an array");
    assert_eq!(jobs.len(), 2, "{}", queued.text);
    for job in jobs {
        assert_eq!(job["status"], "queued");
        for field in [
            "id",
            "queue",
            "priority",
            "payload",
            "attempts",
            "max_attempts",
            "last_error",
            "run_at",
            "created_at",
            "updated_at",
        ] {
            assert!(job.get(field).is_some(), "{field} in {job}");
        }
    }
    let finished = server.get("/api/jobs?status=finished", &producer).await;
    let finished = finished.body.as_array().unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["id"], done.to_string());
    assert_eq!(finished[0]["result"]["ok"], true);
    assert_eq!(finished[0]["payload"]["k"], 1);
    let limited = server.get("/api/jobs?limit=1", &producer).await;
    assert_eq!(limited.body.as_array().unwrap().len(), 1);

    let bogus = server.get("/api/jobs?status=bogus", &producer).await;
    bogus.assert_problem(400, "BadRequest");
    assert_eq!(bogus.body["parameter"], "status");
    server
        .get("/api/jobs?limit=0", &producer)
        .await
        .assert_problem(400, "BadRequest");
    let anonymous = server
        .send(server.request(reqwest::Method::GET, "/api/stats", None))
        .await;
    anonymous.assert_problem(401, "Unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn the_dashboard_can_be_turned_off() {
    let database = TestDatabase::create("dash_off").await;
    let server = TestServer::start(&database, "dash_off", |config| {
        config.dashboard = false;
    })
    .await;
    let producer = server.roles.producer.clone();
    let page = get(&server, "/dashboard/", &producer).await;
    assert_eq!(page.status, 404);
    assert!(page
        .header("content-type")
        .starts_with("application/problem+json"));
    server
        .get("/api/stats", &producer)
        .await
        .assert_problem(404, "NotFound");
    assert_eq!(server.get("/v1/stats", &producer).await.status, 200);
    server.stop().await;
}
