//! Signing in from a browser. The JWT a user pastes into the login form is
//! kept in a cookie (`pdoflow_session`: HttpOnly, so scripts cannot read
//! it; SameSite=Strict, so other sites' pages cannot send it; Secure
//! behind a TLS proxy) and checked on every request exactly as a bearer
//! token is: the dashboard runs as the role it names, with that role's
//! privileges. Every action also carries a CSRF token (an HMAC of the
//! cookie under a key drawn when the server starts), and a request whose
//! `Origin` is another site is refused.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::Role;
use crate::state::AppState;

/// The cookie that holds the signed-in user's token.
pub const COOKIE: &str = "pdoflow_session";
/// The header htmx sends the CSRF token in (forms without htmx send the
/// field `csrf`).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The key CSRF tokens are made with: new at every start, so a restart
/// signs everyone's pages anew (their next action reloads the page).
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn generate() -> Result<CsrfKey, String> {
        let mut key = [0; 32];
        getrandom::fill(&mut key).map_err(|error| format!("no random bytes: {error}"))?;
        Ok(CsrfKey(key))
    }

    fn mac(&self, session: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts a 32-byte key"));
        mac.update(session.as_bytes());
        mac
    }

    /// The CSRF token of a session (its cookie's value).
    pub fn token(&self, session: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(session).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `session` (in constant time).
    pub fn check(&self, session: &str, token: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(token) {
            Ok(bytes) => self.mac(session).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// Who is looking: the role the page's queries and actions run as, and the
/// CSRF token its forms carry.
pub struct Viewer {
    pub role: Role,
    pub csrf: String,
    /// An htmx request (a live region reloading itself, a button): it
    /// wants a fragment, and nothing at all when there is none to give.
    pub htmx: bool,
    /// The cookie's value (empty for the anonymous role), which the CSRF
    /// token is checked against.
    session: String,
}

impl Viewer {
    /// Whether an action's CSRF token (header or form field) is this
    /// session's.
    pub fn csrf_ok(&self, state: &AppState, headers: &HeaderMap, field: Option<&str>) -> bool {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .or(field);
        sent.is_some_and(|token| state.dashboard.csrf.check(&self.session, token))
    }
}

/// Why a request has no viewer: the browser goes to the login page (an
/// htmx request is told to go there with `HX-Redirect`).
pub struct SignInFirst {
    /// `expired` or `invalid` (the login page says what each means: no
    /// text from the URL is shown).
    why: Option<String>,
    htmx: bool,
    back_to: String,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let mut target = format!(
            "/dashboard/login?next={}",
            super::query_value(&self.back_to)
        );
        if let Some(why) = &self.why {
            target.push_str(&format!("&why={}", super::query_value(why)));
        }
        if self.htmx {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(&target) {
                response.headers_mut().insert("hx-redirect", value);
            }
            return response;
        }
        Redirect::to(&target).into_response()
    }
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE)
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| !value.is_empty())
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = SignInFirst;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Viewer, SignInFirst> {
        let htmx = parts.headers.contains_key("hx-request");
        let back_to = match htmx {
            // An htmx request's page is the one it was made from.
            true => parts
                .headers
                .get("hx-current-url")
                .and_then(|value| value.to_str().ok())
                .and_then(|url| url.find("/dashboard").map(|start| url[start..].to_owned()))
                .unwrap_or_else(|| "/dashboard/".to_owned()),
            // A page: back to it after signing in.
            false if parts.method == Method::GET => parts
                .uri
                .path_and_query()
                .map(|path| path.as_str().to_owned())
                .unwrap_or_else(|| "/dashboard/".to_owned()),
            // A form's target takes no GET: back to the overview.
            false => "/dashboard/".to_owned(),
        };
        let refuse = |why: Option<String>| SignInFirst {
            why,
            htmx,
            back_to: back_to.clone(),
        };
        match session_cookie(&parts.headers) {
            Some(session) => match state.auth.authenticate_token(&session) {
                Ok(role) => Ok(Viewer {
                    csrf: state.dashboard.csrf.token(&session),
                    role,
                    htmx,
                    session,
                }),
                Err(problem) => Err(refuse(Some(
                    if problem.detail.contains("expired") {
                        "expired"
                    } else {
                        "invalid"
                    }
                    .to_owned(),
                ))),
            },
            None => match state.auth.anonymous() {
                Some(role) => Ok(Viewer {
                    csrf: state.dashboard.csrf.token(""),
                    role,
                    htmx,
                    session: String::new(),
                }),
                None => Err(refuse(None)),
            },
        }
    }
}

