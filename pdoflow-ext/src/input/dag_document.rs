//! The JSON document of `pdoflow.submit_dag`: a DAG of named nodes, planned
//! here into the flat list of jobs to insert, parents first.
//!
//! ```json
//! {"nodes": [{"name": "fetch", "task": "http_get", "args": {...}},
//!            {"name": "parse", "task": "parse", "after": ["fetch"]},
//!            {"name": "report", "dag": {"nodes": [...]}, "after": ["parse"]}],
//!  "edges": [["fetch", "parse"]]}
//! ```
//!
//! A node is a job (`task` and the job options) or a sub-DAG (`dag`), which
//! is expanded in place: its jobs are named `report/<name>`, its first nodes
//! wait for the sub-DAG node's parents, and whoever comes after the sub-DAG
//! node waits for its last nodes (its sinks). Node objects are passed on as
//! raw JSON, so `args` reach the table exactly as written.

use std::collections::{BTreeSet, HashMap};

use serde_json::value::RawValue;

use crate::input::errors::{quote, InputError};
use crate::input::job_document::{
    check_job_options, dependency_mode, string, strings, unreadable, uuid_list, wrong_type, Fields,
    Timestamp,
};
use crate::input::rules::{name, Limits};

const DAG_KEYS: &[&str] = &["nodes", "edges"];
const DAG_KEYS_TEXT: &str = "nodes, edges";
const NODE_KEYS: &[&str] = &[
    "name",
    "task",
    "args",
    "queue",
    "priority",
    "run_at",
    "max_attempts",
    "after",
    "mode",
    "depends_on",
    "dag",
    "unique_key",
    "unique_for",
    "concurrency_key",
];
const NODE_KEYS_TEXT: &str = "name, task, args, queue, priority, run_at, max_attempts, after, mode, depends_on, dag, unique_key, unique_for, concurrency_key";
const JOB_ONLY_KEYS: &[&str] = &[
    "task",
    "args",
    "queue",
    "priority",
    "run_at",
    "max_attempts",
    "unique_key",
    "unique_for",
    "concurrency_key",
];

/// Sub-DAGs nest at most this deep.
const MAX_NESTING: usize = 32;

/// A parent of a planned job: another job of the plan (by position), or a
/// job that exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parent {
    Planned(usize),
    Existing(uuid::Uuid),
}

/// One job to insert. Parents come before their children in the plan.
#[derive(Debug, PartialEq, Eq)]
pub struct PlannedJob<'a> {
    /// The node's name, prefixed by its sub-DAGs' names and '/'.
    pub name: String,
    /// The node object as written (task, args and options are read from it).
    pub node: &'a str,
    /// "all" or "any"; `None` when the job has no parents.
    pub mode: Option<String>,
    pub parents: Vec<Parent>,
}

/// Parents handed down from a sub-DAG node to the first nodes of its DAG.
#[derive(Default, Clone)]
struct Incoming {
    parents: Vec<Parent>,
    mode: Option<String>,
}

struct Node<'a> {
    param: String,
    name: String,
    raw: &'a str,
    sub_dag: Option<&'a str>,
    after: Vec<(String, String)>,
    mode: Option<String>,
    depends_on: Vec<uuid::Uuid>,
}

/// Plans a DAG document given as JSON text (jsonb's output).
pub fn plan<'a>(
    document: &'a str,
    timestamp: &dyn Fn(&str) -> Timestamp,
    limits: &Limits,
) -> Result<Vec<PlannedJob<'a>>, InputError> {
    let mut jobs = Vec::new();
    let checks = Checks { timestamp, limits };
    let root = Incoming::default();
    plan_level("dag", document, "", &root, 0, &checks, &mut jobs)?;
    Ok(jobs)
}

/// How node options are judged: run_at strings, and the superusers' limits.
struct Checks<'c> {
    timestamp: &'c dyn Fn(&str) -> Timestamp,
    limits: &'c Limits,
}

