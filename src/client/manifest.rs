//! Manifests over HTTP: GET, HEAD, PUT and DELETE. The documents are
//! [`crate::oci::Manifest`]s, bytes kept exactly as the registry sent them.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::auth::{repository_scope, Authenticator};
use super::error::{redact_url, Error, ErrorKind};
use super::transport::Body;
use crate::oci::{media_type, Digest, Manifest, ManifestReference, RepositoryName};

/// The header registries return the digest of a manifest in.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// GET a manifest by tag or digest, accepting every manifest media type;
/// when fetched by digest, the bytes are checked against it.
pub(crate) async fn get(
    auth: &Authenticator,
    repository: &RepositoryName,
    reference: &ManifestReference,
) -> Result<Manifest, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/manifests/{reference}"));
    let action = format!("GET {}", redact_url(&url));
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let response = auth
        .send(Method::GET, &url, &scopes, accept_manifests(), Body::Empty)
        .await?;
    let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| media_type::essence(v).to_string())
        .unwrap_or_default();
    let bytes = super::limits::read_limited(
        response,
        super::limits::MANIFEST_LIMIT,
        "a manifest",
        &t.endpoint.registry,
        &action,
    )
    .await?;
    let mut manifest = Manifest::new(&content_type, bytes);
    if let Some(expected) = reference.digest().cloned() {
        let actual = Digest::compute(expected.algorithm(), &manifest.bytes);
        if actual != expected {
            return Err(Error::new(
                ErrorKind::DigestMismatch { expected, actual },
                &t.endpoint.registry,
                action,
            ));
        }
        manifest.digest = expected;
    }
    Ok(manifest)
}

/// HEAD a manifest: its digest, or `None` if absent.
pub(crate) async fn head(
    auth: &Authenticator,
    repository: &RepositoryName,
    reference: &ManifestReference,
) -> Result<Option<Digest>, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/manifests/{reference}"));
    let action = format!("HEAD {}", redact_url(&url));
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let response = auth
        .send(Method::HEAD, &url, &scopes, accept_manifests(), Body::Empty)
        .await?;
    if response.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
    match content_digest(response.headers()) {
        Some(d) => Ok(Some(d)),
        // Without the header, only a digest reference tells the digest.
        None => match reference.digest() {
            Some(d) => Ok(Some(d.clone())),
            None => Err(Error::new(
                ErrorKind::InvalidResponse("no Docker-Content-Digest header".into()),
                &t.endpoint.registry,
                action,
            )),
        },
    }
}

/// PUT a manifest's exact bytes under `reference` with its media type;
/// checks that the registry stored it under the same digest.
pub(crate) async fn put(
    auth: &Authenticator,
    repository: &RepositoryName,
    reference: &ManifestReference,
    manifest: &Manifest,
) -> Result<Digest, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/manifests/{reference}"));
    let action = format!("PUT {}", redact_url(&url));
    let scopes = [repository_scope(repository.as_str(), "pull,push")];
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| {
        Error::new(
            ErrorKind::Unsupported(format!("media type {:?}", manifest.media_type)),
            &t.endpoint.registry,
            action.clone(),
        )
    })?;
    headers.insert(CONTENT_TYPE, content_type);
    let response = auth
        .send(
            Method::PUT,
            &url,
            &scopes,
            headers,
            Body::Bytes(manifest.bytes.clone()),
        )
        .await?;
    let response = t
        .check_status(response, &action, &[StatusCode::CREATED, StatusCode::OK])
        .await?;
    match content_digest(response.headers()) {
        Some(actual) if actual != manifest.digest => Err(Error::new(
            ErrorKind::DigestMismatch {
                expected: manifest.digest.clone(),
                actual,
            },
            &t.endpoint.registry,
            action,
        )),
        _ => Ok(manifest.digest.clone()),
    }
}

/// DELETE a manifest by digest (registries refuse deleting by tag).
pub(crate) async fn delete(
    auth: &Authenticator,
    repository: &RepositoryName,
    digest: &Digest,
) -> Result<(), Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/manifests/{digest}"));
    let action = format!("DELETE {}", redact_url(&url));
    let scopes = [repository_scope(repository.as_str(), "delete")];
    let response = auth
        .send(Method::DELETE, &url, &scopes, HeaderMap::new(), Body::Empty)
        .await?;
    t.check_status(
        response,
        &action,
        &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
    )
    .await
    .map(drop)
}

fn accept_manifests() -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&media_type::accept_header()) {
        headers.insert(ACCEPT, v);
    }
    headers
}

fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
