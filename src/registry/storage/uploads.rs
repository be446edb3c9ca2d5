//! Blob uploads: bytes streamed to `uploads/<id>/data` and hashed as they
//! arrive, so memory does not grow with the blob. The hash state lives in
//! memory between requests; after a restart it is rebuilt by hashing the
//! partial file again. A finished upload is fsynced, verified against the
//! digest the client names, and only then renamed into `blobs/`; on a
//! mismatch nothing is kept.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::files::{is_id, random_id, rename_into_place};
use super::{blocking, io_context, Result, Storage, StorageError};
use crate::oci::{Algorithm, Digest, Hasher, RepositoryName};

/// Bytes gathered before one write + hash off the async runtime.
const WRITE_BATCH: usize = 1 << 20;

/// An upload in progress.
pub struct UploadState {
    repository: RepositoryName,
    /// File and running hash; `None` once a write failed (the upload is
    /// then dropped).
    writer: Option<Writer>,
    /// Bytes written so far.
    size: u64,
}

struct Writer {
    file: std::fs::File,
    hasher: Hasher,
}

type Session = Arc<tokio::sync::Mutex<UploadState>>;

impl Storage {
    /// Start an upload for `repository`; returns its id.
    pub async fn start_upload(&self, repository: &RepositoryName) -> Result<String> {
        let id = random_id();
        let layout = self.layout.clone();
        let (id2, name) = (id.clone(), repository.to_string());
        let file = blocking(move || {
            let dir = layout.upload(&id2);
            std::fs::create_dir_all(&dir).map_err(io_context("creating an upload"))?;
            std::fs::write(layout.upload_repository(&id2), name.as_bytes())
                .map_err(io_context("recording an upload's repository"))?;
            std::fs::File::create(layout.upload_data(&id2))
                .map_err(io_context("creating an upload's data file"))
        })
        .await?;
        let state = UploadState {
            repository: repository.clone(),
            writer: Some(Writer {
                file,
                hasher: Algorithm::Sha256.hasher(),
            }),
            size: 0,
        };
        self.uploads_map()
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(state)));
        Ok(id)
    }

    /// Bytes an upload holds so far.
    pub async fn upload_size(&self, repository: &RepositoryName, id: &str) -> Result<u64> {
        let session = self.session(repository, id).await?;
        let state = session.lock().await;
        Ok(state.size)
    }

    /// Append a chunk; `start` is where the client says it begins (from
    /// `Content-Range`). Returns the upload's new size.
    pub async fn append_upload<S, E>(
        &self,
        repository: &RepositoryName,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let session = self.session(repository, id).await?;
        let mut state = session.lock().await;
        if let Some(start) = start {
            if start != state.size {
                return Err(StorageError::RangeMismatch {
                    start,
                    size: state.size,
                });
            }
        }
        let result = write_stream(&mut state, body).await;
        if state.writer.is_none() {
            self.discard_upload(id).await;
        }
        result.map(|()| state.size)
    }

    /// Append the last bytes, verify the whole upload against `digest` and
    /// make it visible as that blob. On a mismatch the upload is discarded.
    pub async fn finish_upload<S, E>(
        &self,
        repository: &RepositoryName,
        id: &str,
        digest: &Digest,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let session = self.session(repository, id).await?;
        let mut state = session.lock().await;
        let written = write_stream(&mut state, body).await;
        let Some(writer) = state.writer.take() else {
            self.discard_upload(id).await;
            return written;
        };
        if let Err(e) = written {
            // The client went away mid-body: keep the upload as it is.
            state.writer = Some(writer);
            return Err(e);
        }
        let layout = self.layout.clone();
        let (id2, expected) = (id.to_string(), digest.clone());
        let verdict = blocking(move || {
            let Writer { file, hasher } = writer;
            file.sync_all()
                .map_err(io_context("flushing an upload to disk"))?;
            drop(file);
            let data = layout.upload_data(&id2);
            let actual = if expected.algorithm() == Algorithm::Sha256 {
                hasher.finish()
            } else {
                hash_file(&data, expected.algorithm())?.0
            };
            if actual != expected {
                return Err(StorageError::DigestMismatch { expected, actual });
            }
            rename_into_place(&data, &layout.blob(&expected))
                .map_err(io_context(format!("storing blob {expected}")))
        })
        .await;
        self.discard_upload(id).await;
        verdict
    }

    /// Cancel an upload, removing what it received.
    pub async fn cancel_upload(&self, repository: &RepositoryName, id: &str) -> Result<()> {
        let session = self.session(repository, id).await?;
        let _state = session.lock().await;
        self.discard_upload(id).await;
        Ok(())
    }

    fn uploads_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Session>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget an upload and remove its directory.
    async fn discard_upload(&self, id: &str) {
        self.uploads_map().remove(id);
        let dir = self.layout.upload(id);
        let _ = tokio::fs::remove_dir_all(dir).await;
    }

    /// The upload `id` of `repository`, from memory or, after a restart,
    /// rebuilt from its partial file.
    async fn session(&self, repository: &RepositoryName, id: &str) -> Result<Session> {
        let unknown = || StorageError::UploadUnknown(id.to_string());
        if !is_id(id) {
            return Err(unknown());
        }
        let known = self.uploads_map().get(id).cloned();
        let session = match known {
            Some(session) => session,
            None => {
                let layout = self.layout.clone();
                let id2 = id.to_string();
                let state = blocking(move || {
                    let Ok(name) = std::fs::read_to_string(layout.upload_repository(&id2)) else {
                        return Ok(None);
                    };
                    let Ok(repository) = name.parse::<RepositoryName>() else {
                        return Ok(None);
                    };
                    let data = layout.upload_data(&id2);
                    let Ok((hasher, size)) = hash_file_state(&data) else {
                        return Ok(None);
                    };
                    let file = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&data)
                        .map_err(io_context("reopening an upload"))?;
                    Ok(Some(UploadState {
                        repository,
                        writer: Some(Writer { file, hasher }),
                        size,
                    }))
                })
                .await?
                .ok_or_else(unknown)?;
                let session = Arc::new(tokio::sync::Mutex::new(state));
                self.uploads_map()
                    .entry(id.to_string())
                    .or_insert(session)
                    .clone()
            }
        };
        if session.lock().await.repository != *repository {
            return Err(unknown());
        }
        Ok(session)
    }
}

