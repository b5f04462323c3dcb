//! DAG workflows: jobs that wait for other jobs, submitted together.
//!
//! A [`Dag`] names its nodes; each is a job or a nested `Dag` (a sub-DAG,
//! whose jobs are named `sub/inner`) and runs after the nodes it names in
//! `after` (or in `edge`s). `Client::submit_dag` sends it as
//! `pdoflow.submit_dag`'s document and returns each job's id by full name.
//! The server checks names, cycles and unknown nodes; the builder only
//! refuses what the document cannot say.
//!
//! ```no_run
//! # async fn example(client: &pdoflow_client::Client) -> pdoflow_client::Result<()> {
//! use pdoflow_client::{Dag, NewJob};
//!
//! let mut dag = Dag::new();
//! dag.node("fetch_a", NewJob::new("fetch", &"a")?);
//! dag.node("fetch_b", NewJob::new("fetch", &"b")?);
//! dag.node("merge", NewJob::new("merge", &())?).after(["fetch_a", "fetch_b"]);
//! let ids = client.submit_dag(&dag, None).await?;
//! println!("merge is job {:?}", ids.get("merge"));
//! # Ok(())
//! # }
//! ```

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::{DependencyMode, NewJob};

/// A workflow of named jobs and sub-DAGs, in the order added.
#[derive(Clone, Debug, Default)]
pub struct Dag {
    nodes: Vec<Node>,
    edges: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct Node {
    name: String,
    body: Body,
    after: Vec<String>,
}

#[derive(Clone, Debug)]
enum Body {
    /// The job's own `depends_on` and `dependency_mode` are the node's.
    Job(NewJob),
    /// A sub-DAG's `mode` and `depends_on` apply to its first nodes.
    Dag {
        dag: Dag,
        mode: Option<DependencyMode>,
        depends_on: Vec<Uuid>,
    },
}

/// A job node just added, to say what it waits for.
pub struct JobNode<'a>(&'a mut Node);

/// A sub-DAG node just added, to say what it waits for.
pub struct SubDagNode<'a>(&'a mut Node);

impl Dag {
    pub fn new() -> Dag {
        Dag::default()
    }

    /// Adds the job node `name`. A posting set on `job` does not apply in a
    /// DAG: give it to `submit_dag`.
    pub fn node(&mut self, name: impl Into<String>, job: NewJob) -> JobNode<'_> {
        JobNode(self.push(name.into(), Body::Job(job)))
    }

    /// Adds `dag` as node `name`: its jobs are named `name/inner`.
    pub fn sub_dag(&mut self, name: impl Into<String>, dag: Dag) -> SubDagNode<'_> {
        let body = Body::Dag {
            dag,
            mode: None,
            depends_on: Vec::new(),
        };
        SubDagNode(self.push(name.into(), body))
    }

    /// Node `to` runs after node `from` (the same as `to`'s `after`).
    pub fn edge(&mut self, from: impl Into<String>, to: impl Into<String>) -> &mut Self {
        self.edges.push((from.into(), to.into()));
        self
    }

    fn push(&mut self, name: String, body: Body) -> &mut Node {
        self.nodes.push(Node {
            name,
            body,
            after: Vec::new(),
        });
        let last = self.nodes.len() - 1;
        &mut self.nodes[last]
    }

    /// `pdoflow.submit_dag`'s document: `{"nodes": [...], "edges": [...]}`,
    /// each node with its job's keys (`dependency_mode` as `mode`).
    pub fn to_document(&self) -> Value {
        let nodes = self.nodes.iter().map(Node::to_document).collect();
        let mut document = Map::new();
        document.insert("nodes".into(), Value::Array(nodes));
        if !self.edges.is_empty() {
            let edges = self
                .edges
                .iter()
                .map(|(from, to)| Value::from(vec![from.as_str(), to.as_str()]))
                .collect();
            document.insert("edges".into(), Value::Array(edges));
        }
        Value::Object(document)
    }

    /// Refuses a job with a posting of its own, which the document cannot
    /// carry (the posting is `submit_dag`'s), naming the node.
    fn check(&self, prefix: &str) -> Result<()> {
        for node in &self.nodes {
            let path = format!("{prefix}{}", node.name);
            match &node.body {
                Body::Job(job) if job.posting.is_some() => {
                    return Err(Error::Invalid(format!(
                        "DAG node {path:?}: a job in a DAG cannot name its own posting; \
                         pass the posting to submit_dag"
                    )));
                }
                Body::Job(_) => {}
                Body::Dag { dag, .. } => dag.check(&format!("{path}/"))?,
            }
        }
        Ok(())
    }
}

