//! The one interface the copy engine, promote, cleanup and the change
//! records speak to: the distribution spec's operations on blobs,
//! manifests and tags of one registry, with typed references. The HTTP
//! client ([`super::RemoteRegistry`]) implements it, and so does the
//! in-memory store of the unit tests ([`super::MemoryRegistry`]).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use super::error::Error;
use super::sources::BlobSources;
use crate::oci::{Descriptor, Digest, Manifest, ManifestReference, RepositoryName, Tag};

/// What became of a tag delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagDeleted {
    /// The tag is gone.
    Deleted,
    /// There was no such tag.
    Absent,
    /// The registry does not delete tags by name (400/405, `UNSUPPORTED`).
    Unsupported,
}

/// The bytes of a blob as they arrive, never held whole.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// A registry's storage operations. Every method names the repository it
/// works in; errors carry the registry, the operation and the cause.
pub trait Registry: Send + Sync + 'static {
    /// The registry's name (`host:port`), for messages and to tell whether
    /// two handles point at the same registry (and may mount).
    fn name(&self) -> &str;

    /// The size of blob `digest` in `repository`, or `None` if absent.
    fn blob_head(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// The content of blob `digest`, as a stream (not verified here).
    fn blob_get(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<BlobStream, Error>> + Send;

    /// Store `body` (exactly `size` bytes) as blob `digest`. The registry
    /// commits it only if it hashes to `digest`.
    fn blob_put(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        body: BlobStream,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Make blob `digest` of repository `from` (same registry) available in
    /// `repository` without transferring it. `Ok(false)` when the registry
    /// did not mount it (then the caller transfers it).
    fn blob_mount(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// The manifest (or index) `reference` (a tag or digest) names, its
    /// bytes exactly as stored, whatever manifest media type it has.
    fn manifest_get(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> impl Future<Output = Result<Manifest, Error>> + Send;

    /// The digest of the manifest `reference` names, or `None` if absent.
    fn manifest_head(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> impl Future<Output = Result<Option<Digest>, Error>> + Send;

    /// Store `manifest`'s bytes, unchanged, under `reference` (a tag, or
    /// its digest). Returns the digest the registry reports (or computed),
    /// after checking it equals the manifest's.
    fn manifest_put(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
        manifest: &Manifest,
    ) -> impl Future<Output = Result<Digest, Error>> + Send;

    /// Delete the manifest `digest` (and with it every tag naming it).
    fn manifest_delete(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Delete `tag` of `repository`, keeping the manifest it names and its
    /// other tags. [`TagDeleted::Unsupported`] when the registry deletes
    /// manifests by digest only (distribution 2.8): the caller decides what
    /// else to do.
    fn tag_delete(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> impl Future<Output = Result<TagDeleted, Error>> + Send;

    /// Every tag of `repository` (empty when the repository is unknown).
    fn tags_list(
        &self,
        repository: &RepositoryName,
    ) -> impl Future<Output = Result<Vec<Tag>, Error>> + Send;

    /// Record that `blobs` of `repository` (each with whether to prefetch
    /// it) live where `sources` says, for a lazy pull: our buildset
    /// registry's extension (`PUT /v2/<name>/_speculative/sources`). A
    /// registry without it fails with [`ErrorKind::Unsupported`].
    ///
    /// [`ErrorKind::Unsupported`]: super::ErrorKind::Unsupported
    fn record_blob_sources(
        &self,
        repository: &RepositoryName,
        sources: &BlobSources,
        blobs: &[(Descriptor, bool)],
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = (repository, sources, blobs);
        let error = no_blob_sources(self.name());
        async { Err(error) }
    }
}

/// The action of [`no_blob_sources`], by which callers tell that error.
pub const RECORDING_BLOB_SOURCES: &str = "recording blob sources";

/// What [`Registry::record_blob_sources`] answers on `registry`, which has
/// no such extension.
pub fn no_blob_sources(registry: &str) -> Error {
    Error::new(
        super::ErrorKind::Unsupported("it records no blob sources".to_string()),
        registry,
        RECORDING_BLOB_SOURCES,
    )
}