/// Stream `body` into the upload, hashing and writing in batches off the
/// async runtime. A failed write marks the upload broken (`writer: None`).
async fn write_stream<S, E>(state: &mut UploadState, mut body: S) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut batch: Vec<u8> = Vec::new();
    let mut outcome = Ok(());
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                if batch.is_empty() && chunk.len() >= WRITE_BATCH {
                    flush(state, chunk.to_vec()).await?;
                    continue;
                }
                if batch.capacity() == 0 {
                    batch.reserve(WRITE_BATCH);
                }
                batch.extend_from_slice(&chunk);
                if batch.len() >= WRITE_BATCH {
                    flush(state, std::mem::take(&mut batch)).await?;
                }
            }
            Err(e) => {
                outcome = Err(StorageError::Body(e.to_string()));
                break;
            }
        }
    }
    if !batch.is_empty() {
        flush(state, batch).await?;
    }
    outcome
}

async fn flush(state: &mut UploadState, batch: Vec<u8>) -> Result<()> {
    let Some(mut writer) = state.writer.take() else {
        return Err(StorageError::Io {
            context: "writing an upload".into(),
            source: std::io::Error::other("an earlier write failed"),
        });
    };
    let len = batch.len() as u64;
    let writer = blocking(move || {
        writer.hasher.update(&batch);
        writer
            .file
            .write_all(&batch)
            .map_err(io_context("writing an upload"))?;
        Ok(writer)
    })
    .await?;
    state.writer = Some(writer);
    state.size += len;
    Ok(())
}

/// Hash a whole file with `algorithm`; returns the digest and size.
fn hash_file(path: &std::path::Path, algorithm: Algorithm) -> Result<(Digest, u64)> {
    let mut hasher = algorithm.hasher();
    let size = feed(path, &mut hasher)?;
    Ok((hasher.finish(), size))
}

/// Hash a partial upload with sha256, keeping the state to continue.
fn hash_file_state(path: &std::path::Path) -> Result<(Hasher, u64)> {
    let mut hasher = Algorithm::Sha256.hasher();
    let size = feed(path, &mut hasher)?;
    Ok((hasher, size))
}

fn feed(path: &std::path::Path, hasher: &mut Hasher) -> Result<u64> {
    let mut file =
        std::fs::File::open(path).map_err(io_context(format!("reading {}", path.display())))?;
    let mut buf = vec![0u8; WRITE_BATCH];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io_context(format!("reading {}", path.display())))?;
        if n == 0 {
            return Ok(size);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}
