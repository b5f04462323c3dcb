//! The JSON document of `pdoflow.enqueue_many(jobs jsonb)`: an array of
//! objects keyed like `pdoflow.enqueue`'s parameters.
//!
//! Values are kept as raw JSON text and only the fields with rules are read,
//! so `args` (and anything else) of any size, depth or numeric precision
//! passes through untouched. Positions are 0-based, as in jsonb's `->`.

use serde_json::value::RawValue;

use crate::input::errors::{quote, shorten, InputError};
use crate::input::rules::{
    max_attempts, name, one_of, payload, unique_for_needs_key, unique_key, Limits,
    DEPENDENCY_MODES, DEPENDENCY_MODES_TEXT, RUN_AT_MAX_YEARS,
};

pub const JOB_KEYS: &[&str] = &[
    "task",
    "args",
    "queue",
    "priority",
    "run_at",
    "max_attempts",
    "posting",
    "depends_on",
    "dependency_mode",
    "unique_key",
    "unique_for",
    "concurrency_key",
];
const JOB_KEYS_TEXT: &str = "task, args, queue, priority, run_at, max_attempts, posting, depends_on, dependency_mode, unique_key, unique_for, concurrency_key";

/// What PostgreSQL's timestamptz input makes of a `run_at` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    Finite,
    Infinite,
    /// More than [`RUN_AT_MAX_YEARS`] from now.
    TooFar,
    Invalid,
}

/// Checks a job document given as JSON text (jsonb's output). `timestamp`
/// judges `run_at` strings. Returns whether some job joins a posting or has
/// parents: those take the slower path.
pub fn check(
    document: &str,
    timestamp: &dyn Fn(&str) -> Timestamp,
    limits: &Limits,
) -> Result<bool, InputError> {
    if !document.trim_start().starts_with('[') {
        return Err(wrong_type(
            "jobs",
            "a JSON array of job objects",
            document.trim(),
        ));
    }
    let jobs: Vec<&RawValue> =
        serde_json::from_str(document).map_err(|error| unreadable("jobs", &error))?;
    let mut needs_placement = false;
    for (index, job) in jobs.iter().enumerate() {
        let fields = Fields::read(&format!("jobs[{index}]"), job.get())?;
        fields.reject_unknown(JOB_KEYS, JOB_KEYS_TEXT)?;
        check_job_options(&fields, timestamp, limits)?;
        if let Some(posting) = fields.get("posting") {
            uuid_value(&fields.path("posting"), posting)?;
        }
        if let Some(parents) = fields.get("depends_on") {
            uuid_list(&fields.path("depends_on"), parents)?;
        }
        if let Some(mode) = fields.get("dependency_mode") {
            dependency_mode(&fields.path("dependency_mode"), mode)?;
        }
        needs_placement |= ["posting", "depends_on", "dependency_mode"]
            .iter()
            .any(|key| fields.get(key).is_some());
    }
    Ok(needs_placement)
}

/// A JSON object's members, for reading an object's fields by key. `param`
/// names the object in messages (`jobs[3]`, `dag.nodes[0]`).
pub struct Fields<'a> {
    param: String,
    members: Vec<(String, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    pub fn read(param: &str, object: &'a str) -> Result<Fields<'a>, InputError> {
        if !object.starts_with('{') {
            return Err(wrong_type(param, "a JSON object", object));
        }
        let members = read_object(object).map_err(|error| unreadable(param, &error))?;
        Ok(Fields {
            param: param.to_owned(),
            members,
        })
    }

    pub fn reject_unknown(
        &self,
        allowed: &[&str],
        allowed_text: &'static str,
    ) -> Result<(), InputError> {
        match self
            .members
            .iter()
            .find(|(key, _)| !allowed.contains(&key.as_str()))
        {
            Some((key, _)) => Err(InputError::UnknownKey {
                param: self.param.clone(),
                key: key.clone(),
                allowed: allowed_text,
            }),
            None => Ok(()),
        }
    }

    /// The raw JSON of a member; JSON null counts as absent, so the
    /// parameter's default applies.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.members
            .iter()
            .find(|(name, value)| name == key && value.get() != "null")
            .map(|(_, value)| value.get())
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.param)
    }
}