impl Node {
    fn to_document(&self) -> Value {
        let mut fields = Map::new();
        fields.insert("name".into(), Value::String(self.name.clone()));
        match &self.body {
            Body::Job(job) => {
                for (key, value) in job.fields() {
                    let key = match key.as_str() {
                        // Refused by `Dag::check` before submission.
                        "posting" => continue,
                        "dependency_mode" => "mode".to_owned(),
                        _ => key,
                    };
                    fields.insert(key, value);
                }
            }
            Body::Dag {
                dag,
                mode,
                depends_on,
            } => {
                fields.insert("dag".into(), dag.to_document());
                if let Some(mode) = mode {
                    fields.insert("mode".into(), mode.as_str().into());
                }
                if !depends_on.is_empty() {
                    let ids = depends_on.iter().map(|id| Value::String(id.to_string()));
                    fields.insert("depends_on".into(), Value::Array(ids.collect()));
                }
            }
        }
        if !self.after.is_empty() {
            fields.insert("after".into(), Value::from(self.after.clone()));
        }
        Value::Object(fields)
    }
}

impl JobNode<'_> {
    /// Adds nodes of the same level this job runs after.
    pub fn after<S: Into<String>>(self, names: impl IntoIterator<Item = S>) -> Self {
        self.0.after.extend(names.into_iter().map(Into::into));
        self
    }

    /// Whether all parents (default) or any one must succeed.
    pub fn mode(self, mode: DependencyMode) -> Self {
        if let Body::Job(job) = &mut self.0.body {
            job.dependency_mode = Some(mode);
        }
        self
    }

    /// Adds parents outside the DAG: jobs that exist already.
    pub fn depends_on(self, ids: impl IntoIterator<Item = Uuid>) -> Self {
        if let Body::Job(job) = &mut self.0.body {
            job.depends_on.extend(ids);
        }
        self
    }
}

impl SubDagNode<'_> {
    /// Adds nodes of the same level this sub-DAG runs after: its first
    /// nodes wait for them; nodes after it wait for its last nodes.
    pub fn after<S: Into<String>>(self, names: impl IntoIterator<Item = S>) -> Self {
        self.0.after.extend(names.into_iter().map(Into::into));
        self
    }

    /// Whether all parents (default) or any one must succeed, for its first
    /// nodes.
    pub fn mode(self, mode: DependencyMode) -> Self {
        if let Body::Dag { mode: slot, .. } = &mut self.0.body {
            *slot = Some(mode);
        }
        self
    }

    /// Adds parents outside the DAG, for its first nodes.
    pub fn depends_on(self, ids: impl IntoIterator<Item = Uuid>) -> Self {
        if let Body::Dag { depends_on, .. } = &mut self.0.body {
            depends_on.extend(ids);
        }
        self
    }
}

/// One job of a submitted DAG.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DagJob {
    /// The full node name (`sub/inner` inside a sub-DAG).
    pub name: String,
    pub id: Uuid,
}

/// The jobs of a submitted DAG, in the order the server returned them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DagIds(Vec<DagJob>);

