//! Pull-through of recorded blobs: the first GET of a blob the storage
//! does not hold but has a source for ([`storage::sources`](super::storage::sources))
//! fetches it from the upstream registry with the registry client, once:
//! concurrent GETs of the same digest join that one fetch (a *flight*).
//! The bytes are written to storage as they arrive
//! ([`Ingest`]) and every joined client reads
//! them from the growing file, so a slow client holds back neither the
//! fetch nor the others. The last byte is held back until the digest is
//! verified: a client of a blob that turns out corrupt never receives a
//! whole body, its transfer is aborted, and nothing is stored.
//!
//! Fetches take turns: one streams its body at a time, in the order the
//! blobs were asked for, so that the layer a client wants
//! first (docker unpacks layers in order, while it downloads three at a
//! time) arrives at the full rate of the link instead of a third of it.
//! Each fetch sends its GET at once, so a missing blob or an unreachable
//! registry is still told at once, and a fetch that waited
//! [`TURN_WAIT`] goes on beside the others; so does a fetch a client waits
//! for while the turn is a prefetch's that no client waits for.
//!
//! The fetch runs on its own task: a client that goes away does not stop
//! it, so the next client finds the blob stored. Blobs recorded with
//! `prefetch` are fetched in the background, one at a time, before any
//! client asks ([`PullThrough::prefetch`]); a GET never waits for that
//! queue. One log line per fetch
//! names the upstream (URL and repository, never the credential) and
//! says how it ended.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use super::errors::{ApiError, ErrorCode};
use super::storage::{BlobSource, GrowingFile, Ingest, Storage, StorageError, Upstream};
use crate::client::{Endpoint, ErrorKind, Registry as _, RemoteRegistry, RetryPolicy};
use crate::oci::{Digest, RepositoryName};

/// Bytes handed to a client per read of the growing file.
const READ_CHUNK: usize = 256 << 10;

/// Prefetches of one blob while the upstream registry is unavailable,
/// and the pause after the first failed one (twice that after the
/// second): an intermediate registry restarting for a few seconds does
/// not leave the buildset registry without its layers.
const PREFETCH_ATTEMPTS: u32 = 3;
const PREFETCH_PAUSE: Duration = Duration::from_secs(2);

/// The longest a fetch waits for its turn before it streams beside the
/// running one: turns order the blobs of one image, and a blob queued
/// behind a large one must not wait for all of it.
pub const TURN_WAIT: Duration = Duration::from_secs(10);

/// Retries of the upstream GET before the fetch fails: a registry that
/// refuses connections fails it within a second or so.
const FETCH_RETRY: RetryPolicy = RetryPolicy {
    retries: 2,
    backoff: Duration::from_millis(200),
    max_wait: Duration::from_secs(2),
};

/// Why a fetch failed, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The upstream registry does not have the blob (404 there).
    #[error("the upstream registry does not hold the blob")]
    Gone,
    /// The upstream registry is unreachable, too slow, or failing (5xx).
    #[error("the upstream registry is unavailable")]
    Unavailable,
    /// The upstream registry refused the credential, or answered
    /// something else unexpected.
    #[error("the upstream registry refused the request")]
    Refused,
    /// What arrived is not the blob (digest or size differs).
    #[error("the upstream registry sent content that is not the blob")]
    Corrupt,
    /// Writing it here failed.
    #[error("storing the blob failed")]
    Storage,
}

impl From<FetchError> for ApiError {
    fn from(error: FetchError) -> ApiError {
        let code = match error {
            FetchError::Gone => ErrorCode::BlobUnknown,
            FetchError::Unavailable => ErrorCode::UpstreamUnavailable,
            FetchError::Refused | FetchError::Corrupt => ErrorCode::UpstreamFailed,
            FetchError::Storage => ErrorCode::Unknown,
        };
        ApiError::with_detail(code, error.to_string())
    }
}

/// Where a fetch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Asking the upstream registry.
    Connecting,
    /// Bytes on disk so far.
    Streaming(u64),
    /// Verified and stored.
    Done,
    /// Failed; nothing stored.
    Failed(FetchError),
}

/// One fetch of one blob, shared by every client that asks for it meanwhile.
pub struct Flight {
    size: u64,
    file: GrowingFile,
    progress: watch::Receiver<Progress>,
    /// Whether a client waits for it (else only the prefetch does).
    wanted: Arc<AtomicBool>,
}

/// What [`PullThrough::join`] found.
pub enum Joined {
    /// The blob is stored already (a fetch just finished): serve it.
    Stored,
    /// A fetch in progress (joined or just started).
    Flight(Arc<Flight>),
}

