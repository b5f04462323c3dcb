//! Random and hostile input for the SQL API: huge, empty, padded and
//! non-ASCII strings, SQL meta characters, NULLs, deep and huge JSON,
//! extreme numbers, timestamps and intervals, unknown ids, malformed job and
//! DAG documents. Whatever comes in, every call either works or fails with
//! a clean SQL error of an expected class (never an internal error, never a
//! lost connection or a crashed server), and afterwards the tables pass
//! `pdoflow.check_consistency()`.

use pdoflow_tests::TestDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// SQLSTATE classes a rejected call may end with: data exceptions (22),
/// program limits (54: sizes, nesting depth), object state (55), a retry
/// of a job whose unique key another job took (23505), a schedule that
/// does not exist (P0002).
const EXPECTED_CLASSES: &[&str] = &["22", "54", "55", "23", "P0"];

fn text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "\\PC{0,12}".prop_map(Some),
        Just(Some("default".to_owned())),
        Just(Some("t".to_owned())),
        Just(Some("x".repeat(129))),
        Just(Some("y".repeat(200_000))),
        Just(Some("'; DROP TABLE pdoflow.active_jobs; --".to_owned())),
        Just(Some("$$ || pg_sleep(10) || $$".to_owned())),
        Just(Some(" padded ".to_owned())),
        Just(Some("tab\there\nnewline".to_owned())),
        Just(Some("émoji 🚀 名前 \u{202e}rtl".to_owned())),
        Just(Some("a/b".to_owned())),
        Just(Some("active".to_owned())),
        Just(Some("paused".to_owned())),
        Just(Some("cancelled".to_owned())),
        Just(Some("any".to_owned())),
    ]
}

