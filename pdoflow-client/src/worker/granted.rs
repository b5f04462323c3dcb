//! Jobs of granted-only tasks (`Task::GRANTED_ONLY`, the built-in `shell`)
//! run only when the role that enqueued them holds a grant of the task now.
//! Grants decide who may enqueue; this check, made by the worker right
//! before it runs such a job, also covers jobs enqueued before the task was
//! granted (before pdoflow 0.4.0 too), by a role whose grant was revoked
//! since, or while the task had no grant at all.

use std::collections::HashMap;

use uuid::Uuid;

use crate::client::{ClaimedJob, Client};
use crate::task::TaskRegistry;

/// The claimed jobs that must not run, with the error each ends with.
pub(super) async fn refusals(
    db: &Client,
    registry: &TaskRegistry,
    jobs: &[ClaimedJob],
) -> HashMap<Uuid, String> {
    let guarded: Vec<Uuid> = jobs
        .iter()
        .filter(|job| registry.granted_only(&job.task))
        .map(|job| job.id)
        .collect();
    if guarded.is_empty() {
        return HashMap::new();
    }
    let task_of = |id: &Uuid| {
        jobs.iter()
            .find(|job| job.id == *id)
            .map_or("?", |job| job.task.as_str())
    };
    match db.ungranted(&guarded).await {
        Ok(ungranted) => ungranted
            .into_iter()
            .map(|id| {
                let task = task_of(&id);
                let reason = format!(
                    "not run: the role that enqueued this job holds no grant of task {task:?} \
                     (see the job's enqueued_by and pdoflow.task_grants); a worker runs {task:?} \
                     jobs only for roles granted it"
                );
                (id, reason)
            })
            .collect(),
        // Cannot tell: run none of them.
        Err(error) => guarded
            .into_iter()
            .map(|id| {
                let reason = format!(
                    "not run: whether task {:?} is granted to the role that enqueued this job \
                     could not be checked: {error}",
                    task_of(&id)
                );
                (id, reason)
            })
            .collect(),
    }
}