/// Plans one level (the document or a sub-DAG) into `jobs`; returns the
/// positions of the jobs that complete it (its sinks, expanded).
fn plan_level<'a>(
    param: &str,
    document: &'a str,
    prefix: &str,
    incoming: &Incoming,
    depth: usize,
    checks: &Checks,
    jobs: &mut Vec<PlannedJob<'a>>,
) -> Result<Vec<usize>, InputError> {
    if depth > MAX_NESTING {
        return Err(InputError::BadDag {
            param: param.to_owned(),
            problem: format!("nests sub-DAGs more than {MAX_NESTING} deep"),
        });
    }
    let nodes = read_level(param, document, checks)?;
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(position, node)| (node.name.as_str(), position))
        .collect();
    let order = topological_order(param, &nodes, &index)?;

    // The jobs that complete each node, filled in parents first.
    let mut completion: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for &position in &order {
        let node = &nodes[position];
        let own_mode = node.mode.clone();
        let mut parents: Vec<Parent> = Vec::new();
        for (after_param, parent_name) in &node.after {
            let parent = index[parent_name.as_str()];
            if own_mode.as_deref() == Some("any") && completion[parent].len() > 1 {
                return Err(InputError::BadDag {
                    param: after_param.clone(),
                    problem: format!(
                        "names sub-DAG {}, which ends in {} jobs: mode \"any\" cannot wait for a sub-DAG with more than one last node",
                        quote(parent_name),
                        completion[parent].len()
                    ),
                });
            }
            parents.extend(completion[parent].iter().map(|&job| Parent::Planned(job)));
        }
        parents.extend(node.depends_on.iter().map(|&id| Parent::Existing(id)));
        let mut mode = own_mode.unwrap_or_else(|| "all".to_owned());
        if node.after.is_empty() && !incoming.parents.is_empty() {
            let inherited = incoming.mode.clone().unwrap_or_else(|| "all".to_owned());
            // A node's own parents keep their mode: refuse to mix two modes,
            // and do not let an "any" sub-DAG loosen a node's own "all".
            if !parents.is_empty() && inherited != mode {
                return Err(InputError::BadDag {
                    param: node.param.clone(),
                    problem: format!(
                        "has depends_on in mode {} but its sub-DAG waits in mode {}; give them the same mode",
                        quote(&mode),
                        quote(&inherited)
                    ),
                });
            }
            mode = inherited;
            parents.extend(incoming.parents.iter().copied());
        }
        dedupe(&mut parents);

        completion[position] = match node.sub_dag {
            None => {
                jobs.push(PlannedJob {
                    name: format!("{prefix}{}", node.name),
                    node: node.raw,
                    mode: (!parents.is_empty()).then_some(mode),
                    parents,
                });
                vec![jobs.len() - 1]
            }
            Some(sub_dag) => plan_level(
                &format!("{}.dag", node.param),
                sub_dag,
                &format!("{prefix}{}/", node.name),
                &Incoming {
                    mode: (!parents.is_empty()).then_some(mode),
                    parents,
                },
                depth + 1,
                checks,
                jobs,
            )?,
        };
    }

    let has_children: BTreeSet<usize> = nodes
        .iter()
        .flat_map(|node| node.after.iter().map(|(_, parent)| index[parent.as_str()]))
        .collect();
    let mut sinks: Vec<usize> = (0..nodes.len())
        .filter(|position| !has_children.contains(position))
        .flat_map(|position| completion[position].iter().copied())
        .collect();
    sinks.dedup();
    Ok(sinks)
}

fn dedupe(parents: &mut Vec<Parent>) {
    let mut seen = std::collections::HashSet::new();
    parents.retain(|parent| seen.insert(*parent));
}

