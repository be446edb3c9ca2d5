//! `/v2/<name>/blobs/<digest>`: HEAD and GET (whole or one byte range).

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};
use tokio::io::AsyncReadExt as _;
use tokio_util::io::ReaderStream;

use super::range::parse_range;
use super::{empty, set, Reply, Req};
use crate::oci::{Digest, RepositoryName};
use crate::registry::errors::{ApiError, ErrorCode};

/// Read size when streaming a blob.
const STREAM_CHUNK: usize = 256 << 10;

/// Parse a digest from a path or query, as DIGEST_INVALID when malformed.
pub(super) fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|e: crate::oci::DigestError| {
        ApiError::with_detail(ErrorCode::DigestInvalid, e.to_string())
    })
}

/// HEAD or GET a blob.
pub async fn get(request: &Req<'_>, name: RepositoryName, digest: &str, head: bool) -> Reply {
    let digest = parse_digest(digest)?;
    let storage = request.storage();
    let size = storage.blob_size(&name, &digest).await?;
    if head {
        let mut response = empty(StatusCode::OK);
        headers(&mut response, &digest, size);
        return Ok(response);
    }
    let range = match request.header(header::RANGE) {
        None => None,
        Some(text) => match parse_range(text, size) {
            Some(range) => Some(range),
            None => {
                let mut response = ApiError::new(ErrorCode::RangeNotSatisfiable).into_response();
                set(&mut response, "content-range", format!("bytes */{size}"));
                return Ok(response);
            }
        },
    };
    let (start, len) = range.unwrap_or((0, size));
    let blob = storage.open_blob(&digest, start).await?;
    let stream = ReaderStream::with_capacity(blob.file.take(len), STREAM_CHUNK);
    let mut response = Response::new(Body::from_stream(stream));
    headers(&mut response, &digest, len);
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(
            &mut response,
            "content-range",
            format!("bytes {start}-{}/{}", start + len - 1, blob.size),
        );
    }
    Ok(response)
}

/// DELETE a blob from a repository (the bytes stay for the others).
pub async fn delete(request: &Req<'_>, name: RepositoryName, digest: &str) -> Reply {
    let digest = parse_digest(digest)?;
    request.storage().delete_blob(&name, &digest).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

fn headers(response: &mut Response, digest: &Digest, len: u64) {
    set(response, "content-type", "application/octet-stream");
    set(response, "content-length", len.to_string());
    set(response, "docker-content-digest", digest.to_string());
    set(response, "etag", format!("\"{digest}\""));
    set(response, "accept-ranges", "bytes");
}