impl DagIds {
    /// The id of the job named `name` (its full name).
    pub fn get(&self, name: &str) -> Option<Uuid> {
        self.0.iter().find(|job| job.name == name).map(|job| job.id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &DagJob> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for DagIds {
    type Item = DagJob;
    type IntoIter = std::vec::IntoIter<DagJob>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Client {
    /// Submits `dag` (into `posting`, if given) in one statement, all or
    /// nothing; returns each job's id by full node name (for a node whose
    /// `unique_key` another job holds, that job's id: no job is added for
    /// it).
    pub async fn submit_dag(&self, dag: &Dag, posting: Option<Uuid>) -> Result<DagIds> {
        dag.check("")?;
        self.submit_dag_document(&dag.to_document(), posting).await
    }

    /// Submits a DAG document written elsewhere (a file, say) as it is.
    pub async fn submit_dag_document(
        &self,
        document: &Value,
        posting: Option<Uuid>,
    ) -> Result<DagIds> {
        let rows = self
            .postgres()
            .query(
                "SELECT name, id FROM pdoflow.submit_dag($1::jsonb, $2)",
                &[document, &posting],
            )
            .await?;
        let jobs = rows
            .iter()
            .map(|row| {
                Ok(DagJob {
                    name: row.try_get(0)?,
                    id: row.try_get(1)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        Ok(DagIds(jobs))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(task: &str) -> NewJob {
        NewJob::new(task, &json!({})).expect("{} is JSON")
    }

    #[test]
    fn nodes_keep_their_order_jobs_their_keys_and_edges_their_direction() {
        let parent = Uuid::from_u128(7);
        let mut dag = Dag::new();
        dag.node(
            "fetch",
            job("fetch")
                .queue("io")
                .priority(3)
                .max_attempts(2)
                .unique_key("fetch:today")
                .unique_for(std::time::Duration::from_secs(60)),
        );
        dag.node("parse", job("parse"))
            .after(["fetch"])
            .mode(DependencyMode::Any)
            .depends_on([parent]);
        dag.node("report", job("report"));
        dag.edge("parse", "report");
        assert_eq!(
            dag.to_document(),
            json!({
                "nodes": [
                    {"name": "fetch", "task": "fetch", "args": {}, "queue": "io",
                     "priority": 3, "max_attempts": 2, "unique_key": "fetch:today",
                     "unique_for": "60 seconds"},
                    {"name": "parse", "task": "parse", "args": {}, "after": ["fetch"],
                     "mode": "any", "depends_on": [parent.to_string()]},
                    {"name": "report", "task": "report", "args": {}},
                ],
                "edges": [["parse", "report"]],
            })
        );
    }

    #[test]
    fn sub_dags_nest_as_documents() {
        let mut inner = Dag::new();
        inner.node("a", job("t"));
        inner.node("b", job("t")).after(["a"]);
        let mut dag = Dag::new();
        dag.node("start", job("t"));
        dag.sub_dag("sub", inner)
            .after(["start"])
            .mode(DependencyMode::Any)
            .depends_on([Uuid::from_u128(9)]);
        dag.node("end", job("t")).after(["sub"]);
        assert_eq!(
            dag.to_document(),
            json!({
                "nodes": [
                    {"name": "start", "task": "t", "args": {}},
                    {"name": "sub", "after": ["start"], "mode": "any",
                     "depends_on": [Uuid::from_u128(9).to_string()], "dag": {"nodes": [
                        {"name": "a", "task": "t", "args": {}},
                        {"name": "b", "task": "t", "args": {}, "after": ["a"]},
                    ]}},
                    {"name": "end", "task": "t", "args": {}, "after": ["sub"]},
                ],
            })
        );
    }

    #[test]
    fn a_job_with_a_posting_of_its_own_is_refused_by_path() {
        let mut inner = Dag::new();
        inner.node("x", job("t").posting(Uuid::from_u128(1)));
        let mut dag = Dag::new();
        dag.sub_dag("sub", inner);
        let error = dag.check("").err().map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "DAG node \"sub/x\": a job in a DAG cannot name its own posting; \
                 pass the posting to submit_dag"
            )
        );
        assert!(!dag.to_document().to_string().contains("posting"));
    }

    #[test]
    fn ids_are_found_by_full_name() {
        let ids = DagIds(vec![
            DagJob {
                name: "a".into(),
                id: Uuid::from_u128(1),
            },
            DagJob {
                name: "sub/b".into(),
                id: Uuid::from_u128(2),
            },
        ]);
        assert_eq!(ids.get("sub/b"), Some(Uuid::from_u128(2)));
        assert_eq!(ids.get("b"), None);
        assert_eq!(
            serde_json::to_value(&ids).ok(),
            Some(json!([
                {"name": "a", "id": Uuid::from_u128(1).to_string()},
                {"name": "sub/b", "id": Uuid::from_u128(2).to_string()},
            ]))
        );
    }
}
