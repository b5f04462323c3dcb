//! JSON Schema validation of job arguments for registered tasks
//! (`pdoflow.register_task`, sql/api/tasks.sql). Compiled schemas are kept
//! per backend, keyed by task, and recompiled when the schema changes.
//!
//! Validation can take long: a large payload against a `pattern` whose
//! regular expression backtracks (the jsonschema crate's engine supports
//! look-around and backreferences) runs for as long as every string takes.
//! PostgreSQL can only cancel a backend (statement_timeout,
//! pg_cancel_backend) where the backend checks for interrupts, so `pattern`
//! is validated by the crate's own keyword wrapped in such a check, before
//! every string it matches.

// See checks.rs: an ErrorReport keeps its SQLSTATE only when returned as is.
#![allow(clippy::result_large_err)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use jsonschema::paths::{LazyLocation, Location};
use jsonschema::{Keyword, ValidationError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::input::errors::InputError;
use crate::input::rules::present;

thread_local! {
    /// Task name -> (schema text, its compiled validator).
    static VALIDATORS: RefCell<HashMap<String, (String, Rc<jsonschema::Validator>)>> =
        RefCell::new(HashMap::new());
}

fn compile(param: &str, schema: &str) -> Result<jsonschema::Validator, InputError> {
    let value: serde_json::Value =
        serde_json::from_str(schema).map_err(|error| InputError::BadSchema {
            param: param.to_owned(),
            reason: error.to_string(),
        })?;
    jsonschema::options()
        .with_keyword("pattern", interruptible_pattern)
        .build(&value)
        .map_err(|error| InputError::BadSchema {
            param: param.to_owned(),
            reason: error.to_string(),
        })
}

/// `pattern` as the jsonschema crate validates it (a validator of the
/// schema `{"pattern": ...}` alone), after a check for interrupts.
struct InterruptiblePattern {
    pattern: jsonschema::Validator,
    schema_path: Location,
}

fn interruptible_pattern<'a>(
    _parent: &'a Map<String, Value>,
    value: &'a Value,
    schema_path: Location,
) -> Result<Box<dyn Keyword>, ValidationError<'a>> {
    let pattern =
        jsonschema::validator_for(&serde_json::json!({ "pattern": value })).map_err(|error| {
            ValidationError::custom(
                schema_path.clone(),
                Location::new(),
                value,
                error.to_string(),
            )
        })?;
    Ok(Box::new(InterruptiblePattern {
        pattern,
        schema_path,
    }))
}

impl Keyword for InterruptiblePattern {
    fn validate<'i>(
        &self,
        instance: &'i Value,
        location: &LazyLocation,
    ) -> Result<(), ValidationError<'i>> {
        pg_sys::check_for_interrupts!();
        self.pattern.validate(instance).map_err(|error| {
            ValidationError::custom(
                self.schema_path.clone(),
                location.into(),
                instance,
                error.to_string(),
            )
        })
    }

    fn is_valid(&self, instance: &Value) -> bool {
        pg_sys::check_for_interrupts!();
        self.pattern.is_valid(instance)
    }
}

fn validator(task: &str, schema: &str) -> Result<Rc<jsonschema::Validator>, InputError> {
    if let Some(cached) = VALIDATORS.with_borrow(|cache| {
        cache
            .get(task)
            .filter(|(text, _)| text == schema)
            .map(|(_, validator)| Rc::clone(validator))
    }) {
        return Ok(cached);
    }
    let compiled = Rc::new(compile(
        &format!("the args_schema of task {task:?}"),
        schema,
    )?);
    VALIDATORS.with_borrow_mut(|cache| {
        cache.insert(task.to_owned(), (schema.to_owned(), Rc::clone(&compiled)));
    });
    Ok(compiled)
}

/// A schema given to `pdoflow.register_task`: it must compile.
#[pg_extern(stable, parallel_safe, name = "_check_args_schema")]
fn check_args_schema(args_schema: Option<&str>) -> Result<(), ErrorReport> {
    if let Some(schema) = args_schema {
        compile("args_schema", schema)?;
    }
    Ok(())
}

/// Validates each of `args` (JSON text) against `schema`, the JSON Schema
/// registered for `task`; `params` names each in messages (default `args[i]`).
#[pg_extern(stable, parallel_safe, name = "_validate_args")]
fn validate_args(
    task: Option<&str>,
    schema: Option<&str>,
    args: Option<Vec<Option<String>>>,
    params: Option<Vec<Option<String>>>,
) -> Result<(), ErrorReport> {
    let task = present("task", task, None)?;
    let schema = present("schema", schema, None)?;
    let validator = validator(task, schema)?;
    let params = params.unwrap_or_default();
    for (index, value) in args.unwrap_or_default().iter().enumerate() {
        let param = params
            .get(index)
            .cloned()
            .flatten()
            .unwrap_or_else(|| format!("args[{}]", index + 1));
        pg_sys::check_for_interrupts!();
        let Some(value) = value else { continue };
        let value: serde_json::Value =
            serde_json::from_str(value).map_err(|error| InputError::Unreadable {
                param: param.clone(),
                reason: error.to_string(),
            })?;
        if let Err(error) = validator.validate(&value) {
            let path = error.instance_path.to_string();
            // A missing property has no value to point at: point where it
            // belongs.
            let pointer = match &error.kind {
                jsonschema::error::ValidationErrorKind::Required {
                    property: serde_json::Value::String(property),
                } => format!("{path}/{}", property.replace('~', "~0").replace('/', "~1")),
                _ => path.clone(),
            };
            return Err(InputError::SchemaMismatch {
                param,
                task: task.to_owned(),
                path: if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                },
                pointer,
                reason: error.to_string(),
            }
            .into());
        }
    }
    Ok(())
}
