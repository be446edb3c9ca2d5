//! Serving the router: one listener per configured address, TLS with
//! rustls (ALPN `h2` and `http/1.1`), HTTP/1.1 and HTTP/2 via hyper-util,
//! request logs to stderr. Runs until SIGTERM or SIGINT.
//!
//! Every stage of a connection has a deadline ([`Limits`]): the TLS
//! handshake, the request head (HTTP/1.1, and the first request of any
//! connection), idle time between requests, and requests whose bodies
//! stop moving. Connections are capped in total and per client address,
//! under the file descriptor limit (raised to its hard limit at start).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use tower::ServiceExt as _;

use super::config::{Limits, ServerConfig, TlsFiles};

/// Run the registry described by `config` until a termination signal.
pub fn serve(config: &ServerConfig) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

fn init_logging() {
    // `REGISTRY_LOG` takes `level` or `target=level,...` directives.
    let filter = std::env::var("REGISTRY_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_target(false),
        )
        .try_init();
}

async fn run(config: &ServerConfig) -> anyhow::Result<()> {
    let state = super::state(config)?;
    let app = super::app(state.clone());
    let tls = match &config.tls {
        Some(files) => Some(TlsAcceptor::from(Arc::new(tls_config(files)?))),
        None => None,
    };
    anyhow::ensure!(
        !config.listen.is_empty(),
        "the config lists no address to listen on"
    );
    let limits = Arc::new(config.limits.clone());
    let gate = Arc::new(Gate::new(
        connection_cap(limits.max_connections),
        limits.max_connections_per_client,
    ));
    for addr in &config.listen {
        let listener = bind(*addr, &config.listen)?;
        tracing::info!(
            "listening on {addr} ({})",
            if tls.is_some() { "https" } else { "http" }
        );
        tokio::spawn(accept_loop(
            listener,
            tls.clone(),
            app.clone(),
            gate.clone(),
            limits.clone(),
        ));
    }
    tokio::spawn(tidy_uploads(state.clone()));
    // Blobs recorded for prefetching that a restart interrupted.
    state
        .pull_through
        .enqueue(state.storage.sources().prefetched());
    tokio::spawn({
        let state = state.clone();
        async move { state.pull_through.prefetch(state.storage.clone()).await }
    });
    super::prune_schedule::start(&state, config.prune.as_ref());
    shutdown_signal().await;
    tracing::info!("stopping");
    Ok(())
}

/// Every few minutes, close idle uploads and remove abandoned ones.
async fn tidy_uploads(state: super::AppState) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(300);
    const IDLE: std::time::Duration = std::time::Duration::from_secs(600);
    const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    loop {
        tokio::time::sleep(EVERY).await;
        state.storage.tidy_uploads(IDLE, STALE).await;
    }
}

/// Bind `addr`. An IPv6 wildcard also takes IPv4 unless the config lists
/// the IPv4 wildcard on the same port too.
fn bind(addr: SocketAddr, all: &[SocketAddr]) -> anyhow::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .context("creating a socket")?;
    if addr.is_ipv6() {
        let v4_too = all
            .iter()
            .any(|a| a.is_ipv4() && a.ip().is_unspecified() && a.port() == addr.port());
        socket
            .set_only_v6(!addr.ip().is_unspecified() || v4_too)
            .context("setting IPV6_V6ONLY")?;
    }
    socket
        .set_reuse_address(true)
        .context("setting SO_REUSEADDR")?;
    socket.set_nonblocking(true).context("setting O_NONBLOCK")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket
        .listen(1024)
        .with_context(|| format!("listening on {addr}"))?;
    TcpListener::from_std(socket.into()).with_context(|| format!("listening on {addr}"))
}

/// How many connections may be open, in total and per client address.
/// A connection above either cap is closed as soon as it is accepted, so
/// one client cannot take every file descriptor from the others.
struct Gate {
    total: Arc<tokio::sync::Semaphore>,
    per_client: std::sync::Mutex<HashMap<IpAddr, usize>>,
    per_client_max: usize,
    /// When a refusal was last logged (seconds since `started`).
    last_warning: AtomicU64,
    started: Instant,
}

