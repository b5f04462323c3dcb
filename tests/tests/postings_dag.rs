//! Postings and DAG workflows from outside: the `posting`, `postings` and
//! `dag submit` commands of `pdoflow-run` (through `test-worker`), the Rust
//! client's `Posting` and `Dag`, and workers handing parents' results to
//! their children (the `sum_parents` task of `test-worker`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use pdoflow_client::{Client, Dag, DependencyMode, Error, NewJob, PostingState};
use pdoflow_tests::TestDatabase;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(30);
const WORKER: &str = env!("CARGO_BIN_EXE_test-worker");

/// Works every queue with a burst worker until nothing is left.
async fn work(database: &TestDatabase) {
    database
        .cli(WORKER)
        .ok(&[
            "worker",
            "--burst",
            "--concurrency",
            "4",
            "--poll-interval",
            "100ms",
        ])
        .await;
}

fn temp_file(database: &TestDatabase, name: &str, contents: &str) -> String {
    let path = std::env::temp_dir().join(format!("pdoflow-test-{}-{name}", database.name()));
    std::fs::write(&path, contents).expect("write a test file");
    path.display().to_string()
}

#[tokio::test]
async fn posting_commands_create_list_pause_and_cancel() {
    let database = TestDatabase::create("postings_cli").await;
    let nightly = database
        .cli(WORKER)
        .ok(&[
            "posting",
            "create",
            "nightly",
            "--description",
            "the nightly reports",
            "--queue",
            "reports",
            "--priority",
            "4",
        ])
        .await
        .trim()
        .to_owned();
    assert_eq!(nightly.len(), 36, "{nightly}");
    let other = database
        .cli(WORKER)
        .json(&["posting", "create", "other", "--json"])
        .await;
    let other = other["id"].as_str().unwrap().to_owned();

    // The posting's queue and priority apply to jobs that set none.
    let first = database
        .cli(WORKER)
        .ok(&["enqueue", "--task", "noop", "--posting", &nightly])
        .await;
    let job = database
        .cli(WORKER)
        .json(&["job", "show", first.trim(), "--json"])
        .await;
    assert_eq!(job["queue"], "reports");
    assert_eq!(job["priority"], 4);
    assert_eq!(job["posting"], nightly.as_str());
    let second = database
        .cli(WORKER)
        .ok(&[
            "enqueue",
            "--task",
            "noop",
            "--posting",
            &nightly,
            "--priority",
            "9",
        ])
        .await;
    let job = database
        .cli(WORKER)
        .json(&["job", "show", second.trim(), "--json"])
        .await;
    assert_eq!(job["priority"], 9);

    let listed = database
        .cli(WORKER)
        .json(&["postings", "list", "--json"])
        .await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|posting| posting["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "nightly"], "newest first");
    assert_eq!(listed[1]["id"], nightly.as_str());
    assert_eq!(listed[1]["status"], "active");
    assert_eq!(listed[1]["total"], 2);
    assert_eq!(listed[1]["queued"], 2);
    assert_eq!(listed[1]["complete"], false);
    assert_eq!(listed[0]["total"], 0);
    let table = database.cli(WORKER).ok(&["postings", "list"]).await;
    assert!(
        table.contains("nightly") && table.contains("other"),
        "{table}"
    );
    let in_posting = database
        .cli(WORKER)
        .json(&["jobs", "--posting", &nightly, "--json"])
        .await;
    assert_eq!(in_posting.as_array().unwrap().len(), 2);
    let in_other = database
        .cli(WORKER)
        .json(&["jobs", "--posting", &other, "--json"])
        .await;
    assert_eq!(in_other, json!([]));

    assert_eq!(
        database
            .cli(WORKER)
            .ok(&["posting", "set-status", &nightly, "paused"])
            .await
            .trim(),
        "paused"
    );
    assert_eq!(
        database
            .cli(WORKER)
            .ok(&["posting", "set-status", &nightly, "paused"])
            .await
            .trim(),
        "not changed: the posting was already paused"
    );
    let status = database
        .cli(WORKER)
        .json(&["posting", "status", &nightly, "--json"])
        .await;
    assert_eq!(status["status"], "paused");
    assert_eq!(status["description"], "the nightly reports");
    assert_eq!(status["queue"], "reports");
    assert_eq!(status["priority"], 4);
    let human = database
        .cli(WORKER)
        .ok(&["posting", "status", &nightly])
        .await;
    assert!(human.contains("status: paused"), "{human}");
    // Neither job has started: both wait, whatever a paused posting does to them.
    let priorities = database
        .cli(WORKER)
        .json(&["priority-stats", "--json"])
        .await;
    let waiting: i64 = priorities
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["queue"] == "reports")
        .map(|row| row["waiting"].as_i64().unwrap())
        .sum();
    assert_eq!(waiting, 2, "{priorities}");

    database
        .cli(WORKER)
        .fails(&["posting", "delete", &nightly], 1, "SQLSTATE 55000")
        .await;
    assert_eq!(
        database
            .cli(WORKER)
            .ok(&["posting", "set-status", &nightly, "cancelled"])
            .await
            .trim(),
        "cancelled"
    );
    database
        .cli(WORKER)
        .fails(
            &["posting", "set-status", &nightly, "active"],
            1,
            "SQLSTATE 55000",
        )
        .await;
    // Cancelling ends its jobs, so following it returns at once.
    let followed = database
        .cli(WORKER)
        .json(&[
            "posting",
            "status",
            &nightly,
            "--follow",
            "--timeout",
            "20s",
            "--json",
        ])
        .await;
    assert_eq!(followed["complete"], true, "{followed}");
    assert_eq!(followed["cancelled"], 2, "{followed}");
    // Now that its jobs have ended, it can go, with them.
    assert_eq!(
        database
            .cli(WORKER)
            .ok(&["posting", "delete", &nightly])
            .await
            .trim(),
        "deleted"
    );
    let gone = database
        .cli(WORKER)
        .json(&["jobs", "--posting", &nightly, "--json"])
        .await;
    assert_eq!(gone, json!([]));
    database
        .cli(WORKER)
        .fails(&["posting", "delete", &nightly], 1, "does not exist")
        .await;

    database
        .cli(WORKER)
        .fails(
            &["posting", "set-status", &nightly, "stopped"],
            2,
            "(see --help)",
        )
        .await;
    database
        .cli(WORKER)
        .fails(
            &[
                "posting",
                "set-status",
                "00000000-0000-7000-8000-000000000000",
                "paused",
            ],
            1,
            "posting 00000000-0000-7000-8000-000000000000 does not exist",
        )
        .await;
    database
        .cli(WORKER)
        .fails(
            &["posting", "status", "00000000-0000-7000-8000-000000000000"],
            1,
            "does not exist",
        )
        .await;
}

