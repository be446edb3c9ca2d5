//! Blob operations over HTTP: HEAD, streamed GET, the two-step upload
//! (`POST` a session, `PUT` the whole body with its digest), and the
//! cross-repository mount.

use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::auth::{repository_scope, Authenticator};
use super::error::{redact_url, Error, ErrorKind};
use super::registry::BlobStream;
use super::transport::{Body, Channel, Transport};
use crate::oci::{Digest, RepositoryName};

pub(crate) async fn head(
    auth: &Authenticator,
    repository: &RepositoryName,
    digest: &Digest,
) -> Result<Option<u64>, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/blobs/{digest}"));
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let response = auth
        .send(Method::HEAD, &url, &scopes, HeaderMap::new(), Body::Empty)
        .await?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let action = format!("HEAD {}", redact_url(&url));
    let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
    // The header, not `content_length()`: for a HEAD over HTTP/1.1 that
    // is the (empty) body's length, 0.
    let size = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Ok(Some(size.or(response.content_length()).unwrap_or_default()))
}

pub(crate) async fn get(
    auth: &Authenticator,
    repository: &RepositoryName,
    digest: &Digest,
) -> Result<BlobStream, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/blobs/{digest}"));
    let action = format!("GET {}", redact_url(&url));
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let response = auth
        .send_via(
            Channel::Bulk,
            Method::GET,
            &url,
            &scopes,
            HeaderMap::new(),
            Body::Empty,
        )
        .await?;
    let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
    let registry = t.endpoint.registry.clone();
    Ok(Box::pin(response.bytes_stream().map_err(move |e| {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Body(super::error::root_cause(&e))
        };
        Error::new(kind, &registry, action.clone())
    })))
}

/// Upload `body` as blob `digest`: one POST for a session, one PUT with
/// the whole body. If the body stream fails (a broken source, a digest
/// mismatch found on the way), that failure is the error returned.
pub(crate) async fn put(
    auth: &Authenticator,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
    body: BlobStream,
) -> Result<(), Error> {
    let t = auth.transport();
    let location = start_upload(auth, repository).await?;
    let url = with_digest(&location, digest);
    let scopes = [repository_scope(repository.as_str(), "pull,push")];
    let action = format!("PUT {}", redact_url(&url));
    // HTTP/2 loses a body stream's error on the way out: record it here.
    let failure = Arc::new(Mutex::new(None::<Error>));
    let recorder = failure.clone();
    let body = body.inspect_err(move |e| {
        if let Ok(mut slot) = recorder.lock() {
            slot.get_or_insert_with(|| e.clone());
        }
    });
    let result = auth
        .send_once(Method::PUT, &url, &scopes, |request| {
            request
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(body))
        })
        .await;
    if let Some(e) = failure.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(e);
    }
    t.check_status(result?, &action, &[StatusCode::CREATED])
        .await
        .map(drop)
}

/// Upload a small blob held in memory (configs, test content).
pub(crate) async fn put_bytes(
    auth: &Authenticator,
    repository: &RepositoryName,
    digest: &Digest,
    content: bytes::Bytes,
) -> Result<(), Error> {
    let t = auth.transport();
    let location = start_upload(auth, repository).await?;
    let url = with_digest(&location, digest);
    let scopes = [repository_scope(repository.as_str(), "pull,push")];
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let response = auth
        .send(Method::PUT, &url, &scopes, headers, Body::Bytes(content))
        .await?;
    let action = format!("PUT {}", redact_url(&url));
    t.check_status(response, &action, &[StatusCode::CREATED])
        .await
        .map(drop)
}

pub(crate) async fn mount(
    auth: &Authenticator,
    repository: &RepositoryName,
    digest: &Digest,
    from: &RepositoryName,
) -> Result<bool, Error> {
    let t = auth.transport();
    let mut url = url::Url::parse(&t.url(&format!("{repository}/blobs/uploads/")))
        .map_err(|e| bad_url(t, e))?;
    url.query_pairs_mut()
        .append_pair("mount", &digest.to_string())
        .append_pair("from", from.as_str());
    let url = url.to_string();
    let scopes = [
        repository_scope(repository.as_str(), "pull,push"),
        repository_scope(from.as_str(), "pull"),
    ];
    let response = auth
        .send(Method::POST, &url, &scopes, HeaderMap::new(), Body::Empty)
        .await?;
    let action = format!("POST {} (mount {digest} from {from})", redact_url(&url));
    let response = t
        .check_status(
            response,
            &action,
            &[StatusCode::CREATED, StatusCode::ACCEPTED],
        )
        .await?;
    if response.status() == StatusCode::CREATED {
        return Ok(true);
    }
    // Not mounted: the registry opened an upload session instead;
    // close it rather than leave it to expire.
    if let Ok(location) = location(t, &response, &action) {
        let _ = auth
            .send(
                Method::DELETE,
                &location,
                &scopes,
                HeaderMap::new(),
                Body::Empty,
            )
            .await;
    }
    Ok(false)
}

/// `POST /v2/<name>/blobs/uploads/`; the session's absolute URL.
async fn start_upload(auth: &Authenticator, repository: &RepositoryName) -> Result<String, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/blobs/uploads/"));
    let scopes = [repository_scope(repository.as_str(), "pull,push")];
    let response = auth
        .send(Method::POST, &url, &scopes, HeaderMap::new(), Body::Empty)
        .await?;
    let action = format!("POST {}", redact_url(&url));
    let response = t
        .check_status(response, &action, &[StatusCode::ACCEPTED])
        .await?;
    location(t, &response, &action)
}

/// The `Location` header, resolved against the registry's base URL.
fn location(t: &Transport, response: &reqwest::Response, action: &str) -> Result<String, Error> {
    let missing = || {
        Error::new(
            ErrorKind::InvalidResponse("no Location header".into()),
            &t.endpoint.registry,
            action,
        )
    };
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let base = url::Url::parse(&t.endpoint.base_url()).map_err(|e| bad_url(t, e))?;
    base.join(location)
        .map(String::from)
        .map_err(|e| bad_url(t, e))
}

fn bad_url(t: &Transport, e: url::ParseError) -> Error {
    Error::new(
        ErrorKind::InvalidResponse(format!("invalid URL: {e}")),
        &t.endpoint.registry,
        "building a URL",
    )
}

/// `location` with `digest=<digest>` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    match url::Url::parse(location) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            u.to_string()
        }
        Err(_) => location.to_string(),
    }
}
