//! The client's one error type: what was being done (method and redacted
//! URL, or the step of a copy), to which registry, the HTTP status and the
//! spec's error codes when the registry answered, and whether trying again
//! can help. Callers branch on [`ErrorKind`]; people read the `Display`,
//! which says "doing X to Y: cause" and never holds a credential.

use std::fmt;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::oci::Digest;

/// One entry of a registry's `{"errors": [...]}` body (distribution spec).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpecError {
    /// The spec code, e.g. `MANIFEST_UNKNOWN`, `UNAUTHORIZED`.
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

/// What went wrong, for callers that branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection could be made (refused, unreachable, DNS, connect
    /// timeout).
    Connect(String),
    /// The TLS handshake failed (certificate not trusted, wrong name).
    Tls(String),
    /// The registry stopped answering in the middle of an exchange.
    Timeout,
    /// The registry refused the credentials, or demands some we lack (401
    /// after authenticating).
    Unauthorized,
    /// Authenticated, but not allowed (403).
    Denied,
    /// The manifest, blob, tag or repository does not exist (404).
    NotFound,
    /// Rate limited (429).
    TooManyRequests,
    /// Any other status the operation did not expect (5xx included).
    Status,
    /// The answer was not what the protocol promises (missing header,
    /// invalid JSON, a bad challenge).
    InvalidResponse(String),
    /// Content did not hash to the digest that names it.
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Content was not as long as its descriptor says.
    SizeMismatch {
        /// Size from the descriptor.
        expected: u64,
        /// Bytes that arrived.
        actual: u64,
    },
    /// The connection broke while a body was being read or written.
    Body(String),
    /// The caller asked for something the client cannot do (an unsupported
    /// media type, an image nested too deep).
    Unsupported(String),
    /// The client refused what the registry asked of it: credentials for a
    /// token realm over plain HTTP or on another host, a plain `http://`
    /// URL handed out by an `https` registry. Not retried.
    Refused(String),
    /// A URL the registry handed out (`Location`, `Link`, a token realm)
    /// is not usable, or its redirects do not end. Not retried.
    Url(String),
    /// The registry sent more than the client reads of that kind of
    /// answer (`what`, e.g. "a manifest"; `limit`, e.g. "4 MiB"). Not
    /// retried.
    TooLarge {
        /// What was being read.
        what: String,
        /// The bound it went past.
        limit: String,
    },
    /// A failure inside the client (a task that panicked, an HTTP client
    /// that could not be built): a bug or a broken host, not the registry.
    Internal(String),
}

/// An error from the registry client or the copy engine (boxed: results
/// stay small on the hot path; fields are reached through `Deref`).
#[derive(Debug, Clone)]
pub struct Error(Box<ErrorDetail>);

/// The facts of an [`Error`].
#[derive(Debug, Clone)]
pub struct ErrorDetail {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The registry (`host:port`) involved.
    pub registry: String,
    /// What was being done: `GET https://host/v2/org/img/manifests/latest`
    /// (URL without credentials or query), or a higher-level step.
    pub action: String,
    /// HTTP status, when the registry answered.
    pub status: Option<StatusCode>,
    /// The spec's error codes from the body, when the registry sent any.
    pub codes: Vec<SpecError>,
    /// The user the client authenticated as, if any (never the password).
    pub username: Option<String>,
}

impl Error {
    /// An error of `kind` while doing `action` on `registry`.
    pub fn new(kind: ErrorKind, registry: &str, action: impl Into<String>) -> Error {
        Error(Box::new(ErrorDetail {
            kind,
            registry: registry.to_string(),
            action: action.into(),
            status: None,
            codes: Vec::new(),
            username: None,
        }))
    }

    /// Whether trying the same operation again may succeed: connection
    /// failures, timeouts, broken bodies, 5xx and 429.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Connect(_) | ErrorKind::Timeout | ErrorKind::Body(_) => true,
            ErrorKind::TooManyRequests => true,
            ErrorKind::Status => self.status.is_some_and(|s| s.is_server_error()),
            _ => false,
        }
    }

    /// Whether the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether one of the spec codes is `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.code == code)
    }

    /// The same error, described as part of a larger step (`copying X to Y`).
    pub fn during(mut self, step: impl fmt::Display) -> Error {
        self.action = format!("{step}: {}", self.action);
        self
    }
}

