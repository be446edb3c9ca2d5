//! `/v2/<name>/blobs/<digest>`: HEAD and GET (whole or one byte range),
//! of stored blobs and of blobs recorded as living upstream.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};
use tokio::io::AsyncReadExt as _;
use tokio_util::io::ReaderStream;

use super::range::parse_range;
use super::{empty, set, Reply, Req};
use crate::oci::{Digest, RepositoryName};
use crate::registry::errors::{ApiError, ErrorCode};
use crate::registry::pull_through::{Asker, Joined};
use crate::registry::storage::{blocking, BlobSource, StorageError};

/// Read size when streaming a blob.
const STREAM_CHUNK: usize = 256 << 10;

/// Parse a digest from a path or query, as DIGEST_INVALID when malformed.
pub(super) fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    text.parse().map_err(|e: crate::oci::DigestError| {
        ApiError::with_detail(ErrorCode::DigestInvalid, e.to_string())
    })
}

/// HEAD or GET a blob: stored here, or recorded as living upstream
/// (answered from the record for a HEAD, fetched once for a GET).
pub async fn get(request: &Req<'_>, name: RepositoryName, digest: &str, head: bool) -> Reply {
    let digest = parse_digest(digest)?;
    let storage = request.storage();
    let size = match storage.blob_size(&name, &digest).await {
        Ok(size) => size,
        Err(StorageError::BlobUnknown(_)) => match storage.sources().get(&name, &digest) {
            Some(source) => return pull_through(request, &name, &digest, &source, head).await,
            None => return Err(StorageError::BlobUnknown(digest).into()),
        },
        Err(e) => return Err(e.into()),
    };
    if head {
        let mut response = empty(StatusCode::OK);
        headers(&mut response, &digest, size);
        return Ok(response);
    }
    serve_stored(request, &digest, size).await
}

/// A recorded blob not stored yet: a HEAD answers from the record; a GET
/// joins (or starts) its fetch and streams it as it arrives, a range as
/// soon as its bytes are there.
async fn pull_through(
    request: &Req<'_>,
    name: &RepositoryName,
    digest: &Digest,
    source: &BlobSource,
    head: bool,
) -> Reply {
    if head {
        let mut response = empty(StatusCode::OK);
        headers(&mut response, digest, source.size);
        return Ok(response);
    }
    let state = request.state;
    let flight = match state
        .pull_through
        .join(&state.storage, digest, source, Asker::Client)?
    {
        Joined::Flight(flight) => flight,
        Joined::Stored => {
            let size = request.storage().blob_size(name, digest).await?;
            return serve_stored(request, digest, size).await;
        }
    };
    let range = match requested_range(request, source.size) {
        Ok(range) => range,
        Err(unsatisfiable) => return Ok(unsatisfiable.answer()),
    };
    flight.started().await?;
    let Some((start, len)) = range else {
        let mut response = Response::new(Body::from_stream(flight.body()));
        headers(&mut response, digest, source.size);
        return Ok(response);
    };
    let mut response = Response::new(Body::from_stream(flight.range(start, start + len)));
    partial(&mut response, digest, start, len, source.size);
    Ok(response)
}

/// A `Range` that a blob of this many bytes cannot satisfy.
struct Unsatisfiable(u64);

impl Unsatisfiable {
    /// The spec's 416 answer, with the blob's size.
    fn answer(self) -> Response {
        let mut response = ApiError::new(ErrorCode::RangeNotSatisfiable).into_response();
        set(
            &mut response,
            "content-range",
            format!("bytes */{}", self.0),
        );
        response
    }
}

/// The `Range` a GET asks for, as (start, length) within `size`: `None`
/// for the whole blob.
fn requested_range(request: &Req<'_>, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(text) = request.header(header::RANGE) else {
        return Ok(None);
    };
    parse_range(text, size).map(Some).ok_or(Unsatisfiable(size))
}

/// The headers of a `206` answer with `len` bytes from `start` of a blob
/// of `size` bytes.
fn partial(response: &mut Response, digest: &Digest, start: u64, len: u64, size: u64) {
    headers(response, digest, len);
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    set(
        response,
        "content-range",
        format!("bytes {start}-{}/{size}", start + len - 1),
    );
}

/// GET a stored blob of `size` bytes, whole or the range asked for.
async fn serve_stored(request: &Req<'_>, digest: &Digest, size: u64) -> Reply {
    let range = match requested_range(request, size) {
        Ok(range) => range,
        Err(unsatisfiable) => return Ok(unsatisfiable.answer()),
    };
    let (start, len) = range.unwrap_or((0, size));
    let blob = request.storage().open_blob(digest, start).await?;
    let stream = ReaderStream::with_capacity(blob.file.take(len), STREAM_CHUNK);
    let mut response = Response::new(Body::from_stream(stream));
    match range {
        Some(_) => partial(&mut response, digest, start, len, blob.size),
        None => headers(&mut response, digest, len),
    }
    Ok(response)
}

/// DELETE a blob from a repository (the bytes stay for the others); a
/// blob only recorded as living upstream loses its record.
pub async fn delete(request: &Req<'_>, name: RepositoryName, digest: &str) -> Reply {
    let digest = parse_digest(digest)?;
    match request.storage().delete_blob(&name, &digest).await {
        Ok(()) => {}
        Err(StorageError::BlobUnknown(_)) => {
            let storage = request.state.storage.clone();
            let (repository, wanted) = (name.clone(), digest.clone());
            let forgotten =
                blocking(move || storage.sources().forget(&repository, &wanted)).await?;
            if !forgotten {
                return Err(StorageError::BlobUnknown(digest).into());
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(empty(StatusCode::ACCEPTED))
}

fn headers(response: &mut Response, digest: &Digest, len: u64) {
    set(response, "content-type", "application/octet-stream");
    set(response, "content-length", len.to_string());
    set(response, "docker-content-digest", digest.to_string());
    set(response, "etag", format!("\"{digest}\""));
    set(response, "accept-ranges", "bytes");
}
