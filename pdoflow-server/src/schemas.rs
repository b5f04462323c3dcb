//! Schema-only types of the OpenAPI document: the rules the SQL API
//! enforces on names, keys, cursors and DAG documents, spelled in JSON
//! Schema so that clients (and schemathesis) know them before a request
//! fails. Request types name them with `#[schema(value_type = ...)]`; the
//! values themselves stay plain strings and JSON, checked by the database.
//!
//! The patterns are ECMA 262 and Python `re` alike (escapes `\xHH` and
//! `\uHHHH`, no classes such as `\s` whose meaning differs between them),
//! and say what pdoflow's `name` rule says (docs/sql-api.md, "Errors"):
//! Rust's `char::is_control` (U+0000-U+001F, U+007F-U+009F) nowhere,
//! `char::is_whitespace` (White_Space) not first or last.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

// The values of these enums are strings the database returns or the
// handlers check; the types only document them.

/// A job's state.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum JobState {
    Blocked,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A posting's status.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PostingStatus {
    Active,
    Paused,
    Cancelled,
}

/// A worker's state.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum WorkerState {
    Active,
    Gone,
}

/// Longest name, in characters (pdoflow's `NAME_MAX_CHARS`).
pub const NAME_MAX_CHARS: usize = 128;
/// The largest `max_attempts` (`pdoflow.max_attempts_limit`'s default).
pub const MAX_ATTEMPTS: i64 = 1000;
/// The longest duration in seconds a body may give (a delay, lease,
/// unique_for or wait): 365,000 days, which is always less than the 1000
/// years `run_at` may be ahead, whatever the leap days.
pub const MAX_SECONDS: f64 = 31_536_000_000.0;
/// The shortest positive duration: PostgreSQL's intervals count
/// microseconds, so anything shorter would be a lease (or unique_for) of 0.
pub const MIN_POSITIVE_SECONDS: f64 = 0.000_001;

/// What may not be first or last: controls and White_Space.
const EDGE: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// What may not be anywhere: controls.
const INNER: &str = r"[^\x00-\x1f\x7f-\x9f]";
/// The same, and no `/` (which separates DAG node names from sub-DAGs').
const NODE_EDGE: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000/]";
const NODE_INNER: &str = r"[^\x00-\x1f\x7f-\x9f/]";

/// `^E(?:I{0,126}E)?$`: 1 to 128 characters, inner ones `inner`, the first
/// and last `edge`.
fn name_pattern(edge: &str, inner: &str) -> String {
    format!("^{edge}(?:{inner}{{0,{}}}{edge})?$", NAME_MAX_CHARS - 2)
}

fn name_schema(description: &str, edge: &str, inner: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(NAME_MAX_CHARS))
        .pattern(Some(name_pattern(edge, inner)))
        .description(Some(description))
        .into()
}

/// A task (job type), queue, worker or posting name.
pub struct Name;

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        name_schema(
            "A task (job type), queue, worker or posting name: 1 to 128 characters, \
             no control characters, no leading or trailing whitespace.",
            EDGE,
            INNER,
        )
    }
}

impl ToSchema for Name {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Name")
    }
}

/// A DAG node's name: a `Name` without `/`.
pub struct NodeName;

impl PartialSchema for NodeName {
    fn schema() -> RefOr<Schema> {
        name_schema(
            "A DAG node's name: 1 to 128 characters, no `/`, no control characters, \
             no leading or trailing whitespace; unique in its DAG.",
            NODE_EDGE,
            NODE_INNER,
        )
    }
}

impl ToSchema for NodeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NodeName")
    }
}

/// A unique or concurrency key.
pub struct Key;

impl PartialSchema for Key {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(format!("^{INNER}+$")))
            .description(Some(
                "A unique or concurrency key: not empty, no control characters, \
                 at most 1000 bytes in UTF-8.",
            ))
            .into()
    }
}

impl ToSchema for Key {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Key")
    }
}

/// A page cursor: the 16 bytes of an id, base64url without padding.
pub struct Cursor;

impl PartialSchema for Cursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(22))
            .max_length(Some(22))
            // 22 characters of 6 bits carry 132: the last one's low 4 are 0.
            .pattern(Some(r"^[A-Za-z0-9_-]{21}[AQgw]$"))
            .description(Some("`next_cursor` of the previous page (opaque)."))
            .into()
    }
}

impl ToSchema for Cursor {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Cursor")
    }
}

/// A job type's JSON Schema for its args: an object or a boolean (that it
/// compiles is checked when it is registered).
pub struct ArgsSchema;

impl PartialSchema for ArgsSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Object,
                Type::Boolean,
            ]))
            .description(Some(
                "A JSON Schema (draft 2020-12 unless its `$schema` says otherwise).",
            ))
            .into()
    }
}

impl ToSchema for ArgsSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ArgsSchema")
    }
}