/// Reads and checks one level's nodes and edges; `after` lists gain the edges.
fn read_level<'a>(
    param: &str,
    document: &'a str,
    checks: &Checks,
) -> Result<Vec<Node<'a>>, InputError> {
    let dag = Fields::read(param, document)?;
    dag.reject_unknown(DAG_KEYS, DAG_KEYS_TEXT)?;
    let nodes_raw = dag.get("nodes").ok_or_else(|| InputError::Null {
        param: dag.path("nodes"),
        hint: Some("A DAG document is {\"nodes\": [{\"name\": ..., \"task\": ...}, ...]}."),
    })?;
    if !nodes_raw.starts_with('[') {
        return Err(wrong_type(
            &dag.path("nodes"),
            "an array of node objects",
            nodes_raw,
        ));
    }
    let elements: Vec<&RawValue> =
        serde_json::from_str(nodes_raw).map_err(|error| unreadable(&dag.path("nodes"), &error))?;
    if elements.is_empty() {
        return Err(InputError::EmptyArray {
            param: dag.path("nodes"),
            hint: None,
        });
    }

    let mut nodes: Vec<Node> = Vec::with_capacity(elements.len());
    let mut names: HashMap<String, usize> = HashMap::with_capacity(elements.len());
    for (position, element) in elements.iter().enumerate() {
        let node_param = format!("{}[{position}]", dag.path("nodes"));
        let node = read_node(&node_param, element.get(), checks)?;
        if names.insert(node.name.clone(), position).is_some() {
            return Err(InputError::Duplicate {
                param: dag.path("nodes"),
                value: format!("the node name {}", quote(&node.name)),
            });
        }
        nodes.push(node);
    }

    if let Some(edges_raw) = dag.get("edges") {
        let edges = strings(
            &dag.path("edges"),
            edges_raw,
            "an array of [from, to] pairs",
        )?;
        for (position, edge) in edges.iter().enumerate() {
            let edge_param = format!("{}[{position}]", dag.path("edges"));
            let ends = strings(&edge_param, edge.get(), "a [from, to] pair of node names")?;
            let [from, to] = ends.as_slice() else {
                return Err(InputError::BadDag {
                    param: edge_param,
                    problem: format!("must be a [from, to] pair, got {} elements", ends.len()),
                });
            };
            let from = string(&format!("{edge_param}[0]"), from.get())?;
            let to = string(&format!("{edge_param}[1]"), to.get())?;
            let child = *names.get(&to).ok_or_else(|| InputError::UnknownNode {
                param: format!("{edge_param}[1]"),
                name: to.clone(),
            })?;
            nodes[child].after.push((format!("{edge_param}[0]"), from));
        }
    }

    for node in &mut nodes {
        let mut seen = BTreeSet::new();
        node.after.retain(|(_, parent)| seen.insert(parent.clone()));
        if let Some((after_param, parent)) = node
            .after
            .iter()
            .find(|(_, parent)| !names.contains_key(parent))
        {
            return Err(InputError::UnknownNode {
                param: after_param.clone(),
                name: parent.clone(),
            });
        }
        if let Some((after_param, _)) = node.after.iter().find(|(_, parent)| *parent == node.name) {
            return Err(InputError::Cycle {
                dag: after_param.clone(),
                path: format!("{name} -> {name}", name = quote(&node.name)),
            });
        }
    }
    Ok(nodes)
}

fn read_node<'a>(param: &str, raw: &'a str, checks: &Checks) -> Result<Node<'a>, InputError> {
    let fields = Fields::read(param, raw)?;
    fields.reject_unknown(NODE_KEYS, NODE_KEYS_TEXT)?;
    let node_name = fields.get("name").ok_or_else(|| InputError::Null {
        param: fields.path("name"),
        hint: Some("Every node needs a name, unique in its DAG."),
    })?;
    let node_name = string(&fields.path("name"), node_name)?;
    name(&fields.path("name"), &node_name)?;
    if node_name.contains('/') {
        return Err(InputError::BadDag {
            param: fields.path("name"),
            problem: format!(
                "must not contain '/' (it separates sub-DAG names), got {}",
                quote(&node_name)
            ),
        });
    }

    let sub_dag = fields.get("dag");
    match sub_dag {
        Some(_) => {
            if let Some(key) = JOB_ONLY_KEYS.iter().find(|key| fields.get(key).is_some()) {
                return Err(InputError::BadDag {
                    param: param.to_owned(),
                    problem: format!(
                        "has both \"dag\" and {}: a node is either a job or a sub-DAG",
                        quote(key)
                    ),
                });
            }
        }
        None => check_job_options(&fields, checks.timestamp, checks.limits)?,
    }

    let mut after = Vec::new();
    if let Some(after_raw) = fields.get("after") {
        let after_param = fields.path("after");
        for (position, parent) in strings(&after_param, after_raw, "an array of node names")?
            .iter()
            .enumerate()
        {
            let element = format!("{after_param}[{position}]");
            after.push((element.clone(), string(&element, parent.get())?));
        }
    }
    let mode = fields
        .get("mode")
        .map(|mode| dependency_mode(&fields.path("mode"), mode))
        .transpose()?;
    let depends_on = fields
        .get("depends_on")
        .map(|parents| uuid_list(&fields.path("depends_on"), parents))
        .transpose()?
        .unwrap_or_default();
    Ok(Node {
        param: param.to_owned(),
        name: node_name,
        raw,
        sub_dag,
        after,
        mode,
        depends_on,
    })
}

