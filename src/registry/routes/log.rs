//! One log line per request: method, path and query, status, bytes in
//! and out, time, and who asked:
//!
//! ```text
//! PUT /v2/org/img/blobs/uploads/0f3a…?digest=sha256:ab… 201 in=1048576 out=0 12ms user=zuul
//! ```
//!
//! `user` is the authenticated user (a token's subject for bearer
//! tokens), `-` for anonymous clients and refused credentials. Never a
//! credential: headers are not logged, and a query value is only shown
//! for the parameters the API defines (digests, names, page marks);
//! any other parameter's value is masked, as it could be a token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody as _};
use axum::http::{header, Uri};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;

use super::{api_version_header, AnyRequest};
use crate::registry::auth::Identity;

/// Who made a request, as the log shows it; the dispatcher puts it in
/// the response's extensions once access is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

impl User {
    /// The name of `identity`: a user's login, a token's subject, or `-`.
    pub fn of(identity: &Identity) -> User {
        User(match identity {
            Identity::User(name) => name.clone(),
            Identity::Token(claims) => claims.sub.clone().unwrap_or_else(|| "-".into()),
            Identity::Anonymous | Identity::UnknownCredentials | Identity::BadToken(_) => {
                "-".into()
            }
        })
    }
}

/// Query parameters whose values are shown in the log: what the API
/// defines, none of which can hold a secret.
const SHOWN_PARAMETERS: &[&str] = &[
    "digest",
    "mount",
    "from",
    "n",
    "last",
    "artifactType",
    "service",
    "scope",
    "expires_in",
];

/// Log the request once its response headers are ready.
pub async fn log_request(request: AnyRequest, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let target = loggable_target(request.uri());
    // Count what the handler reads (chunked uploads carry no length).
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let request = request.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            frame
        }))
    });
    let mut response = next.run(request).await;
    let bytes_in = received.load(Ordering::Relaxed);
    api_version_header(&mut response);
    let bytes_out = length(response.headers().get(header::CONTENT_LENGTH))
        .or_else(|| response.body().size_hint().exact().map(|n| n.to_string()))
        .unwrap_or_else(|| "-".to_string());
    let user = response
        .extensions_mut()
        .remove::<User>()
        .map_or_else(|| "-".to_string(), |u| u.0);
    tracing::info!(
        "{method} {target} {} in={bytes_in} out={bytes_out} {}ms user={}",
        response.status().as_u16(),
        started.elapsed().as_millis(),
        printable(&user)
    );
    response
}

/// The path and the query, with the value of every parameter not in
/// [`SHOWN_PARAMETERS`] masked.
fn loggable_target(uri: &Uri) -> String {
    let path = printable(uri.path());
    let Some(query) = uri.query().filter(|q| !q.is_empty()) else {
        return path;
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if SHOWN_PARAMETERS.contains(&key) => {
                format!("{key}={}", printable(value))
            }
            Some((key, _)) => format!("{}=***", printable(key)),
            None => printable(pair),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

/// Text safe on one log line: no spaces or control characters (a user
/// name is the client's to choose).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn length(value: Option<&header::HeaderValue>) -> Option<String> {
    value.and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_that_could_be_secrets_are_masked() {
        let uri: Uri =
            "/v2/org/img/blobs/uploads/?digest=sha256:ab&token=s3cret&x&access_token=t0k"
                .parse()
                .unwrap();
        assert_eq!(
            loggable_target(&uri),
            "/v2/org/img/blobs/uploads/?digest=sha256:ab&token=***&x&access_token=***"
        );
        let uri: Uri = "/v2/_catalog?n=10&last=a%20b".parse().unwrap();
        assert_eq!(loggable_target(&uri), "/v2/_catalog?n=10&last=a%20b");
        assert_eq!(loggable_target(&"/v2/".parse().unwrap()), "/v2/");
    }

    #[test]
    fn users_are_named_and_anonymous_is_a_dash() {
        assert_eq!(User::of(&Identity::User("zuul".into())).0, "zuul");
        assert_eq!(User::of(&Identity::Anonymous).0, "-");
        assert_eq!(User::of(&Identity::UnknownCredentials).0, "-");
        assert_eq!(printable("a b\nc"), "a_b_c");
    }
}