/// Adds to the serialized document what utoipa's types cannot say (they
/// have no `anyOf` beside `properties`): the DAG document's schema, and
/// `NewJob`'s rules between fields.
pub fn add_raw(document: &mut serde_json::Value) {
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    schemas.insert("Dag".to_owned(), dag());
    if let Some(new_job) = schemas.remove("NewJob") {
        schemas.insert("NewJob".to_owned(), new_job_with_rules(new_job));
    }
}

/// `NewJob` with the rules between its fields: `run_at` or `delay`, not
/// both; `unique_for` only with a `unique_key`. (A member that is null
/// counts as absent, as the server reads it.)
fn new_job_with_rules(new_job: serde_json::Value) -> serde_json::Value {
    json!({"allOf": [
        new_job,
        {"anyOf": [{"properties": {"run_at": {"type": "null"}}},
                   {"properties": {"delay": {"type": "null"}}}]},
        {"anyOf": [{"properties": {"unique_for": {"type": "null"}}},
                   {"required": ["unique_key"], "properties": {"unique_key": {"type": "string"}}}]},
    ]})
}

/// A DAG document (`pdoflow.submit_dag`): `dag()` is its schema, which
/// `add_raw` puts in the document.
pub struct Dag;

impl PartialSchema for Dag {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}

/// The DAG document's schema.
fn dag() -> serde_json::Value {
    {
        let int32 = json!({"type": "integer", "format": "int32",
                           "minimum": i32::MIN, "maximum": i32::MAX});
        let job_keys = [
            "task",
            "args",
            "queue",
            "priority",
            "run_at",
            "max_attempts",
            "unique_key",
            "unique_for",
            "concurrency_key",
        ];
        // The server reads a null member as an absent one.
        let or_null = |schema: serde_json::Value| json!({"anyOf": [schema, {"type": "null"}]});
        let name = json!({"$ref": "#/components/schemas/Name"});
        let node_name = json!({"$ref": "#/components/schemas/NodeName"});
        let key = json!({"$ref": "#/components/schemas/Key"});
        let dag = json!({"$ref": "#/components/schemas/Dag"});
        let absent = |keys: &[&str]| {
            serde_json::Value::Object(
                keys.iter()
                    .map(|key| (key.to_string(), json!({"type": "null"})))
                    .collect(),
            )
        };
        let mut sub_dag = absent(&job_keys);
        sub_dag["dag"] = dag.clone();
        let schema = json!({
            "type": "object",
            "description": "A DAG: nodes (jobs or sub-DAGs) and the order between them \
                            (docs/sql-api.md, pdoflow.submit_dag). Node names in `after` and \
                            `edges` must name nodes of the same level, without cycles; \
                            sub-DAGs nest at most 32 levels. A null member counts as absent.",
            "required": ["nodes"],
            "additionalProperties": false,
            "properties": {
                "nodes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": false,
                        "properties": {
                            "name": node_name,
                            "task": or_null(name.clone()),
                            "args": {},
                            "queue": or_null(name.clone()),
                            "priority": or_null(int32),
                            "run_at": or_null(json!({"type": "string", "format": "date-time"})),
                            "max_attempts": or_null(json!({"type": "integer", "format": "int32",
                                                           "minimum": 1, "maximum": MAX_ATTEMPTS})),
                            "after": or_null(json!({"type": "array", "items": node_name})),
                            "mode": or_null(json!({"$ref": "#/components/schemas/DependencyMode"})),
                            "depends_on": or_null(json!({"type": "array",
                                                         "items": {"type": "string", "format": "uuid"}})),
                            "dag": or_null(dag.clone()),
                            "unique_key": or_null(key.clone()),
                            "unique_for": or_null(json!({"type": "string",
                                                         "description": "An interval (`1 day`)."})),
                            "concurrency_key": or_null(key),
                        },
                        // A job (with its task) or a sub-DAG (without a job's keys).
                        "anyOf": [
                            {"required": ["task"], "properties": {"task": name, "dag": {"type": "null"}}},
                            {"required": ["dag"], "properties": sub_dag},
                        ],
                    },
                },
                "edges": or_null(json!({
                    "type": "array",
                    "description": "`[from, to]` pairs, the same as `after`.",
                    "items": {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": node_name,
                    },
                })),
            },
        });
        schema
    }
}

impl ToSchema for Dag {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Dag")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_schemas_are_added() {
        let mut document = json!({"components": {"schemas": {
            "NewJob": {"type": "object"}, "Dag": {"type": "object"}}}});
        add_raw(&mut document);
        let schemas = &document["components"]["schemas"];
        assert_eq!(schemas["Dag"]["required"], json!(["nodes"]));
        assert_eq!(
            schemas["Dag"]["properties"]["nodes"]["items"]["anyOf"][0]["properties"]["dag"],
            json!({"type": "null"})
        );
        assert_eq!(schemas["NewJob"]["allOf"][0], json!({"type": "object"}));
        assert_eq!(schemas["NewJob"]["allOf"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn the_name_pattern_spells_the_rule() {
        assert_eq!(
            name_pattern("E", "I"),
            "^E(?:I{0,126}E)?$",
            "1 to 128 characters"
        );
    }
}
