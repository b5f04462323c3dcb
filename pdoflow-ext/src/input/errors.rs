//! Bad input to the SQL API, as errors that name the parameter and the value.
//!
//! Each variant maps to a SQLSTATE (class 22, "data exception", except where
//! noted) and, where it helps, a hint; see the error table in `docs/sql-api.md`.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;

/// How long a quoted value may get inside a message before it is shortened.
const PREVIEW_CHARS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{param} must not be NULL")]
    Null {
        param: String,
        hint: Option<&'static str>,
    },

    #[error("{param} must not be empty")]
    Empty { param: String },

    #[error("{param} is {length} characters long; the limit is {limit}")]
    TooLong {
        param: String,
        length: usize,
        limit: usize,
        value: String,
    },

    #[error("{param} must not contain control characters, got {}", quote(value))]
    ControlCharacter { param: String, value: String },

    #[error("{param} must not start or end with whitespace, got {}", quote(value))]
    SurroundingWhitespace { param: String, value: String },

    #[error("{param} must be at least {min}, got {value}")]
    BelowMinimum { param: String, value: i64, min: i64 },

    #[error("{param} must be at most {max}{}, got {value}", set_by(setting))]
    AboveMaximum {
        param: String,
        value: i64,
        max: i64,
        setting: Option<&'static str>,
    },

    #[error("{param} must be a positive interval, got {value}")]
    NotPositive { param: String, value: String },

    #[error("{param} is not a valid interval: {}", quote(value))]
    BadInterval { param: String, value: String },

    #[error("{param} needs {needs}")]
    Needs { param: String, needs: String },

    #[error("{param} must be a finite timestamp, got {value}")]
    NotFinite { param: String, value: String },

    #[error("{param} is not a valid timestamp: {}", quote(value))]
    BadTimestamp { param: String, value: String },

    #[error("{param} must not be an empty array")]
    EmptyArray {
        param: String,
        hint: Option<&'static str>,
    },

    #[error("{param} must be a one-dimensional array, got {dimensions} dimensions")]
    MultiDimensional { param: String, dimensions: i32 },

    #[error("{param} has {length} elements but {other} has {other_length}")]
    LengthMismatch {
        param: String,
        length: usize,
        other: String,
        other_length: usize,
    },

    #[error("{param} lists {value} more than once")]
    Duplicate { param: String, value: String },

    #[error("{param} must be {expected}, got {found}")]
    WrongType {
        param: String,
        expected: &'static str,
        found: String,
    },

    #[error("{param} has an unknown key {}", quote(key))]
    UnknownKey {
        param: String,
        key: String,
        allowed: &'static str,
    },

    #[error("{param} must be between {min} and {max}, got {value}")]
    OutOfRange {
        param: String,
        value: String,
        min: i64,
        max: i64,
    },

    #[error("{param} must be {range}, got {value}")]
    NotInRange {
        param: String,
        value: String,
        range: &'static str,
        hint: Option<&'static str>,
    },

    #[error("{param} could not be read as JSON: {reason}")]
    Unreadable { param: String, reason: String },

    #[error("{param} is {size} bytes; the limit is {limit} bytes ({setting})")]
    TooLarge {
        param: String,
        size: usize,
        limit: usize,
        setting: &'static str,
    },

    #[error("{param} is more than {years} years away, got {value}")]
    TooFarAway {
        param: String,
        value: String,
        years: u32,
    },

    #[error("{param} must be one of {allowed}, got {}", quote(value))]
    NotOneOf {
        param: String,
        allowed: &'static str,
        value: String,
    },

    #[error("{param} names {}, which is no node of this DAG", quote(name))]
    UnknownNode { param: String, name: String },

    #[error("{dag} has a cycle: {path}")]
    Cycle { dag: String, path: String },

    #[error(
        "{param} does not match the JSON Schema of task {} at {path}: {reason}",
        quote(task)
    )]
    SchemaMismatch {
        param: String,
        task: String,
        path: String,
        /// The JSON pointer of the failing value inside the args: `path`,
        /// or the missing property under it.
        pointer: String,
        reason: String,
    },

    #[error("{param} is not a usable JSON Schema: {reason}")]
    BadSchema { param: String, reason: String },

    /// A DAG document whose shape cannot be submitted; `problem` completes
    /// the sentence that starts with the parameter.
    #[error("{param} {problem}")]
    BadDag { param: String, problem: String },
}

