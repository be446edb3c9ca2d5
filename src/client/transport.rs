//! The transport of one registry: HTTP clients with that registry's TLS
//! trust (connections reused), retries with backoff for transient
//! failures, and the conversion of every failure into a typed [`Error`].
//! It only sends requests: authentication is the layer above
//! (`auth.rs`), which hands it the `Authorization`
//! header to send, if any.
//!
//! Two connection pools per registry: manifests, HEADs, uploads' POSTs and
//! tokens use HTTP/2 where the registry offers it (one connection, many
//! small requests at once); blob bodies go over HTTP/1.1, one connection
//! each. Measured with 8 x 64 MiB between two docker-registry instances on
//! this 2-core machine: over HTTP/1.1 the registries spent ~20% less CPU
//! and the copy took 5.8 s instead of 8.3 s (Go's HTTP/2 server handles a
//! connection's frames in one goroutine and copies bodies through a pipe).
//!
//! Trust: the transport tells whether a URL is on the registry's own
//! origin (scheme, host and port of its base URL), where the layer above
//! may send credentials; a URL on another origin (an upload `Location`, a
//! `Link` page, a blob redirect) is sent without them, and a plain
//! `http://` URL handed out by an `https` registry is refused
//! ([`ErrorKind::Refused`]).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::endpoint::Endpoint;
use super::error::{redact_url, root_cause, Error, ErrorKind, SpecError};
use super::limits::{read_prefix, ERROR_BODY_LIMIT};
use super::tls;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// How often and how patiently to retry transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Longest wait honoured from a `Retry-After` header.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            backoff: Duration::from_millis(200),
            max_wait: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempt.min(16))
    }
}

/// Connection timeout (TCP and TLS handshake). A request that timed out is
/// retried once only, whatever the [`RetryPolicy`] (waiting longer rarely
/// cures a silent registry): a registry that refuses connections fails
/// within the policy's retries and backoff (under 2 s by default), one
/// that accepts connections but never completes the handshake within
/// `2 × CONNECT_TIMEOUT` plus one backoff (about 10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence in the middle of a response; a registry that stops
/// answering fails a request within `2 × READ_TIMEOUT` plus one backoff.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries after a timed-out attempt (see [`CONNECT_TIMEOUT`]).
const TIMEOUT_RETRIES: u32 = 1;

/// Which connection pool a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// Small requests: HTTP/2 where offered.
    Metadata,
    /// Blob bodies: HTTP/1.1, a connection per transfer.
    Bulk,
}

/// A request body.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// A body held in memory, so the request can be repeated.
    Bytes(Bytes),
}

/// One registry's HTTP transport.
#[derive(Debug)]
pub struct Transport {
    pub(crate) endpoint: Endpoint,
    /// The registry's own origin: where credentials may go.
    origin: url::Url,
    http: reqwest::Client,
    bulk: reqwest::Client,
    retry: RetryPolicy,
}

impl Transport {
    /// A transport for `endpoint`: its own CA (with pinning, see `tls.rs`)
    /// when given, the system roots otherwise.
    pub fn new(endpoint: Endpoint, retry: RetryPolicy) -> Result<Transport, Error> {
        crate::crypto::install_default();
        let origin = url::Url::parse(&endpoint.base_url()).map_err(|e| {
            Error::new(
                ErrorKind::Url(format!(
                    "{:?} is not a registry address: {e}",
                    endpoint.registry
                )),
                &endpoint.registry,
                "setting up the HTTP client",
            )
        })?;
        Ok(Transport {
            origin,
            http: build_client(&endpoint, true)?,
            bulk: build_client(&endpoint, false)?,
            endpoint,
            retry,
        })
    }

    /// The registry's connection settings.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether `url` is on the registry's own origin (and may carry its
    /// credentials), or [`ErrorKind::Refused`] for a plain `http://` URL
    /// from an `https` registry, [`ErrorKind::Url`] for no URL at all.
    pub(crate) fn own_origin(&self, method: &Method, url: &str) -> Result<bool, Error> {
        let action = || format!("{method} {}", redact_url(url));
        let target = url::Url::parse(url).map_err(|e| {
            Error::new(
                ErrorKind::Url(format!("{:?}: {e}", redact_url(url))),
                &self.endpoint.registry,
                action(),
            )
        })?;
        if target.scheme() != "https" && self.origin.scheme() == "https" {
            return Err(Error::new(
                ErrorKind::Refused(format!(
                    "registry {} handed out {}, a URL over plain {}, and is itself \
                     reached over https",
                    self.endpoint.registry,
                    redact_url(url),
                    target.scheme()
                )),
                &self.endpoint.registry,
                action(),
            ));
        }
        Ok(same_origin(&target, &self.origin))
    }

