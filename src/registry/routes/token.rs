//! `/auth/token`: the bearer token endpoint clients reach after a 401
//! challenge. `GET` with Basic credentials, a bearer token of ours, or
//! none (docker, podman, skopeo); `POST` with an OAuth2 password grant
//! form (containerd and buildkit try it first) or a refresh grant whose
//! refresh token is a token of ours (docker's `identitytoken`). Each asks
//! for `scope`s; the token grants what the credentials allow of them.
//!
//! `expires_in=SECONDS` asks for a delegated token: pull only, only the
//! repositories named by the scopes, valid that long (at most the
//! configured `max_token_lifetime`; more is refused with 400, not
//! shortened). Refusals of a request's form follow OAuth2 (RFC 6749
//! §5.2): `{"error": "invalid_request", "error_description": ...}`.
//! Tokens are never logged (the request log has the path only).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::registry::auth::{Identity, IssuedToken, TokenRefusal, TokenRequest};
use crate::registry::errors::{ApiError, ErrorCode};

/// `GET /auth/token?service=..&scope=..[&expires_in=SECONDS]`.
pub async fn issue(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let request = match token_request(uri.query().unwrap_or("").as_bytes()) {
        Ok(request) => request,
        Err(why) => return invalid_request(&why),
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = state.auth.identify(authorization).await;
    respond(&state, &identity, &request)
}

/// `POST /auth/token` with `grant_type=password&username=..&password=..&scope=..`
/// or `grant_type=refresh_token&refresh_token=..&scope=..`.
pub async fn issue_oauth(State(state): State<AppState>, body: Bytes) -> Response {
    let field = |key: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let request = match token_request(&body) {
        Ok(request) => request,
        Err(why) => return invalid_request(&why),
    };
    let identity = match (
        field("grant_type").as_deref(),
        field("username"),
        field("password"),
    ) {
        (Some("password"), Some(user), Some(password)) => {
            if state.auth.check_password(&user, &password).await {
                Identity::User(user)
            } else {
                Identity::UnknownCredentials
            }
        }
        (Some("password"), None, None) => Identity::Anonymous,
        (Some("refresh_token"), _, _) => {
            let refresh = field("refresh_token").unwrap_or_default();
            match state
                .auth
                .identify(Some(&format!("Bearer {refresh}")))
                .await
            {
                identity @ Identity::Token(_) => identity,
                // Not ours: make the client fall back to GET.
                _ => return refuse(&TokenRefusal::BadCredentials),
            }
        }
        _ => return refuse(&TokenRefusal::BadCredentials),
    };
    respond(&state, &identity, &request)
}

/// The scopes and `expires_in` of a query or form; every `scope`
/// parameter may hold several scopes separated by spaces.
/// Errors describe what is wrong, for an `invalid_request` answer.
fn token_request(form: &[u8]) -> Result<TokenRequest, String> {
    let mut request = TokenRequest::default();
    for (key, value) in url::form_urlencoded::parse(form) {
        match &*key {
            "scope" => request.scopes.extend(
                value
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "expires_in" => match value.parse() {
                Ok(secs) => request.expires_in = Some(secs),
                Err(_) => {
                    return Err(format!(
                        "expires_in={value:?} is not a whole number of seconds"
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(request)
}

fn respond(state: &AppState, identity: &Identity, request: &TokenRequest) -> Response {
    match state.auth.issue(identity, request) {
        Ok(IssuedToken { token, expires_in }) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": expires_in,
                "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
            .to_string(),
        )
            .into_response(),
        Err(refusal) => refuse(&refusal),
    }
}

/// A refused token request: 401 for credentials, 400 for the form.
fn refuse(refusal: &TokenRefusal) -> Response {
    match refusal {
        TokenRefusal::BadCredentials | TokenRefusal::DelegationNeedsUser => ApiError {
            code: ErrorCode::Unauthorized,
            challenge: Some("Basic realm=\"registry\"".to_string()),
            detail: Some(refusal.to_string()),
        }
        .into_response(),
        TokenRefusal::LifetimeOutOfRange { .. } | TokenRefusal::NothingToDelegate => {
            invalid_request(&refusal.to_string())
        }
    }
}

fn invalid_request(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": "invalid_request", "error_description": description})
            .to_string(),
    )
        .into_response()
}