/// One admitted connection; frees its place when dropped.
struct Admitted {
    gate: Arc<Gate>,
    client: IpAddr,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Gate {
    fn new(max: usize, per_client_max: usize) -> Gate {
        Gate {
            total: Arc::new(tokio::sync::Semaphore::new(max)),
            per_client: std::sync::Mutex::new(HashMap::new()),
            per_client_max,
            last_warning: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn admit(self: &Arc<Gate>, peer: SocketAddr) -> Option<Admitted> {
        let client = peer.ip().to_canonical();
        let Ok(slot) = self.total.clone().try_acquire_owned() else {
            self.warn(format_args!("{client}: every connection is taken"));
            return None;
        };
        let mut counts = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(client).or_insert(0);
        if *count >= self.per_client_max {
            drop(counts);
            self.warn(format_args!(
                "{client}: already {} connections open",
                self.per_client_max
            ));
            return None;
        }
        *count += 1;
        Some(Admitted {
            gate: self.clone(),
            client,
            _slot: slot,
        })
    }

    /// Log a refused connection, at most once every ten seconds.
    fn warn(&self, what: std::fmt::Arguments<'_>) {
        let now = self.started.elapsed().as_secs() + 10;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("refusing a connection from {what}");
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self
            .gate
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    gate: Arc<Gate>,
    limits: Arc<Limits>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = gate.admit(peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let app = app.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            match tls {
                Some(acceptor) => {
                    let handshake = Duration::from_secs(limits.tls_handshake_secs);
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, peer, app, &limits).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer}: too slow"),
                    }
                }
                None => serve_connection(stream, peer, app, &limits).await,
            }
        });
    }
}

/// Serve one connection (after TLS) until it ends or a deadline of
/// `limits` closes it.
async fn serve_connection<I>(io: I, peer: SocketAddr, app: axum::Router, limits: &Limits)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let watched = activity.clone();
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let guard = InFlight::start(&watched);
        let (on_read, on_send) = (watched.clone(), watched.clone());
        let request = request.map(|body| {
            Body::new(body.map_frame(move |frame| {
                on_read.touch();
                frame
            }))
        });
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(response.map(move |body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &guard;
                    on_send.touch();
                    frame
                }))
            }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.request_head_secs));
    builder
        .http2()
        .timer(TokioTimer::new())
        // Large uploads over HTTP/2 need more than the default 64 KiB window.
        .adaptive_window(true)
        .max_concurrent_streams(limits.http2_max_streams)
        // What waits for a client's window, per stream (default 400 KiB).
        .max_send_buf_size(64 * 1024)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let tick = Duration::from_millis(
        (limits
            .request_head_secs
            .min(limits.idle_secs)
            .min(limits.stall_secs)
            * 1000
            / 4)
        .clamp(100, 5000),
    );
    let mut ticks = tokio::time::interval(tick);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {peer}: {e}");
                }
                return;
            }
            _ = ticks.tick() => {
                if let Some(reason) = activity.overdue(limits) {
                    tracing::debug!("closing the connection from {peer}: {reason}");
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), connection.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// What a connection did lately: requests in flight, requests served,
/// and when a request last started or ended or moved a byte of a body.
struct Activity {
    started: Instant,
    /// Milliseconds since `started`.
    last: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Why the connection should be closed now, if it should.
    fn overdue(&self, limits: &Limits) -> Option<&'static str> {
        let quiet = self.started.elapsed().as_millis() as u64 - self.last.load(Ordering::Relaxed);
        let over = |secs: u64| quiet >= secs.saturating_mul(1000);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            over(limits.stall_secs).then_some("its requests moved no byte")
        } else if self.requests.load(Ordering::Relaxed) == 0 {
            over(limits.request_head_secs).then_some("no request arrived")
        } else {
            over(limits.idle_secs).then_some("idle")
        }
    }
}

/// A request in flight, from its head to the end of its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The most connections the process's file descriptors allow, leaving a
/// quarter for files (blobs served, uploads written) and listeners.
fn connection_cap(configured: usize) -> usize {
    let soft = raise_fd_limit();
    let allowed = (soft / 4 * 3).max(16) as usize;
    if configured > allowed {
        tracing::info!(
            "serving at most {allowed} connections (not {configured}): \
             the file descriptor limit is {soft}"
        );
    }
    configured.min(allowed)
}

/// Raise the soft limit on open files to the hard one; returns the soft
/// limit now in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// rustls server settings from the PEM chain and key.
fn tls_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading certificates {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates {}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in {}",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let provider = crate::crypto::provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("loading the certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