/// The options every job has: a task (required), queue, priority,
/// max_attempts and run_at.
pub fn check_job_options(
    fields: &Fields,
    timestamp: &dyn Fn(&str) -> Timestamp,
    limits: &Limits,
) -> Result<(), InputError> {
    let task = fields.get("task").ok_or_else(|| InputError::Null {
        param: fields.path("task"),
        hint: None,
    })?;
    name(&fields.path("task"), &string(&fields.path("task"), task)?)?;
    if let Some(queue) = fields.get("queue") {
        name(
            &fields.path("queue"),
            &string(&fields.path("queue"), queue)?,
        )?;
    }
    if let Some(priority) = fields.get("priority") {
        integer(&fields.path("priority"), priority)?;
    }
    if let Some(attempts) = fields.get("max_attempts") {
        let param = fields.path("max_attempts");
        max_attempts(&param, integer(&param, attempts)?, limits)?;
    }
    if let Some(args) = fields.get("args") {
        payload(&fields.path("args"), args.len(), limits)?;
    }
    if let Some(key) = fields.get("unique_key") {
        let param = fields.path("unique_key");
        unique_key(&param, &string(&param, key)?)?;
    }
    if let Some(key) = fields.get("concurrency_key") {
        let param = fields.path("concurrency_key");
        unique_key(&param, &string(&param, key)?)?;
    }
    if let Some(keep) = fields.get("unique_for") {
        // Read as an interval by PostgreSQL, which names the job if it
        // cannot (pdoflow._unique_for).
        string(&fields.path("unique_for"), keep)?;
        unique_for_needs_key(
            &fields.path("unique_for"),
            "unique_key",
            fields.get("unique_key").is_some(),
        )?;
    }
    if let Some(run_at) = fields.get("run_at") {
        let text = string(&fields.path("run_at"), run_at)?;
        match timestamp(&text) {
            Timestamp::Finite => {}
            Timestamp::Infinite => {
                return Err(InputError::NotFinite {
                    param: fields.path("run_at"),
                    value: text,
                })
            }
            Timestamp::TooFar => {
                return Err(InputError::TooFarAway {
                    param: fields.path("run_at"),
                    value: text,
                    years: RUN_AT_MAX_YEARS,
                })
            }
            Timestamp::Invalid => {
                return Err(InputError::BadTimestamp {
                    param: fields.path("run_at"),
                    value: text,
                })
            }
        }
    }
    Ok(())
}

/// A JSON string holding a UUID.
pub fn uuid_value(param: &str, raw: &str) -> Result<uuid::Uuid, InputError> {
    let text = string(param, raw).map_err(|_| wrong_type(param, "a UUID string", raw))?;
    uuid::Uuid::parse_str(&text).map_err(|_| InputError::WrongType {
        param: param.to_owned(),
        expected: "a UUID string",
        found: format!("the string {}", quote(&text)),
    })
}

/// A JSON array of UUID strings.
pub fn uuid_list(param: &str, raw: &str) -> Result<Vec<uuid::Uuid>, InputError> {
    strings(param, raw, "an array of UUID strings")?
        .iter()
        .enumerate()
        .map(|(index, element)| uuid_value(&format!("{param}[{index}]"), element.get()))
        .collect()
}

/// A JSON array of strings, unparsed.
pub fn strings<'a>(
    param: &str,
    raw: &'a str,
    expected: &'static str,
) -> Result<Vec<&'a RawValue>, InputError> {
    if !raw.starts_with('[') {
        return Err(wrong_type(param, expected, raw));
    }
    serde_json::from_str(raw).map_err(|error| unreadable(param, &error))
}

/// "all" or "any".
pub fn dependency_mode(param: &str, raw: &str) -> Result<String, InputError> {
    let text = string(param, raw)?;
    one_of(param, &text, DEPENDENCY_MODES, DEPENDENCY_MODES_TEXT)?;
    Ok(text)
}

