//! Cron schedules: jobs that pdoflow's sweeper enqueues at the times a cron
//! pattern names (`pdoflow.schedule` and its siblings).
//!
//! A [`Schedule`] is built like a [`NewJob`](crate::NewJob) and saved with
//! `Client::schedule` (which creates or replaces it by name);
//! `Client::schedules` reads `pdoflow.schedules`. The server checks the
//! pattern and the time zone and says what is wrong with them.
//!
//! ```no_run
//! # async fn example(client: &pdoflow_client::Client) -> pdoflow_client::Result<()> {
//! use pdoflow_client::Schedule;
//!
//! let nightly = Schedule::new("nightly-report", "30 2 * * *", "report", &serde_json::json!({"kind": "sales"}))?
//!     .time_zone("Europe/Berlin")
//!     .queue("reports");
//! client.schedule(&nightly).await?;
//! client.pause_schedule("nightly-report").await?;
//! # Ok(())
//! # }
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};

/// A schedule to create or replace: its name, when it runs (a cron pattern
/// and the time zone it is read in) and the job it enqueues each time.
/// Options left unset take `pdoflow.schedule`'s defaults (queue `default`,
/// priority 0, 5 attempts, time zone `UTC`, catching up after downtime).
#[derive(Clone, Debug)]
pub struct Schedule {
    name: String,
    cron: String,
    task: String,
    args: Value,
    queue: Option<String>,
    priority: Option<i32>,
    max_attempts: Option<i32>,
    time_zone: Option<String>,
    catch_up: Option<bool>,
}

impl Schedule {
    /// Schedule `name`: a job of `task` with `args` (any `Serialize` value)
    /// at every occurrence of `cron`. The pattern has five fields (`*/5 * *
    /// * *`), six with seconds first, or is a shortcut (`@hourly`, `@daily`,
    /// ...) or `every N seconds` (1 to 59).
    pub fn new(
        name: impl Into<String>,
        cron: impl Into<String>,
        task: impl Into<String>,
        args: &impl Serialize,
    ) -> Result<Schedule> {
        let task = task.into();
        let args = serde_json::to_value(args).map_err(|source| Error::Json {
            context: format!("arguments of task {task:?}"),
            source,
        })?;
        Ok(Schedule {
            name: name.into(),
            cron: cron.into(),
            task,
            args,
            queue: None,
            priority: None,
            max_attempts: None,
            time_zone: None,
            catch_up: None,
        })
    }

    /// The queue of its jobs.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The priority of its jobs (higher runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The attempts each of its jobs gets.
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// The IANA time zone the pattern is read in (`Europe/Berlin`; spelled
    /// as in the tz database), so that `0 9 * * *` stays 9 o'clock across
    /// daylight saving changes. Default `UTC`.
    pub fn time_zone(mut self, time_zone: impl Into<String>) -> Self {
        self.time_zone = Some(time_zone.into());
        self
    }

    /// After downtime (the server or its sweeper stopped), whether one job
    /// runs at once for the latest occurrence missed (true, the default) or
    /// missed occurrences are skipped. (A resumed schedule goes on from its
    /// next occurrence either way.)
    pub fn catch_up(mut self, catch_up: bool) -> Self {
        self.catch_up = Some(catch_up);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `pdoflow.schedule` call and its parameters: the required ones,
    /// then by name only the options that are set, so that the server's
    /// defaults stay the only ones.
    fn call(&self) -> (String, Vec<&(dyn ToSql + Sync)>) {
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&self.name, &self.cron, &self.task, &self.args];
        let mut sql =
            String::from("SELECT pdoflow.schedule(name => $1, cron => $2, task => $3, args => $4");
        let options: [(&str, Option<&(dyn ToSql + Sync)>); 5] = [
            ("queue", self.queue.as_ref().map(|value| value as _)),
            ("priority", self.priority.as_ref().map(|value| value as _)),
            (
                "max_attempts",
                self.max_attempts.as_ref().map(|value| value as _),
            ),
            ("time_zone", self.time_zone.as_ref().map(|value| value as _)),
            ("catch_up", self.catch_up.as_ref().map(|value| value as _)),
        ];
        for (option, value) in options {
            if let Some(value) = value {
                params.push(value);
                sql.push_str(&format!(", {option} => ${}", params.len()));
            }
        }
        sql.push(')');
        (sql, params)
    }
}

/// One row of `pdoflow.schedules`.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub task: String,
    pub queue: String,
    pub time_zone: String,
    /// The next occurrence to enqueue; `None` when the pattern has none
    /// left.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The occurrence enqueued last (its scheduled time), and its job.
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job: Option<Uuid>,
    pub paused: bool,
    pub args: Value,
    pub priority: i32,
    pub max_attempts: i32,
    pub catch_up: bool,
    /// The role its jobs are enqueued as: the one that created (or last
    /// replaced) it.
    pub owner: String,
    /// Why the last due occurrence was not enqueued, if it was not.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns `ScheduleInfo::from_row` reads, in order. A schedule whose
