//! Blob uploads: bytes streamed to `uploads/<id>/data` and hashed as they
//! arrive, so memory does not grow with the blob. The hash state lives in
//! memory between requests; after a restart it is rebuilt by hashing the
//! partial file again. A finished upload is fsynced, verified against the
//! digest the client names, and only then renamed into `blobs/`; on a
//! mismatch nothing is kept.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::files::{is_id, random_id, rename_into_place};
use super::{blocking, io_context, Result, Storage, StorageError};
use crate::oci::{Algorithm, Digest, Hasher, RepositoryName};

/// Bytes gathered before one write + hash off the async runtime.
const WRITE_BATCH: usize = 1 << 20;

/// Batches queued for the writer while it works on one.
const BATCHES_IN_FLIGHT: usize = 2;

/// An upload in progress.
pub struct UploadState {
    repository: RepositoryName,
    /// File and running hash; `None` once a write failed (the upload is
    /// then dropped).
    writer: Option<Writer>,
    /// Bytes written so far.
    size: u64,
    /// Last request that used it.
    touched: Instant,
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
            touched: Instant::now(),
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
        check_start(&state, start)?;
        let result = write_stream(&mut state, body).await;
        if state.writer.is_none() {
            self.discard_upload(id).await;
        }
        result.map(|()| state.size)
    }

    /// Append the last bytes (which begin at `start` when the client says
    /// so), verify the whole upload against `digest` and make it visible as
    /// that blob in `repository`. On a digest mismatch the upload is
    /// discarded; on a range mismatch it is kept as it was.
    pub async fn finish_upload<S, E>(
        &self,
        repository: &RepositoryName,
        id: &str,
        start: Option<u64>,
        digest: &Digest,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let session = self.session(repository, id).await?;
        let mut state = session.lock().await;
        check_start(&state, start)?;
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
        let (id2, expected, name) = (id.to_string(), digest.clone(), repository.clone());
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
                .map_err(io_context(format!("storing blob {expected}")))?;
            super::blobs::undelete(&layout, &name, &expected)
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
                        touched: Instant::now(),
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
        let mut state = session.lock().await;
        if state.repository != *repository {
            return Err(unknown());
        }
        state.touched = Instant::now();
        drop(state);
        Ok(session)
    }

    /// Housekeeping for abandoned uploads (clients that start an upload
    /// and never finish it, e.g. a failed mount attempt): close the files
    /// of uploads idle longer than `idle` (their hash state is rebuilt
    /// from disk if they come back), and remove uploads untouched on disk
    /// for longer than `stale`.
    pub async fn tidy_uploads(&self, idle: Duration, stale: Duration) {
        let sessions: Vec<(String, Session)> = self
            .uploads_map()
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        for (id, session) in sessions {
            let Ok(state) = session.try_lock() else {
                continue; // in use
            };
            if state.touched.elapsed() > idle {
                self.uploads_map().remove(&id);
            }
        }
        let layout = self.layout.clone();
        let in_memory: std::collections::HashSet<String> =
            self.uploads_map().keys().cloned().collect();
        let _ = blocking(move || {
            let Ok(entries) = std::fs::read_dir(layout.uploads()) else {
                return Ok(());
            };
            for entry in entries.flatten() {
                let Ok(id) = entry.file_name().into_string() else {
                    continue;
                };
                if in_memory.contains(&id) {
                    continue;
                }
                let modified = std::fs::metadata(layout.upload_data(&id))
                    .or_else(|_| entry.metadata())
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let age = SystemTime::now()
                    .duration_since(modified)
                    .unwrap_or_default();
                if age > stale {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            Ok(())
        })
        .await;
    }
}

/// Refuse a chunk that does not begin where the upload ends.
fn check_start(state: &UploadState, start: Option<u64>) -> Result<()> {
    match start {
        Some(start) if start != state.size => Err(StorageError::RangeMismatch {
            start,
            size: state.size,
        }),
        _ => Ok(()),
    }
}

/// Stream `body` into the upload. Batches of [`WRITE_BATCH`] bytes go to
/// a blocking task that hashes and writes them while the next batch
/// arrives (at most [`BATCHES_IN_FLIGHT`] wait, so memory stays bounded).
/// Everything received is written, also when the client stops early; a
/// failed write marks the upload broken (`writer: None`).
async fn write_stream<S, E>(state: &mut UploadState, mut body: S) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let Some(writer) = state.writer.take() else {
        return Err(StorageError::Io {
            context: "writing an upload".into(),
            source: std::io::Error::other("an earlier write failed"),
        });
    };
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<Vec<u8>>(BATCHES_IN_FLIGHT);
    let offset = state.size;
    let task = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let mut written = 0u64;
        while let Some(batch) = incoming.blocking_recv() {
            writer.hasher.update(&batch);
            if let Err(e) = writer.file.write_all(&batch) {
                return (None, written, Err(e));
            }
            // Let the kernel start writing now, so the fsync that
            // finishes the upload has little left to wait for.
            start_writeback(&writer.file, offset + written, batch.len() as u64);
            written += batch.len() as u64;
        }
        (Some(writer), written, Ok(()))
    });
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut outcome = Ok(());
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                batch.extend_from_slice(&chunk);
                if batch.len() >= WRITE_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
                    if batches.send(full).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
            }
            Err(e) => {
                outcome = Err(StorageError::Body(e.to_string()));
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(batch).await;
    }
    drop(batches);
    let (writer, written, result) = task.await.map_err(|e| StorageError::Io {
        context: "writing an upload".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    state.writer = writer;
    state.size += written;
    result.map_err(io_context("writing an upload"))?;
    outcome
}

/// Ask the kernel to start writing a range of `file` back to disk,
/// without waiting (Linux `sync_file_range`; elsewhere a no-op).
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid open descriptor; the call only schedules I/O.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
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