/// start -> branches (sub-DAG: a, b) -> join, and start -> c -> join, the
/// last two through "edges".
const DAG: &str = r#"{
  "nodes": [
    {"name": "start", "task": "sum_parents", "args": {"add": 10}},
    {"name": "branches", "after": ["start"], "dag": {"nodes": [
      {"name": "a", "task": "sum_parents", "args": {"add": 1}},
      {"name": "b", "task": "sum_parents", "args": {"add": 2}}
    ]}},
    {"name": "c", "task": "sum_parents", "args": {"add": 3}},
    {"name": "join", "task": "sum_parents", "args": {"add": 0}, "after": ["branches"]}
  ],
  "edges": [["start", "c"], ["c", "join"]]
}"#;

#[tokio::test]
async fn a_dag_file_runs_parents_first_and_hands_their_results_on() {
    let database = TestDatabase::create("postings_dag").await;
    let client = database.connect().await;
    let posting = database
        .cli(WORKER)
        .ok(&["posting", "create", "workflow"])
        .await;
    let posting = posting.trim();
    let file = temp_file(&database, "dag.json", DAG);
    let submitted = database
        .cli(WORKER)
        .json(&["dag", "submit", &file, "--posting", posting, "--json"])
        .await;
    let ids: BTreeMap<String, Uuid> = submitted
        .as_array()
        .unwrap()
        .iter()
        .map(|job| {
            (
                job["name"].as_str().unwrap().to_owned(),
                job["id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids.keys().map(String::as_str).collect::<Vec<_>>(),
        ["branches/a", "branches/b", "c", "join", "start"]
    );

    // Only the root can run; the rest wait on their parents.
    let states: Vec<(String, String)> = client
        .query(
            "SELECT node, state FROM pdoflow.jobs WHERE posting = $1::text::uuid ORDER BY node",
            &[&posting],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let expected = [
        ("branches/a", "blocked"),
        ("branches/b", "blocked"),
        ("c", "blocked"),
        ("join", "blocked"),
        ("start", "queued"),
    ];
    assert_eq!(
        states,
        expected.map(|(node, state)| (node.to_owned(), state.to_owned()))
    );
    let priorities = database
        .cli(WORKER)
        .json(&["priority-stats", "--json"])
        .await;
    assert_eq!(priorities[0]["blocked"], 4, "{priorities}");
    assert_eq!(priorities[0]["due"], 1, "{priorities}");
    assert_eq!(priorities[0]["waiting"], 5, "{priorities}");
    let blocked = database
        .cli(WORKER)
        .json(&["postings", "list", "--json"])
        .await;
    assert_eq!(blocked[0]["blocked"], 4);

    work(&database).await;

    // Every edge, as the jobs view records it, and each child worked only
    // once its parent had finished. (Compared by finish times: a job's
    // timestamps are its transactions' start times, and a claim that began
    // before the parent's finish may still see its commit; the child's own
    // finish begins only after its handler ran, so after that commit.)
    let edges: Vec<(String, String, bool)> = client
        .query(
            "SELECT parent.node, child.node, child.finished_at > parent.finished_at
             FROM pdoflow.jobs AS child
             CROSS JOIN LATERAL unnest(child.depends_on) AS p(id)
             JOIN pdoflow.jobs AS parent ON parent.id = p.id
             WHERE child.posting = $1::text::uuid
             ORDER BY 1, 2",
            &[&posting],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let expected = [
        ("branches/a", "join"),
        ("branches/b", "join"),
        ("c", "join"),
        ("start", "branches/a"),
        ("start", "branches/b"),
        ("start", "c"),
    ];
    assert_eq!(
        edges,
        expected.map(|(parent, child)| (parent.to_owned(), child.to_owned(), true))
    );

    let results: BTreeMap<String, (String, Value)> = client
        .query(
            "SELECT node, state, result FROM pdoflow.jobs WHERE posting = $1::text::uuid",
            &[&posting],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    let result = |node: &str| {
        let (state, result) = &results[node];
        assert_eq!(state, "succeeded", "{node}: {result}");
        result.clone()
    };
    assert_eq!(result("start"), json!({"sum": 10, "parents": []}));
    assert_eq!(
        result("branches/b"),
        json!({"sum": 12, "parents": ["start"]})
    );
    assert_eq!(
        result("join"),
        json!({"sum": 11 + 12 + 13, "parents": ["branches/a", "branches/b", "c"]})
    );

    let followed = database
        .cli(WORKER)
        .json(&[
            "posting",
            "status",
            posting,
            "--follow",
            "--timeout",
            "20s",
            "--json",
        ])
        .await;
    assert_eq!(followed["complete"], true);
    assert_eq!(followed["succeeded"], 5);
    assert_eq!(followed["total"], 5);
}

#[tokio::test]
async fn dag_submit_reads_stdin_and_refuses_what_is_not_json() {
    let database = TestDatabase::create("postings_dag_stdin").await;
    let mut child = database
        .cli(WORKER)
        .command(&["dag", "submit", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(br#"{"nodes": [{"name": "only", "task": "noop"}]}"#)
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the command finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("only"), "{stdout}");

    let broken = temp_file(&database, "broken.json", "{\"nodes\": [");
    database
        .cli(WORKER)
        .fails(&["dag", "submit", &broken], 1, "not JSON")
        .await;
    database
        .cli(WORKER)
        .fails(
            &["dag", "submit", "/nonexistent/dag.json"],
            1,
            "cannot read /nonexistent/dag.json",
        )
        .await;
    database
        .cli(WORKER)
        .fails(&["dag", "submit"], 2, "(see --help)")
        .await;
}

#[tokio::test]
async fn the_client_enqueues_into_postings_and_children_get_results_by_id() {
    let database = TestDatabase::create("postings_api").await;
    let client = Client::connect(&database.url()).await.unwrap();
    let posting = client
        .posting("api")
        .description("from Rust")
        .queue("api")
        .create()
        .await
        .unwrap();
    let job = |add: i64| NewJob::new("sum_parents", &json!({ "add": add })).unwrap();
    let parents = posting.enqueue_many(&[job(1), job(2)]).await.unwrap();
    let child = posting
        .enqueue(
            &job(100)
                .depends_on(parents.iter().copied())
                .dependency_mode(DependencyMode::All),
        )
        .await
        .unwrap();
    // A DAG node may wait on jobs outside its DAG too.
    let mut dag = Dag::new();
    dag.node("first", job(1000)).depends_on([child]);
    dag.node("second", job(0))
        .after(["first"])
        .mode(DependencyMode::Any);
    let dag_ids = posting.submit_dag(&dag).await.unwrap();
    assert_eq!(
        dag_ids
            .iter()
            .map(|job| job.name.as_str())
            .collect::<Vec<_>>(),
        ["first", "second"]
    );

    let stored = client.job(child).await.unwrap().unwrap();
    assert_eq!(stored.queue, "api", "the posting's queue");
    assert_eq!(stored.posting, Some(posting.id()));
    assert_eq!(stored.depends_on, parents);
    assert_eq!(stored.dependency_mode.as_deref(), Some("all"));
    assert_eq!(stored.state, "blocked");
    assert_eq!(stored.node, None);
    let second = client
        .job(dag_ids.get("second").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.node.as_deref(), Some("second"));
    assert_eq!(second.dependency_mode.as_deref(), Some("any"));
    assert_eq!(second.posting, Some(posting.id()));

    assert!(posting.pause().await.unwrap());
    assert!(!posting.pause().await.unwrap());
    assert_eq!(posting.status().await.unwrap().status, "paused");
    assert!(posting.resume().await.unwrap());
    let status = posting.status().await.unwrap();
    assert_eq!(
        (
            status.status.as_str(),
            status.total,
            status.queued,
            status.blocked
        ),
        ("active", 5, 2, 3)
    );
    assert_eq!(status.description.as_deref(), Some("from Rust"));

    work(&database).await;

    let client = &client;
    let result = |id: Uuid| async move {
        let job = client.job(id).await.unwrap().unwrap();
        assert_eq!(job.state, "succeeded", "{job:?}");
        job.result.unwrap()
    };
    let mut parent_keys: Vec<String> = parents.iter().map(Uuid::to_string).collect();
    parent_keys.sort();
    assert_eq!(
        result(child).await,
        json!({"sum": 103, "parents": parent_keys}),
        "parents outside a DAG are keyed by job id"
    );
    assert_eq!(
        result(dag_ids.get("first").unwrap()).await,
        json!({"sum": 1103, "parents": [child.to_string()]})
    );
    assert_eq!(
        result(dag_ids.get("second").unwrap()).await,
        json!({"sum": 1103, "parents": ["first"]})
    );
    let status = client.posting_status(posting.id()).await.unwrap().unwrap();
    assert!(status.complete, "{status:?}");
    assert_eq!(status.succeeded, 5);
    let all = client.postings().await.unwrap();
    assert_eq!(all.len(), 1);

    let unknown = Uuid::from_u128(1);
    assert!(matches!(
        client
            .set_posting_status(unknown, PostingState::Paused)
            .await,
        Err(Error::NoSuchPosting(id)) if id == unknown
    ));
    assert_eq!(
        client.posting_status(unknown).await.unwrap().map(|p| p.id),
        None
    );
}

/// A 1000-node DAG goes in with one call and is worked in dependency order:
/// a binary tree (node i waits for node (i-1)/2) whose leaves all feed one
/// final node.
#[tokio::test]
async fn a_thousand_node_dag_is_submitted_at_once_and_worked_parents_first() {
    let database = TestDatabase::create("postings_dag_1000").await;
    let client = Client::connect(&database.url()).await.unwrap();
    let mut dag = Dag::new();
    let nodes = 999;
    for i in 0..nodes {
        let node = dag.node(format!("n{i}"), NewJob::new("noop", &json!({})).unwrap());
        if i > 0 {
            node.after([format!("n{}", (i - 1) / 2)]);
        }
    }
    let leaves: Vec<String> = (nodes / 2..nodes).map(|i| format!("n{i}")).collect();
    dag.node("last", NewJob::new("noop", &json!({})).unwrap())
        .after(leaves.clone());

    let ids = client.submit_dag(&dag, None).await.unwrap();
    assert_eq!(ids.len(), 1000);
    let counts = database
        .connect()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'blocked')
             FROM pdoflow.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((counts.get::<_, i64>(0), counts.get::<_, i64>(1)), (1, 999));

    work(&database).await;

    let db = database.connect().await;
    let outcome = db
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FROM pdoflow.jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (outcome.get::<_, i64>(0), outcome.get::<_, i64>(1)),
        (1000, 1000)
    );
    // No job was worked before every one of its parents had finished (by
    // finish times: see `a_dag_file_runs_parents_first_and_hands_their_results_on`).
    let early: i64 = db
        .query_one(
            "SELECT count(*)
             FROM pdoflow.jobs AS child
             CROSS JOIN LATERAL unnest(child.depends_on) AS p(id)
             JOIN pdoflow.jobs AS parent ON parent.id = p.id
             WHERE child.finished_at <= parent.finished_at",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(early, 0);
    let last_parents: i64 = db
        .query_one(
            "SELECT cardinality(depends_on) FROM pdoflow.jobs WHERE node = 'last'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i32>(0)
        .into();
    assert_eq!(last_parents, leaves.len() as i64);
}
