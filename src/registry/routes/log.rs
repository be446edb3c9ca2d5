//! One log line per request: method, path, status, bytes in and out, time.

use std::time::Instant;

use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::{api_version_header, AnyRequest};

/// Log the request once its response headers are ready.
pub async fn log_request(request: AnyRequest, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let bytes_in = length(request.headers().get(header::CONTENT_LENGTH));
    let mut response = next.run(request).await;
    api_version_header(&mut response);
    let bytes_out = length(response.headers().get(header::CONTENT_LENGTH));
    tracing::info!(
        "{method} {path} {} in={bytes_in} out={bytes_out} {}ms",
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

fn length(value: Option<&header::HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}
