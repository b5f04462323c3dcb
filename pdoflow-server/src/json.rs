//! Request bodies and query strings, checked before any SQL runs: a value
//! of the wrong type, a missing or an unknown field is a 422 whose
//! `pointer` names it (`/jobs/3/priority`); a body that is not JSON is a
//! 400, one that is not `application/json` a 415, one that is too large a
//! 413. Axum's own extractors answer in plain text, hence these.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::problem::{Code, Problem};
use crate::state::AppState;

/// A JSON body of type `T`. An empty body reads as `{}` (so that bodies
/// whose fields are all optional may be left out).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Body<T>, Problem> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        Code::PayloadTooLarge,
                        format!(
                            "the request body is larger than {} bytes",
                            state.config.body_limit
                        ),
                    )
                } else {
                    Problem::new(Code::BadRequest, rejection.body_text())
                }
            })?;
        // Bodies are objects whose fields may all be optional: no body, or
        // null, reads as `{}`. Only JSON's own whitespace is trimmed (Rust's
        // `trim_ascii` also drops form feeds, which JSON refuses), and a
        // body of whitespace alone is not JSON.
        if bytes.is_empty() {
            return parse(b"{}").map(Body);
        }
        let text = trim_json_whitespace(&bytes);
        if text == b"null" {
            return parse(b"{}").map(Body);
        }
        if let Some(content_type) = content_type {
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(Problem::new(
                    Code::UnsupportedMediaType,
                    format!("the body must be application/json, not {essence}"),
                ));
            }
        }
        // serde reads a struct from an array too (`[1, 2]` as its fields in
        // order): a body is an object, as the document says.
        if text.first() != Some(&b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
                    Ok(_) => Problem::invalid_body("", "the body must be a JSON object"),
                    Err(error) => Problem::new(
                        Code::BadRequest,
                        format!("the body is not valid JSON: {error}"),
                    ),
                },
            );
        }
        parse(&bytes).map(Body)
    }
}

/// `bytes` without the whitespace JSON allows around a value (RFC 8259:
/// space, tab, line feed, carriage return).
fn trim_json_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes
        .iter()
        .position(|byte| !is_space(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_space(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// An object of a body's array (`/jobs/3`) as a `T`, its problems pointing
/// into the body: read apart, so that an element that is an array (which
/// serde would read as a struct's fields in order) is refused.
pub fn element<T: DeserializeOwned>(
    value: serde_json::Map<String, serde_json::Value>,
    pointer: &str,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(serde_json::Value::Object(value))
        .map_err(|error| data_problem(&error, pointer))
}

/// An `i32` that may be written as an integral float (`3.0`): JSON Schema's
/// `integer` takes it, so the server does.
pub fn int32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let integral = number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 1e18)
                .map(|float| float as i64)
        })
        .ok_or_else(|| D::Error::custom(format!("invalid value: {number}, expected an integer")))?;
    i32::try_from(integral).map_err(|_| {
        D::Error::custom(format!(
            "invalid value: {integral}, expected an integer from {} to {}",
            i32::MIN,
            i32::MAX
        ))
    })
}

/// `int32`, optional (null or absent: None).
pub fn opt_int32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "int32")] i32);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(value)| value))
}

/// `bytes` as a `T`, or the problem naming what is wrong and where.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            match error.inner().classify() {
                serde_json::error::Category::Data => data_problem(&error, ""),
                _ => Problem::new(
                    Code::BadRequest,
                    format!("the body is not valid JSON: {}", error.inner()),
                ),
            }
        })?;
    deserializer.end().map_err(|error| {
        Problem::new(
            Code::BadRequest,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    Ok(value)
}

/// The 422 of a value of the wrong type, missing or unknown, at `prefix`
/// and the error's path.
fn data_problem(error: &serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> Problem {
    let mut pointer = format!("{prefix}{}", pointer_of(error.path()));
    let message = error.inner().to_string();
    // serde names a missing field from its object (an unknown one is in the
    // path already): point at the field itself.
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            pointer.push('/');
            pointer.push_str(&escape(field));
        }
    }
    let message = strip_position(&message);
    Problem::invalid_body(pointer.clone(), format!("{pointer}: {message}"))
}

/// serde_json's " at line 1 column 20" says nothing a pointer does not.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&escape(key));
            }
            Segment::Enum { variant } => {
                pointer.push('/');
                pointer.push_str(&escape(variant));
            }
            Segment::Unknown => {}
        }
    }
    pointer
}

/// RFC 6901: `~` and `/` in a key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A query string of type `T` (whose fields are strings, checked by the
/// handler), unknown parameters refused.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Query<T>, Problem> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<T>(query)
            .map(Query)
            .map_err(|error| {
                let message = error.to_string();
                let parameter = message
                    .strip_prefix("unknown field `")
                    .or_else(|| message.strip_prefix("duplicate field `"))
                    .and_then(|rest| rest.split_once('`'))
                    .map(|(name, _)| name.to_owned())
                    .unwrap_or_default();
                Problem::invalid_parameter(&parameter, format!("query string: {message}"))
            })
    }
}