type Flights = Arc<Mutex<HashMap<Digest, Arc<Flight>>>>;

/// The fetches in flight, the clients of the upstream registries, and
/// the blobs waiting to be prefetched.
#[derive(Default)]
pub struct PullThrough {
    flights: Flights,
    /// Clients by [`Upstream::key`] (registry, repository, credential),
    /// so connections and tokens are reused across blobs.
    clients: Mutex<HashMap<String, Arc<RemoteRegistry>>>,
    /// Recorded blobs to fetch before a client asks, oldest first.
    queue: Mutex<VecDeque<(RepositoryName, Digest)>>,
    /// Wakes [`PullThrough::prefetch`] when the queue grows.
    queued: tokio::sync::Notify,
    /// Whose body streams now.
    turns: Turns,
}

/// Who asked for a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A client's GET: someone waits for these bytes.
    Client,
    /// The background prefetch: nobody waits yet.
    Prefetch,
}

/// The one turn to stream a body from upstream, handed out first come,
/// first served (tokio's semaphore is fair). A fetch a client waits for
/// never waits behind a prefetch nobody waits for: it streams beside it.
#[derive(Clone)]
struct Turns {
    semaphore: Arc<tokio::sync::Semaphore>,
    /// Whether a client waits for the fetch holding the turn.
    holder: Arc<Mutex<Option<Arc<AtomicBool>>>>,
}

/// How often a waiting fetch looks at who holds the turn.
const TURN_LOOK: Duration = Duration::from_millis(50);

impl Default for Turns {
    fn default() -> Turns {
        Turns {
            semaphore: Arc::new(tokio::sync::Semaphore::new(1)),
            holder: Arc::default(),
        }
    }
}

/// The turn, held while a body streams; given back when dropped.
struct Turn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    holder: Arc<Mutex<Option<Arc<AtomicBool>>>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Turns {
    /// Wait for the turn, at most [`TURN_WAIT`]; `None` once that passed,
    /// or at once when a client waits for this fetch (`wanted`) and none
    /// for the one holding the turn: the fetch streams beside the others.
    async fn take(&self, wanted: &Arc<AtomicBool>) -> Option<Turn> {
        let acquire = self.semaphore.clone().acquire_owned();
        tokio::pin!(acquire);
        let give_up = tokio::time::sleep(TURN_WAIT);
        tokio::pin!(give_up);
        // Not at once: a client's GETs of several blobs come together, and
        // the one joining the prefetch's fetch may be a moment behind.
        let mut look = tokio::time::interval_at(tokio::time::Instant::now() + TURN_LOOK, TURN_LOOK);
        loop {
            tokio::select! {
                permit = &mut acquire => {
                    let permit = permit.ok()?;
                    *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some(wanted.clone());
                    return Some(Turn { _permit: permit, holder: self.holder.clone() });
                }
                _ = &mut give_up => return None,
                _ = look.tick() => {
                    let holder = self.holder.lock().unwrap_or_else(|p| p.into_inner());
                    let unwanted = holder.as_ref().is_some_and(|h| !h.load(Ordering::Acquire));
                    if unwanted && wanted.load(Ordering::Acquire) {
                        return None;
                    }
                }
            }
        }
    }
}

impl PullThrough {
    /// No fetch in flight.
    pub fn new() -> PullThrough {
        PullThrough::default()
    }

