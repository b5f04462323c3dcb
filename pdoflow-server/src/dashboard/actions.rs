//! The dashboard's buttons: each runs one SQL API call as the signed-in
//! role, after its CSRF token and origin are checked, and answers with a
//! message for the flash region. A role without the privilege gets a
//! message saying so, and which role it needs, not an error page.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tokio_postgres::types::ToSql;

use super::layout::{self, FlashKind};
use super::session::{self, Viewer};
use crate::pool::Session;
use crate::problem::Code;
use crate::sql_error::Ctx;
use crate::state::AppState;

/// What every action form sends: the button pressed, and the CSRF token
/// (htmx sends it as a header instead).
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    pub action: String,
    #[serde(default)]
    pub csrf: Option<String>,
}

/// One action: the SQL call (returning one boolean: whether it changed
/// anything), and how to speak of it.
pub struct Action<'a> {
    pub sql: &'static str,
    pub params: &'a [&'a (dyn ToSql + Sync)],
    /// What it does, after "not allowed to": "cancel jobs".
    pub what: &'static str,
    /// Who may: "pdoflow_admin".
    pub needs: &'static str,
    /// The message when it changed something, and when it did not.
    pub done: String,
    pub unchanged: String,
    /// The page to go back to (forms sent without htmx).
    pub back: String,
}

/// Runs `action` as the viewer and answers with its flash message.
pub async fn run(
    state: &Arc<AppState>,
    viewer: &Viewer,
    headers: &HeaderMap,
    form: &ActionForm,
    action: Action<'_>,
) -> Response {
    let htmx = headers.contains_key("hx-request");
    if !session::same_origin(headers) || !viewer.csrf_ok(state, headers, form.csrf.as_deref()) {
        return answer(
            htmx,
            StatusCode::FORBIDDEN,
            FlashKind::Refused,
            "This page's security token is out of date: reload the page and try again.",
            &action.back,
        );
    }
    let outcome = Session::run(
        &state.pool,
        &viewer.role,
        action.sql,
        action.params,
        &Ctx::default(),
    )
    .await;
    let (status, kind, message) = match outcome {
        Ok(rows) => {
            state.dashboard.live.nudge();
            let changed = rows
                .first()
                .and_then(|row| row.try_get::<_, Option<bool>>(0).ok().flatten())
                .unwrap_or(true);
            let message = if changed {
                action.done
            } else {
                action.unchanged
            };
            (StatusCode::OK, FlashKind::Done, message)
        }
        Err(problem) => {
            let message = match problem.code {
                Code::Forbidden => format!(
                    "Your role {} is not allowed to {}: that needs {}. Nothing was changed. (The database said: {}.)",
                    viewer.role.name, action.what, action.needs, problem.detail
                ),
                Code::Unauthorized => format!(
                    "Your sign-in no longer works ({}): sign in again.",
                    problem.detail
                ),
                _ => format!("Could not {}: {}", action.what, problem.detail),
            };
            let status = match problem.code {
                Code::Forbidden => StatusCode::FORBIDDEN,
                _ => StatusCode::from_u16(problem.status).unwrap_or(StatusCode::CONFLICT),
            };
            (status, FlashKind::Refused, message)
        }
    };
    answer(htmx, status, kind, &message, &action.back)
}

/// htmx requests get the message (with 200, which htmx swaps, and a
/// `pdoflow:refresh` event that reloads the page's live regions); plain
/// form posts get a page saying it.
fn answer(htmx: bool, status: StatusCode, kind: FlashKind, message: &str, back: &str) -> Response {
    if htmx {
        let mut response = Html(layout::flash(kind, message).into_string()).into_response();
        response
            .headers_mut()
            .insert("hx-trigger", HeaderValue::from_static("pdoflow:refresh"));
        return response;
    }
    match kind {
        FlashKind::Done => Redirect::to(back).into_response(),
        FlashKind::Refused => (
            status,
            Html(layout::trouble(None, "Not done", message).into_string()),
        )
            .into_response(),
    }
}

/// The message for an unknown button.
pub fn unknown(form: &ActionForm, back: &str, headers: &HeaderMap) -> Response {
    answer(
        headers.contains_key("hx-request"),
        StatusCode::BAD_REQUEST,
        FlashKind::Refused,
        &format!("There is no action {:?} here.", form.action),
        back,
    )
}