impl InputError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            InputError::Null { .. } => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            InputError::TooLong { .. } => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            InputError::BadTimestamp { .. } | InputError::BadInterval { .. } => {
                ERRCODE_INVALID_DATETIME_FORMAT
            }
            InputError::TooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            InputError::TooFarAway { .. } => ERRCODE_DATETIME_FIELD_OVERFLOW,
            _ => ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            InputError::Null { hint, .. }
            | InputError::EmptyArray { hint, .. }
            | InputError::NotInRange { hint, .. } => hint.map(str::to_owned),
            InputError::AboveMaximum {
                setting: Some(setting),
                ..
            } => Some(format!("The limit is set by {setting}.")),
            InputError::UnknownKey { allowed, .. } => Some(format!("Allowed keys: {allowed}.")),
            InputError::TooLarge { setting, .. } => Some(format!(
                "The limit is set by {setting}; keep large data elsewhere and pass a reference to it."
            )),
            InputError::TooLong { value, .. } => {
                Some(format!("The value begins {}.", quote(value)))
            }
            _ => None,
        }
    }

    /// A DETAIL line a program can read: the JSON pointer of args that do
    /// not match their task's schema (the HTTP API's 422 names it).
    pub fn detail(&self) -> Option<String> {
        match self {
            InputError::SchemaMismatch { pointer, .. } => Some(format!("JSON pointer: {pointer}")),
            _ => None,
        }
    }
}

impl From<InputError> for ErrorReport {
    #[track_caller]
    fn from(error: InputError) -> Self {
        let mut report = ErrorReport::new(error.sqlstate(), error.to_string(), "pdoflow");
        if let Some(detail) = error.detail() {
            report = report.set_detail(detail);
        }
        match error.hint() {
            Some(hint) => report.set_hint(hint),
            None => report,
        }
    }
}

/// " (pdoflow.x)" for a limit a setting controls, else "".
fn set_by(setting: &Option<&'static str>) -> String {
    setting.map(|name| format!(" ({name})")).unwrap_or_default()
}

/// A value in double quotes, escaped, and shortened when long.
pub fn quote(value: &str) -> String {
    let head: String = value.chars().take(PREVIEW_CHARS).collect();
    if head.len() == value.len() {
        format!("{value:?}")
    } else {
        format!("{head:?}...")
    }
}

/// A value shortened when long, for values that need no quotes (numbers).
pub fn shorten(value: &str) -> String {
    let head: String = value.chars().take(PREVIEW_CHARS).collect();
    if head.len() == value.len() {
        head
    } else {
        format!("{head}...")
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn quote_escapes_and_shortens() {
        assert_eq!(quote("a\nb"), r#""a\nb""#);
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("\"{}\"...", "x".repeat(40)));
    }

    #[test]
    fn messages_name_parameter_and_value() {
        let error = InputError::BelowMinimum {
            param: "max_attempts".into(),
            value: 0,
            min: 1,
        };
        assert_eq!(error.to_string(), "max_attempts must be at least 1, got 0");
        assert_eq!(
            error.sqlstate(),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        );
    }

    #[test]
    fn limits_backed_by_a_setting_say_which() {
        let error = InputError::AboveMaximum {
            param: "n".into(),
            value: 5000,
            max: 1000,
            setting: Some("pdoflow.max_claim"),
        };
        assert_eq!(
            error.to_string(),
            "n must be at most 1000 (pdoflow.max_claim), got 5000"
        );
        assert_eq!(
            error.hint().as_deref(),
            Some("The limit is set by pdoflow.max_claim.")
        );
    }
}
