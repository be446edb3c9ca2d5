//! A misbehaving registry front, for the client's trust boundaries: an
//! HTTPS proxy on loopback in front of a real registry that passes
//! requests on, except where its [`Misbehaviour`] says it rewrites what
//! the registry says (the token realm, an upload `Location`, a `Link`) to
//! point at another origin, redirects blob downloads there, or answers
//! with an endless body.
//!
//! The other origin is two more listeners on loopback, one over HTTPS
//! (the front's certificate) and one over plain HTTP, standing in for a
//! storage or token service: they record what they are sent (above all
//! whether an `Authorization` header came along) and pass it on to the
//! registry, adding the registry's credentials to a request that has
//! none, as a storage service trusting its signed URLs would serve it.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;

/// Where the front sends something the registry would have kept at home.
#[derive(Clone, Copy, Debug, Default)]
pub struct Misbehaviour {
    /// Name this token realm instead of the registry's own.
    pub realm: Option<RealmAt>,
    /// Answer blob GETs with a 307 to the other origin (`true`: over
    /// plain HTTP, `false`: over HTTPS).
    pub redirect_blobs: Option<bool>,
    /// Hand out upload `Location`s on the other origin (`true`: over
    /// plain HTTP, `false`: over HTTPS).
    pub uploads_elsewhere: Option<bool>,
    /// Add to tag lists a `Link` to a next page on the other origin.
    pub links_elsewhere: bool,
    /// Answer tag list GETs with one tag and a `Link` to the next page,
    /// for ever.
    pub endless_pages: bool,
    /// Answer manifest GETs with a 500 and an endless body.
    pub endless_error: bool,
    /// Answer manifest GETs with a 200 and an endless manifest.
    pub endless_manifest: bool,
    /// Hold token requests whose query contains this text for 3 s.
    pub slow_tokens: Option<&'static str>,
}

/// A token realm the front names instead of the registry's.
#[derive(Clone, Copy, Debug)]
pub enum RealmAt {
    /// The other origin over plain HTTP, by IP (`http://127.0.0.1:P/...`).
    PlainHttp,
    /// The other origin over HTTPS, named `localhost` (another host and
    /// port than the front's `127.0.0.1:P`).
    OtherHost,
}

/// One request that reached the other origin.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header it carried, if any.
    pub authorization: Option<String>,
}

/// A running front and its other origin; stopped when the test's runtime
/// ends.
pub struct Front {
    /// `127.0.0.1:port` of the front (HTTPS).
    pub authority: String,
    /// `127.0.0.1:port` of the other origin over HTTPS.
    pub other: String,
    /// `127.0.0.1:port` of the other origin over plain HTTP.
    pub other_plain: String,
    /// PEM of the CA clients of the front (and the other origin) trust.
    pub ca_pem: String,
    state: Arc<State>,
}

struct State {
    upstream: String,
    upstream_basic: String,
    http: reqwest::Client,
    misbehaviour: Misbehaviour,
    other: String,
    other_plain: String,
    seen_elsewhere: Mutex<Vec<Seen>>,
    endless_sent: AtomicU64,
    pages_sent: AtomicU64,
}

#[derive(Clone, Copy)]
enum Side {
    Front,
    Elsewhere,
}

impl Front {
    /// A front for the HTTPS registry at `upstream` (whose certificate is
    /// signed by `upstream_ca`), with its user's credentials for the
    /// other origin to add.
    pub async fn start(
        upstream: &str,
        upstream_ca: &str,
        username: &str,
        password: &str,
        misbehaviour: Misbehaviour,
    ) -> Front {
        speculative_images::crypto::install_default();
        let pki = speculative_images::pki::generate(&["127.0.0.1".into(), "localhost".into()])
            .expect("certificates");
        let tls = tls_acceptor(&pki.chain_pem, &pki.key_pem);
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = format!("{username}:{password}");
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            upstream_basic: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .add_root_certificate(
                    reqwest::Certificate::from_pem(upstream_ca.as_bytes()).unwrap(),
                )
                .http1_only()
                .build()
                .unwrap(),
            misbehaviour,
            other: other.local_addr().unwrap().to_string(),
            other_plain: plain.local_addr().unwrap().to_string(),
            seen_elsewhere: Mutex::default(),
            endless_sent: AtomicU64::new(0),
            pages_sent: AtomicU64::new(0),
        });
        let authority = front.local_addr().unwrap().to_string();
        serve(front, Some(tls.clone()), state.clone(), Side::Front);
        serve(other, Some(tls), state.clone(), Side::Elsewhere);
        serve(plain, None, state.clone(), Side::Elsewhere);
        Front {
            authority,
            other: state.other.clone(),
            other_plain: state.other_plain.clone(),
            ca_pem: pki.ca_pem,
            state,
        }
    }

    /// The requests that reached the other origin, in order.
    pub fn seen_elsewhere(&self) -> Vec<Seen> {
        self.state.seen_elsewhere.lock().unwrap().clone()
    }

    /// Pages of the endless tag list sent so far.
    pub fn pages_sent(&self) -> u64 {
        self.state.pages_sent.load(SeqCst)
    }

    /// Bytes of endless bodies sent so far.
    pub fn endless_sent(&self) -> u64 {
        self.state.endless_sent.load(SeqCst)
    }
}

