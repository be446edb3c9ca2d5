//! [`RemoteRegistry`]: a registry reached over HTTP(S), the implementation
//! of [`Registry`] the modules use. The operations live in files named
//! after the spec's nouns (`blob.rs`, `manifest.rs`, `tag.rs`,
//! `tag_delete.rs`, `catalog.rs`), each a function over the authenticated
//! transport; this file holds the handle and wires them into the trait.
//! The layers, each using only the ones below: this handle, the
//! operations, [`Authenticator`] (`auth.rs`), [`Transport`]
//! (`transport.rs`).
//!
//! Why not `oci-client`'s `Client`: it pulls a blob into a writer and pushes
//! one from memory, so it cannot stream a blob from one registry into
//! another, and it has no cross-repository mount; and its one client holds
//! one TLS configuration for every registry. The documents are
//! [`crate::oci`]'s types, which the server can share.

use std::sync::Arc;

use bytes::Bytes;

use super::auth::Authenticator;
use super::auth::DelegatedToken;
use super::endpoint::Endpoint;
use super::error::Error;
use super::registry::{BlobStream, Registry, TagDeleted};
use super::sources::{BlobSources, RecordedBlob};
use super::transport::{RetryPolicy, Transport};
use super::{blob, catalog, manifest, sources, tag, tag_delete};
use crate::oci::Descriptor;
use crate::oci::{Digest, Manifest, ManifestReference, RepositoryName, Tag};

/// A registry reached over HTTP(S). Cheap to share (`Arc`); connections
/// and tokens are reused by every operation through the same handle.
#[derive(Debug)]
pub struct RemoteRegistry {
    auth: Authenticator,
}

impl RemoteRegistry {
    /// A handle on the registry `endpoint` describes, with the default
    /// retry policy. No connection is made yet.
    pub fn new(endpoint: Endpoint) -> Result<Arc<RemoteRegistry>, Error> {
        RemoteRegistry::with_retry(endpoint, RetryPolicy::default())
    }

    /// Like [`RemoteRegistry::new`], with another retry policy.
    pub fn with_retry(
        endpoint: Endpoint,
        retry: RetryPolicy,
    ) -> Result<Arc<RemoteRegistry>, Error> {
        Ok(Arc::new(RemoteRegistry {
            auth: Authenticator::new(Transport::new(endpoint, retry)?),
        }))
    }

    /// The connection settings.
    pub fn endpoint(&self) -> &Endpoint {
        self.auth.transport().endpoint()
    }

    /// Upload a small blob held in memory (configs, test content).
    pub async fn put_blob_bytes(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        content: Bytes,
    ) -> Result<(), Error> {
        blob::put_bytes(&self.auth, repository, digest, content).await
    }

    /// A pull-only token for `repositories` valid `expires_in` seconds,
    /// for someone else (see [`DelegatedToken`]); `None` when the registry
    /// issues no tokens (its challenge is Basic, or none).
    pub async fn delegated_token(
        &self,
        repositories: &[String],
        expires_in: u64,
    ) -> Result<Option<DelegatedToken>, Error> {
        self.auth.delegated_token(repositories, expires_in).await
    }

    /// The blobs of `repository` our buildset registry records as living
    /// elsewhere (empty from other registries).
    pub async fn blob_sources(
        &self,
        repository: &RepositoryName,
    ) -> Result<Vec<RecordedBlob>, Error> {
        sources::list(&self.auth, repository).await
    }

    /// Every repository the registry lists (`GET /v2/_catalog`, every
    /// page). Names that are not valid repository names today are skipped.
    pub async fn catalog(&self) -> Result<Vec<RepositoryName>, Error> {
        catalog::list(&self.auth).await
    }
}

impl Registry for RemoteRegistry {
    fn name(&self) -> &str {
        &self.endpoint().registry
    }

    async fn record_blob_sources(
        &self,
        repository: &RepositoryName,
        sources: &BlobSources,
        blobs: &[(Descriptor, bool)],
    ) -> Result<(), Error> {
        sources::record(&self.auth, repository, sources, blobs).await
    }

    async fn blob_head(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, Error> {
        blob::head(&self.auth, repository, digest).await
    }

    async fn blob_get(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobStream, Error> {
        blob::get(&self.auth, repository, digest).await
    }

    async fn blob_put(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        body: BlobStream,
    ) -> Result<(), Error> {
        blob::put(&self.auth, repository, digest, size, body).await
    }

    async fn blob_mount(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool, Error> {
        blob::mount(&self.auth, repository, digest, from).await
    }

    async fn manifest_get(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Manifest, Error> {
        manifest::get(&self.auth, repository, reference).await
    }

    async fn manifest_head(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Option<Digest>, Error> {
        manifest::head(&self.auth, repository, reference).await
    }

    async fn manifest_put(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
        manifest: &Manifest,
    ) -> Result<Digest, Error> {
        manifest::put(&self.auth, repository, reference, manifest).await
    }

    async fn manifest_delete(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), Error> {
        manifest::delete(&self.auth, repository, digest).await
    }

    async fn tag_delete(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<TagDeleted, Error> {
        tag_delete::delete(&self.auth, repository, tag).await
    }

    async fn tags_list(&self, repository: &RepositoryName) -> Result<Vec<Tag>, Error> {
        tag::list(&self.auth, repository).await
    }
}
