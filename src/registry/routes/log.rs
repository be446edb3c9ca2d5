//! One log line per request: method, path, status, bytes in and out, time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;

use super::{api_version_header, AnyRequest};

/// Log the request once its response headers are ready.
pub async fn log_request(request: AnyRequest, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
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
