//! Blob uploads: bytes streamed to `uploads/<id>/data` and hashed as they
//! arrive, so memory does not grow with the blob. The hash state lives in
//! memory between requests; after a restart it is rebuilt by hashing the
//! partial file again. A finished upload is fsynced, verified against the
//! digest the client names, and only then renamed into `blobs/`; on a
//! mismatch nothing is kept.
//!
//! Sessions are capped ([`UploadLimits`]: in total and per user) and hold
//! no file between requests: each PATCH or PUT opens the data file. Only
//! the writing side is locked, so the status and the cancel of an upload
//! whose PATCH waits for bytes answer at once; a body that sends nothing
//! for [`UploadLimits::stall`] ends with what arrived written.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::files::{is_id, random_id, rename_into_place};
use super::paths::Layout;
use super::{blocking, io_context, Result, Storage, StorageError};
use crate::oci::{Algorithm, Digest, Hasher, RepositoryName};

/// Bytes gathered before one write + hash off the async runtime.
const WRITE_BATCH: usize = 1 << 20;

/// Batches queued for the writer while it works on one.
const BATCHES_IN_FLIGHT: usize = 2;

/// How many upload sessions may be open, and how long a body may stall.
#[derive(Debug, Clone)]
pub struct UploadLimits {
    /// Sessions open at once, in total.
    pub total: usize,
    /// Sessions open at once per user.
    pub per_user: usize,
    /// Longest wait for the next bytes of a body.
    pub stall: Duration,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            total: 1024,
            per_user: 128,
            stall: Duration::from_secs(60),
        }
    }
}

/// The uploads in progress and their limits.
#[derive(Default)]
pub struct Uploads {
    sessions: Mutex<HashMap<String, Session>>,
    limits: UploadLimits,
}

/// An upload in progress.
pub struct Upload {
    repository: RepositoryName,
    /// Who started it; `None` when rebuilt from disk after a restart.
    owner: Option<String>,
    /// Bytes written so far (readable while a request writes).
    size: AtomicU64,
    /// Set by a cancel; a write in progress then ends with nothing kept.
    cancelled: AtomicBool,
    /// Last request that used it.
    touched: Mutex<Instant>,
    /// The writing side, held by one PATCH or PUT at a time.
    writing: tokio::sync::Mutex<UploadState>,
}

/// The running hash of an upload; `None` once a write failed (the upload
/// is then dropped).
pub struct UploadState {
    hasher: Option<Hasher>,
}

type Session = Arc<Upload>;

impl Upload {
    fn new(repository: RepositoryName, owner: Option<String>, hasher: Hasher, size: u64) -> Upload {
        Upload {
            repository,
            owner,
            size: AtomicU64::new(size),
            cancelled: AtomicBool::new(false),
            touched: Mutex::new(Instant::now()),
            writing: tokio::sync::Mutex::new(UploadState {
                hasher: Some(hasher),
            }),
        }
    }

