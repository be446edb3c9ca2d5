//! `/v2/<name>/_speculative/sources`, our extension (see
//! docs/registry-api.md, "Blob sources"): `PUT` records where blobs of
//! `<name>` that are not stored here live upstream, with the credential
//! to pull them (push access needed); `GET` lists the records, never the
//! credential (pull access).

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;

use super::{Reply, Req};
use crate::oci::RepositoryName;
use crate::registry::errors::{ApiError, ErrorCode};
use crate::registry::storage::{blocking, SourcedBlob, Upstream};

/// The largest record request read (a CA and thousands of blobs fit).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The most blobs one request records.
const MAX_BLOBS: usize = 10_000;

/// What a `PUT` carries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRequest {
    upstream: Upstream,
    blobs: Vec<SourcedBlob>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::with_detail(ErrorCode::SourcesInvalid, detail)
}

/// `PUT`: record the blobs' upstream.
pub async fn record(request: &Req<'_>, name: RepositoryName, body: Body) -> Reply {
    let bytes = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| {
            invalid(format!(
                "the request must be JSON of at most {MAX_REQUEST_BYTES} bytes"
            ))
        })?;
    let parsed: RecordRequest = {
        let mut document = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut document).map_err(|e| {
            let path = e.path().to_string();
            // A value could be the password: never echo one.
            if path.contains("password") {
                invalid(format!("{path}: must be a string"))
            } else {
                invalid(format!("{path}: {}", e.inner()))
            }
        })?
    };
    check(&parsed)?;
    let RecordRequest { upstream, blobs } = parsed;
    let sources = request.state.storage.clone();
    let count = blobs.len();
    let prefetch: Vec<_> = blobs
        .iter()
        .filter(|b| b.prefetch)
        .map(|b| (name.clone(), b.digest.clone()))
        .collect();
    let (name2, upstream_shown) = (name.clone(), upstream.describe());
    let total = blocking(move || sources.sources().record(&name2, upstream, &blobs)).await?;
    tracing::info!(
        "{name}: recorded {count} blob(s) living at {upstream_shown}, {} to prefetch",
        prefetch.len()
    );
    request.state.pull_through.enqueue(prefetch);
    let body =
        serde_json::json!({"repository": name.to_string(), "recorded": count, "total": total});
    Ok(json(StatusCode::OK, body))
}

/// What a record must be: an `https://host[:port]` URL without
/// credentials, a valid repository name, a user with a password or
/// neither, a usable CA, at least one blob.
fn check(request: &RecordRequest) -> Result<(), ApiError> {
    let up = &request.upstream;
    let url = &up.url;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(format!(
            "upstream.url: {url}: must start with https://"
        )));
    }
    if url.host().is_none() {
        return Err(invalid(format!("upstream.url: {url}: names no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "upstream.url: must not hold credentials; give username and password",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "upstream.url: {url}: must be scheme://host[:port] only"
        )));
    }
    up.repository
        .parse::<RepositoryName>()
        .map_err(|e| invalid(format!("upstream.repository: {e}")))?;
    match (&up.username, &up.password) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {}
        (None, None) => {}
        _ => {
            return Err(invalid(
                "upstream: give username and password together, both non-empty, or neither",
            ))
        }
    }
    if let Some(ca) = &up.ca_pem {
        crate::client::client_config(ca, false)
            .map_err(|e| invalid(format!("upstream.ca_pem: {e}")))?;
    }
    if request.blobs.is_empty() {
        return Err(invalid("blobs: name at least one blob"));
    }
    if request.blobs.len() > MAX_BLOBS {
        return Err(invalid(format!("blobs: at most {MAX_BLOBS} per request")));
    }
    Ok(())
}

/// `GET`: the records of `name`, each with whether it is stored yet.
pub async fn list(request: &Req<'_>, name: RepositoryName) -> Reply {
    let storage = request.state.storage.clone();
    let records = storage.sources().of(&name);
    let listed = blocking(move || {
        Ok(records
            .into_iter()
            .map(|(digest, source)| {
                let stored = storage.holds_blob(&digest);
                serde_json::json!({
                    "digest": digest,
                    "size": source.size,
                    "mediaType": source.media_type,
                    "upstream": {
                        "url": source.upstream.url.as_str(),
                        "repository": source.upstream.repository,
                    },
                    "stored": stored,
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let body = serde_json::json!({"repository": name.to_string(), "blobs": listed});
    Ok(json(StatusCode::OK, body))
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
