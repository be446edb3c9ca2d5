//! `/v2/<name>/blobs/uploads/...`: start (with monolithic `digest` or a
//! cross-repository `mount`), PATCH chunks, PUT to finish, GET status,
//! DELETE to cancel. Bodies stream into storage.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;

use super::blobs::parse_digest;
use super::{empty, set, Reply, Req};
use crate::oci::{Digest, RepositoryName};
use crate::registry::auth::{Action, Need};
use crate::registry::errors::{ApiError, ErrorCode};

/// `POST /v2/<name>/blobs/uploads/`.
pub async fn start(request: &Req<'_>, name: RepositoryName, body: Body) -> Reply {
    let storage = request.storage();
    if let (Some(mount), Some(from)) = (request.query("mount"), request.query("from")) {
        let digest = parse_digest(&mount)?;
        // A mount needs pull access to the source; otherwise, or when the
        // blob is missing, fall back to a plain upload as the spec says.
        let may_read = from
            .parse::<RepositoryName>()
            .is_ok_and(|from| request.may(&Need::Repository(from, Action::Pull)));
        if may_read && storage.blob_size(&digest).await.is_ok() {
            return Ok(created(&name, &digest));
        }
    }
    let monolithic = request
        .query("digest")
        .map(|d| parse_digest(&d))
        .transpose()?;
    let id = storage.start_upload(&name).await?;
    if let Some(digest) = monolithic {
        storage
            .finish_upload(&name, &id, &digest, body.into_data_stream())
            .await?;
        return Ok(created(&name, &digest));
    }
    Ok(accepted(&name, &id, 0))
}

/// `GET /v2/<name>/blobs/uploads/<id>`: how much arrived.
pub async fn status(request: &Req<'_>, name: RepositoryName, id: &str) -> Reply {
    let size = request.storage().upload_size(&name, id).await?;
    let mut response = accepted(&name, id, size);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: append a chunk.
pub async fn patch(request: &Req<'_>, name: RepositoryName, id: &str, body: Body) -> Reply {
    let start = match request.header(header::CONTENT_RANGE) {
        None => None,
        Some(text) => Some(parse_content_range(text).ok_or_else(|| {
            ApiError::with_detail(ErrorCode::BlobUploadInvalid, "malformed Content-Range")
        })?),
    };
    let size = request
        .storage()
        .append_upload(&name, id, start, body.into_data_stream())
        .await?;
    Ok(accepted(&name, id, size))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: last bytes, verify, commit.
pub async fn put(request: &Req<'_>, name: RepositoryName, id: &str, body: Body) -> Reply {
    let digest = request.query("digest").ok_or_else(|| {
        ApiError::with_detail(ErrorCode::DigestInvalid, "the digest parameter is missing")
    })?;
    let digest = parse_digest(&digest)?;
    request
        .storage()
        .finish_upload(&name, id, &digest, body.into_data_stream())
        .await?;
    Ok(created(&name, &digest))
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`.
pub async fn cancel(request: &Req<'_>, name: RepositoryName, id: &str) -> Reply {
    request.storage().cancel_upload(&name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `<start>-<end>` (the spec's form; `bytes ` prefix tolerated).
fn parse_content_range(text: &str) -> Option<u64> {
    let text = text
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let (start, end) = text.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = end.split('/').next()?.trim();
    let end: u64 = end.parse().ok()?;
    (end + 1 >= start).then_some(start)
}

fn created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    set(
        &mut response,
        "location",
        format!("/v2/{name}/blobs/{digest}"),
    );
    set(&mut response, "docker-content-digest", digest.to_string());
    set(&mut response, "content-length", "0");
    response
}

fn accepted(name: &RepositoryName, id: &str, size: u64) -> Response {
    let mut response = empty(StatusCode::ACCEPTED);
    set(
        &mut response,
        "location",
        format!("/v2/{name}/blobs/uploads/{id}"),
    );
    set(
        &mut response,
        "range",
        format!("0-{}", size.saturating_sub(1)),
    );
    set(&mut response, "docker-upload-uuid", id);
    set(&mut response, "content-length", "0");
    response
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some(0));
        assert_eq!(parse_content_range("100-199"), Some(100));
        assert_eq!(parse_content_range("bytes 5-9/10"), Some(5));
        assert_eq!(parse_content_range("x"), None);
    }
}