    /// `https://host:port/v2/<path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.endpoint.base_url())
    }

    /// Send a repeatable request through the pool `channel`, with
    /// `authorization` if given, retrying transient failures (see
    /// [`Transport::execute`]). Any status is returned; use
    /// [`Transport::check_status`] to check it.
    pub(crate) async fn send(
        &self,
        channel: Channel,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        body: &Body,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response, Error> {
        let client = self.pool(channel);
        self.execute(method, url, || {
            let mut request = client.request(method.clone(), url).headers(headers.clone());
            if let Some(h) = authorization {
                request = request.header(AUTHORIZATION, h.clone());
            }
            match body {
                Body::Empty => request,
                Body::Bytes(b) => request.body(b.clone()),
            }
        })
        .await
    }

    /// Send a request whose body is a stream, over the bulk pool (sent
    /// once, never retried here: the caller restarts the whole transfer).
    pub(crate) async fn send_once(
        &self,
        method: &Method,
        url: &str,
        authorization: Option<HeaderValue>,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let mut request = self.bulk.request(method.clone(), url);
        if let Some(h) = authorization {
            request = request.header(AUTHORIZATION, h);
        }
        build(request).send().await.map_err(|e| {
            // A failing body stream (a broken source, a digest mismatch
            // found on the way) is the real cause: return it.
            body_failure(&e).unwrap_or_else(|| self.classify(method, url, &e))
        })
    }

    /// The client of pool `channel`.
    pub(crate) fn pool(&self, channel: Channel) -> &reqwest::Client {
        match channel {
            Channel::Metadata => &self.http,
            Channel::Bulk => &self.bulk,
        }
    }

    /// Send the request `build` makes, again after a backoff while the
    /// failure is transient (connection failures, 5xx, 429) and retries
    /// remain.
    pub(crate) async fn execute(
        &self,
        method: &Method,
        url: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, Error> {
        let mut attempt = 0;
        let mut timeouts = 0;
        loop {
            let outcome = build().send().await;
            let wait = match outcome {
                Err(e) => {
                    let error = self.classify(method, url, &e);
                    if e.is_timeout() {
                        timeouts += 1;
                    }
                    if !error.is_retryable()
                        || attempt >= self.retry.retries
                        || timeouts > TIMEOUT_RETRIES
                    {
                        return Err(error);
                    }
                    self.retry.delay(attempt)
                }
                Ok(r) if is_transient(r.status()) && attempt < self.retry.retries => {
                    retry_after(r.headers())
                        .map(|d| d.min(self.retry.max_wait))
                        .unwrap_or_else(|| self.retry.delay(attempt))
                }
                Ok(r) => return Ok(r),
            };
            tracing::debug!(%method, url = %redact_url(url), attempt, ?wait, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// `response` if its status is one of `expected`, else the error it
    /// describes (status, the spec's error codes from its body).
    pub(crate) async fn check_status(
        &self,
        response: Response,
        action: &str,
        expected: &[StatusCode],
    ) -> Result<Response, Error> {
        let status = response.status();
        if expected.contains(&status) {
            return Ok(response);
        }
        let kind = match status {
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ErrorKind::Denied,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
            _ => ErrorKind::Status,
        };
        // Only the start of an error body is read: a registry answering
        // with an endless one cannot grow our memory.
        let body = read_prefix(response, ERROR_BODY_LIMIT).await;
        let codes = serde_json::from_slice::<SpecErrors>(&body)
            .map(|e| e.errors)
            .unwrap_or_default();
        let mut error = Error::new(kind, &self.endpoint.registry, action);
        error.status = Some(status);
        error.codes = codes;
        error.username = self
            .endpoint
            .credentials
            .as_ref()
            .map(|c| c.username.clone());
        Err(error)
    }

    /// A typed error for a request that got no answer.
    pub(crate) fn classify(&self, method: &Method, url: &str, e: &reqwest::Error) -> Error {
        let action = format!("{method} {}", redact_url(url));
        let cause = root_cause(e);
        let kind = if let Some(refused) = find_cause::<Downgrade>(e) {
            ErrorKind::Refused(refused.to_string())
        } else if e.is_redirect() {
            ErrorKind::Url(cause)
        } else if e.is_builder() {
            ErrorKind::Url(format!("{:?}: {cause}", redact_url(url)))
        } else if let Some(tls) = tls_cause(e) {
            ErrorKind::Tls(tls)
        } else if e.is_connect() {
            ErrorKind::Connect(cause)
        } else if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Body(cause)
        };
        Error::new(kind, &self.endpoint.registry, action)
    }
}

/// An HTTP client for `endpoint`: its own CA (with pinning, see `tls.rs`)
/// when given, the system roots otherwise; HTTP/2 offered when `http2`.
fn build_client(endpoint: &Endpoint, http2: bool) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("speculative-images/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .pool_max_idle_per_host(32)
        .redirect(redirect_policy())
        .tcp_nodelay(true);
    builder = if http2 {
        builder.http2_adaptive_window(true)
    } else {
        builder.http1_only()
    };
    if let (Some(pem), false) = (&endpoint.ca_pem, endpoint.insecure) {
        let config = tls::client_config(pem, http2).map_err(|e| {
            Error::new(
                ErrorKind::Tls(e.to_string()),
                &endpoint.registry,
                "loading the registry's certificate",
            )
        })?;
        builder = builder.tls_backend_preconfigured(config);
    }
    builder.build().map_err(|e| {
        Error::new(
            ErrorKind::Internal(format!("no HTTP client: {}", root_cause(&e))),
            &endpoint.registry,
            "setting up the HTTP client",
        )
    })
}

#[derive(serde::Deserialize)]
struct SpecErrors {
    #[serde(default)]
    errors: Vec<SpecError>,
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || matches!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        )
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date
/// (no wait if that has passed).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A redirect from `https` to plain `http`, refused.
#[derive(Debug)]
struct Downgrade(String);

impl std::fmt::Display for Downgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a redirect from https to {}, a URL over plain http",
            self.0
        )
    }
}

