//! Who a request runs as, the PostgREST way: a bearer JWT (HS256 with the
//! configured secret, RS256 or ES256 with the configured public key) whose
//! `role` claim names a PostgreSQL role. The request's transaction then
//! runs as that role (`pool::Session::begin`), and the database's
//! privileges decide what it may do. Without a token, the anonymous role
//! when one is configured, else 401.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{JwtConfig, PublicKey};
use crate::error::ServerError;
use crate::problem::{Code, Problem};
use crate::state::AppState;

/// The role a request runs as, and the claims it came with (JSON, for
/// `request.jwt.claims`; `{}` for the anonymous role).
#[derive(Clone, Debug)]
pub struct Role {
    pub name: String,
    pub claims: String,
    /// The token's `exp` (seconds since 1970), when it has one.
    pub expires_at: Option<i64>,
}

/// The keys tokens are checked with.
pub struct Auth {
    secret: Option<DecodingKey>,
    /// The public key, and the algorithm its kind takes.
    public: Option<(Algorithm, DecodingKey)>,
    audience: Option<String>,
    anon_role: Option<String>,
}

impl Auth {
    pub fn new(config: &JwtConfig, anon_role: Option<String>) -> Result<Auth, ServerError> {
        let secret = match &config.secret {
            Some(secret) if secret.is_empty() => {
                return Err(ServerError::Config("the JWT secret is empty".into()))
            }
            Some(secret) => Some(DecodingKey::from_secret(secret).map_err(|error| {
                ServerError::Config(format!("the JWT secret is not usable: {error}"))
            })?),
            None => None,
        };
        let public = match &config.public_key {
            None => None,
            Some(key) => Some(public_key(key)?),
        };
        if let Some(role) = &anon_role {
            check_role_name(role).map_err(|why| {
                ServerError::Config(format!("the anonymous role {role:?}: {why}"))
            })?;
        }
        if secret.is_none() && public.is_none() {
            match &anon_role {
                Some(role) => tracing::warn!(
                    "no JWT secret or public key configured: every request runs as the anonymous role {role:?}"
                ),
                None => tracing::warn!(
                    "no JWT secret or public key and no anonymous role configured: every /v1 request will get 401"
                ),
            }
        }
        Ok(Auth {
            secret,
            public,
            audience: config.audience.clone(),
            anon_role,
        })
    }

    /// The anonymous role, when one is configured.
    pub fn anonymous(&self) -> Option<Role> {
        self.anon_role.as_ref().map(|role| Role {
            name: role.clone(),
            claims: "{}".to_owned(),
            expires_at: None,
        })
    }

    /// The role of a request with these headers, or the 401 that says why
    /// there is none.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Role, Problem> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return match self.anonymous() {
                Some(role) => Ok(role),
                None => Err(Problem {
                    www_authenticate: Some("Bearer".to_owned()),
                    ..Problem::new(
                        Code::Unauthorized,
                        "this request needs a bearer token (Authorization: Bearer <JWT>)",
                    )
                }),
            };
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| invalid_token("the Authorization header is not \"Bearer <token>\""))?;
        self.authenticate_token(token)
    }

    /// The role `token` names, or the 401 that says why it names none (the
    /// dashboard's sign-in cookie holds such a token too).
    pub fn authenticate_token(&self, token: &str) -> Result<Role, Problem> {
        let claims = self.verify(token).map_err(|why| invalid_token(&why))?;
        let role = match claims.get("role") {
            Some(Value::String(role)) => role.clone(),
            Some(_) => return Err(invalid_token("the token's role claim is not a string")),
            None => return Err(invalid_token("the token has no role claim")),
        };
        check_role_name(&role).map_err(|why| {
            let mut problem = invalid_token(&format!("the token's role claim {role:?}: {why}"));
            problem.role = Some(role.clone());
            problem
        })?;
        let expires_at = claims.get("exp").and_then(Value::as_i64);
        let claims = serde_json::to_string(&claims)
            .map_err(|error| Problem::internal(&format!("claims to JSON: {error}")))?;
        Ok(Role {
            name: role,
            claims,
            expires_at,
        })
    }

    /// The token's claims, if its signature, algorithm and times hold.
    fn verify(&self, token: &str) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| format!("the token is malformed: {error}"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref(),
            alg => self
                .public
                .as_ref()
                .filter(|(public_alg, _)| *public_alg == alg)
                .map(|(_, key)| key),
        }
        .ok_or_else(|| format!("tokens signed with {:?} are not accepted here", header.alg))?;
        let mut validation = Validation::new(header.alg);
        // exp and nbf are checked when present, to the second; neither is
        // required (PostgREST's rules).
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                ErrorKind::InvalidSignature => "the token's signature is not valid".to_owned(),
                ErrorKind::InvalidAudience => {
                    "the token's aud does not name this server".to_owned()
                }
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".to_owned(),
                _ => format!("the token is not valid: {error}"),
            },
        )?;
        Ok(data.claims)
    }
}

/// A role name the server will switch to: not empty, not `none` (which
/// would reset the role to the login's).
fn check_role_name(role: &str) -> Result<(), &'static str> {
    if role.is_empty() {
        return Err("empty");
    }
    if role.eq_ignore_ascii_case("none") {
        return Err("\"none\" is no role");
    }
    if role.contains('\0') {
        return Err("contains NUL");
    }
    Ok(())
}

fn invalid_token(why: &str) -> Problem {
    let description = why.replace(['"', '\\'], "'");
    Problem {
        www_authenticate: Some(format!(
            "Bearer error=\"invalid_token\", error_description=\"{description}\""
        )),
        ..Problem::new(Code::Unauthorized, why)
    }
}

/// An RSA key is for RS256, an EC key for ES256.
fn public_key(key: &PublicKey) -> Result<(Algorithm, DecodingKey), ServerError> {
    let pem = match key {
        PublicKey::Pem(pem) => pem.clone(),
        PublicKey::File(path) => std::fs::read(path).map_err(|error| {
            ServerError::Config(format!("JWT public key {}: {error}", path.display()))
        })?,
    };
    let name = match key {
        PublicKey::Pem(_) => "the JWT public key".to_owned(),
        PublicKey::File(path) => format!("JWT public key {}", path.display()),
    };
    // Each constructor refuses a key of the other kind.
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    match DecodingKey::from_ec_pem(&pem) {
        Ok(key) => Ok((Algorithm::ES256, key)),
        Err(error) => Err(ServerError::Config(format!(
            "{name} is neither an RSA nor an EC public key in PEM: {error}"
        ))),
    }
}

impl FromRequestParts<Arc<AppState>> for Role {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Role, Problem> {
        state.auth.authenticate(&parts.headers)
    }
}
