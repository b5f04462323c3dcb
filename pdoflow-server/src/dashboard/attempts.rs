//! A job's attempts, for its page: the claims that ended without success
//! (kept by the extension in `pdoflow.job_attempts`: failed, lease expired,
//! released, cancelled), and the claim the job's own row describes (running
//! now, or the one that succeeded).

use chrono::{DateTime, Utc};
use maud::{html, Markup};
use tokio_postgres::Row;

use super::layout;

/// The most attempts a job's page lists (the latest ones).
pub const SHOWN: i64 = 100;

/// One claim of the job.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub number: i32,
    pub worker: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// failed, lease_expired, released or cancelled; for the claim of the
    /// job's own row, its state (running, succeeded, ...).
    pub outcome: String,
    pub error: Option<String>,
    /// Read from `pdoflow.job_attempts` (else from the job's own row, whose
    /// end the timeline tells as the job's).
    pub logged: bool,
}

/// The latest `SHOWN + 1` logged attempts of job `$1`, newest first (one
/// more than shown, to tell that there are more).
pub const LOGGED: &str = "
    SELECT attempt, worker, started_at, heartbeat_at, ended_at, outcome, error
    FROM pdoflow.job_attempts WHERE job = $1
    ORDER BY attempt DESC LIMIT $2";

impl Attempt {
    /// A row of [`LOGGED`].
    pub fn read(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            number: row.try_get(0)?,
            worker: row.try_get(1)?,
            started_at: row.try_get(2)?,
            heartbeat_at: row.try_get(3)?,
            ended_at: Some(row.try_get(4)?),
            outcome: row.try_get(5)?,
            error: row.try_get(6)?,
            logged: true,
        })
    }

    /// What the timeline says of this claim, with when.
    pub fn events(&self) -> Vec<(DateTime<Utc>, String)> {
        let mut events = Vec::new();
        let by = self
            .worker
            .as_ref()
            .map(|worker| format!(" by {worker}"))
            .unwrap_or_default();
        if let Some(started) = self.started_at {
            events.push((started, format!("Attempt {} claimed{by}", self.number)));
        }
        if let Some(heartbeat) = self.heartbeat_at {
            events.push((
                heartbeat,
                format!("Attempt {}: last heartbeat", self.number),
            ));
        }
        if let Some(ended) = self.ended_at.filter(|_| self.logged) {
            let how = match self.outcome.as_str() {
                "lease_expired" => "lease expired".to_owned(),
                other => other.to_owned(),
            };
            events.push((
                ended,
                match &self.error {
                    Some(error) => format!("Attempt {} {how}: {}", self.number, clip(error)),
                    None => format!("Attempt {} {how}", self.number),
                },
            ));
        }
        events
    }
}

/// The job's attempts, oldest first: the logged ones (`logged`, newest
/// first as [`LOGGED`] reads them), then the claim the job's row holds
/// (`current`) unless it is logged already (a job that failed for good, or
/// is queued again after a failure, has its latest claim logged).
pub fn all(mut logged: Vec<Attempt>, current: Option<Attempt>) -> (Vec<Attempt>, bool) {
    let more = logged.len() as i64 > SHOWN;
    logged.truncate(usize::try_from(SHOWN).unwrap_or(usize::MAX));
    logged.reverse();
    if let Some(current) = current {
        if !logged
            .iter()
            .any(|attempt| attempt.number == current.number)
        {
            logged.push(current);
        }
    }
    (logged, more)
}

/// The attempts as a table.
pub fn table(attempts: &[Attempt], more: bool) -> Markup {
    html! {
        @if attempts.is_empty() {
            p.muted #attempts { "Not claimed yet." }
        } @else {
            @if more {
                p.muted { "The latest " (SHOWN) " attempts; earlier ones are in pdoflow.job_attempts." }
            }
            div.table-wrap {
                table #attempts {
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { "Outcome" }
                        th scope="col" { "Worker" }
                        th scope="col" .wide { "Claimed" }
                        th scope="col" .wide { "Last heartbeat" }
                        th scope="col" { "Ended" }
                        th scope="col" { "Error" }
                    } }
                    tbody {
                        @for attempt in attempts {
                            tr {
                                td { (attempt.number) }
                                td { (layout::badge(&attempt.outcome)) }
                                td { (attempt.worker.as_deref().unwrap_or("—")) }
                                td.wide { (layout::when(attempt.started_at)) }
                                td.wide { (layout::when(attempt.heartbeat_at)) }
                                td { (layout::when(attempt.ended_at)) }
                                td {
                                    @match &attempt.error {
                                        Some(error) => pre.error-text tabindex="0" { (error) },
                                        None => span.muted { "—" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An error cut to a line's worth for the timeline (the table has it whole).
fn clip(error: &str) -> String {
    const CHARS: usize = 120;
    let line = error.lines().next().unwrap_or_default();
    if line.chars().count() > CHARS || line.len() < error.len() {
        let cut: String = line.chars().take(CHARS).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(number: i32, outcome: &str) -> Attempt {
        Attempt {
            number,
            worker: Some("w".into()),
            started_at: None,
            heartbeat_at: None,
            ended_at: None,
            outcome: outcome.into(),
            error: None,
            logged: true,
        }
    }

    #[test]
    fn the_jobs_own_claim_comes_last_unless_it_is_logged() {
        let logged = vec![attempt(2, "lease_expired"), attempt(1, "failed")];
        let (all_of_them, more) = all(logged.clone(), Some(attempt(3, "succeeded")));
        let numbers: Vec<i32> = all_of_them.iter().map(|a| a.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert!(!more);
        let (failed_for_good, _) = all(logged, Some(attempt(2, "failed")));
        let outcomes: Vec<&str> = failed_for_good.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes, ["failed", "lease_expired"]);
    }

    #[test]
    fn only_the_latest_are_shown() {
        let logged: Vec<Attempt> = (1..=SHOWN as i32 + 1)
            .rev()
            .map(|n| attempt(n, "failed"))
            .collect();
        let (shown, more) = all(logged, None);
        assert!(more);
        assert_eq!(shown.len() as i64, SHOWN);
        assert_eq!(shown.first().map(|a| a.number), Some(2));
    }

    #[test]
    fn the_timeline_takes_an_errors_first_line() {
        assert_eq!(clip("short"), "short");
        assert_eq!(clip("first\nsecond"), "first…");
        assert_eq!(clip(&"x".repeat(130)).chars().count(), 121);
    }
}
