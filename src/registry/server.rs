//! Serving the router: one listener per configured address, TLS with
//! rustls (ALPN `h2` and `http/1.1`), HTTP/1.1 and HTTP/2 via hyper-util,
//! request logs to stderr. Runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
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

use super::config::{ServerConfig, TlsFiles};

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
    for addr in &config.listen {
        let listener = bind(*addr, &config.listen)?;
        tracing::info!(
            "listening on {addr} ({})",
            if tls.is_some() { "https" } else { "http" }
        );
        tokio::spawn(accept_loop(listener, tls.clone(), app.clone()));
    }
    tokio::spawn(tidy_uploads(state.clone()));
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

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, app: axum::Router) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // Large uploads over HTTP/2 need more than the default 64 KiB window.
            builder.http2().adaptive_window(true);
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!("TLS handshake with {peer}: {e}");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
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
