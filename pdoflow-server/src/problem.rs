//! Problem details (RFC 9457): every error response, whatever produced it,
//! is `application/problem+json` with `type`, `title`, `status`, `detail`,
//! `instance` (the request's path), `code` (the typed name) and the typed
//! fields of its code.
//!
//! Handlers return `Problem`s; `finish_problems` (a middleware) fills in
//! `instance` and turns the plain-text errors of axum and tower (unknown
//! routes, 405, 413) into problems too, so that no error leaves as text.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// The typed name of a problem; its `type` is `urn:pdoflow:problem:<Code>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum Code {
    /// 404: no job with this id (field `job`).
    JobNotFound,
    /// 409: the job type is registered with another schema (field `job_type`).
    SchemaConflict,
    /// 409: the SQL API refused this transition of the job (fields `job`,
    /// `attempt`, `reason`).
    InvalidTaskTransition,
    /// 422: a value in the request is not acceptable (field `pointer` for
    /// the body, `parameter` for the query string).
    ValidationFailed,
    /// 422: a job's args do not match its job type's JSON Schema (field
    /// `pointer`).
    SchemaViolation,
    /// 400: the body is not JSON.
    BadRequest,
    /// 401: no token, or one that is not valid (field `role` when the role
    /// is the problem).
    Unauthorized,
    /// 403: the role may not do this (SQLSTATE 42501).
    Forbidden,
    /// 404: no such job type, posting, worker or route.
    NotFound,
    /// 405: the route has no such method.
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (another 55000 or 23505).
    Conflict,
    /// 413: the body is larger than the server takes.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 503: the database cannot be reached, or asked to try again.
    ServiceUnavailable,
    /// 500: anything else; the log has the details.
    Internal,
}

impl Code {
    fn name(self) -> &'static str {
        match self {
            Code::JobNotFound => "JobNotFound",
            Code::SchemaConflict => "SchemaConflict",
            Code::InvalidTaskTransition => "InvalidTaskTransition",
            Code::ValidationFailed => "ValidationFailed",
            Code::SchemaViolation => "SchemaViolation",
            Code::BadRequest => "BadRequest",
            Code::Unauthorized => "Unauthorized",
            Code::Forbidden => "Forbidden",
            Code::NotFound => "NotFound",
            Code::MethodNotAllowed => "MethodNotAllowed",
            Code::Conflict => "Conflict",
            Code::PayloadTooLarge => "PayloadTooLarge",
            Code::UnsupportedMediaType => "UnsupportedMediaType",
            Code::ServiceUnavailable => "ServiceUnavailable",
            Code::Internal => "Internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::JobNotFound | Code::NotFound => StatusCode::NOT_FOUND,
            Code::SchemaConflict | Code::InvalidTaskTransition | Code::Conflict => {
                StatusCode::CONFLICT
            }
            Code::ValidationFailed | Code::SchemaViolation => StatusCode::UNPROCESSABLE_ENTITY,
            Code::BadRequest => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Code::JobNotFound => "Job not found",
            Code::SchemaConflict => "Job type registered with another schema",
            Code::InvalidTaskTransition => "Invalid task transition",
            Code::ValidationFailed => "Validation failed",
            Code::SchemaViolation => "Args do not match the job type's schema",
            Code::BadRequest => "Malformed request",
            Code::Unauthorized => "Unauthorized",
            Code::Forbidden => "Forbidden",
            Code::NotFound => "Not found",
            Code::MethodNotAllowed => "Method not allowed",
            Code::Conflict => "Conflict",
            Code::PayloadTooLarge => "Request body too large",
            Code::UnsupportedMediaType => "Unsupported media type",
            Code::ServiceUnavailable => "Service unavailable",
            Code::Internal => "Internal server error",
        }
    }
}

