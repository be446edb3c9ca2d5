//! Content-addressed filesystem storage for the registry: blobs, uploads,
//! manifests and tags. Handlers call [`Storage`]; nothing else touches the
//! disk. Every path comes from [`paths::Layout`], which draws the tree.
//!
//! Blobs are shared by all repositories (a buildset registry has one
//! tenant), so a cross-repository mount is an existence check, and a blob
//! deleted through one repository is only recorded there as deleted;
//! manifests, tags and the referrers index belong to a repository.

mod blobs;
pub mod files;
mod ingest;
mod lock;
mod manifests;
pub mod paths;
pub mod prune;
mod referrers;
pub mod sources;
mod uploads;

use std::path::Path;

pub use blobs::BlobReader;
pub use ingest::{GrowingFile, Ingest};
pub use manifests::{
    check_manifest, CheckedManifest, ManifestBody, PutManifest, ServedManifest, StoredManifest,
    MAX_MANIFEST_BYTES,
};
pub use prune::{PrunePolicy, PruneReport, Pruned, TagPattern};
pub use sources::{BlobSource, SourcedBlob, Sources, Upstream};
pub use uploads::{UploadLimits, UploadState};

use crate::oci::Digest;
use paths::Layout;

/// Why a storage operation failed; handlers map each kind to a spec code.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No blob with this digest.
    #[error("blob {0} is unknown")]
    BlobUnknown(Digest),
    /// No upload with this id (in this repository).
    #[error("upload {0:?} is unknown")]
    UploadUnknown(String),
    /// No manifest with this tag or digest in the repository.
    #[error("manifest {0} is unknown")]
    ManifestUnknown(String),
    /// No such repository.
    #[error("repository {0} is unknown")]
    RepositoryUnknown(String),
    /// The content does not hash to the digest the client named.
    #[error("content has digest {actual}, not {expected}")]
    DigestMismatch {
        /// Digest the client named.
        expected: Digest,
        /// Digest of what arrived.
        actual: Digest,
    },
    /// Content fetched from elsewhere is not as long as recorded.
    #[error("content has {actual} bytes, not {expected}")]
    SizeMismatch {
        /// Size recorded.
        expected: u64,
        /// Bytes that arrived (so far).
        actual: u64,
    },
    /// A chunk does not start where the upload ends.
    #[error("chunk starts at byte {start} but the upload holds {size} bytes")]
    RangeMismatch {
        /// Where the client said the chunk starts.
        start: u64,
        /// Bytes the upload holds.
        size: u64,
    },
    /// The manifest is not one the registry accepts.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// The manifest names content the registry does not hold.
    #[error("manifest references unknown {0}")]
    ManifestBlobUnknown(Digest),
    /// Too many upload sessions are open (in total or for this user).
    #[error("too many uploads: {0}")]
    TooManyUploads(String),
    /// The client stopped sending the body.
    #[error("reading the request body: {0}")]
    Body(String),
    /// The filesystem failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result of a storage operation.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Attach what was being done to an I/O error.
pub(crate) fn io_context(
    context: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// Run blocking filesystem work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(StorageError::Io {
            context: "storage task".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// The registry's storage under one root directory.
pub struct Storage {
    layout: Layout,
    /// Uploads in progress: hash state per upload id, kept between PATCH
    /// requests, and their limits. Rebuilt from `uploads/<id>/data` after
    /// a restart by hashing the partial file again.
    uploads: uploads::Uploads,
    /// Where blobs not stored yet can be fetched from (shared with the
    /// blocking work of a manifest PUT).
    sources: std::sync::Arc<Sources>,
}

impl Storage {
    /// Open (creating) the storage at `root`, discarding files a previous
    /// run left half-written in `tmp/`.
    pub fn open(root: &Path) -> Result<Storage> {
        let layout = Layout::new(root);
        prune::restore_trash(&layout);
        let _ = std::fs::remove_dir_all(layout.tmp());
        for dir in [
            layout.blobs(),
            layout.repositories(),
            layout.uploads(),
            layout.tmp(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(io_context(format!("creating {}", dir.display())))?;
        }
        lock::ensure(&layout)?;
        Ok(Storage {
            sources: std::sync::Arc::new(Sources::load(&layout)),
            layout,
            uploads: uploads::Uploads::default(),
        })
    }

    /// The storage at `root` as another process sees it while a server
    /// runs on it (`speculative-images prune`): nothing is created or
    /// discarded; `root` must be a store [`Storage::open`] made.
    pub fn attach(root: &Path) -> Result<Storage> {
        let layout = Layout::new(root);
        for dir in [layout.blobs(), layout.repositories()] {
            if !dir.is_dir() {
                return Err(StorageError::Io {
                    context: format!("{} is not a registry's storage", root.display()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{} is missing", dir.display()),
                    ),
                });
            }
        }
        lock::ensure(&layout)?;
        Ok(Storage {
            sources: std::sync::Arc::new(Sources::load(&layout)),
            layout,
            uploads: uploads::Uploads::default(),
        })
    }

    /// The blob source records.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The on-disk layout (for tests and tools that inspect the store).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}