fn tls_acceptor(chain_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config =
        rustls::ServerConfig::builder_with_provider(speculative_images::crypto::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    side: Side,
) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (state, tls) = (state.clone(), tls.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(state.clone(), side, request));
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                match tls {
                    Some(tls) => {
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = builder.serve_connection(io, service).await;
                    }
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = builder.serve_connection(io, service).await;
                    }
                }
            });
        }
    });
}

async fn handle(
    state: Arc<State>,
    side: Side,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<Response, std::io::Error> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = parts.method.as_str().to_string();
    let m = state.misbehaviour;
    if let Side::Elsewhere = side {
        state.seen_elsewhere.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            authorization: parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        });
    }
    if let Side::Front = side {
        let manifest_get = method == "GET" && path.contains("/manifests/");
        if manifest_get && (m.endless_error || m.endless_manifest) {
            return Ok(endless(&state, m.endless_error));
        }
        if let Some(slow) = m.slow_tokens {
            if path.starts_with("/auth/token") && path.contains(slow) {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            }
        }
        if m.endless_pages && method == "GET" && path.contains("/tags/list") {
            let n = state.pages_sent.fetch_add(1, SeqCst);
            let page = path.split('?').next().unwrap_or_default();
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .header("link", format!("<{page}?n=1&last=t{n}>; rel=\"next\""))
                .body(Body::from(format!(r#"{{"tags":["t{}"]}}"#, n + 1)))
                .unwrap());
        }
        if let (Some(plain), true) = (
            m.redirect_blobs,
            method == "GET" && path.contains("/blobs/"),
        ) {
            let target = match plain {
                true => format!("http://{}{path}", state.other_plain),
                false => format!("https://{}{path}", state.other),
            };
            return Ok(Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header("location", target)
                .body(Body::empty())
                .unwrap());
        }
    }
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let mut forward = state.http.request(
        parts.method.clone(),
        format!("https://{}{path}", state.upstream),
    );
    forward = crate::support::forward_headers(forward, &parts.headers);
    if let (Side::Elsewhere, None) = (side, parts.headers.get("authorization")) {
        forward = forward.header("authorization", &state.upstream_basic);
    }
    let upstream = forward
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = upstream.status();
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in upstream.headers() {
        if matches!(name.as_str(), "transfer-encoding" | "connection") {
            continue;
        }
        let value = match (side, name.as_str()) {
            (Side::Front, "www-authenticate") => rewrite_realm(&state, value),
            (Side::Front, "location") if path.contains("/blobs/uploads/") => {
                let location = value.to_str().unwrap_or_default();
                let relative = location
                    .find("/v2/")
                    .map(|i| &location[i..])
                    .unwrap_or(location);
                match m.uploads_elsewhere {
                    None => value.clone(),
                    Some(true) => {
                        let url = format!("http://{}{relative}", state.other_plain);
                        HeaderValue::from_str(&url).unwrap()
                    }
                    Some(false) => {
                        let url = format!("https://{}{relative}", state.other);
                        HeaderValue::from_str(&url).unwrap()
                    }
                }
            }
            _ => value.clone(),
        };
        response = response.header(name, value);
    }
    if let (Side::Front, true) = (side, m.links_elsewhere && path.contains("/tags/list")) {
        let page = path.split('?').next().unwrap_or_default();
        response = response.header(
            "link",
            format!(
                "<https://{}{page}?n=1000&last=zzzz>; rel=\"next\"",
                state.other
            ),
        );
    }
    let bytes = upstream.bytes().await.map_err(std::io::Error::other)?;
    Ok(response.body(Body::from(bytes)).unwrap())
}

/// The registry's `WWW-Authenticate`, its realm replaced as configured.
fn rewrite_realm(state: &State, value: &HeaderValue) -> HeaderValue {
    let text = value.to_str().unwrap_or_default();
    let realm = match state.misbehaviour.realm {
        None => return value.clone(),
        Some(RealmAt::PlainHttp) => format!("http://{}/auth/token", state.other_plain),
        Some(RealmAt::OtherHost) => {
            let port = state.other.rsplit(':').next().unwrap_or_default();
            format!("https://localhost:{port}/auth/token")
        }
    };
    let Some(start) = text.find("realm=\"") else {
        return value.clone();
    };
    let start = start + "realm=\"".len();
    let end = start + text[start..].find('"').unwrap_or(0);
    HeaderValue::from_str(&format!("{}{realm}{}", &text[..start], &text[end..])).unwrap()
}

/// A response that never ends: 64 KiB chunks, counted as they are taken.
fn endless(state: &Arc<State>, as_error: bool) -> Response {
    let counter = state.clone();
    let chunk = bytes::Bytes::from(vec![b' '; 64 << 10]);
    let stream = futures_util::stream::repeat(chunk).map(move |c| {
        counter.endless_sent.fetch_add(c.len() as u64, SeqCst);
        Ok::<_, std::io::Error>(c)
    });
    let (status, content_type) = match as_error {
        true => (StatusCode::INTERNAL_SERVER_ERROR, "application/json"),
        false => (StatusCode::OK, "application/vnd.oci.image.manifest.v1+json"),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .unwrap()
}
