//! From the SQL API's errors to problems. pdoflow's messages name what is
//! wrong (`jobs[3].priority must be ...`, `claim (job ..., attempt 1) is not
//! current: ...`), so the problem can name it too: as a JSON pointer into
//! the request body, or as the job, attempt and reason of a refused
//! transition.

use uuid::Uuid;

use crate::problem::{Code, Problem};

/// What the request was about, to read an error in: which body fields the
/// SQL API's parameter names stand for, and which job, claim, job type or
/// posting the request's path names.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    /// `(SQL parameter, JSON pointer in the body)`; a message naming the
    /// parameter (`priority must be ...`, `jobs[3].priority ...`) points at
    /// the body's value.
    pub fields: &'static [(&'static str, &'static str)],
    /// The job the path names: "job <it> does not exist" is a 404.
    pub job: Option<Uuid>,
    /// The claim's attempt, for a refused transition.
    pub attempt: Option<i32>,
    /// The job type being registered: a 23505 is a SchemaConflict.
    pub job_type: Option<String>,
    /// The posting the path names: "posting <it> does not exist" is a 404.
    pub posting: Option<Uuid>,
    /// A DAG document, for pointers into it (`the args of DAG node "a/b"`).
    pub dag: Option<serde_json::Value>,
}

/// PostgreSQL's message with its SQLSTATE, or the client's error (for logs).
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// The problem for `error`, read in `ctx`.
pub fn problem(error: &tokio_postgres::Error, ctx: &Ctx) -> Problem {
    let Some(db) = error.as_db_error() else {
        tracing::warn!("database error: {error}");
        return Problem::unavailable("the database connection failed");
    };
    let code = db.code().code();
    let message = db.message();
    match code {
        "42501" => Problem::new(Code::Forbidden, message),
        "55000" => {
            if let Some(problem) = claim_problem(message) {
                return problem;
            }
            match ctx.job {
                Some(job) if message.starts_with("job ") => {
                    Problem::transition(job, ctx.attempt, message)
                }
                _ => Problem::new(Code::Conflict, message),
            }
        }
        "23505" => match &ctx.job_type {
            Some(job_type) => Problem {
                job_type: Some(job_type.clone()),
                ..Problem::new(Code::SchemaConflict, message)
            },
            None => Problem::new(Code::Conflict, message),
        },
        // 22P05: a JSON string with U+0000, which jsonb cannot store;
        // 22021: a text value with U+0000, which text cannot.
        "22023" | "22004" | "22001" | "22003" | "22007" | "22008" | "54000" | "22P02" | "22P05"
        | "22021" => {
            if let Some(job) = named_uuid(message, "job ", " does not exist") {
                if ctx.job == Some(job) {
                    return Problem::job_not_found(job);
                }
            }
            if let Some(posting) = named_uuid(message, "posting ", " does not exist") {
                if ctx.posting == Some(posting) {
                    return Problem::not_found(message);
                }
            }
            if message.contains(" does not match the JSON Schema of task ") {
                return schema_violation(message, db.detail(), ctx);
            }
            Problem::invalid_body(pointer_of_message(message, ctx), message)
        }
        "57014" => Problem::unavailable(
            "the database cancelled the statement (statement_timeout or a cancel)",
        ),
        "40001" | "40P01" | "55P03" => Problem::unavailable(format!("try again: {message}")),
        "25006" => Problem::unavailable("the database is read-only"),
        code if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") => {
            Problem::unavailable(format!("the database is not available: {message}"))
        }
        _ => Problem::internal(&format!("{code}: {message}")),
    }
}

/// `claim (job <id>, attempt <n>) is not current: <reason>`, the SQL API's
/// refusal of a claim that ended, as an InvalidTaskTransition.
fn claim_problem(message: &str) -> Option<Problem> {
    let rest = message.strip_prefix("claim (job ")?;
    let (job, rest) = rest.split_once(", attempt ")?;
    let job = job.parse::<Uuid>().ok()?;
    let (attempt, rest) = rest.split_once(')')?;
    let attempt = attempt.parse::<i32>().ok()?;
    let reason = match rest.split_once(": ") {
        Some((_, reason)) => reason.to_owned(),
        None => "the claim is not current".to_owned(),
    };
    Some(Problem {
        detail: message.to_owned(),
        ..Problem::transition(job, Some(attempt), reason)
    })
}

/// The UUID in `<prefix><uuid><suffix>`.
fn named_uuid(message: &str, prefix: &str, suffix: &str) -> Option<Uuid> {
    message
        .strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// The pointer of the value a message names by its first word
/// (`priority`, `jobs[3].priority`, `depends_on:`), when that is a body
/// field of the request; else the whole body ("").
fn pointer_of_message(message: &str, ctx: &Ctx) -> String {
    let word = message.split_whitespace().next().unwrap_or("");
    let word = word.trim_end_matches([':', ',']);
    sql_path_to_pointer(word, ctx).unwrap_or_default()
}

/// `jobs[3].priority` → `/jobs/3/priority`, the first name translated by
/// `ctx.fields`; `None` when it is not one of them.
fn sql_path_to_pointer(path: &str, ctx: &Ctx) -> Option<String> {
    if path.is_empty()
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '[' | ']' | '.'))
    {
        return None;
    }
    let mut pointer = String::new();
    for (position, part) in path.split('.').enumerate() {
        let (name, indexes) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if position == 0 {
            let (_, base) = ctx.fields.iter().find(|(sql, _)| *sql == name)?;
            pointer.push_str(base);
        } else {
            pointer.push('/');
            pointer.push_str(name);
        }
        for index in indexes.split(['[', ']']).filter(|index| !index.is_empty()) {
            index.parse::<usize>().ok()?;
            pointer.push('/');
            pointer.push_str(index);
        }
    }
    Some(pointer)
}

