//! Cron schedules: the patterns and time zones of `pdoflow.schedule`, read
//! here; the schedules themselves are SQL (sql/api/schedules.sql), which
//! asks these functions when a schedule runs next.
//!
//! A pattern is one of:
//! * five fields, as Vixie cron and pg_cron read them (minute, hour, day of
//!   month, month, day of week; lists, ranges, steps, `JAN`-`DEC`,
//!   `SUN`-`SAT`; a day matches when day of month OR day of week does), or
//!   six with a leading seconds field;
//! * `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@hourly`;
//! * `N seconds` or `every N seconds` (1 to 59): at every N-th second of the
//!   minute, counted from second 0, as `*/N * * * * *` does.
//!
//! Errors name the pattern and what is wrong (the field count is checked
//! here; the rest is croner's wording, with the fields' ranges as a hint).
//!
//! Times are wall-clock times in the schedule's time zone (IANA names, from
//! the tz database built into the library). Over daylight saving changes the
//! rules of the Open Cron Pattern Specification apply (croner): a time of
//! day that a spring-forward skips runs once, right after the gap; one that
//! a fall-back repeats runs once, the first time; patterns with `*` or steps
//! in their time fields run at every matching wall-clock time that exists.

// pgrx raises a returned `ErrorReport` with its own SQLSTATE and hint only when
// it is returned as is.
#![allow(clippy::result_large_err)]

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::input::rules;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH: i64 = 946_684_800;

/// A schedule's pattern, read.
struct Schedule {
    cron: Cron,
    zone: Tz,
}

fn bad(message: String, hint: &str) -> ErrorReport {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        "pdoflow",
    )
    .set_hint(hint)
}

const CRON_HINT: &str =
    "Write five fields (minute hour day-of-month month day-of-week, e.g. '*/5 * * * *' \
     or '30 2 * * MON-FRI'), six with seconds first, a shortcut such as '@hourly', or \
     'every 30 seconds'.";

const SHORTCUTS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];
const SHORTCUTS_HINT: &str =
    "The shortcuts are @yearly, @annually, @monthly, @weekly, @daily and @hourly.";

/// The ranges of the fields, for errors that cannot name the field.
const RANGES_HINT: &str = "Fields take: seconds 0-59 (if six fields), minute 0-59, hour 0-23, \
     day of month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT (0 and 7 are Sunday).";

/// `N seconds` or `every N seconds` as the six-field pattern it means;
/// `None` for text of another form.
fn seconds_form(text: &str) -> Option<Result<String, ErrorReport>> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (every, words) = match words.as_slice() {
        [first, rest @ ..] if first.eq_ignore_ascii_case("every") => (true, rest),
        all => (false, all),
    };
    let seconds = matches!(words, [_, unit] if unit.eq_ignore_ascii_case("second") || unit.eq_ignore_ascii_case("seconds"));
    if !seconds {
        // "every 5 minutes" and the like: only seconds have this form.
        return every.then(|| {
            Err(bad(
                format!("cron {text:?}: the \"every\" form counts seconds only (every 1 to 59 seconds)"),
                "For longer periods write a cron pattern, e.g. '*/5 * * * *' for every five minutes \
                 or '0 */2 * * *' for every two hours.",
            ))
        });
    }
    Some(match words[0].parse::<u32>() {
        Ok(seconds @ 1..=59) => Ok(format!("*/{seconds} * * * * *")),
        _ => Err(bad(
            format!("cron {text:?}: a schedule in seconds must run every 1 to 59 seconds"),
            "Use a cron pattern for longer periods, e.g. '*/2 * * * *' for every two minutes.",
        )),
    })
}