/// An RFC 9457 problem: the body of every error response.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:pdoflow:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub code: Code,
    /// The job concerned (JobNotFound, InvalidTaskTransition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Uuid>,
    /// The claim's attempt (InvalidTaskTransition of a claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i32>,
    /// Why the transition was refused (InvalidTaskTransition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// JSON pointer (RFC 6901) of the failing value in the request body
    /// (ValidationFailed, SchemaViolation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The query parameter at fault (ValidationFailed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The job type concerned (SchemaConflict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    /// The role concerned (Unauthorized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `WWW-Authenticate` of a 401.
    #[serde(skip)]
    pub www_authenticate: Option<String>,
    /// `Allow` of a 405.
    #[serde(skip)]
    pub allow: Option<HeaderValue>,
    /// `Retry-After` of a 503, in seconds.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: format!("urn:pdoflow:problem:{}", code.name()),
            title: code.title().to_owned(),
            status: code.status().as_u16(),
            detail: detail.into(),
            instance: None,
            code,
            job: None,
            attempt: None,
            reason: None,
            pointer: None,
            parameter: None,
            job_type: None,
            role: None,
            www_authenticate: None,
            allow: None,
            retry_after: None,
        }
    }

    pub fn job_not_found(job: Uuid) -> Problem {
        Problem {
            job: Some(job),
            ..Problem::new(Code::JobNotFound, format!("job {job} does not exist"))
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(Code::NotFound, detail)
    }

    /// A 422 naming the failing value of the body by its JSON pointer.
    pub fn invalid_body(pointer: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            pointer: Some(pointer.into()),
            ..Problem::new(Code::ValidationFailed, detail)
        }
    }

    /// A 422 naming the failing query parameter.
    pub fn invalid_parameter(parameter: &str, detail: impl Into<String>) -> Problem {
        Problem {
            parameter: Some(parameter.to_owned()),
            ..Problem::new(Code::ValidationFailed, detail)
        }
    }

    pub fn transition(job: Uuid, attempt: Option<i32>, reason: impl Into<String>) -> Problem {
        let reason = reason.into();
        Problem {
            job: Some(job),
            attempt,
            reason: Some(reason.clone()),
            ..Problem::new(Code::InvalidTaskTransition, reason)
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem {
            retry_after: Some(1),
            ..Problem::new(Code::ServiceUnavailable, detail)
        }
    }

    /// A 500 that says nothing of its cause (which `log` gives to the log).
    pub fn internal(log: &str) -> Problem {
        tracing::error!("internal error: {log}");
        Problem::new(
            Code::Internal,
            "the server failed to handle this request; its log says why",
        )
    }

    /// The body of a problem response for a status that carries none of
    /// ours (axum's and tower's own rejections).
    fn for_status(status: StatusCode) -> Problem {
        let code = match status {
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
            StatusCode::UNAUTHORIZED => Code::Unauthorized,
            StatusCode::FORBIDDEN => Code::Forbidden,
            StatusCode::CONFLICT => Code::Conflict,
            StatusCode::UNPROCESSABLE_ENTITY => Code::ValidationFailed,
            StatusCode::SERVICE_UNAVAILABLE => Code::ServiceUnavailable,
            status if status.is_client_error() => Code::BadRequest,
            _ => Code::Internal,
        };
        let detail = match code {
            Code::NotFound => "no such route".to_owned(),
            Code::MethodNotAllowed => "this route does not take this method".to_owned(),
            Code::PayloadTooLarge => "the request body is larger than the server takes".to_owned(),
            _ => status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned(),
        };
        let mut problem = Problem::new(code, detail);
        // Keep the status as it was (a 408 stays a 408).
        problem.status = status.as_u16();
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(self.code.status());
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(value) = self
            .www_authenticate
            .as_deref()
            .and_then(|value| HeaderValue::from_str(value).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(allow) = self.allow.clone() {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// Middleware: sets `instance` of every problem to the request's path, and
/// turns every other error response (axum's 404 and 405, a 413, ...) into a
/// problem, except the dashboard's HTML pages.
pub async fn finish_problems(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // The dashboard's error pages are pages for people: kept as they are.
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if html {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let mut problem = match parts.extensions.remove::<Problem>() {
        Some(problem) => problem,
        None => {
            let mut problem = Problem::for_status(status);
            problem.allow = parts.headers.get(header::ALLOW).cloned();
            problem
        }
    };
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), code = problem.code.name(), detail = %problem.detail, path = %path, "request failed");
    }
    problem.instance = Some(path);
    let mut rebuilt = problem.into_response();
    // Keep what other layers added (Vary, Preference-Applied, ...).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    rebuilt
}

/// A response body of nothing, for 204.
pub fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
