//! `/v2/<name>/manifests/<reference>`: GET/HEAD/PUT/DELETE by tag or
//! digest. Bytes and media type are kept as pushed; `Accept` is honoured.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use tokio::io::AsyncReadExt as _;
use tokio_util::io::ReaderStream;

use super::{empty, set, Reply, Req};
use crate::oci::ManifestReference;
use crate::oci::{media_type, RepositoryName};
use crate::registry::errors::{ApiError, ErrorCode};
use crate::registry::storage::{ManifestBody, MAX_MANIFEST_BYTES};

fn parse_reference(text: &str) -> Result<ManifestReference, ApiError> {
    text.parse().map_err(|e| {
        use crate::oci::ManifestReferenceError as E;
        match e {
            E::Digest(e) => ApiError::with_detail(ErrorCode::DigestInvalid, e.to_string()),
            E::Tag(e) => ApiError::with_detail(ErrorCode::TagInvalid, e.to_string()),
        }
    })
}

/// Manifests up to this size are read whole; larger ones stream from
/// their file in chunks of this size, so a stream whose client does not
/// read holds at most one chunk.
const INLINE_MANIFEST: usize = 64 << 10;

/// GET or HEAD a manifest.
pub async fn get(request: &Req<'_>, name: RepositoryName, reference: &str, head: bool) -> Reply {
    let reference = parse_reference(reference)?;
    let inline = if head { 0 } else { INLINE_MANIFEST as u64 };
    let manifest = request
        .storage()
        .serve_manifest(&name, &reference, inline)
        .await?;
    if !accepts(request.headers, &manifest.media_type) {
        return Err(ApiError::with_detail(
            ErrorCode::ManifestUnknown,
            format!(
                "the manifest is {}, which the Accept header does not list",
                manifest.media_type
            ),
        ));
    }
    let mut response = match (head, manifest.body) {
        (true, _) => empty(StatusCode::OK),
        (false, ManifestBody::Bytes(bytes)) => Response::new(Body::from(bytes)),
        (false, ManifestBody::File(file)) => Response::new(Body::from_stream(
            ReaderStream::with_capacity(file.take(manifest.size), INLINE_MANIFEST),
        )),
    };
    set(&mut response, "content-type", &manifest.media_type);
    set(&mut response, "content-length", manifest.size.to_string());
    set(
        &mut response,
        "docker-content-digest",
        manifest.digest.to_string(),
    );
    set(&mut response, "etag", format!("\"{}\"", manifest.digest));
    Ok(response)
}

/// Whether the client accepts `stored`: yes unless its `Accept` headers
/// name manifest types and not this one (nor a wildcard).
fn accepts(headers: &HeaderMap, stored: &str) -> bool {
    let types: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    let names_manifests = types.iter().any(|t| media_type::is_manifest_type(t));
    !names_manifests || types.iter().any(|t| *t == stored || *t == "*/*")
}

/// PUT a manifest.
pub async fn put(request: &Req<'_>, name: RepositoryName, reference: &str, body: Body) -> Reply {
    let reference = parse_reference(reference)?;
    let too_large = || {
        ApiError::with_detail(
            ErrorCode::ManifestTooLarge,
            format!("a manifest may have at most {MAX_MANIFEST_BYTES} bytes"),
        )
    };
    let announced = request.header(header::CONTENT_LENGTH);
    if announced.and_then(|n| n.parse::<u64>().ok()) > Some(MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, MAX_MANIFEST_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) if is_length_limit(&e) => return Err(too_large()),
        Err(_) => {
            return Err(ApiError::with_detail(
                ErrorCode::ManifestInvalid,
                "the manifest was not received whole",
            ))
        }
    };
    let stored = request
        .storage()
        .put_manifest(
            &name,
            &reference,
            request.header(header::CONTENT_TYPE),
            bytes,
        )
        .await?;
    let digest = stored.digest;
    let mut response = empty(StatusCode::CREATED);
    set(
        &mut response,
        "location",
        format!("/v2/{name}/manifests/{digest}"),
    );
    set(&mut response, "docker-content-digest", digest.to_string());
    // Tells the client the referrers API lists it: no referrers tag needed.
    if let Some(subject) = stored.subject {
        set(&mut response, "oci-subject", subject.to_string());
    }
    set(&mut response, "content-length", "0");
    Ok(response)
}

/// Whether reading a body failed because it passed the size limit.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// DELETE a tag, or a manifest by digest (with its tags).
pub async fn delete(request: &Req<'_>, name: RepositoryName, reference: &str) -> Reply {
    let reference = parse_reference(reference)?;
    request.storage().delete_manifest(&name, &reference).await?;
    Ok(empty(StatusCode::ACCEPTED))
}
