//! Postings: named groups of jobs that are paused, resumed, cancelled and
//! followed together, and that give their jobs a queue and priority.
//!
//! `client.posting("nightly").create()` makes one and returns a [`Posting`]
//! handle; `Client::posting_status` and `Client::postings` read
//! `pdoflow.posting_status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::NewJob;

/// The status a posting can be set to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PostingState {
    /// Its jobs run.
    Active,
    /// Its queued jobs wait (`paused`, none is claimed) until it is active
    /// again.
    Paused,
    /// Its jobs that have not started end as cancelled; final.
    Cancelled,
}

impl PostingState {
    /// The name the SQL API takes.
    pub fn as_str(self) -> &'static str {
        match self {
            PostingState::Active => "active",
            PostingState::Paused => "paused",
            PostingState::Cancelled => "cancelled",
        }
    }
}

/// One row of `pdoflow.posting_status`: a posting and its jobs' counts.
#[derive(Clone, Debug, Serialize)]
pub struct PostingStatus {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `active`, `paused` or `cancelled`.
    pub status: String,
    /// The queue of its jobs that name none.
    pub queue: Option<String>,
    /// The priority of its jobs that set none.
    pub priority: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub status_changed_at: Option<DateTime<Utc>>,
    pub total: i64,
    /// Queued or paused.
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub blocked: i64,
    /// Every job has ended (and there was one, or the posting is cancelled).
    pub complete: bool,
}

/// The columns `PostingStatus::from_row` reads, in order.
const POSTING_COLUMNS: &str = "id, name, description, status, queue, priority, created_at, \
     status_changed_at, total, queued, running, succeeded, failed, cancelled, blocked, complete";

impl PostingStatus {
    fn from_row(row: &Row) -> Result<PostingStatus, tokio_postgres::Error> {
        Ok(PostingStatus {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            description: row.try_get(2)?,
            status: row.try_get(3)?,
            queue: row.try_get(4)?,
            priority: row.try_get(5)?,
            created_at: row.try_get(6)?,
            status_changed_at: row.try_get(7)?,
            total: row.try_get(8)?,
            queued: row.try_get(9)?,
            running: row.try_get(10)?,
            succeeded: row.try_get(11)?,
            failed: row.try_get(12)?,
            cancelled: row.try_get(13)?,
            blocked: row.try_get(14)?,
            complete: row.try_get(15)?,
        })
    }

    /// Jobs that have ended: succeeded, failed or cancelled.
    pub fn finished(&self) -> i64 {
        self.succeeded + self.failed + self.cancelled
    }
}

/// A new posting's settings; `create` makes it.
#[must_use = "a posting is made only by create()"]
pub struct PostingBuilder<'a> {
    client: &'a Client,
    name: String,
    description: Option<String>,
    queue: Option<String>,
    priority: Option<i32>,
}

impl<'a> PostingBuilder<'a> {
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The queue of its jobs that name none.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The priority of its jobs that set none.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Creates the posting (`active`).
    pub async fn create(self) -> Result<Posting<'a>> {
        let row = self
            .client
            .postgres()
            .query_one(
                "SELECT pdoflow.create_posting($1, $2, $3, $4)",
                &[&self.name, &self.description, &self.priority, &self.queue],
            )
            .await?;
        Ok(Posting::new(self.client, row.try_get(0)?))
    }
}

/// A handle on one posting: enqueue into it, read or change its status.
#[derive(Clone, Copy)]
pub struct Posting<'a> {
    client: &'a Client,
    id: Uuid,
}

impl std::fmt::Debug for Posting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Posting").field("id", &self.id).finish()
    }
}