/// An object's members in order, values unparsed.
fn read_object(object: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    struct Members<'a>(Vec<(String, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Members<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Members<'de>;
                fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                    formatter.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Members<'de>, A::Error> {
                    let mut members = Vec::new();
                    while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                        members.push(member);
                    }
                    Ok(Members(members))
                }
            }
            deserializer.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Members>(object).map(|members| members.0)
}

pub fn string(param: &str, raw: &str) -> Result<String, InputError> {
    if !raw.starts_with('"') {
        return Err(wrong_type(param, "a string", raw));
    }
    serde_json::from_str(raw).map_err(|error| unreadable(param, &error))
}

/// A JSON number that is a whole `integer` (int4), read from its exact text:
/// jsonb prints numbers in plain decimal notation, never with an exponent.
pub fn integer(param: &str, raw: &str) -> Result<i32, InputError> {
    let (sign, digits) = raw.strip_prefix('-').map_or((1, raw), |rest| (-1, rest));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_number = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !is_number || fraction.bytes().any(|b| b != b'0') {
        return Err(wrong_type(param, "an integer", raw));
    }
    whole
        .parse::<i64>()
        .ok()
        .and_then(|magnitude| i32::try_from(sign * magnitude).ok())
        .ok_or_else(|| InputError::OutOfRange {
            param: param.to_owned(),
            value: shorten(raw),
            min: i32::MIN.into(),
            max: i32::MAX.into(),
        })
}

pub fn wrong_type(param: &str, expected: &'static str, raw: &str) -> InputError {
    let found = match raw.as_bytes().first() {
        Some(b'{') => "an object".to_owned(),
        Some(b'[') => "an array".to_owned(),
        Some(b'"') => format!(
            "the string {}",
            quote(&serde_json::from_str::<String>(raw).unwrap_or_default())
        ),
        Some(b't' | b'f') => "a boolean".to_owned(),
        Some(b'n') => "null".to_owned(),
        _ => format!("the number {}", shorten(raw)),
    };
    InputError::WrongType {
        param: param.to_owned(),
        expected,
        found,
    }
}