    /// Join the fetch of `digest` for `asker`, starting it from `source`
    /// when none runs. [`Joined::Stored`] when the blob is stored meanwhile.
    pub fn join(
        &self,
        storage: &Arc<Storage>,
        digest: &Digest,
        source: &BlobSource,
        asker: Asker,
    ) -> Result<Joined, ApiError> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = flights.get(digest) {
            if asker == Asker::Client {
                flight.wanted.store(true, Ordering::Release);
            }
            return Ok(Joined::Flight(flight.clone()));
        }
        // A fetch that just ended left it stored: no second fetch.
        if storage.holds_blob(digest) {
            return Ok(Joined::Stored);
        }
        let client = self.client(&source.upstream)?;
        let ingest = storage.begin_ingest(digest, source.size)?;
        let (progress, watched) = watch::channel(Progress::Connecting);
        let wanted = Arc::new(AtomicBool::new(asker == Asker::Client));
        let flight = Arc::new(Flight {
            size: source.size,
            file: ingest.reader(),
            progress: watched,
            wanted: wanted.clone(),
        });
        flights.insert(digest.clone(), flight.clone());
        drop(flights);
        tokio::spawn(fetch(
            self.flights.clone(),
            (self.turns.clone(), wanted),
            client,
            digest.clone(),
            source.clone(),
            ingest,
            progress,
        ));
        Ok(Joined::Flight(flight))
    }

    /// Queue `blobs` for prefetching.
    pub fn enqueue(&self, blobs: impl IntoIterator<Item = (RepositoryName, Digest)>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let before = queue.len();
        queue.extend(blobs);
        if queue.len() > before {
            self.queued.notify_one();
        }
    }

    /// Fetch the queued blobs one at a time, for ever (the server runs
    /// it on a task of its own). A client's GET does not wait for the
    /// queue: it joins or starts its own fetch at once, so it jumps ahead
    /// of every blob still queued; one fetch at a time leaves the
    /// bandwidth to such GETs. A prefetch that fails because the upstream
    /// registry is unavailable is tried again, `PREFETCH_ATTEMPTS` times
    /// in all with a growing pause; any other failure is logged by the
    /// fetch and left for a client's GET to try again.
    pub async fn prefetch(&self, storage: Arc<Storage>) {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some((repository, digest)) = next else {
                self.queued.notified().await;
                continue;
            };
            if storage.holds_blob(&digest) {
                continue;
            }
            let Some(source) = storage.sources().get(&repository, &digest) else {
                continue;
            };
            for attempt in 1..=PREFETCH_ATTEMPTS {
                let Ok(Joined::Flight(flight)) =
                    self.join(&storage, &digest, &source, Asker::Prefetch)
                else {
                    break;
                };
                match flight.finished().await {
                    Err(FetchError::Unavailable) if attempt < PREFETCH_ATTEMPTS => {
                        let pause = PREFETCH_PAUSE * attempt;
                        tracing::info!(
                            "prefetching blob {digest} of {repository}: attempt {attempt} of \
                             {PREFETCH_ATTEMPTS} failed, the next in {} s",
                            pause.as_secs()
                        );
                        tokio::time::sleep(pause).await;
                    }
                    _ => break,
                }
            }
        }
    }

    /// The client of `upstream`, made on first use.
    fn client(&self, upstream: &Upstream) -> Result<Arc<RemoteRegistry>, ApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = upstream.key();
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = RemoteRegistry::with_retry(endpoint(upstream), FETCH_RETRY).map_err(|e| {
            tracing::warn!("pulling blobs through from {}: {e}", upstream.describe());
            ApiError::from(FetchError::Refused)
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// How the client reaches `upstream`.
fn endpoint(upstream: &Upstream) -> Endpoint {
    let url = &upstream.url;
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut endpoint = Endpoint::new(authority).insecure(url.scheme() == "http");
    if let (Some(user), Some(password)) = (&upstream.username, &upstream.password) {
        endpoint = endpoint.with_credentials(user, password);
    }
    if let Some(ca) = &upstream.ca_pem {
        endpoint = endpoint.with_ca_pem(ca);
    }
    endpoint
}

/// Fetch `digest` from `source` into `ingest`, telling `progress`.
async fn fetch(
    flights: Flights,
    (turns, wanted): (Turns, Arc<AtomicBool>),
    client: Arc<RemoteRegistry>,
    digest: Digest,
    source: BlobSource,
    ingest: Ingest,
    progress: watch::Sender<Progress>,
) {
    let started = Instant::now();
    let progress = Arc::new(progress);
    let upstream = source.upstream.describe();
    let outcome: Result<(), (FetchError, String)> = async {
        let repository: RepositoryName = source
            .upstream
            .repository
            .parse()
            .map_err(|e| (FetchError::Refused, format!("{e}")))?;
        let body = client
            .blob_get(&repository, &digest)
            .await
            .map_err(|e| (classify(&e), e.to_string()))?;
        // Clients get the response's head now, and the bytes in turn.
        progress.send_replace(Progress::Streaming(0));
        let _turn = turns.take(&wanted).await;
        let on_disk = progress.clone();
        ingest
            .write(body, move |written| {
                on_disk.send_replace(Progress::Streaming(written));
            })
            .await
            .map_err(|e| (storage_failure(&e), e.to_string()))
    }
    .await;
    // Out of the map first: a GET from now on finds the blob stored, or
    // (after a failure) starts a fresh fetch.
    flights
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&digest);
    match outcome {
        Ok(()) => {
            tracing::info!(
                "pulled blob {digest} ({} bytes) through from {upstream} in {}ms",
                source.size,
                started.elapsed().as_millis()
            );
            progress.send_replace(Progress::Done);
        }
        Err((failure, cause)) => {
            tracing::warn!(
                "pulling blob {digest} through from {upstream} failed after {}ms, nothing stored: {cause}",
                started.elapsed().as_millis()
            );
            progress.send_replace(Progress::Failed(failure));
        }
    }
}

/// What a client error means for the client of this registry.
fn classify(error: &crate::client::Error) -> FetchError {
    match &error.kind {
        ErrorKind::NotFound => FetchError::Gone,
        ErrorKind::Connect(_)
        | ErrorKind::Timeout
        | ErrorKind::Body(_)
        | ErrorKind::TooManyRequests => FetchError::Unavailable,
        ErrorKind::Status if error.status.is_some_and(|s| s.is_server_error()) => {
            FetchError::Unavailable
        }
        _ => FetchError::Refused,
    }
}

fn storage_failure(error: &StorageError) -> FetchError {
    match error {
        StorageError::DigestMismatch { .. } | StorageError::SizeMismatch { .. } => {
            FetchError::Corrupt
        }
        // The upstream's body broke off or stalled.
        StorageError::Body(_) => FetchError::Unavailable,
        _ => FetchError::Storage,
    }
}

impl Flight {
    /// Wait until the upstream registry has answered with the blob
    /// (bytes may follow) or the fetch failed.
    pub async fn started(&self) -> Result<(), FetchError> {
        self.reached(|p| *p != Progress::Connecting).await
    }

    /// Wait until the blob is stored, or the fetch failed.
    pub async fn finished(&self) -> Result<(), FetchError> {
        self.reached(|p| matches!(p, Progress::Done | Progress::Failed(_)))
            .await
    }

    /// Wait until the fetch's progress satisfies `stage`; its failure (or a
    /// fetch task gone without a word) is the error.
    async fn reached(&self, stage: impl FnMut(&Progress) -> bool) -> Result<(), FetchError> {
        let mut progress = self.progress.clone();
        let state = progress
            .wait_for(stage)
            .await
            .map(|p| *p)
            .unwrap_or(Progress::Failed(FetchError::Storage));
        match state {
            Progress::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The blob's bytes as they arrive; the stream fails (and the
    /// response body with it) when the fetch does, and its last byte
    /// comes only once the digest is verified.
    pub fn body(self: Arc<Self>) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        let size = self.size;
        self.range(0, size)
    }

    /// Bytes `start..end` of the blob as they arrive, as [`Flight::body`]
    /// streams them: a range that ends before the last byte is served as
    /// soon as it is written (a client resuming a download checks the
    /// whole digest itself); one that holds the last byte ends only once
    /// the digest is verified.
    pub fn range(
        self: Arc<Self>,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
        let progress = self.progress.clone();
        futures_util::stream::unfold(
            (self, progress, start, false),
            move |(flight, mut progress, sent, over)| async move {
                if over {
                    return None;
                }
                loop {
                    let state = *progress.borrow_and_update();
                    let available = match state {
                        Progress::Done => flight.size,
                        Progress::Streaming(n) => n.min(flight.size.saturating_sub(1)),
                        Progress::Connecting => 0,
                        Progress::Failed(e) => {
                            let error = std::io::Error::other(e.to_string());
                            return Some((Err(error), (flight, progress, sent, true)));
                        }
                    }
                    .min(end);
                    // The blob's last byte (an empty blob's end) waits for
                    // the digest.
                    if sent >= end && (end < flight.size || state == Progress::Done) {
                        return None;
                    }
                    if sent < available {
                        let len = ((available - sent) as usize).min(READ_CHUNK);
                        return match flight.file.read_at(sent, len).await {
                            Ok(bytes) if !bytes.is_empty() => {
                                let next = sent + bytes.len() as u64;
                                Some((Ok(bytes), (flight, progress, next, false)))
                            }
                            Ok(_) => {
                                let error = std::io::Error::other("the fetched file is short");
                                Some((Err(error), (flight, progress, sent, true)))
                            }
                            Err(e) => Some((Err(e), (flight, progress, sent, true))),
                        };
                    }
                    if progress.changed().await.is_err() {
                        // The fetch task is gone without a verdict.
                        if !matches!(*progress.borrow(), Progress::Done | Progress::Failed(_)) {
                            let error = std::io::Error::other("the fetch ended early");
                            return Some((Err(error), (flight, progress, sent, true)));
                        }
                    }
                }
            },
        )
    }
}
