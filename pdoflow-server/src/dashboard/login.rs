//! The sign-in form (a token pasted once), and signing out.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::layout::{self, Section};
use super::session::{self, Viewer};
use crate::pool::Session;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    why: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after signing in: a dashboard page, never another site.
fn destination(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/dashboard") && !next.starts_with("//") => next,
        _ => "/dashboard/",
    }
}

fn form_page(next: Option<&str>, error: Option<&str>, note: Option<&str>) -> String {
    let body = html! {
        div.login {
            h1 { "Sign in to pdoflow" }
            p {
                "Paste a JWT whose " code { "role" } " claim names your PostgreSQL role (the token you use for the HTTP API). "
                "The dashboard runs every page and action as that role, with its privileges."
            }
            @if let Some(note) = note { p.notice { (note) } }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form #login-form method="post" action="/dashboard/login" {
                input type="hidden" name="next" value=(destination(next));
                label for="token" { "Token" }
                textarea #token name="token" rows="5" required autocomplete="off" spellcheck="false"
                    aria-describedby="token-help" autofocus {}
                p #token-help .muted { "Kept in an HttpOnly, SameSite=Strict cookie until the token expires or you sign out." }
                button type="submit" { "Sign in" }
            }
        }
    };
    layout::page(None, "Sign in", Section::None, body).into_string()
}

/// `GET /dashboard/login`
pub async fn form(Query(query): Query<LoginQuery>) -> Response {
    // Only known reasons are shown: no text from the URL reaches the page.
    let note = match query.why.as_deref() {
        Some("expired") => Some("Your sign-in has expired: paste a new token."),
        Some("invalid") => {
            Some("Your sign-in is no longer accepted (its token was refused): paste a new token.")
        }
        _ => None,
    };
    Html(form_page(query.next.as_deref(), None, note)).into_response()
}

/// `POST /dashboard/login`: checks the token (its signature, times and
/// role, and that the server may switch to the role), then sets the cookie.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let refuse = |message: &str| {
        (
            StatusCode::UNAUTHORIZED,
            Html(form_page(form.next.as_deref(), Some(message), None)),
        )
            .into_response()
    };
    if !session::same_origin(&headers) {
        return refuse("This form was sent from another site.");
    }
    let token = form.token.trim();
    if token.is_empty() {
        return refuse("Paste a token first.");
    }
    let role = match state.auth.authenticate_token(token) {
        Ok(role) => role,
        Err(problem) => return refuse(&format!("This token does not sign in: {}", problem.detail)),
    };
    if let Err(problem) = Session::begin(&state.pool, &role).await {
        return refuse(&format!(
            "The token's role {} cannot be used: {}",
            role.name, problem.detail
        ));
    }
    let cookie = session::sign_in_cookie(token, &role, session::over_tls(&headers));
    let mut response = Redirect::to(destination(form.next.as_deref())).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /dashboard/logout`
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !session::same_origin(&headers) || !viewer.csrf_ok(&state, &headers, form.csrf.as_deref()) {
        return (
            StatusCode::FORBIDDEN,
            Html(
                layout::trouble(
                    Some(&viewer),
                    "Not signed out",
                    "This page's security token is out of date: reload it and try again.",
                )
                .into_string(),
            ),
        )
            .into_response();
    }
    let mut response = Redirect::to("/dashboard/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&session::sign_out_cookie(session::over_tls(&headers)))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_goes_back_to_the_dashboard_only() {
        assert_eq!(
            destination(Some("/dashboard/jobs?state=failed")),
            "/dashboard/jobs?state=failed"
        );
        assert_eq!(destination(Some("https://evil.example/")), "/dashboard/");
        assert_eq!(destination(Some("//evil.example/dashboard")), "/dashboard/");
        assert_eq!(destination(None), "/dashboard/");
    }
}