impl std::ops::Deref for Error {
    type Target = ErrorDetail;
    fn deref(&self) -> &ErrorDetail {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut ErrorDetail {
        &mut self.0
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.action)?;
        if let Some(status) = self.status {
            write!(f, "{status}")?;
            if !self.codes.is_empty() {
                let codes: Vec<String> = self
                    .codes
                    .iter()
                    .map(|c| {
                        if c.message.is_empty() {
                            c.code.clone()
                        } else {
                            format!("{}: {}", c.code, c.message)
                        }
                    })
                    .collect();
                write!(f, " ({})", codes.join("; "))?;
            }
            write!(f, ": ")?;
        }
        match &self.kind {
            ErrorKind::Connect(cause) => {
                write!(f, "cannot connect to registry {}: {cause}", self.registry)
            }
            ErrorKind::Tls(cause) => write!(
                f,
                "TLS handshake with registry {} failed: {cause}",
                self.registry
            ),
            ErrorKind::Timeout => write!(f, "registry {} stopped answering", self.registry),
            ErrorKind::Unauthorized => match &self.username {
                Some(user) => write!(
                    f,
                    "registry {} refused the credentials of user {user:?}",
                    self.registry
                ),
                None => write!(
                    f,
                    "registry {} requires credentials and none were given",
                    self.registry
                ),
            },
            ErrorKind::Denied => write!(f, "registry {} denied access", self.registry),
            ErrorKind::NotFound => write!(f, "not found on registry {}", self.registry),
            ErrorKind::TooManyRequests => {
                write!(f, "registry {} is rate limiting", self.registry)
            }
            ErrorKind::Status => write!(f, "unexpected answer from registry {}", self.registry),
            ErrorKind::InvalidResponse(why) => write!(
                f,
                "registry {} answered against the protocol: {why}",
                self.registry
            ),
            ErrorKind::DigestMismatch { expected, actual } => write!(
                f,
                "content from registry {} hashes to {actual}, not to {expected}",
                self.registry
            ),
            ErrorKind::SizeMismatch { expected, actual } => write!(
                f,
                "content from registry {} is {actual} bytes long, not {expected}",
                self.registry
            ),
            ErrorKind::Body(cause) => write!(
                f,
                "connection to registry {} broke during the transfer: {cause}",
                self.registry
            ),
            ErrorKind::Unsupported(why) => write!(f, "{why}"),
            ErrorKind::Refused(why) => write!(f, "refused: {why}"),
            ErrorKind::Url(why) => write!(
                f,
                "registry {} handed out an unusable URL: {why}",
                self.registry
            ),
            ErrorKind::TooLarge { what, limit } => write!(
                f,
                "registry {} sent {what} larger than the limit of {limit}",
                self.registry
            ),
            ErrorKind::Internal(why) => write!(f, "internal error: {why}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

/// `url` without userinfo or query (upload locations carry state tokens,
/// token URLs carry scopes: neither helps a reader, either may be long).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

/// The innermost cause of an error chain: for a refused connection
/// `Connection refused (os error 111)` rather than reqwest's wrapper text.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            redact_url("https://user:pw@reg:5000/v2/a/blobs/uploads/x?_state=abc&digest=d"),
            "https://reg:5000/v2/a/blobs/uploads/x"
        );
        assert_eq!(redact_url("not a url?x=1"), "not a url");
    }

    #[test]
    fn messages_name_registry_status_and_codes() {
        let mut e = Error::new(
            ErrorKind::Unauthorized,
            "reg:5000",
            "GET https://reg:5000/v2/a/manifests/latest",
        );
        e.status = Some(StatusCode::UNAUTHORIZED);
        e.codes.push(SpecError {
            code: "UNAUTHORIZED".into(),
            message: "authentication required".into(),
        });
        e.username = Some("zuul".into());
        assert_eq!(
            e.to_string(),
            "GET https://reg:5000/v2/a/manifests/latest: 401 Unauthorized \
             (UNAUTHORIZED: authentication required): registry reg:5000 refused \
             the credentials of user \"zuul\""
        );
        assert!(!e.is_retryable());
        let mut e = Error::new(ErrorKind::Status, "reg:5000", "PUT x");
        e.status = Some(StatusCode::BAD_GATEWAY);
        assert!(e.is_retryable());
    }
}