fn read_cron(text: &str) -> Result<Cron, ErrorReport> {
    let pattern = match seconds_form(text.trim()) {
        Some(pattern) => pattern?,
        None => text.to_owned(),
    };
    let fields = pattern.split_whitespace().count();
    if fields == 0 {
        return Err(bad("cron must not be empty".into(), CRON_HINT));
    }
    let shortcut = pattern.trim_start().starts_with('@');
    if shortcut
        && !SHORTCUTS
            .iter()
            .any(|known| pattern.trim().eq_ignore_ascii_case(known))
    {
        return Err(bad(
            format!("cron {text:?} is not a known shortcut"),
            SHORTCUTS_HINT,
        ));
    }
    if !shortcut && !(5..=6).contains(&fields) {
        return Err(bad(
            format!("cron {text:?} has {fields} fields; a pattern has 5, or 6 with seconds first"),
            CRON_HINT,
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    parser.parse(&pattern).map_err(|error| {
        let reason = match error {
            CronError::InvalidPattern(reason)
            | CronError::IllegalCharacters(reason)
            | CronError::ComponentError(reason) => reason,
            other => other.to_string(),
        };
        let hint = if shortcut {
            SHORTCUTS_HINT
        } else {
            RANGES_HINT
        };
        bad(
            format!(
                "cron {text:?} is not a valid cron pattern: {}",
                reason.trim_end_matches('.')
            ),
            hint,
        )
    })
}

/// An IANA time zone, by its name in any case (as PostgreSQL reads them).
fn read_zone(name: &str) -> Result<Tz, ErrorReport> {
    let exact = Tz::from_str(name).ok();
    let any_case = || {
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|zone| zone.name().eq_ignore_ascii_case(name))
            .copied()
    };
    exact.or_else(any_case).ok_or_else(|| {
        bad(
            format!("time_zone {name:?} is not a known time zone"),
            "Use an IANA time zone name such as 'UTC', 'Europe/Berlin' or 'America/New_York'.",
        )
    })
}

fn read(cron: &str, time_zone: &str) -> Result<Schedule, ErrorReport> {
    Ok(Schedule {
        cron: read_cron(cron)?,
        zone: read_zone(time_zone)?,
    })
}

fn to_chrono(time: TimestampWithTimeZone) -> Option<DateTime<Utc>> {
    let micros = pg_sys::TimestampTz::from(time);
    Utc.timestamp_micros(micros.checked_add(POSTGRES_EPOCH * 1_000_000)?)
        .single()
}

fn to_postgres(time: DateTime<Utc>) -> Option<TimestampWithTimeZone> {
    let micros = time.timestamp_micros() - POSTGRES_EPOCH * 1_000_000;
    TimestampWithTimeZone::try_from(micros).ok()
}

impl Schedule {
    /// The first occurrence after `after`.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The last occurrence at or before `until`.
    fn latest_until(&self, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = until.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|latest| latest.with_timezone(&Utc))
    }
}

/// `pdoflow._check_schedule_name(name)`: a schedule's name follows the
/// rules of task and queue names.
#[pg_extern(stable, parallel_safe, name = "_check_schedule_name")]
fn check_schedule_name(name: Option<&str>) -> Result<(), ErrorReport> {
    let name = rules::present(
        "name",
        name,
        Some("Name the schedule: it is how you pause, resume or remove it."),
    )?;
    rules::name("name", name)?;
    Ok(())
}

/// `pdoflow._check_schedule(cron, time_zone)`: raises what is wrong with a
/// schedule's pattern or time zone, or that it never runs.
#[pg_extern(stable, parallel_safe, name = "_check_schedule")]
fn check_schedule(cron: Option<&str>, time_zone: Option<&str>) -> Result<(), ErrorReport> {
    let cron = rules::present("cron", cron, Some(CRON_HINT))?;
    let time_zone = rules::present("time_zone", time_zone, Some("Omit it for UTC."))?;
    let schedule = read(cron, time_zone)?;
    if schedule.next_after(Utc::now()).is_none() {
        return Err(bad(
            format!("cron {cron:?} never runs"),
            "Check the day of month against the month (30 FEB never comes).",
        ));
    }
    Ok(())
}

/// `pdoflow._cron_next(cron, time_zone, after)`: the schedule's first
/// occurrence after `after`; 'infinity' if it never runs again (what
/// `cron_schedules.next_run_at` then holds).
#[pg_extern(stable, parallel_safe, name = "_cron_next")]
fn cron_next(
    cron: &str,
    time_zone: &str,
    after: TimestampWithTimeZone,
) -> Result<TimestampWithTimeZone, ErrorReport> {
    let schedule = read(cron, time_zone)?;
    Ok(to_chrono(after)
        .and_then(|after| schedule.next_after(after))
        .and_then(to_postgres)
        .unwrap_or_else(TimestampWithTimeZone::positive_infinity))
}

/// `pdoflow._cron_latest(cron, time_zone, until)`: the schedule's last
/// occurrence at or before `until`; NULL if there is none.
#[pg_extern(stable, parallel_safe, name = "_cron_latest")]
fn cron_latest(
    cron: &str,
    time_zone: &str,
    until: TimestampWithTimeZone,
) -> Result<Option<TimestampWithTimeZone>, ErrorReport> {
    let schedule = read(cron, time_zone)?;
    Ok(to_chrono(until)
        .and_then(|until| schedule.latest_until(until))
        .and_then(to_postgres))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(cron: &str, zone: &str, after: &str) -> String {
        let schedule = Schedule {
            cron: read_cron(cron).unwrap(),
            zone: Tz::from_str(zone).unwrap(),
        };
        schedule.next_after(at(after)).unwrap().to_rfc3339()
    }

    #[test]
    fn five_fields_names_and_shortcuts() {
        assert_eq!(
            next("*/15 * * * *", "UTC", "2026-01-01T00:07:00Z"),
            "2026-01-01T00:15:00+00:00"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "UTC", "2026-01-02T10:00:00Z"),
            "2026-01-05T09:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 JAN,JUL *", "UTC", "2026-02-01T00:00:00Z"),
            "2026-07-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", "UTC", "2026-01-01T00:00:00Z"),
            "2026-01-01T01:00:00+00:00"
        );
        // Day of month OR day of week, as Vixie cron reads them.
        assert_eq!(
            next("0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z"),
            "2026-01-02T00:00:00+00:00"
        );
    }

    #[test]
    fn seconds() {
        assert_eq!(
            next("30 seconds", "UTC", "2026-01-01T00:00:10Z"),
            "2026-01-01T00:00:30+00:00"
        );
        assert_eq!(
            next("every 20 seconds", "UTC", "2026-01-01T00:00:41Z"),
            "2026-01-01T00:01:00+00:00"
        );
        assert_eq!(
            next("15 * * * * *", "UTC", "2026-01-01T00:00:15Z"),
            "2026-01-01T00:01:15+00:00"
        );
        assert!(read_cron("60 seconds").is_err());
        assert!(read_cron("0 seconds").is_err());
    }

    #[test]
    fn daylight_saving_changes() {
        // Berlin springs forward at 02:00 on 2026-03-29: 02:30 does not
        // exist that day and runs once, right after the gap.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z"),
            "2026-03-29T01:00:00+00:00"
        );
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z"),
            "2026-03-30T00:30:00+00:00"
        );
        // It falls back at 03:00 on 2026-10-25: 02:30 comes twice, runs once.
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z"),
            "2026-10-25T00:30:00+00:00"
        );
        assert_eq!(
            next("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z"),
            "2026-10-26T01:30:00+00:00"
        );
    }

    #[test]
    fn bad_patterns_and_zones() {
        assert!(read_cron("").is_err());
        assert!(read_cron("* * *").is_err());
        assert!(read_cron("61 * * * *").is_err());
        assert!(read_cron("* * * * FOO").is_err());
        assert!(read_zone("Mars/Olympus").is_err());
        assert!(read_zone("Europe/Berlin").is_ok());
        assert_eq!(read_zone("europe/berlin").ok(), Some(Tz::Europe__Berlin));
        assert!(read_cron("every 5 minutes").is_err());
        assert!(read_cron("@fortnightly").is_err());
    }
}
