//! A fault-injecting proxy: plain HTTP on loopback in front of one
//! registry, failing chosen requests (a status, or a reset connection) in
//! order before passing the rest on, and counting what it saw. The copy
//! engine's retry tests use it.

use std::time::Duration;

/// What the proxy does instead of passing a request on.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// Answer with this status (and `Retry-After: 1` for a 429).
    Status(u16),
    /// Close the connection without answering (a reset to the client).
    Reset,
}

/// The failures for the requests of `method` whose path and query contain
/// `path`, in order; the requests after them are passed on.
#[derive(Clone)]
pub struct Fault {
    method: &'static str,
    path: String,
    failures: Vec<Failure>,
}

pub fn fault(method: &'static str, path: impl Into<String>, failures: &[Failure]) -> Fault {
    Fault {
        method,
        path: path.into(),
        failures: failures.to_vec(),
    }
}

/// A plain-HTTP proxy on loopback in front of one registry that injects
/// [`Fault`]s and counts, per fault, the requests it matched.
pub struct FlakyProxy {
    /// `host:port` to send the requests to (plain HTTP).
    pub authority: String,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    faults: std::sync::Mutex<Vec<(Fault, usize)>>,
    /// How long each blob upload (a PUT to `/blobs/uploads/`) is held
    /// before it is passed on, so that concurrent uploads overlap.
    upload_delay: Duration,
    /// Blob uploads in the proxy now, and the most at once.
    uploads: std::sync::atomic::AtomicUsize,
    uploads_peak: std::sync::atomic::AtomicUsize,
}

impl FlakyProxy {
    pub async fn start(upstream: &str, faults: Vec<Fault>) -> FlakyProxy {
        FlakyProxy::start_with_upload_delay(upstream, faults, Duration::ZERO).await
    }

    /// [`FlakyProxy::start`], holding each blob upload `upload_delay`.
    pub async fn start_with_upload_delay(
        upstream: &str,
        faults: Vec<Fault>,
        upload_delay: Duration,
    ) -> FlakyProxy {
        speculative_images::crypto::install_default();
        let state = std::sync::Arc::new(ProxyState {
            upstream: upstream.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .http1_only()
                .build()
                .unwrap(),
            faults: std::sync::Mutex::new(faults.into_iter().map(|f| (f, 0)).collect()),
            upload_delay,
            uploads: Default::default(),
            uploads_peak: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        proxy_request(state.clone(), request)
                    });
                    // A service error makes hyper close the connection
                    // without an answer: that is how `Failure::Reset` works.
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        FlakyProxy { authority, state }
    }

    /// The most blob uploads that were in the proxy at once.
    pub fn uploads_peak(&self) -> usize {
        self.state
            .uploads_peak
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests fault number `i` matched (failed or passed on).
    pub fn seen(&self, i: usize) -> usize {
        self.state.faults.lock().unwrap()[i].1
    }
}

async fn proxy_request(
    state: std::sync::Arc<ProxyState>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<axum::response::Response, std::io::Error> {
    use std::sync::atomic::Ordering::SeqCst;
    let upload =
        request.method() == hyper::Method::PUT && request.uri().path().contains("/blobs/uploads/");
    if !upload {
        return proxy_request_inner(state, request).await;
    }
    let now = state.uploads.fetch_add(1, SeqCst) + 1;
    state.uploads_peak.fetch_max(now, SeqCst);
    tokio::time::sleep(state.upload_delay).await;
    let response = proxy_request_inner(state.clone(), request).await;
    state.uploads.fetch_sub(1, SeqCst);
    response
}

async fn proxy_request_inner(
    state: std::sync::Arc<ProxyState>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<axum::response::Response, std::io::Error> {
    use http_body_util::BodyExt as _;
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // Read the whole body first, as a server that fails after receiving it.
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let failure = {
        let mut faults = state.faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|(f, _)| f.method == parts.method.as_str() && path.contains(&f.path))
            .and_then(|(fault, seen)| {
                *seen += 1;
                fault.failures.get(*seen - 1).copied()
            })
    };
    match failure {
        Some(Failure::Reset) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "dropped by the test proxy",
            ))
        }
        Some(Failure::Status(status)) => {
            let mut response = axum::response::Response::new(axum::body::Body::from(
                r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#,
            ));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            if status == 429 {
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            }
            return Ok(response);
        }
        None => {}
    }
    let mut forward = state.http.request(
        parts.method.clone(),
        format!("http://{}{path}", state.upstream),
    );
    forward = crate::support::forward_headers(forward, &parts.headers);
    let upstream = forward
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let mut response = axum::response::Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !matches!(name.as_str(), "transfer-encoding" | "connection") {
            response = response.header(name, value);
        }
    }
    let bytes = upstream.bytes().await.map_err(std::io::Error::other)?;
    Ok(response.body(axum::body::Body::from(bytes)).unwrap())
}
