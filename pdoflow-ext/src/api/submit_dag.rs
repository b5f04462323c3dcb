//! `pdoflow._plan_dag`: the SQL side of `pdoflow.submit_dag` (sql/api/dag.sql)
//! gets the planned jobs as parallel arrays, with their ids made here so
//! parents always have smaller ids than their children.

use pgrx::prelude::*;

use crate::api::ids::new_id;
use crate::input::checks::{current_limits, judge_timestamp};
use crate::input::dag_document::{self, Parent};
use crate::input::errors::InputError;
use crate::input::rules::present;

type PlanRow = (
    Vec<String>,
    Vec<pgrx::Uuid>,
    Vec<String>,
    Vec<Option<String>>,
    Vec<i32>,
    Vec<pgrx::Uuid>,
    Vec<bool>,
);

/// Plans a DAG document: one row of arrays, one element per job in `names`,
/// `ids`, `nodes` (the node objects as JSON text) and `modes`; one per
/// dependency in the `edge_*` arrays (`edge_children` are 1-based positions;
/// `edge_planned` says whether the parent is a job of this plan).
// pgrx reads the columns' names from this signature, so it cannot be a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, name = "_plan_dag")]
fn plan_dag(
    dag: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(names, Vec<String>),
        name!(ids, Vec<pgrx::Uuid>),
        name!(nodes, Vec<String>),
        name!(modes, Vec<Option<String>>),
        name!(edge_children, Vec<i32>),
        name!(edge_parents, Vec<pgrx::Uuid>),
        name!(edge_planned, Vec<bool>),
    ),
> {
    match plan(dag) {
        Ok(row) => TableIterator::once(row),
        Err(error) => {
            pgrx::pg_sys::panic::ErrorReport::from(error).report(PgLogLevel::ERROR);
            unreachable!("an ERROR report does not return")
        }
    }
}

fn plan(dag: Option<&str>) -> Result<PlanRow, InputError> {
    let dag = present("dag", dag, Some("Pass a DAG document: {\"nodes\": [...]}."))?;
    let jobs = dag_document::plan(dag, &judge_timestamp, &current_limits())?;
    let ids: Vec<pgrx::Uuid> = jobs.iter().map(|_| new_id()).collect();
    let (mut edge_children, mut edge_parents, mut edge_planned) =
        (Vec::new(), Vec::new(), Vec::new());
    for (position, job) in jobs.iter().enumerate() {
        for parent in &job.parents {
            edge_children.push(position as i32 + 1);
            match parent {
                Parent::Planned(parent) => {
                    edge_parents.push(ids[*parent]);
                    edge_planned.push(true);
                }
                Parent::Existing(id) => {
                    edge_parents.push(pgrx::Uuid::from_bytes(id.into_bytes()));
                    edge_planned.push(false);
                }
            }
        }
    }
    Ok((
        jobs.iter().map(|job| job.name.clone()).collect(),
        ids,
        jobs.iter().map(|job| job.node.to_owned()).collect(),
        jobs.iter().map(|job| job.mode.clone()).collect(),
        edge_children,
        edge_parents,
        edge_planned,
    ))
}