impl<'a> Posting<'a> {
    /// A handle on the existing posting `id` (not checked until used).
    pub fn new(client: &'a Client, id: Uuid) -> Posting<'a> {
        Posting { client, id }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Enqueues `job` into this posting; returns its id.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Uuid> {
        self.client.enqueue(&job.clone().posting(self.id)).await
    }

    /// Enqueues `jobs` into this posting in one statement; returns their ids
    /// in the order given.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        let jobs: Vec<NewJob> = jobs
            .iter()
            .map(|job| job.clone().posting(self.id))
            .collect();
        self.client.enqueue_many(&jobs).await
    }

    /// Submits `dag` into this posting.
    pub async fn submit_dag(&self, dag: &crate::dag::Dag) -> Result<crate::dag::DagIds> {
        self.client.submit_dag(dag, Some(self.id)).await
    }

    pub async fn status(&self) -> Result<PostingStatus> {
        self.client
            .posting_status(self.id)
            .await?
            .ok_or(Error::NoSuchPosting(self.id))
    }

    /// Stops its jobs from being claimed; false if it was already paused.
    pub async fn pause(&self) -> Result<bool> {
        self.client
            .set_posting_status(self.id, PostingState::Paused)
            .await
    }

    /// Lets its jobs run again; false if it was already active.
    pub async fn resume(&self) -> Result<bool> {
        self.client
            .set_posting_status(self.id, PostingState::Active)
            .await
    }

    /// Cancels its unfinished jobs; false if it was already cancelled.
    pub async fn cancel(&self) -> Result<bool> {
        self.client
            .set_posting_status(self.id, PostingState::Cancelled)
            .await
    }
}

impl Client {
    /// Starts a new posting named `name`; finish with `.create()`.
    pub fn posting(&self, name: impl Into<String>) -> PostingBuilder<'_> {
        PostingBuilder {
            client: self,
            name: name.into(),
            description: None,
            queue: None,
            priority: None,
        }
    }

    /// The posting `id` and its job counts.
    pub async fn posting_status(&self, id: Uuid) -> Result<Option<PostingStatus>> {
        let sql = format!("SELECT {POSTING_COLUMNS} FROM pdoflow.posting_status WHERE id = $1");
        Ok(self
            .postgres()
            .query_opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(PostingStatus::from_row)
            .transpose()?)
    }

    /// Every posting, newest first.
    pub async fn postings(&self) -> Result<Vec<PostingStatus>> {
        let sql = format!(
            "SELECT {POSTING_COLUMNS} FROM pdoflow.posting_status ORDER BY created_at DESC, id DESC"
        );
        let rows = self.postgres().query(&sql, &[]).await?;
        Ok(rows
            .iter()
            .map(PostingStatus::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Sets the posting's status; false if it already had it. A cancelled
    /// posting cannot change (SQLSTATE 55000).
    pub async fn set_posting_status(&self, id: Uuid, status: PostingState) -> Result<bool> {
        let sql = "SELECT pdoflow.set_posting_status($1, $2)";
        self.posting_call(sql, id, &[&id, &status.as_str()]).await
    }

    /// Deletes a posting whose jobs have all ended, with those jobs; false
    /// when there is no such posting. Refused (SQLSTATE 55000) while some
    /// are unfinished.
    pub async fn delete_posting(&self, id: Uuid) -> Result<bool> {
        self.posting_call("SELECT pdoflow.delete_posting($1)", id, &[&id])
            .await
    }

    /// Runs a posting function returning boolean; an unknown posting
    /// (22023, invalid_parameter_value) becomes `NoSuchPosting`.
    async fn posting_call(
        &self,
        sql: &str,
        id: Uuid,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool> {
        match self.postgres().query_one(sql, params).await {
            Ok(row) => Ok(row.try_get(0)?),
            Err(error) if error.code().map(|code| code.code()) == Some("22023") => {
                Err(Error::NoSuchPosting(id))
            }
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_the_sql_api_names() {
        for (state, name) in [
            (PostingState::Active, "active"),
            (PostingState::Paused, "paused"),
            (PostingState::Cancelled, "cancelled"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(serde_json::to_value(state).ok(), Some(name.into()));
        }
    }
}
