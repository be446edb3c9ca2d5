//! `GET /auth/token`: the bearer token endpoint clients reach after a 401
//! challenge, with Basic credentials or none, asking for `scope`s.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::registry::auth::token::TOKEN_LIFETIME_SECS;
use crate::registry::errors::{ApiError, ErrorCode};

/// Issue a token granting what the credentials allow of the scopes asked.
pub async fn issue(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let scopes: Vec<String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = state.auth.identify(authorization).await;
    match state.auth.grant(&identity, &scopes) {
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
        None => {
            // A failed login: unknown credentials asking for nothing.
            ApiError {
                code: ErrorCode::Unauthorized,
                challenge: Some("Basic realm=\"buildset registry\"".to_string()),
                detail: Some("invalid username or password".into()),
            }
            .into_response()
        }
    }
}