pub fn unreadable(param: &str, error: &serde_json::Error) -> InputError {
    InputError::Unreadable {
        param: param.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn any_time(text: &str) -> Timestamp {
        match text {
            "infinity" => Timestamp::Infinite,
            "soon" => Timestamp::Invalid,
            _ => Timestamp::Finite,
        }
    }

    const LIMITS: Limits = Limits {
        max_payload_bytes: 1_000_000,
        max_attempts: 1_000,
    };

    fn problem(document: &str) -> String {
        check(document, &any_time, &LIMITS).unwrap_err().to_string()
    }

    #[test]
    fn accepts_documents_with_defaults_nulls_and_any_args() {
        let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        let document = format!(
            r#"[{{"task": "a"}}, {{"task": "b", "queue": null, "priority": 2.00, "max_attempts": 3,
                 "run_at": "2030-01-01", "args": {{"deep": {deep}, "huge": 1{zeros}, "exact": 1.000000000000000000001}}}}]"#,
            zeros = "0".repeat(400)
        );
        assert_eq!(check(&document, &any_time, &LIMITS), Ok(false));
        assert_eq!(check("[]", &any_time, &LIMITS), Ok(false));
    }

    #[test]
    fn rejects_what_is_not_an_array_of_objects() {
        assert_eq!(
            problem(r#"{"task": "t"}"#),
            "jobs must be a JSON array of job objects, got an object"
        );
        assert_eq!(
            problem(r#"["t"]"#),
            r#"jobs[0] must be a JSON object, got the string "t""#
        );
        assert_eq!(
            problem("[1.5]"),
            "jobs[0] must be a JSON object, got the number 1.5"
        );
    }

    #[test]
    fn names_the_element_and_the_key() {
        assert_eq!(
            problem(r#"[{"task": "t"}, {"args": {}}]"#),
            "jobs[1].task must not be NULL"
        );
        assert_eq!(
            problem(r#"[{"task": "t", "priorty": 1}]"#),
            r#"jobs[0] has an unknown key "priorty""#
        );
        assert_eq!(
            problem(r#"[{"task": 5}]"#),
            "jobs[0].task must be a string, got the number 5"
        );
        assert_eq!(
            problem(r#"[{"task": "t", "queue": ""}]"#),
            "jobs[0].queue must not be empty"
        );
        assert_eq!(
            problem(r#"[{"task": "t", "run_at": "soon"}]"#),
            r#"jobs[0].run_at is not a valid timestamp: "soon""#
        );
        assert_eq!(
            problem(r#"[{"task": "t", "run_at": "infinity"}]"#),
            "jobs[0].run_at must be a finite timestamp, got infinity"
        );
    }

    #[test]
    fn postings_and_parents_take_the_slow_path() {
        let id = "0192f1c4-0000-7000-8000-000000000001";
        assert_eq!(
            check(
                &format!(r#"[{{"task": "t"}}, {{"task": "t", "depends_on": ["{id}"]}}]"#),
                &any_time,
                &LIMITS
            ),
            Ok(true)
        );
        assert_eq!(
            check(
                &format!(r#"[{{"task": "t", "posting": "{id}", "dependency_mode": "any"}}]"#),
                &any_time,
                &LIMITS
            ),
            Ok(true)
        );
        assert_eq!(
            check(
                r#"[{"task": "t", "posting": null, "depends_on": null}]"#,
                &any_time,
                &LIMITS
            ),
            Ok(false)
        );
        assert_eq!(
            problem(r#"[{"task": "t", "depends_on": [1]}]"#),
            "jobs[0].depends_on[0] must be a UUID string, got the number 1"
        );
        assert_eq!(
            problem(r#"[{"task": "t", "posting": "0192"}]"#),
            r#"jobs[0].posting must be a UUID string, got the string "0192""#
        );
        assert_eq!(
            problem(r#"[{"task": "t", "dependency_mode": "most"}]"#),
            r#"jobs[0].dependency_mode must be one of "all" or "any", got "most""#
        );
    }

    #[test]
    fn limits_name_their_setting() {
        let limits = Limits {
            max_payload_bytes: 10,
            max_attempts: 3,
        };
        let problem = |document: &str| check(document, &any_time, &limits).unwrap_err().to_string();
        assert_eq!(
            problem(r#"[{"task": "t", "args": {"text": "too long"}}]"#),
            "jobs[0].args is 20 bytes; the limit is 10 bytes (pdoflow.max_payload_bytes)"
        );
        assert_eq!(
            problem(r#"[{"task": "t", "max_attempts": 4}]"#),
            "jobs[0].max_attempts must be at most 3 (pdoflow.max_attempts_limit), got 4"
        );
        let far = |_: &str| Timestamp::TooFar;
        assert_eq!(
            check(r#"[{"task": "t", "run_at": "3000-01-01"}]"#, &far, &limits)
                .unwrap_err()
                .to_string(),
            "jobs[0].run_at is more than 1000 years away, got 3000-01-01"
        );
    }

    #[test]
    fn integers_are_read_exactly() {
        assert_eq!(
            problem(r#"[{"task": "t", "priority": 1.5}]"#),
            "jobs[0].priority must be an integer, got the number 1.5"
        );
        assert_eq!(
            problem(r#"[{"task": "t", "priority": "1"}]"#),
            r#"jobs[0].priority must be an integer, got the string "1""#
        );
        assert_eq!(
            problem(r#"[{"task": "t", "priority": 2147483648}]"#),
            "jobs[0].priority must be between -2147483648 and 2147483647, got 2147483648"
        );
        let huge = format!(r#"[{{"task": "t", "priority": 1{}}}]"#, "0".repeat(60));
        assert_eq!(
            problem(&huge),
            format!(
                "jobs[0].priority must be between -2147483648 and 2147483647, got 1{}...",
                "0".repeat(39)
            )
        );
        assert_eq!(
            problem(r#"[{"task": "t", "max_attempts": 0}]"#),
            "jobs[0].max_attempts must be at least 1, got 0"
        );
        assert_eq!(
            check(
                r#"[{"task": "t", "priority": -2147483648}]"#,
                &any_time,
                &LIMITS
            ),
            Ok(false)
        );
    }
}