/// A SchemaViolation: the pointer of the args value the message names,
/// followed by the pointer inside it (0.12.0's DETAIL `JSON pointer: /to`,
/// else the message's ` at /to: `).
fn schema_violation(message: &str, detail: Option<&str>, ctx: &Ctx) -> Problem {
    let (named, _) = message
        .split_once(" does not match the JSON Schema of task ")
        .unwrap_or((message, ""));
    let base = match named.strip_prefix("the args of DAG node ") {
        Some(node) => dag_node_pointer(ctx.dag.as_ref(), node.trim_matches('"'))
            .map(|node| format!("/dag{node}/args"))
            .unwrap_or_else(|| "/dag".to_owned()),
        None => sql_path_to_pointer(named, ctx).unwrap_or_default(),
    };
    let inner = detail
        .and_then(|detail| {
            detail
                .lines()
                .find_map(|line| line.trim().strip_prefix("JSON pointer: "))
                .map(str::to_owned)
        })
        .or_else(|| inner_pointer_of_message(message))
        .unwrap_or_default();
    let inner = if inner == "/" { String::new() } else { inner };
    Problem {
        pointer: Some(format!("{base}{inner}")),
        ..Problem::new(Code::SchemaViolation, message)
    }
}

/// The ` at /to: ` of `... of task "t" at /to: reason`.
fn inner_pointer_of_message(message: &str) -> Option<String> {
    let (_, rest) = message.split_once(" does not match the JSON Schema of task ")?;
    // Skip the task's quoted name (which may hold " at ").
    let rest = rest.strip_prefix('"')?;
    let mut escaped = false;
    let mut end = None;
    for (at, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                end = Some(at);
                break;
            }
            _ => escaped = false,
        }
    }
    let rest = rest.get(end? + 1..)?.strip_prefix(" at ")?;
    let (pointer, _) = rest.split_once(": ")?;
    Some(pointer.to_owned())
}

/// `/nodes/2/dag/nodes/0` for DAG node `checks/a` of `dag`.
fn dag_node_pointer(dag: Option<&serde_json::Value>, name: &str) -> Option<String> {
    let mut level = dag?;
    let mut pointer = String::new();
    let mut parts = name.split('/').peekable();
    while let Some(part) = parts.next() {
        let nodes = level.get("nodes")?.as_array()?;
        let index = nodes
            .iter()
            .position(|node| node.get("name").and_then(|n| n.as_str()) == Some(part))?;
        pointer.push_str(&format!("/nodes/{index}"));
        if parts.peek().is_some() {
            level = nodes.get(index)?.get("dag")?;
            pointer.push_str("/dag");
        }
    }
    Some(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "0190b9a4-7c3e-7000-8000-000000000001";

    fn ctx(fields: &'static [(&'static str, &'static str)]) -> Ctx {
        Ctx {
            fields,
            ..Ctx::default()
        }
    }

    #[test]
    fn claims_that_are_not_current_name_job_attempt_and_reason() {
        let message =
            format!("claim (job {JOB}, attempt 1) is not current: the job is running attempt 2");
        let problem = claim_problem(&message).unwrap();
        assert_eq!(problem.job, JOB.parse().ok());
        assert_eq!(problem.attempt, Some(1));
        assert_eq!(
            problem.reason.as_deref(),
            Some("the job is running attempt 2")
        );
        assert!(claim_problem("claim (job x, attempt 1) is not current").is_none());
    }

    #[test]
    fn messages_point_into_the_body() {
        let batch = ctx(&[("jobs", "/jobs")]);
        assert_eq!(
            pointer_of_message("jobs[3].priority must be an integer", &batch),
            "/jobs/3/priority"
        );
        let single = ctx(&[("priority", "/priority"), ("depends_on", "/depends_on")]);
        assert_eq!(
            pointer_of_message("depends_on: job x does not exist", &single),
            "/depends_on"
        );
        assert_eq!(pointer_of_message("something else", &single), "");
        let claim = ctx(&[("tasks", "/job_types")]);
        assert_eq!(
            pointer_of_message("tasks[2] must not be NULL", &claim),
            "/job_types/2"
        );
    }

    #[test]
    fn schema_violations_point_at_the_failing_field() {
        let single = ctx(&[("args", "/args")]);
        let message = r#"args does not match the JSON Schema of task "send at x" at /to: 5 is not of type "string""#;
        let problem = schema_violation(message, None, &single);
        assert_eq!(problem.pointer.as_deref(), Some("/args/to"));
        let problem = schema_violation(message, Some("JSON pointer: /cc/0"), &single);
        assert_eq!(problem.pointer.as_deref(), Some("/args/cc/0"));
        let batch = ctx(&[("jobs", "/jobs")]);
        let message = r#"jobs[1].args does not match the JSON Schema of task "t" at /: "to" is a required property"#;
        let problem = schema_violation(message, None, &batch);
        assert_eq!(problem.pointer.as_deref(), Some("/jobs/1/args"));
        let dag = Ctx {
            dag: Some(serde_json::json!({"nodes": [{"name": "a"},
                {"name": "checks", "dag": {"nodes": [{"name": "x"}, {"name": "y"}]}}]})),
            ..Ctx::default()
        };
        let message = r#"the args of DAG node "checks/y" does not match the JSON Schema of task "t" at /n: bad"#;
        let problem = schema_violation(message, None, &dag);
        assert_eq!(
            problem.pointer.as_deref(),
            Some("/dag/nodes/1/dag/nodes/1/args/n")
        );
    }
}