impl std::error::Error for Downgrade {}

/// Redirects are followed (blob GETs go to storage on another host) up
/// to [`MAX_REDIRECTS`], never from `https` to plain `http`. reqwest drops
/// `Authorization` when a redirect changes scheme, host or port.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() != "https"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            let to = redact_url(attempt.url().as_str());
            attempt.error(Downgrade(to))
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

/// The error of type `T` somewhere in `e`'s chain.
fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<T>() {
            return Some(t);
        }
        cause = c.source();
    }
    None
}

/// The client error a request body stream failed with, if that is why
/// `error` happened.
fn body_failure(error: &reqwest::Error) -> Option<Error> {
    find_cause::<Error>(error).cloned()
}

/// The rustls error somewhere in `e`'s chain, if the failure was TLS.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(describe_tls(r));
        }
        // io::Error hides its inner error from `source()`; look inside.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

/// A rustls failure in words a site admin acts on, with rustls' own text.
fn describe_tls(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let words = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "its certificate is not signed by a trusted CA"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "its certificate is not valid for this host name"
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "its certificate has expired"
        }
        rustls::Error::InvalidCertificate(_) if format!("{e:?}").contains("CaUsedAsEndEntity") => {
            "it presents a CA certificate as its own, and not the certificate given for it"
        }
        _ => return e.to_string(),
    };
    format!("{words} ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(RETRY_AFTER, httpdate::fmt_http_date(soon).parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    fn transport(endpoint: Endpoint) -> Transport {
        Transport::new(endpoint, RetryPolicy::default()).unwrap()
    }

    #[test]
    fn credentials_stay_on_the_registrys_origin() {
        let t = transport(Endpoint::new("reg:5000"));
        let get = Method::GET;
        assert!(t
            .own_origin(&get, "https://reg:5000/v2/a/blobs/uploads/1")
            .unwrap());
        assert!(t.own_origin(&get, "https://REG:5000/v2/").unwrap());
        assert!(!t.own_origin(&get, "https://reg:5001/v2/").unwrap());
        assert!(!t
            .own_origin(&get, "https://storage.example.org/b?sig=1")
            .unwrap());
        let err = t
            .own_origin(&get, "http://reg:5000/v2/a/blobs/uploads/1?_state=secret")
            .unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Refused(_)), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "GET http://reg:5000/v2/a/blobs/uploads/1: refused: registry reg:5000 handed \
             out http://reg:5000/v2/a/blobs/uploads/1, a URL over plain http, and is \
             itself reached over https"
        );
        let err = t.own_origin(&get, "no url").unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Url(_)), "{err}");
        // A registry marked insecure speaks plain HTTP anyway.
        let plain = transport(Endpoint::new("reg:80").insecure(true));
        assert!(plain.own_origin(&get, "http://reg/v2/").unwrap());
        assert!(!plain.own_origin(&get, "http://other/v2/").unwrap());
        let hub = transport(Endpoint::new("docker.io"));
        assert!(hub
            .own_origin(&get, "https://registry-1.docker.io/v2/")
            .unwrap());
    }

    #[test]
    fn backoff_doubles() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0), Duration::from_millis(200));
        assert_eq!(p.delay(2), Duration::from_millis(800));
    }
}
