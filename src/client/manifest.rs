//! Manifests: the document type (bytes kept exactly as stored, so a copy
//! or a retag keeps the digest), what it references, and the HTTP
//! operations GET, HEAD, PUT and DELETE. Documents are read with
//! `oci-client`'s manifest and index types.

use bytes::Bytes;
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::error::{redact_url, Error, ErrorKind};
use super::remote::RemoteRegistry;
use super::transport::Body;
use crate::oci::media_type::{self, is_index};
use crate::oci::{Digest, RepositoryName};

/// The header registries return the digest of a manifest in.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest or index: its media type, its exact bytes and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type it is stored and served with.
    pub media_type: String,
    /// The document, byte for byte.
    pub bytes: Bytes,
    /// The digest of `bytes` (sha256 unless fetched by a sha512 digest).
    pub digest: Digest,
}

/// A reference from a manifest to a blob or to another manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
}

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Children {
    /// An index or manifest list: other manifests.
    Manifests(Vec<Descriptor>),
    /// An image manifest: its config and layers (blobs).
    Blobs(Vec<Descriptor>),
}

impl Manifest {
    /// A manifest from its bytes; `media_type` as the registry sent it
    /// (`Content-Type`), or empty to take the document's own `mediaType`.
    pub fn new(media_type: &str, bytes: Bytes) -> Manifest {
        let media_type = if media_type::is_manifest_type(media_type) {
            media_type.to_string()
        } else {
            sniff_media_type(&bytes)
        };
        let digest = Digest::sha256(&bytes);
        Manifest {
            media_type,
            bytes,
            digest,
        }
    }

    /// Whether this is an index or manifest list.
    pub fn is_index(&self) -> bool {
        is_index(&self.media_type)
    }

    /// The manifests (of an index) or blobs (of an image) this names.
    pub fn children(&self) -> Result<Children, String> {
        if self.is_index() {
            let index: OciImageIndex = serde_json::from_slice(&self.bytes)
                .map_err(|e| format!("index {} is not valid: {e}", self.digest))?;
            let descriptors = index
                .manifests
                .iter()
                .map(|m| descriptor(&m.media_type, &m.digest, m.size))
                .collect::<Result<_, _>>()?;
            Ok(Children::Manifests(descriptors))
        } else {
            let image: OciImageManifest = serde_json::from_slice(&self.bytes)
                .map_err(|e| format!("manifest {} is not valid: {e}", self.digest))?;
            let descriptors = std::iter::once(&image.config)
                .chain(image.layers.iter())
                // Foreign layers live elsewhere; registries do not hold them.
                .filter(|d| d.urls.as_ref().is_none_or(|u| u.is_empty()))
                .map(|d| descriptor(&d.media_type, &d.digest, d.size))
                .collect::<Result<_, _>>()?;
            Ok(Children::Blobs(descriptors))
        }
    }
}

fn descriptor(media_type: &str, digest: &str, size: i64) -> Result<Descriptor, String> {
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest: digest.parse().map_err(|e| format!("{e}"))?,
        size: u64::try_from(size).map_err(|_| format!("negative size {size} for {digest}"))?,
    })
}

/// The media type a document declares, or the OCI type its shape implies.
fn sniff_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(t),
            ..
        }) => t,
        Ok(Shape {
            manifests: Some(_), ..
        }) => media_type::OCI_INDEX.to_string(),
        _ => media_type::OCI_MANIFEST.to_string(),
    }
}

impl RemoteRegistry {
    /// GET a manifest by tag or digest, accepting every manifest media type;
    /// when fetched by digest, the bytes are checked against it.
    pub(crate) async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &str,
    ) -> Result<Manifest, Error> {
        let t = &self.transport;
        let url = t.url(&format!("{repository}/manifests/{reference}"));
        let action = format!("GET {}", redact_url(&url));
        let scopes = [repository_scope(repository.as_str(), "pull")];
        let response = t
            .send(Method::GET, &url, &scopes, accept_manifests(), Body::Empty)
            .await?;
        let response = t.expect(response, &action, &[StatusCode::OK]).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
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
        if let Ok(expected) = reference.parse::<Digest>() {
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
    pub(crate) async fn head_manifest(
        &self,
        repository: &RepositoryName,
        reference: &str,
    ) -> Result<Option<Digest>, Error> {
        let t = &self.transport;
        let url = t.url(&format!("{repository}/manifests/{reference}"));
        let action = format!("HEAD {}", redact_url(&url));
        let scopes = [repository_scope(repository.as_str(), "pull")];
        let response = t
            .send(Method::HEAD, &url, &scopes, accept_manifests(), Body::Empty)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = t.expect(response, &action, &[StatusCode::OK]).await?;
        match content_digest(response.headers()) {
            Some(d) => Ok(Some(d)),
            // Without the header, only a digest reference tells the digest.
            None => match reference.parse::<Digest>() {
                Ok(d) => Ok(Some(d)),
                Err(_) => Err(Error::new(
                    ErrorKind::InvalidResponse("no Docker-Content-Digest header".into()),
                    &t.endpoint.registry,
                    action,
                )),
            },
        }
    }

    /// PUT a manifest's exact bytes under `reference` with its media type;
    /// checks that the registry stored it under the same digest.
    pub(crate) async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Digest, Error> {
        let t = &self.transport;
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
        let response = t
            .send(
                Method::PUT,
                &url,
                &scopes,
                headers,
                Body::Bytes(manifest.bytes.clone()),
            )
            .await?;
        let response = t
            .expect(response, &action, &[StatusCode::CREATED, StatusCode::OK])
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
    pub(crate) async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), Error> {
        let t = &self.transport;
        let url = t.url(&format!("{repository}/manifests/{digest}"));
        let action = format!("DELETE {}", redact_url(&url));
        let scopes = [repository_scope(repository.as_str(), "delete")];
        let response = t
            .send(Method::DELETE, &url, &scopes, HeaderMap::new(), Body::Empty)
            .await?;
        t.expect(
            response,
            &action,
            &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
        )
        .await
        .map(drop)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_children_of_indexes_and_images() {
        let layer = Digest::sha256(b"layer");
        let config = Digest::sha256(b"config");
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config}","size":6}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{layer}","size":5}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG
        );
        let m = Manifest::new("", Bytes::from(image));
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
        let Children::Blobs(blobs) = m.children().unwrap() else {
            panic!("an image has blobs")
        };
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[0].digest, config);
        assert_eq!(blobs[1].size, 5);

        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"architecture":"riscv64","os":"linux"}}}}]}}"#,
            media_type::OCI_MANIFEST,
            m.digest,
            m.bytes.len()
        );
        let i = Manifest::new("application/json", Bytes::from(index));
        assert_eq!(i.media_type, media_type::OCI_INDEX);
        let Children::Manifests(ms) = i.children().unwrap() else {
            panic!("an index has manifests")
        };
        assert_eq!(ms[0].digest, m.digest);
    }
}
