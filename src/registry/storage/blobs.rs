//! Reading blobs: existence and size, and opening their content (whole or
//! a byte range) for streaming.

use std::io::SeekFrom;

use tokio::io::AsyncSeekExt as _;

use super::{io_context, Result, Storage, StorageError};
use crate::oci::Digest;

/// An open blob positioned at the start of the requested bytes.
pub struct BlobReader {
    /// The file, positioned at `start`.
    pub file: tokio::fs::File,
    /// Size of the whole blob.
    pub size: u64,
}

impl Storage {
    /// Size of the blob named `digest`.
    pub async fn blob_size(&self, digest: &Digest) -> Result<u64> {
        match tokio::fs::metadata(self.layout.blob(digest)).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(io_context(format!("reading blob {digest}"))(e)),
        }
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
}