/// pattern has no occurrence left has next_run_at 'infinity', which no
/// `DateTime` holds: it reads as NULL.
const SCHEDULE_COLUMNS: &str = "name, cron, task, queue, time_zone, \
     CASE WHEN isfinite(next_run_at) THEN next_run_at END, last_run_at, last_job, paused, \
     args, priority, max_attempts, catch_up, owner, last_error, created_at, updated_at";

impl ScheduleInfo {
    fn from_row(row: &Row) -> Result<ScheduleInfo, tokio_postgres::Error> {
        Ok(ScheduleInfo {
            name: row.try_get(0)?,
            cron: row.try_get(1)?,
            task: row.try_get(2)?,
            queue: row.try_get(3)?,
            time_zone: row.try_get(4)?,
            next_run_at: row.try_get(5)?,
            last_run_at: row.try_get(6)?,
            last_job: row.try_get(7)?,
            paused: row.try_get(8)?,
            args: row.try_get(9)?,
            priority: row.try_get(10)?,
            max_attempts: row.try_get(11)?,
            catch_up: row.try_get(12)?,
            owner: row.try_get(13)?,
            last_error: row.try_get(14)?,
            created_at: row.try_get(15)?,
            updated_at: row.try_get(16)?,
        })
    }
}

impl Client {
    /// Creates the schedule, or replaces the one of the same name (which
    /// then runs next at the new pattern's next occurrence from now). A bad
    /// pattern or time zone is refused with SQLSTATE 22023 and a message
    /// that says why. Its jobs are enqueued as the role connected here,
    /// under that role's task grants.
    pub async fn schedule(&self, schedule: &Schedule) -> Result<()> {
        let (sql, params) = schedule.call();
        self.postgres().execute(&sql, &params).await?;
        Ok(())
    }

    /// Removes the schedule `name` (the jobs it enqueued stay); false when
    /// there is none.
    pub async fn unschedule(&self, name: &str) -> Result<bool> {
        let row = self
            .postgres()
            .query_one("SELECT pdoflow.unschedule($1)", &[&name])
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Stops the schedule `name` from enqueueing jobs until it is resumed;
    /// false when it was paused already.
    pub async fn pause_schedule(&self, name: &str) -> Result<bool> {
        self.schedule_call("SELECT pdoflow.pause_schedule($1)", name)
            .await
    }

    /// Lets the schedule `name` run again, from its next occurrence after
    /// now: what fell due while it was paused does not run. False when it
    /// was not paused.
    pub async fn resume_schedule(&self, name: &str) -> Result<bool> {
        self.schedule_call("SELECT pdoflow.resume_schedule($1)", name)
            .await
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM pdoflow.schedules ORDER BY name");
        let rows = self.postgres().query(&sql, &[]).await?;
        Ok(rows
            .iter()
            .map(ScheduleInfo::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The schedule `name`, if there is one.
    pub async fn schedule_info(&self, name: &str) -> Result<Option<ScheduleInfo>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM pdoflow.schedules WHERE name = $1");
        Ok(self
            .postgres()
            .query_opt(&sql, &[&name])
            .await?
            .as_ref()
            .map(ScheduleInfo::from_row)
            .transpose()?)
    }

    /// Runs a function of one schedule; an unknown schedule (no_data_found,
    /// P0002) becomes `NoSuchSchedule`.
    async fn schedule_call(&self, sql: &str, name: &str) -> Result<bool> {
        match self.postgres().query_one(sql, &[&name]).await {
            Ok(row) => Ok(row.try_get(0)?),
            Err(error) if error.code().map(|code| code.code()) == Some("P0002") => {
                Err(Error::NoSuchSchedule(name.to_owned()))
            }
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_options_set_are_passed_by_name() -> Result<()> {
        let plain = Schedule::new("s", "@hourly", "t", &serde_json::json!({}))?;
        let (sql, params) = plain.call();
        assert_eq!(
            sql,
            "SELECT pdoflow.schedule(name => $1, cron => $2, task => $3, args => $4)"
        );
        assert_eq!(params.len(), 4);
        let full = plain
            .queue("q")
            .max_attempts(2)
            .time_zone("Europe/Berlin")
            .catch_up(false);
        let (sql, params) = full.call();
        assert_eq!(
            sql,
            "SELECT pdoflow.schedule(name => $1, cron => $2, task => $3, args => $4, \
             queue => $5, max_attempts => $6, time_zone => $7, catch_up => $8)"
        );
        assert_eq!(params.len(), 8);
        Ok(())
    }
}
