//! `dag`: submitting 1000-node DAGs with `pdoflow.submit_dag`, one call
//! each, timed from the client (round trip included).

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::db;
use crate::report;
use crate::Bench;

const NODES: usize = 1000;
const RUNS: usize = 5;

pub async fn run(bench: &Bench) -> Result<()> {
    report::scenario(
        "dag",
        &format!("pdoflow.submit_dag of a {NODES}-node DAG, one call, {RUNS} runs each"),
    );
    let db = db::connect(&bench.url).await?;
    db::reset(&db).await?;
    let submit = db
        .prepare("SELECT count(*) FROM pdoflow.submit_dag($1)")
        .await?;
    for (shape, document) in [
        ("binary tree (node i after node (i-1)/2)", binary_tree()),
        ("fan-out and fan-in (1 -> 998 -> 1)", fan()),
    ] {
        let mut runs: Vec<Duration> = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = std::time::Instant::now();
            db.query_one(&submit, &[&document]).await?;
            runs.push(started.elapsed());
        }
        runs.sort();
        report::figure(
            shape,
            format!(
                "best {}  median {}  worst {}",
                report::millis(runs[0]),
                report::millis(runs[RUNS / 2]),
                report::millis(runs[RUNS - 1])
            ),
        );
    }
    db::reset(&db).await?;
    Ok(())
}

fn binary_tree() -> Value {
    let nodes: Vec<Value> = (0..NODES)
        .map(|i| match i {
            0 => json!({"name": "n0", "task": "noop"}),
            _ => json!({"name": format!("n{i}"), "task": "noop", "after": [format!("n{}", (i - 1) / 2)]}),
        })
        .collect();
    json!({ "nodes": nodes })
}

fn fan() -> Value {
    let middle: Vec<String> = (1..NODES - 1).map(|i| format!("m{i}")).collect();
    let mut nodes = vec![json!({"name": "root", "task": "noop"})];
    nodes.extend(
        middle
            .iter()
            .map(|name| json!({"name": name, "task": "noop", "after": ["root"]})),
    );
    nodes.push(json!({"name": "sink", "task": "noop", "after": middle}));
    json!({ "nodes": nodes })
}
