//! Blob sources, our buildset registry's extension
//! (`PUT /v2/<name>/_speculative/sources`, docs/registry-api.md): tell
//! the registry that blobs of a repository live in another registry, so
//! that it fetches them on first request.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::auth::{repository_scope, Authenticator};
use super::error::{redact_url, Error, ErrorKind};
use super::transport::Body;
use crate::oci::{Descriptor, RepositoryName};

/// Where blobs live and how the registry may pull them. `Debug` never
/// shows the password.
#[derive(Clone, Serialize)]
pub struct BlobSources {
    /// `https://host[:port]` of the registry holding them.
    pub url: String,
    /// The repository there.
    pub repository: String,
    /// The user to pull as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its password or pull-only token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM certificate(s) to trust for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for BlobSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSources")
            .field("url", &self.url)
            .field("repository", &self.repository)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .finish()
    }
}

#[derive(Serialize)]
struct Record<'a> {
    upstream: &'a BlobSources,
    blobs: Vec<Blob<'a>>,
}

#[derive(Serialize)]
struct Blob<'a> {
    digest: String,
    size: u64,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    prefetch: bool,
}

/// Record that `blobs` of `repository` live where `sources` says, each
/// with whether the registry should fetch it before a client asks.
/// [`ErrorKind::NotFound`] or a 405 from a registry without the extension.
pub(crate) async fn record(
    auth: &Authenticator,
    repository: &RepositoryName,
    sources: &BlobSources,
    blobs: &[(Descriptor, bool)],
) -> Result<(), Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/_speculative/sources"));
    let action = format!("PUT {}", redact_url(&url));
    let record = Record {
        upstream: sources,
        blobs: blobs
            .iter()
            .map(|(d, prefetch)| Blob {
                digest: d.digest.to_string(),
                size: d.size,
                media_type: &d.media_type,
                prefetch: *prefetch,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&record).map_err(|e| {
        Error::new(
            ErrorKind::Internal(format!("encoding blob sources: {e}")),
            &t.endpoint.registry,
            action.clone(),
        )
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let scopes = [repository_scope(repository.as_str(), "pull,push")];
    let response = auth
        .send(
            Method::PUT,
            &url,
            &scopes,
            headers,
            Body::Bytes(body.into()),
        )
        .await?;
    t.check_status(response, &action, &[StatusCode::OK])
        .await
        .map(drop)
}

/// One blob a registry records as living elsewhere (what `GET` lists).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedBlob {
    /// Its digest.
    pub digest: crate::oci::Digest,
    /// Where it lives.
    pub upstream: RecordedUpstream,
    /// Whether the registry has fetched it already.
    #[serde(default)]
    pub stored: bool,
}

/// The registry and repository a recorded blob lives in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedUpstream {
    /// `https://host[:port]/`.
    pub url: String,
    /// The repository there.
    pub repository: String,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    blobs: Vec<RecordedBlob>,
}

/// The blobs of `repository` the registry records as living elsewhere;
/// empty from a registry without the extension (404, 405).
pub(crate) async fn list(
    auth: &Authenticator,
    repository: &RepositoryName,
) -> Result<Vec<RecordedBlob>, Error> {
    let t = auth.transport();
    let url = t.url(&format!("{repository}/_speculative/sources"));
    let action = format!("GET {}", redact_url(&url));
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let response = auth
        .send(Method::GET, &url, &scopes, HeaderMap::new(), Body::Empty)
        .await?;
    if matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        return Ok(Vec::new());
    }
    let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
    let body = super::limits::read_limited(
        response,
        super::limits::MANIFEST_LIMIT,
        "a blob sources list",
        &t.endpoint.registry,
        &action,
    )
    .await?;
    let listed: Listed = serde_json::from_slice(&body).map_err(|e| {
        Error::new(
            ErrorKind::InvalidResponse(format!("the blob sources list is not JSON: {e}")),
            &t.endpoint.registry,
            action,
        )
    })?;
    Ok(listed.blobs)
}
