//! Jobs enqueued, succeeded and failed per minute over the last hour, for
//! the overview's chart. Seeded once from the jobs themselves (when they
//! were created and finished), then kept up from the cumulative counters
//! of `pdoflow.stats`: each sample's increase goes to the minute it was
//! seen in, so the chart costs no scan of the jobs while it runs.

use std::collections::VecDeque;

use serde::Serialize;
use uuid::Uuid;

/// Minutes the chart shows.
pub const MINUTES: i64 = 60;

/// The counters `pdoflow.stats` adds up, summed over every queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub enqueued: i64,
    pub claimed: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub retried: i64,
    pub cancelled: i64,
    pub leases_expired: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Minute {
    /// Its start, in seconds since 1970.
    start: i64,
    enqueued: i64,
    succeeded: i64,
    failed: i64,
}

/// The chart's data, as uPlot takes it: one array of x values (minute
/// starts, seconds since 1970) and one per series.
#[derive(Debug, Serialize, PartialEq)]
pub struct Series {
    pub t: Vec<i64>,
    pub enqueued: Vec<i64>,
    pub succeeded: Vec<i64>,
    pub failed: Vec<i64>,
}

impl Series {
    /// The sums over the whole hour: enqueued, succeeded, failed.
    pub fn sums(&self) -> (i64, i64, i64) {
        (
            self.enqueued.iter().sum(),
            self.succeeded.iter().sum(),
            self.failed.iter().sum(),
        )
    }
}

#[derive(Default)]
pub struct Throughput {
    minutes: VecDeque<Minute>,
    /// The counters at the last sample (None before the first).
    last: Option<Totals>,
}

impl Throughput {
    /// Counts seen in the jobs (seeding): `(minute start, enqueued,
    /// succeeded, failed)`.
    pub fn seed(&mut self, rows: impl IntoIterator<Item = (i64, i64, i64, i64)>) {
        for (start, enqueued, succeeded, failed) in rows {
            self.add(start, enqueued, succeeded, failed);
        }
    }

    /// A sample of the counters at `now` (seconds since 1970): what grew
    /// since the last one goes to `now`'s minute. A counter that went
    /// down was reset (`pdoflow.stats_reset`, a server restart): all of
    /// its new value is new.
    pub fn sample(&mut self, totals: Totals, now: i64) {
        if let Some(last) = self.last {
            let grown = |new: i64, old: i64| if new >= old { new - old } else { new };
            self.add(
                now,
                grown(totals.enqueued, last.enqueued),
                grown(totals.succeeded, last.succeeded),
                grown(totals.failed, last.failed),
            );
        }
        self.last = Some(totals);
        self.forget_before(now - MINUTES * 60);
    }

    fn add(&mut self, at: i64, enqueued: i64, succeeded: i64, failed: i64) {
        let start = at - at.rem_euclid(60);
        let index = match self.minutes.iter().position(|minute| minute.start >= start) {
            Some(index) if self.minutes[index].start == start => index,
            Some(index) => {
                self.minutes.insert(
                    index,
                    Minute {
                        start,
                        ..Minute::default()
                    },
                );
                index
            }
            None => {
                self.minutes.push_back(Minute {
                    start,
                    ..Minute::default()
                });
                self.minutes.len() - 1
            }
        };
        let minute = &mut self.minutes[index];
        minute.enqueued += enqueued;
        minute.succeeded += succeeded;
        minute.failed += failed;
    }

    fn forget_before(&mut self, at: i64) {
        let start = at - at.rem_euclid(60);
        while self
            .minutes
            .front()
            .is_some_and(|minute| minute.start < start)
        {
            self.minutes.pop_front();
        }
    }

    /// The last hour up to `now`'s minute, every minute present (zero when
    /// nothing happened).
    pub fn series(&self, now: i64) -> Series {
        let last = now - now.rem_euclid(60);
        let first = last - (MINUTES - 1) * 60;
        let mut series = Series {
            t: Vec::new(),
            enqueued: Vec::new(),
            succeeded: Vec::new(),
            failed: Vec::new(),
        };
        let mut minutes = self.minutes.iter().peekable();
        for start in (first..=last).step_by(60) {
            while minutes.peek().is_some_and(|minute| minute.start < start) {
                minutes.next();
            }
            let minute = match minutes.peek() {
                Some(minute) if minute.start == start => **minute,
                _ => Minute::default(),
            };
            series.t.push(start);
            series.enqueued.push(minute.enqueued);
            series.succeeded.push(minute.succeeded);
            series.failed.push(minute.failed);
        }
        series
    }
}

/// The smallest UUIDv7 of the millisecond `unix_ms`: job ids from then on
/// sort after it, so the primary keys find the jobs created since.
pub fn first_uuid_v7_of(unix_ms: u64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a minute (1,800,000,000 is a multiple of 60).
    const MINUTE_START: i64 = 1_800_000_000;

    fn totals(enqueued: i64, succeeded: i64, failed: i64) -> Totals {
        Totals {
            enqueued,
            succeeded,
            failed,
            ..Totals::default()
        }
    }

    #[test]
    fn samples_count_what_grew_in_their_minute() {
        let mut throughput = Throughput::default();
        let t0 = MINUTE_START;
        throughput.sample(totals(100, 50, 1), t0 + 5);
        throughput.sample(totals(110, 55, 1), t0 + 30);
        throughput.sample(totals(130, 70, 3), t0 + 65);
        let series = throughput.series(t0 + 70);
        assert_eq!(series.t.len(), MINUTES as usize);
        assert_eq!(*series.t.last().unwrap(), t0 + 60);
        let n = series.t.len();
        assert_eq!(series.enqueued[n - 2..], [10, 20]);
        assert_eq!(series.succeeded[n - 2..], [5, 15]);
        assert_eq!(series.failed[n - 2..], [0, 2]);
        assert_eq!(series.sums(), (30, 20, 2));
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        let mut throughput = Throughput::default();
        let t0 = MINUTE_START;
        throughput.sample(totals(100, 0, 0), t0);
        throughput.sample(totals(7, 0, 0), t0 + 10);
        assert_eq!(throughput.series(t0 + 10).sums(), (7, 0, 0));
    }

    #[test]
    fn seeds_and_old_minutes() {
        let mut throughput = Throughput::default();
        let t0 = MINUTE_START;
        throughput.seed([(t0 - 7200, 9, 9, 9), (t0 - 120, 4, 3, 1), (t0, 2, 0, 0)]);
        throughput.sample(totals(0, 0, 0), t0 + 1);
        let series = throughput.series(t0 + 1);
        assert_eq!(series.sums(), (6, 3, 1), "the minute two hours ago is gone");
    }

    #[test]
    fn the_first_uuid_of_a_millisecond() {
        let id = first_uuid_v7_of(0x0123_4567_89ab);
        assert_eq!(id.to_string(), "01234567-89ab-7000-8000-000000000000");
        assert_eq!(id.get_version_num(), 7);
        assert!(first_uuid_v7_of(1) < first_uuid_v7_of(2));
    }
}
