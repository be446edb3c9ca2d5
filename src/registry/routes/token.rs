//! `/auth/token`: the bearer token endpoint clients reach after a 401
//! challenge. `GET` with Basic credentials or none (docker, podman,
//! skopeo); `POST` with an OAuth2 password grant form (containerd and
//! buildkit try it first). Each asks for `scope`s; the token grants what
//! the credentials allow of them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::registry::auth::token::TOKEN_LIFETIME_SECS;
use crate::registry::auth::Identity;
use crate::registry::errors::{ApiError, ErrorCode};

/// `GET /auth/token?service=..&scope=..`.
pub async fn issue(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let scopes = scopes(uri.query().unwrap_or("").as_bytes());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = state.auth.identify(authorization).await;
    respond(&state, &identity, &scopes)
}

/// `POST /auth/token` with `grant_type=password&username=..&password=..&scope=..`.
pub async fn issue_oauth(State(state): State<AppState>, body: Bytes) -> Response {
    let field = |key: &str| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let scopes = scopes(&body);
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
        // Refresh tokens are never issued; make the client fall back to GET.
        _ => return refuse(),
    };
    respond(&state, &identity, &scopes)
}

/// Every `scope` parameter; each may hold several scopes separated by spaces.
fn scopes(form: &[u8]) -> Vec<String> {
    url::form_urlencoded::parse(form)
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

fn respond(state: &AppState, identity: &Identity, scopes: &[String]) -> Response {
    match state.auth.grant(identity, scopes) {
        Some(token) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME_SECS,
            })
            .to_string(),
        )
            .into_response(),
        None => refuse(),
    }
}

/// A failed login: unknown credentials asking for nothing.
fn refuse() -> Response {
    ApiError {
        code: ErrorCode::Unauthorized,
        challenge: Some("Basic realm=\"buildset registry\"".to_string()),
        detail: Some("invalid username or password".into()),
    }
    .into_response()
}
