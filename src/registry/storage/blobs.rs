//! Reading and deleting blobs: existence and size, opening their content
//! (whole or a byte range) for streaming. Blobs are shared by every
//! repository; deleting one through a repository records it there as
//! deleted (the bytes stay for the others), and storing or mounting it
//! there again clears that record.

use std::io::SeekFrom;

use tokio::io::AsyncSeekExt as _;

use super::files::{fsync_dir, write_atomic};
use super::paths::Layout;
use super::{blocking, io_context, Result, Storage, StorageError};
use crate::oci::{Digest, RepositoryName};

/// How old a blob may be before reading its size refreshes its time.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// An open blob positioned at the start of the requested bytes.
pub struct BlobReader {
    /// The file, positioned at `start`.
    pub file: tokio::fs::File,
    /// Size of the whole blob.
    pub size: u64,
}

impl Storage {
    /// Size of the blob named `digest`, as `repository` sees it.
    pub async fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<u64> {
        if tokio::fs::try_exists(self.layout.deleted_blob(repository, digest))
            .await
            .unwrap_or(false)
        {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        match tokio::fs::metadata(self.layout.blob(digest)).await {
            Ok(meta) => {
                self.refresh(digest, &meta).await?;
                Ok(meta.len())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(io_context(format!("reading blob {digest}"))(e)),
        }
    }

    /// A client told that a blob exists (HEAD, a mount) may name it in a
    /// manifest next: set its time to now when it is older than
    /// [`REFRESH`], so that a prune's grace period covers it (see
    /// [`prune`](super::prune)). A blob a prune removed meanwhile is unknown.
    async fn refresh(&self, digest: &Digest, meta: &std::fs::Metadata) -> Result<()> {
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > REFRESH);
        if !old {
            return Ok(());
        }
        let path = self.layout.blob(digest);
        let touched = blocking(move || {
            Ok(std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now())))
        })
        .await?;
        match touched {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::BlobUnknown(digest.clone()))
            }
            // A store this process may not write (read-only): nothing to refresh.
            _ => Ok(()),
        }
    }

    /// Whether the content named `digest` is stored (one `stat`; blocking,
    /// but cheap).
    pub fn holds_blob(&self, digest: &Digest) -> bool {
        self.layout.blob(digest).is_file()
    }

    /// Record in `repository` the source `from` has for blob `digest`
    /// (a mount of a blob not fetched yet); whether there was one.
    pub async fn mount_source(
        &self,
        from: &RepositoryName,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool> {
        let Some(source) = self.sources.get(from, digest) else {
            return Ok(false);
        };
        let (sources, name) = (self.sources.clone(), repository.clone());
        let blob = super::SourcedBlob {
            digest: digest.clone(),
            size: source.size,
            media_type: source.media_type.clone(),
            prefetch: false,
        };
        blocking(move || sources.record(&name, (*source.upstream).clone(), &[blob])).await?;
        Ok(true)
    }

    /// Open the blob named `digest`, positioned at byte `start`.
    pub async fn open_blob(&self, digest: &Digest, start: u64) -> Result<BlobReader> {
        let mut file = match tokio::fs::File::open(self.layout.blob(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::BlobUnknown(digest.clone()))
            }
            Err(e) => return Err(io_context(format!("opening blob {digest}"))(e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(io_context(format!("reading blob {digest}")))?
            .len();
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(io_context(format!("seeking in blob {digest}")))?;
        }
        Ok(BlobReader { file, size })
    }

    /// Delete the blob `digest` from `repository`: unknown there from now
    /// on, until it is uploaded or mounted there again.
    pub async fn delete_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<()> {
        self.blob_size(repository, digest).await?;
        let layout = self.layout.clone();
        let (name, digest) = (repository.clone(), digest.clone());
        blocking(move || {
            write_atomic(
                &layout.tmp_file(),
                &layout.deleted_blob(&name, &digest),
                b"",
            )
            .map_err(io_context(format!("deleting blob {digest} from {name}")))
        })
        .await
    }

    /// Make the stored blob `digest` known in `repository` again (after an
    /// upload or a mount there).
    pub async fn keep_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<()> {
        let layout = self.layout.clone();
        let (name, digest) = (repository.clone(), digest.clone());
        blocking(move || undelete(&layout, &name, &digest)).await
    }
}

/// Clear the record that `digest` was deleted from `name`, if there is
/// one (blocking; one `stat` when there is none).
pub(super) fn undelete(layout: &Layout, name: &RepositoryName, digest: &Digest) -> Result<()> {
    let record = layout.deleted_blob(name, digest);
    match std::fs::remove_file(&record) {
        Ok(()) => fsync_dir(record.parent().expect("a parent"))
            .map_err(io_context(format!("keeping blob {digest} in {name}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_context(format!("keeping blob {digest} in {name}"))(e)),
    }
}
