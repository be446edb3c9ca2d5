//! [`RemoteRegistry`]: a registry reached over HTTP(S), the implementation
//! of [`Registry`] the modules use. The operations live in files named
//! after the spec's nouns (`blob.rs`, `manifest.rs`, `tag.rs`); this file
//! holds the handle and wires those operations into the trait.
//!
//! Why not `oci-client`'s `Client`: it pulls a blob into a writer and pushes
//! one from memory, so it cannot stream a blob from one registry into
//! another, and it has no cross-repository mount; and its one client holds
//! one TLS configuration for every registry. The documents are
//! [`crate::oci`]'s types, which the server can share.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::error::Error;
use super::registry::{BlobStream, Registry};
use super::transport::{RetryPolicy, Transport};
use crate::oci::{Digest, Manifest, ManifestReference, RepositoryName, Tag};

/// A registry reached over HTTP(S). Cheap to share (`Arc`); connections
/// and tokens are reused by every operation through the same handle.
#[derive(Debug)]
pub struct RemoteRegistry {
    pub(crate) transport: Transport,
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
            transport: Transport::new(endpoint, retry)?,
        }))
    }

    /// The connection settings.
    pub fn endpoint(&self) -> &Endpoint {
        self.transport.endpoint()
    }
}

impl Registry for RemoteRegistry {
    fn name(&self) -> &str {
        &self.transport.endpoint.registry
    }

    async fn blob_head(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, Error> {
        self.head_blob(repository, digest).await
    }

    async fn blob_get(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobStream, Error> {
        self.get_blob(repository, digest).await
    }

    async fn blob_put(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        body: BlobStream,
    ) -> Result<(), Error> {
        self.put_blob(repository, digest, size, body).await
    }

    async fn blob_mount(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool, Error> {
        self.mount_blob(repository, digest, from).await
    }

    async fn manifest_get(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Manifest, Error> {
        self.get_manifest(repository, reference).await
    }

    async fn manifest_head(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Option<Digest>, Error> {
        self.head_manifest(repository, reference).await
    }

    async fn manifest_put(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
        manifest: &Manifest,
    ) -> Result<Digest, Error> {
        self.put_manifest(repository, reference, manifest).await
    }

    async fn manifest_delete(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), Error> {
        self.delete_manifest(repository, digest).await
    }

    async fn tags_list(&self, repository: &RepositoryName) -> Result<Vec<Tag>, Error> {
        self.list_tags(repository).await
    }
}