/// The `Set-Cookie` that signs a browser in with `token` until a day after
/// the token expires (or until the browser closes, for a token without
/// `exp`); the token itself is refused from its expiry on.
pub fn sign_in_cookie(token: &str, role: &Role, secure: bool) -> String {
    let mut cookie = Cookie::build((COOKIE, token.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    if let Some(expires_at) = role.expires_at {
        // Kept a day past the token's expiry, so that the server sees the
        // expired token and the login page can say why it is back.
        let left = expires_at - chrono::Utc::now().timestamp() + 86_400;
        cookie = cookie.max_age(cookie::time::Duration::seconds(left.max(0)));
    }
    cookie.build().encoded().to_string()
}

/// The `Set-Cookie` that signs a browser out.
pub fn sign_out_cookie(secure: bool) -> String {
    Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .encoded()
        .to_string()
}

/// Whether the browser reached the server over TLS (through a proxy that
/// says so): then the cookie is `Secure`. The server itself speaks plain
/// HTTP.
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// Whether a state-changing request comes from this site. Browsers say so
/// in `Sec-Fetch-Site` (`same-origin`; `none` when the user typed or
/// bookmarked it); without that header, an `Origin` header must name the
/// host the request was sent to (`X-Forwarded-Host` when a proxy passes
/// it on, else `Host`); a request with neither is allowed (not a browser's
/// cross-site request: those carry `Origin`).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
    }
    let Some(origin) = text("origin") else {
        return true;
    };
    let origin_host = origin.split_once("://").map_or("", |(_, host)| host);
    [text("x-forwarded-host"), text("host")]
        .into_iter()
        .flatten()
        .filter_map(|hosts| hosts.split(',').next())
        .map(str::trim)
        .any(|host| !host.is_empty() && origin_host.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let key = CsrfKey::generate().unwrap();
        let token = key.token("session-a");
        assert!(key.check("session-a", &token));
        assert!(!key.check("session-b", &token));
        assert!(!key.check("session-a", "not base64 !"));
        assert!(!key.check("session-a", ""));
        let other = CsrfKey::generate().unwrap();
        assert!(!other.check("session-a", &token));
    }

    #[test]
    fn origins_must_match_the_host() {
        let headers = |origin: Option<&str>, host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        assert!(same_origin(&headers(None, "127.0.0.1:8080")));
        assert!(same_origin(&headers(
            Some("http://127.0.0.1:8080"),
            "127.0.0.1:8080"
        )));
        assert!(!same_origin(&headers(
            Some("http://evil.example"),
            "127.0.0.1:8080"
        )));
        assert!(!same_origin(&headers(Some("null"), "127.0.0.1:8080")));
        // Behind a proxy that rewrites Host.
        let mut proxied = headers(Some("https://queue.example.com"), "127.0.0.1:8080");
        assert!(!same_origin(&proxied));
        proxied.insert("x-forwarded-host", "queue.example.com".parse().unwrap());
        assert!(same_origin(&proxied));
        // The browser's own word wins.
        let mut fetched = headers(Some("http://evil.example"), "127.0.0.1:8080");
        fetched.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&fetched));
        fetched.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&fetched));
        fetched.insert("sec-fetch-site", "same-site".parse().unwrap());
        assert!(!same_origin(&fetched));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let role = Role {
            name: "r".into(),
            claims: "{}".into(),
            expires_at: None,
        };
        let cookie = sign_in_cookie("a.b.c", &role, false);
        assert!(cookie.starts_with("pdoflow_session=a.b.c"), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains("Secure"), "{cookie}");
        assert!(sign_in_cookie("t", &role, true).contains("Secure"));
        assert!(sign_out_cookie(false).contains("Max-Age=0"));
    }
}