fn json() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("{}".to_owned())),
        Just(Some("null".to_owned())),
        Just(Some(r#"{"n": 1.000000000000000000000001, "big": 1e400}"#.to_owned())),
        Just(Some(format!("{}1{}", "[".repeat(200), "]".repeat(200)))),
        Just(Some(format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000)))),
        Just(Some(format!(r#"{{"s": "{}"}}"#, "z".repeat(2_000_000)))),
        Just(Some("not json".to_owned())),
        Just(Some(r#"{"a": "\u0000"}"#.to_owned())),
        Just(Some(r#"[{"task": "t"}, {"task": ""}, {"task": "t", "priority": 99999999999}]"#.to_owned())),
        Just(Some(r#"[{"task": "t", "depends_on": ["00000000-0000-7000-8000-000000000000"]}]"#.to_owned())),
        Just(Some(r#"{"nodes": [{"name": "a", "task": "t", "after": ["b"]}, {"name": "b", "task": "t", "after": ["a"]}]}"#.to_owned())),
        Just(Some(r#"{"nodes": [{"name": "a", "task": "t"}, {"name": "b", "task": "t", "mode": "any", "after": ["a"]}]}"#.to_owned())),
        "\\PC{0,20}".prop_map(|s| Some(serde_json::Value::String(s).to_string())),
    ]
}

fn int() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![
        Just(None),
        Just(Some(i32::MIN)),
        Just(Some(-1)),
        Just(Some(0)),
        Just(Some(1)),
        Just(Some(5)),
        Just(Some(i32::MAX)),
        any::<i32>().prop_map(Some),
    ]
}

fn interval() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("-1 day".to_owned())),
        Just(Some("0".to_owned())),
        Just(Some("1 microsecond".to_owned())),
        Just(Some("5 minutes".to_owned())),
        Just(Some("178000000 years".to_owned())),
        Just(Some("soon".to_owned())),
    ]
}

fn timestamp() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("infinity".to_owned())),
        Just(Some("-infinity".to_owned())),
        Just(Some("294276-12-31".to_owned())),
        Just(Some("4000-01-01".to_owned())),
        Just(Some("1970-01-01".to_owned())),
        Just(Some("now".to_owned())),
        Just(Some("yesterday at noon".to_owned())),
    ]
}

/// A job id: unknown, NULL, or one of the jobs made so far (by position).
fn id() -> impl Strategy<Value = IdChoice> {
    prop_oneof![
        Just(IdChoice::Null),
        Just(IdChoice::Unknown),
        (0usize..50).prop_map(IdChoice::Existing),
    ]
}

#[derive(Debug, Clone)]
enum IdChoice {
    Null,
    Unknown,
    Existing(usize),
}

/// One call of the SQL API: its statement (parameters typed by casts from
/// text, so bad values reach pdoflow's own checks) and its arguments.
#[derive(Debug, Clone)]
enum Call {
    Enqueue(
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<String>,
        Option<i32>,
    ),
    EnqueueMany(Option<String>, Option<String>, Option<String>, Option<i32>),
    EnqueueDocument(Option<String>),
    Claim(Option<i32>, Option<String>, Option<String>, Option<String>),
    Finish(IdChoice, Option<i32>, Option<String>, Option<String>),
    Heartbeat(IdChoice, Option<i32>, Option<String>),
    CancelOrRetry(IdChoice, bool),
    Posting(Option<String>, Option<String>, Option<i32>, Option<String>),
    PostingStatus(IdChoice, Option<String>),
    Dependent(Option<String>, IdChoice, IdChoice, Option<String>),
    Dag(Option<String>),
    Unique(Option<String>, Option<String>, Option<String>),
    UniqueMany(Option<String>, Option<String>, Option<String>),
    Progress(IdChoice, Option<i32>, Option<String>),
    AwaitResult(IdChoice, Option<String>),
    Schedule(
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    ScheduleChange(Option<String>, u8),
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (text(), json(), text(), int(), timestamp(), int())
            .prop_map(|(t, a, q, p, r, m)| Call::Enqueue(t, a, q, p, r, m)),
        (text(), json(), text(), int()).prop_map(|(t, a, q, p)| Call::EnqueueMany(t, a, q, p)),
        json().prop_map(Call::EnqueueDocument),
        (int(), text(), text(), interval()).prop_map(|(n, q, w, l)| Call::Claim(n, q, w, l)),
        (id(), int(), text(), json()).prop_map(|(i, a, e, r)| Call::Finish(i, a, e, r)),
        (id(), int(), interval()).prop_map(|(i, a, l)| Call::Heartbeat(i, a, l)),
        (id(), any::<bool>()).prop_map(|(i, c)| Call::CancelOrRetry(i, c)),
        (text(), text(), int(), text()).prop_map(|(n, d, p, q)| Call::Posting(n, d, p, q)),
        (id(), text()).prop_map(|(i, s)| Call::PostingStatus(i, s)),
        (text(), id(), id(), text()).prop_map(|(t, a, b, m)| Call::Dependent(t, a, b, m)),
        json().prop_map(Call::Dag),
        (text(), text(), interval()).prop_map(|(t, k, f)| Call::Unique(t, k, f)),
        (text(), text(), interval()).prop_map(|(t, k, f)| Call::UniqueMany(t, k, f)),
        (id(), int(), json()).prop_map(|(i, a, p)| Call::Progress(i, a, p)),
        (id(), interval()).prop_map(|(i, t)| Call::AwaitResult(i, t)),
        (text(), text(), text(), text()).prop_map(|(n, c, t, z)| Call::Schedule(n, c, t, z)),
        (text(), 0u8..3).prop_map(|(n, k)| Call::ScheduleChange(n, k)),
    ]
}

/// Runs one call; Ok unless it ended in a way no input may cause.
async fn apply(
    db: &Client,
    ids: &mut Vec<String>,
    postings: &mut Vec<String>,
    call: &Call,
) -> Result<(), String> {
    let pick = |choice: &IdChoice, known: &[String]| match choice {
        IdChoice::Null => None,
        IdChoice::Unknown => Some("00000000-0000-7000-8000-000000000000".to_owned()),
        IdChoice::Existing(n) if known.is_empty() => {
            Some(format!("0190{n:04}-0000-7000-8000-000000000000"))
        }
        IdChoice::Existing(n) => Some(known[n % known.len()].clone()),
    };
    let (sql, params): (&str, Vec<Box<dyn ToSql + Sync + Send>>) = match call {
        Call::Enqueue(t, a, q, p, r, m) => (
            "SELECT pdoflow.enqueue($1::text, $2::text::jsonb, $3::text, $4::int, $5::text::timestamptz, $6::int)::text",
            vec![Box::new(t.clone()), Box::new(a.clone()), Box::new(q.clone()), Box::new(*p), Box::new(r.clone()), Box::new(*m)],
        ),
        Call::EnqueueMany(t, a, q, p) => (
            "SELECT id::text FROM pdoflow.enqueue_many($1::text, ARRAY[$2::text::jsonb, '{}'], $3::text, $4::int)",
            vec![Box::new(t.clone()), Box::new(a.clone()), Box::new(q.clone()), Box::new(*p)],
        ),
        Call::EnqueueDocument(d) => (
            "SELECT id::text FROM pdoflow.enqueue_many($1::text::jsonb)",
            vec![Box::new(d.clone())],
        ),
        Call::Claim(n, q, w, l) => (
            "SELECT id::text FROM pdoflow.claim($1::int, ARRAY[$2::text], $3::text, $4::text::interval)",
            vec![Box::new(*n), Box::new(q.clone()), Box::new(w.clone()), Box::new(l.clone())],
        ),
        Call::Finish(i, a, e, r) => (
            "SELECT pdoflow.finish($1::text::uuid, $2::int, $3::text, $4::text::jsonb)",
            vec![Box::new(pick(i, ids)), Box::new(*a), Box::new(e.clone()), Box::new(r.clone())],
        ),
        Call::Heartbeat(i, a, l) => (
            "SELECT pdoflow.heartbeat($1::text::uuid, $2::int, $3::text::interval)::text",
            vec![Box::new(pick(i, ids)), Box::new(*a), Box::new(l.clone())],
        ),
        Call::CancelOrRetry(i, true) => ("SELECT pdoflow.cancel($1::text::uuid)::text", vec![Box::new(pick(i, ids))]),
        Call::CancelOrRetry(i, false) => ("SELECT pdoflow.retry($1::text::uuid)::text", vec![Box::new(pick(i, ids))]),
        Call::Posting(n, d, p, q) => (
            "SELECT pdoflow.create_posting($1::text, $2::text, $3::int, $4::text)::text",
            vec![Box::new(n.clone()), Box::new(d.clone()), Box::new(*p), Box::new(q.clone())],
        ),
        Call::PostingStatus(i, s) => (
            "SELECT pdoflow.set_posting_status($1::text::uuid, $2::text)::text",
            vec![Box::new(pick(i, postings)), Box::new(s.clone())],
        ),
        Call::Dependent(t, a, b, m) => (
            "SELECT pdoflow.enqueue($1::text, depends_on => ARRAY[$2::text::uuid, $3::text::uuid], dependency_mode => $4::text)::text",
            vec![Box::new(t.clone()), Box::new(pick(a, ids)), Box::new(pick(b, ids)), Box::new(m.clone())],
        ),
        Call::Dag(d) => ("SELECT id::text FROM pdoflow.submit_dag($1::text::jsonb)", vec![Box::new(d.clone())]),
        Call::Unique(t, k, f) => (
            "SELECT pdoflow.enqueue($1::text, unique_key => $2::text, unique_for => $3::text::interval)::text",
            vec![Box::new(t.clone()), Box::new(k.clone()), Box::new(f.clone())],
        ),
        Call::UniqueMany(t, k, f) => (
            "SELECT id::text FROM pdoflow.enqueue_many($1::text, ARRAY['{}', '{}']::jsonb[],
                 unique_keys => ARRAY[$2::text, $2::text || 'x'], unique_for => $3::text::interval)",
            vec![Box::new(t.clone()), Box::new(k.clone()), Box::new(f.clone())],
        ),
        Call::Progress(i, a, p) => (
            "SELECT pdoflow.progress($1::text::uuid, $2::int, $3::text::jsonb)::text",
            vec![Box::new(pick(i, ids)), Box::new(*a), Box::new(p.clone())],
        ),
        // Never long: a wait is cut to a tenth of a second.
        Call::AwaitResult(i, t) => (
            "SELECT state FROM pdoflow.await_result($1::text::uuid,
                 least($2::text::interval, interval '100 milliseconds'))",
            vec![Box::new(pick(i, ids)), Box::new(t.clone())],
        ),
        Call::Schedule(n, c, t, z) => (
            "SELECT pdoflow.schedule($1::text, $2::text, $3::text, time_zone => $4::text)::text",
            vec![Box::new(n.clone()), Box::new(c.clone()), Box::new(t.clone()), Box::new(z.clone())],
        ),
        Call::ScheduleChange(n, 0) => ("SELECT pdoflow.unschedule($1::text)::text", vec![Box::new(n.clone())]),
        Call::ScheduleChange(n, 1) => ("SELECT pdoflow.pause_schedule($1::text)::text", vec![Box::new(n.clone())]),
        Call::ScheduleChange(n, _) => ("SELECT pdoflow.resume_schedule($1::text)::text", vec![Box::new(n.clone())]),
    };
    let params: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    match db.query(sql, &params).await {
        Ok(rows) => {
            let made: Vec<String> = rows
                .iter()
                .filter_map(|row| row.get::<_, Option<String>>(0))
                .collect();
            match call {
                Call::Posting(..) => postings.extend(made),
                Call::Enqueue(..)
                | Call::EnqueueMany(..)
                | Call::EnqueueDocument(..)
                | Call::Dependent(..)
                | Call::Dag(..)
                | Call::Unique(..)
                | Call::UniqueMany(..) => ids.extend(made.into_iter().filter(|id| id.len() == 36)),
                _ => {}
            }
            Ok(())
        }
        Err(error) => {
            if db.is_closed() {
                return Err(format!("the connection was lost: {error}"));
            }
            let Some(db_error) = error.as_db_error() else {
                return Err(format!("not a database error: {error}"));
            };
            let code = db_error.code().code();
            if !EXPECTED_CLASSES.contains(&&code[..2]) {
                return Err(format!("{code}: {}", db_error.message()));
            }
            if db_error.message().is_empty() {
                return Err(format!("{code} without a message"));
            }
            Ok(())
        }
    }
}

#[test]
fn hostile_input_fails_cleanly_and_leaves_the_tables_consistent() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let database = runtime.block_on(TestDatabase::create("hostile_input"));
    let db = runtime.block_on(database.connect());
    runtime
        .block_on(db.batch_execute("SET pdoflow.max_payload_bytes = 1000000"))
        .expect("a payload limit the huge values exceed");
    // Ids made so far, for later calls to aim at (the runner wants an Fn).
    let known = std::sync::Mutex::new((Vec::new(), Vec::new()));
    let mut runner = TestRunner::new(Config {
        cases: 60,
        failure_persistence: None,
        ..Config::default()
    });
    let calls = proptest::collection::vec(call(), 1..25);
    let result = runner.run(&calls, |calls| {
        let mut known = known.lock().expect("not poisoned");
        let (ids, postings) = &mut *known;
        for call in &calls {
            runtime
                .block_on(apply(&db, ids, postings, call))
                .map_err(|problem| TestCaseError::fail(format!("{call:?}: {problem}")))?;
        }
        Ok(())
    });
    result.expect("every call works or fails cleanly");

    let problems: Vec<(String, Option<String>)> = runtime
        .block_on(db.query(
            "SELECT problem, job_id::text FROM pdoflow.check_consistency()",
            &[],
        ))
        .expect("check_consistency")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(problems, [], "inconsistent after hostile input");
    // The server took it all: a new connection works.
    let fresh = runtime.block_on(database.connect());
    let jobs: i64 = runtime
        .block_on(fresh.query_one("SELECT count(*) FROM pdoflow.jobs", &[]))
        .expect("count jobs")
        .get(0);
    assert!(jobs > 0, "some calls should have enqueued jobs");
}