/// Node positions, parents before children, in document order where free.
/// A cycle is an error that spells one out.
fn topological_order(
    param: &str,
    nodes: &[Node],
    index: &HashMap<&str, usize>,
) -> Result<Vec<usize>, InputError> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut waiting: Vec<usize> = vec![0; nodes.len()];
    for (position, node) in nodes.iter().enumerate() {
        for (_, parent) in &node.after {
            children[index[parent.as_str()]].push(position);
            waiting[position] += 1;
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&p| waiting[p] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(position) = ready.pop_first() {
        order.push(position);
        for &child in &children[position] {
            waiting[child] -= 1;
            if waiting[child] == 0 {
                ready.insert(child);
            }
        }
    }
    if order.len() == nodes.len() {
        return Ok(order);
    }
    // Every node left waits on another node left: walk back through parents
    // that are left until one repeats.
    let left = |position: usize| waiting[position] > 0;
    let mut path = vec![(0..nodes.len()).find(|&p| left(p)).unwrap_or_default()];
    loop {
        let current = path[path.len() - 1];
        let parent = nodes[current]
            .after
            .iter()
            .map(|(_, parent)| index[parent.as_str()])
            .find(|&parent| left(parent))
            .unwrap_or(current);
        if let Some(start) = path.iter().position(|&p| p == parent) {
            // The walk went from children to parents: turn it around, from
            // the repeated node back to itself.
            let mut cycle: Vec<usize> = path[start..].iter().rev().copied().collect();
            cycle.rotate_right(1);
            cycle.push(parent);
            let names: Vec<String> = cycle.iter().map(|&p| quote(&nodes[p].name)).collect();
            return Err(InputError::Cycle {
                dag: param.to_owned(),
                path: names.join(" -> "),
            });
        }
        path.push(parent);
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn any_time(_: &str) -> Timestamp {
        Timestamp::Finite
    }

    const LIMITS: Limits = Limits {
        max_payload_bytes: 1_000,
        max_attempts: 10,
    };

    fn planned(document: &str) -> Vec<(String, Option<String>, Vec<Parent>)> {
        plan(document, &any_time, &LIMITS)
            .unwrap()
            .into_iter()
            .map(|job| (job.name, job.mode, job.parents))
            .collect()
    }

    fn problem(document: &str) -> String {
        plan(document, &any_time, &LIMITS).unwrap_err().to_string()
    }

    #[test]
    fn parents_come_first_and_edges_equal_after() {
        let with_after = r#"{"nodes": [{"name": "c", "task": "t", "after": ["a", "b"]},
                                       {"name": "a", "task": "t"}, {"name": "b", "task": "t", "after": ["a"]}]}"#;
        let with_edges = r#"{"nodes": [{"name": "c", "task": "t"}, {"name": "a", "task": "t"}, {"name": "b", "task": "t"}],
                             "edges": [["a", "c"], ["b", "c"], ["a", "b"]]}"#;
        let expected = vec![
            ("a".to_owned(), None, vec![]),
            (
                "b".to_owned(),
                Some("all".to_owned()),
                vec![Parent::Planned(0)],
            ),
            (
                "c".to_owned(),
                Some("all".to_owned()),
                vec![Parent::Planned(0), Parent::Planned(1)],
            ),
        ];
        assert_eq!(planned(with_after), expected);
        assert_eq!(planned(with_edges), expected);
    }

    #[test]
    fn sub_dags_expand_with_their_sources_and_sinks() {
        let id = "0192f1c4-0000-7000-8000-000000000001";
        let document = format!(
            r#"{{"nodes": [
                {{"name": "start", "task": "t"}},
                {{"name": "sub", "after": ["start"], "dag": {{"nodes": [
                    {{"name": "x", "task": "t", "depends_on": ["{id}"]}},
                    {{"name": "y", "task": "t"}},
                    {{"name": "z", "task": "t", "after": ["x"]}}]}}}},
                {{"name": "end", "task": "t", "after": ["sub"]}}]}}"#
        );
        let existing = Parent::Existing(uuid::Uuid::parse_str(id).unwrap());
        assert_eq!(
            planned(&document),
            vec![
                ("start".to_owned(), None, vec![]),
                (
                    "sub/x".to_owned(),
                    Some("all".to_owned()),
                    vec![existing, Parent::Planned(0)]
                ),
                (
                    "sub/y".to_owned(),
                    Some("all".to_owned()),
                    vec![Parent::Planned(0)]
                ),
                (
                    "sub/z".to_owned(),
                    Some("all".to_owned()),
                    vec![Parent::Planned(1)]
                ),
                (
                    "end".to_owned(),
                    Some("all".to_owned()),
                    vec![Parent::Planned(2), Parent::Planned(3)]
                ),
            ]
        );
    }

    #[test]
    fn args_stay_as_written() {
        let document =
            r#"{"nodes": [{"name": "a", "task": "t", "args": {"n": 1.000000000000000000001}}]}"#;
        let jobs = plan(document, &any_time, &LIMITS).unwrap();
        assert_eq!(
            jobs[0].node,
            r#"{"name": "a", "task": "t", "args": {"n": 1.000000000000000000001}}"#
        );
    }

    #[test]
    fn cycles_are_spelled_out() {
        assert_eq!(
            problem(
                r#"{"nodes": [{"name": "a", "task": "t", "after": ["c"]}, {"name": "b", "task": "t", "after": ["a"]},
                              {"name": "c", "task": "t", "after": ["b"]}, {"name": "d", "task": "t"}]}"#
            ),
            r#"dag has a cycle: "a" -> "b" -> "c" -> "a""#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t", "after": ["a"]}]}"#),
            r#"dag.nodes[0].after[0] has a cycle: "a" -> "a""#
        );
        assert_eq!(
            problem(
                r#"{"nodes": [{"name": "s", "dag": {"nodes": [{"name": "a", "task": "t", "after": ["b"]},
                                                               {"name": "b", "task": "t", "after": ["a"]}]}}]}"#
            ),
            r#"dag.nodes[0].dag has a cycle: "a" -> "b" -> "a""#
        );
    }

    #[test]
    fn bad_documents_name_the_place() {
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t", "after": ["b"]}]}"#),
            r#"dag.nodes[0].after[0] names "b", which is no node of this DAG"#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t"}], "edges": [["a", "x"]]}"#),
            r#"dag.edges[0][1] names "x", which is no node of this DAG"#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t"}, {"name": "a", "task": "u"}]}"#),
            r#"dag.nodes lists the node name "a" more than once"#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a/b", "task": "t"}]}"#),
            r#"dag.nodes[0].name must not contain '/' (it separates sub-DAG names), got "a/b""#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a"}]}"#),
            "dag.nodes[0].task must not be NULL"
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t", "dag": {"nodes": []}}]}"#),
            r#"dag.nodes[0] has both "dag" and "task": a node is either a job or a sub-DAG"#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "s", "dag": {"nodes": []}}]}"#),
            "dag.nodes[0].dag.nodes must not be an empty array"
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t", "mode": "some"}]}"#),
            r#"dag.nodes[0].mode must be one of "all" or "any", got "some""#
        );
        assert_eq!(
            problem(r#"{"nodes": [{"name": "a", "task": "t", "depends_on": ["nope"]}]}"#),
            r#"dag.nodes[0].depends_on[0] must be a UUID string, got the string "nope""#
        );
        assert_eq!(problem(r#"[]"#), "dag must be a JSON object, got an array");
        let id = "0192f1c4-0000-7000-8000-000000000001";
        assert_eq!(
            problem(&format!(
                r#"{{"nodes": [{{"name": "p", "task": "t"}}, {{"name": "s", "mode": "any", "after": ["p"],
                     "dag": {{"nodes": [{{"name": "a", "task": "t", "depends_on": ["{id}"]}}]}}}}]}}"#
            )),
            r#"dag.nodes[1].dag.nodes[0] has depends_on in mode "all" but its sub-DAG waits in mode "any"; give them the same mode"#
        );
        assert_eq!(
            problem(r#"{"node": []}"#),
            r#"dag has an unknown key "node""#
        );
        assert_eq!(
            problem(
                r#"{"nodes": [{"name": "s", "dag": {"nodes": [{"name": "a", "task": "t"}, {"name": "b", "task": "t"}]}},
                              {"name": "c", "task": "t", "mode": "any", "after": ["s"]}]}"#
            ),
            r#"dag.nodes[1].after[0] names sub-DAG "s", which ends in 2 jobs: mode "any" cannot wait for a sub-DAG with more than one last node"#
        );
    }
}