    fn idle(&self) -> Duration {
        self.touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn unknown_if_cancelled(&self, id: &str) -> Result<()> {
        if self.cancelled.load(Ordering::Acquire) {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        Ok(())
    }
}

impl Storage {
    /// Limit upload sessions (before the storage is shared).
    pub fn set_upload_limits(&mut self, limits: UploadLimits) {
        self.uploads.limits = limits;
    }

    /// Start an upload for `repository` on behalf of `owner` (a user
    /// name); returns its id. Refused with [`StorageError::TooManyUploads`]
    /// above the limits.
    pub async fn start_upload(&self, repository: &RepositoryName, owner: &str) -> Result<String> {
        let id = random_id();
        {
            let mut sessions = self.uploads_map();
            let limits = &self.uploads.limits;
            if sessions.len() >= limits.total {
                return Err(StorageError::TooManyUploads(format!(
                    "{} uploads are open on this registry",
                    limits.total
                )));
            }
            let mine = sessions
                .values()
                .filter(|u| u.owner.as_deref() == Some(owner))
                .count();
            if mine >= limits.per_user {
                return Err(StorageError::TooManyUploads(format!(
                    "{mine} uploads of yours are open; finish or cancel some"
                )));
            }
            let upload = Upload::new(
                repository.clone(),
                Some(owner.to_string()),
                Algorithm::Sha256.hasher(),
                0,
            );
            sessions.insert(id.clone(), Arc::new(upload));
        }
        let layout = self.layout.clone();
        let (id2, name) = (id.clone(), repository.to_string());
        let made = blocking(move || {
            let dir = layout.upload(&id2);
            std::fs::create_dir_all(&dir).map_err(io_context("creating an upload"))?;
            std::fs::write(layout.upload_repository(&id2), name.as_bytes())
                .map_err(io_context("recording an upload's repository"))?;
            std::fs::File::create(layout.upload_data(&id2))
                .map_err(io_context("creating an upload's data file"))?;
            Ok(())
        })
        .await;
        if let Err(e) = made {
            // A full disk, say: leave nothing of it behind.
            self.discard_upload(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Bytes an upload holds so far (at once, also while a PATCH writes).
    pub async fn upload_size(&self, repository: &RepositoryName, id: &str) -> Result<u64> {
        let session = self.session(repository, id).await?;
        Ok(session.size.load(Ordering::Acquire))
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
        let mut state = session.writing.lock().await;
        session.unknown_if_cancelled(id)?;
        check_start(&session, start)?;
        let result = self.write_stream(id, &session, &mut state, body).await;
        if state.hasher.is_none() {
            self.discard_upload(id).await;
        }
        result.map(|()| session.size.load(Ordering::Acquire))
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
        let mut state = session.writing.lock().await;
        session.unknown_if_cancelled(id)?;
        check_start(&session, start)?;
        let written = self.write_stream(id, &session, &mut state, body).await;
        let Some(hasher) = state.hasher.take() else {
            self.discard_upload(id).await;
            return written;
        };
        if let Err(e) = written {
            // The client went away mid-body: keep the upload as it is.
            state.hasher = Some(hasher);
            return Err(e);
        }
        let layout = self.layout.clone();
        let (id2, expected, name) = (id.to_string(), digest.clone(), repository.clone());
        let verdict = blocking(move || {
            let data = layout.upload_data(&id2);
            std::fs::File::open(&data)
                .and_then(|file| file.sync_all())
                .map_err(io_context("flushing an upload to disk"))?;
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

    /// Cancel an upload, removing what it received. Answers at once: a
    /// PATCH still writing to it ends without keeping anything.
    pub async fn cancel_upload(&self, repository: &RepositoryName, id: &str) -> Result<()> {
        let session = self.session(repository, id).await?;
        session.cancelled.store(true, Ordering::Release);
        self.discard_upload(id).await;
        Ok(())
    }

    /// Remove an upload whose id its client never received (the request
    /// that started it failed), if it is still there.
    pub async fn abandon_upload(&self, id: &str) {
        if let Some(session) = self.uploads_map().get(id) {
            session.cancelled.store(true, Ordering::Release);
        }
        if is_id(id) {
            self.discard_upload(id).await;
        }
    }

    fn uploads_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.uploads
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
                let upload = blocking(move || {
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
                    Ok(Some(Upload::new(repository, None, hasher, size)))
                })
                .await?
                .ok_or_else(unknown)?;
                self.uploads_map()
                    .entry(id.to_string())
                    .or_insert_with(|| Arc::new(upload))
                    .clone()
            }
        };
        if session.repository != *repository {
            return Err(unknown());
        }
        *session.touched.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(session)
    }

    /// Housekeeping for abandoned uploads (clients that start an upload
    /// and never finish it, e.g. a failed mount attempt): forget the hash
    /// state of uploads idle longer than `idle` (rebuilt from disk if
    /// they come back; they no longer count toward the limits), and
    /// remove uploads untouched on disk for longer than `stale`.
    pub async fn tidy_uploads(&self, idle: Duration, stale: Duration) {
        let sessions: Vec<(String, Session)> = self
            .uploads_map()
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        for (id, session) in sessions {
            let Ok(_writing) = session.writing.try_lock() else {
                continue; // in use
            };
            if session.idle() > idle {
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

    /// Stream `body` into the upload. Batches of [`WRITE_BATCH`] bytes go
    /// to a blocking task that hashes and writes them while the next batch
    /// arrives (at most [`BATCHES_IN_FLIGHT`] wait, so memory stays
    /// bounded); the upload's size grows as each batch is written.
    /// Everything received is written, also when the client stops early
    /// or stalls longer than the limit; a failed write marks the upload
    /// broken (`hasher: None`). A cancel during the write makes it
    /// [`StorageError::UploadUnknown`].
    async fn write_stream<S, E>(
        &self,
        id: &str,
        session: &Session,
        state: &mut UploadState,
        mut body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Some(hasher) = state.hasher.take() else {
            return Err(StorageError::Io {
                context: "writing an upload".into(),
                source: std::io::Error::other("an earlier write failed"),
            });
        };
        let (batches, incoming) = tokio::sync::mpsc::channel::<Vec<u8>>(BATCHES_IN_FLIGHT);
        let task = tokio::task::spawn_blocking({
            let (layout, id, session) = (self.layout.clone(), id.to_string(), session.clone());
            move || write_batches(&layout, &id, &session, hasher, incoming)
        });
        let stall = self.uploads.limits.stall;
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        let mut outcome = Ok(());
        loop {
            let chunk = match tokio::time::timeout(stall, body.next()).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_) => {
                    outcome = Err(StorageError::Body(format!(
                        "no bytes for {} s",
                        stall.as_secs_f64()
                    )));
                    break;
                }
            };
            match chunk {
                Ok(_) if session.cancelled.load(Ordering::Acquire) => break,
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
        let (hasher, result) = task.await.map_err(|e| StorageError::Io {
            context: "writing an upload".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        state.hasher = hasher;
        session.unknown_if_cancelled(id)?;
        result.map_err(io_context("writing an upload"))?;
        outcome
    }
}

/// The blocking side of [`Storage::write_stream`]: open the data file,
/// write and hash each batch, grow the session's size. Returns the hash
/// state (`None` when a write failed) and the outcome.
fn write_batches(
    layout: &Layout,
    id: &str,
    session: &Upload,
    mut hasher: Hasher,
    mut incoming: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> (Option<Hasher>, std::io::Result<()>) {
    let opened = std::fs::OpenOptions::new()
        .append(true)
        .open(layout.upload_data(id));
    let mut file = match opened {
        Ok(file) => file,
        Err(e) => return (Some(hasher), Err(e)),
    };
    let mut offset = session.size.load(Ordering::Acquire);
    while let Some(batch) = incoming.blocking_recv() {
        if let Err(e) = file.write_all(&batch) {
            return (None, Err(e));
        }
        hasher.update(&batch);
        // Let the kernel start writing now, so the fsync that
        // finishes the upload has little left to wait for.
        start_writeback(&file, offset, batch.len() as u64);
        offset += batch.len() as u64;
        session.size.store(offset, Ordering::Release);
    }
    (Some(hasher), Ok(()))
}

/// Refuse a chunk that does not begin where the upload ends.
fn check_start(session: &Upload, start: Option<u64>) -> Result<()> {
    let size = session.size.load(Ordering::Acquire);
    match start {
        Some(start) if start != size => Err(StorageError::RangeMismatch { start, size }),
        _ => Ok(()),
    }
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
