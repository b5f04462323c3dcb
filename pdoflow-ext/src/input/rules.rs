//! The rules for values passed to the SQL API. Pure functions, so the rules
//! can be read and tested in one place; `checks.rs` applies them to SQL input.

use crate::input::errors::InputError;

/// The limits superusers set (`pdoflow.max_payload_bytes`,
/// `pdoflow.max_attempts_limit`), read once per call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_attempts: i32,
}

/// How far ahead `run_at` may be.
pub const RUN_AT_MAX_YEARS: u32 = 1_000;

/// A job's `args` (or a finish's `result`) of `size` bytes.
pub fn payload(param: &str, size: usize, limits: &Limits) -> Result<(), InputError> {
    if size > limits.max_payload_bytes {
        return Err(InputError::TooLarge {
            param: param.to_owned(),
            size,
            limit: limits.max_payload_bytes,
            setting: "pdoflow.max_payload_bytes",
        });
    }
    Ok(())
}

/// A job's `max_attempts`: at least 1, at most `pdoflow.max_attempts_limit`.
pub fn max_attempts(param: &str, value: i32, limits: &Limits) -> Result<(), InputError> {
    at_least(param, value.into(), 1)?;
    at_most(
        param,
        value.into(),
        limits.max_attempts.into(),
        Some("pdoflow.max_attempts_limit"),
    )
}

/// The dependency modes of `enqueue` and DAG nodes.
pub const DEPENDENCY_MODES: &[&str] = &["all", "any"];
pub const DEPENDENCY_MODES_TEXT: &str = "\"all\" or \"any\"";

/// A value from a fixed list (`allowed_text` spells the list in messages).
pub fn one_of(
    param: &str,
    value: &str,
    allowed: &[&str],
    allowed_text: &'static str,
) -> Result<(), InputError> {
    if !allowed.contains(&value) {
        return Err(InputError::NotOneOf {
            param: param.to_owned(),
            allowed: allowed_text,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Longest task, queue or worker name, in characters.
pub const NAME_MAX_CHARS: usize = 128;

/// A present (non-NULL) value.
pub fn present<T>(
    param: &str,
    value: Option<T>,
    hint: Option<&'static str>,
) -> Result<T, InputError> {
    value.ok_or_else(|| InputError::Null {
        param: param.to_owned(),
        hint,
    })
}

/// A task, queue or worker name: 1 to [`NAME_MAX_CHARS`] characters, no
/// control characters, no leading or trailing whitespace.
pub fn name(param: &str, value: &str) -> Result<(), InputError> {
    let param = param.to_owned();
    if value.is_empty() {
        return Err(InputError::Empty { param });
    }
    let length = value.chars().count();
    if length > NAME_MAX_CHARS {
        return Err(InputError::TooLong {
            param,
            length,
            limit: NAME_MAX_CHARS,
            value: value.to_owned(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::ControlCharacter {
            param,
            value: value.to_owned(),
        });
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(InputError::SurroundingWhitespace {
            param,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Longest unique key, in bytes: keys are kept in a B-tree index with
/// their task, whose entries may not exceed about 2,700 bytes.
pub const UNIQUE_KEY_MAX_BYTES: usize = 1000;

/// A unique key: 1 to [`UNIQUE_KEY_MAX_BYTES`] bytes, no control characters.
pub fn unique_key(param: &str, value: &str) -> Result<(), InputError> {
    let param = param.to_owned();
    if value.is_empty() {
        return Err(InputError::Empty { param });
    }
    if value.len() > UNIQUE_KEY_MAX_BYTES {
        return Err(InputError::TooLong {
            param,
            length: value.len(),
            limit: UNIQUE_KEY_MAX_BYTES,
            value: value.to_owned(),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::ControlCharacter {
            param,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Keys given per job of a bulk enqueue (`unique_keys`, `concurrency_keys`,
/// named `param`): one per element of args (`jobs` of them), each a key as
/// [`unique_key`] says or NULL.
pub fn keys_per_job(param: &str, keys: &[Option<String>], jobs: usize) -> Result<(), InputError> {
    if keys.len() != jobs {
        return Err(InputError::LengthMismatch {
            param: param.to_owned(),
            length: keys.len(),
            other: "args".into(),
            other_length: jobs,
        });
    }
    for (index, key) in keys.iter().enumerate() {
        if let Some(key) = key {
            unique_key(&format!("{param}[{}]", index + 1), key)?;
        }
    }
    Ok(())
}

/// `unique_for` (named `param`) says how long a job keeps its unique key
/// after succeeding: only a job with a key (named `key_param`) has one.
pub fn unique_for_needs_key(param: &str, key_param: &str, has_key: bool) -> Result<(), InputError> {
    if has_key {
        return Ok(());
    }
    Err(InputError::Needs {
        param: param.to_owned(),
        needs: format!("a {key_param}"),
    })
}

pub fn at_least(param: &str, value: i64, min: i64) -> Result<(), InputError> {
    if value < min {
        return Err(InputError::BelowMinimum {
            param: param.to_owned(),
            value,
            min,
        });
    }
    Ok(())
}

pub fn at_most(
    param: &str,
    value: i64,
    max: i64,
    setting: Option<&'static str>,
) -> Result<(), InputError> {
    if value > max {
        return Err(InputError::AboveMaximum {
            param: param.to_owned(),
            value,
            max,
            setting,
        });
    }
    Ok(())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "email",
            "reports.daily",
            "room:cat:name@global",
            "Ünïcode ok",
            "a",
        ] {
            assert_eq!(name("task", ok), Ok(()), "{ok}");
        }
        assert_eq!(name("task", &"x".repeat(NAME_MAX_CHARS)), Ok(()));
    }

    #[test]
    fn rejects_empty_long_control_and_padded_names() {
        assert!(matches!(name("task", ""), Err(InputError::Empty { .. })));
        assert!(matches!(
            name("queue", &"é".repeat(NAME_MAX_CHARS + 1)),
            Err(InputError::TooLong { length: 129, .. })
        ));
        assert!(matches!(
            name("task", "a\tb"),
            Err(InputError::ControlCharacter { .. })
        ));
        assert!(matches!(
            name("task", " a"),
            Err(InputError::SurroundingWhitespace { .. })
        ));
        assert!(matches!(
            name("task", "a "),
            Err(InputError::SurroundingWhitespace { .. })
        ));
    }

    #[test]
    fn error_names_the_parameter() {
        let error = name("queue", "").unwrap_err();
        assert_eq!(error.to_string(), "queue must not be empty");
    }

    #[test]
    fn bounds() {
        assert!(at_least("n", 1, 1).is_ok());
        assert!(at_least("n", 0, 1).is_err());
        assert!(at_most("n", 1000, 1000, None).is_ok());
        assert!(at_most("n", 1001, 1000, None).is_err());
    }
}
