//! The distribution spec's error codes, each defined once (code, message,
//! HTTP status) in [`ErrorCode::spec`], and the JSON error response built
//! from that table. Handlers choose a code and, at most, a detail that is
//! safe to show (a digest, a name); internals are logged, never sent.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::storage::StorageError;

/// An error code of the distribution spec (plus `UNKNOWN` for failures
/// of the server itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// A chunk does not start where the upload ends.
    RangeNotSatisfiable,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Blob unknown to registry, named by a manifest.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest larger than the registry accepts (413, as the spec asks).
    ManifestTooLarge,
    /// Manifest unknown.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Invalid tag.
    TagInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests (429): above a cap on open upload sessions; the
    /// response carries `Retry-After`.
    TooManyRequests,
    /// The storage is full (507 Insufficient Storage, code `UNKNOWN`: the
    /// spec has no code for it; a 5xx clients do not take for a passing
    /// glitch of the server, and a message that says what to fix).
    StorageFull,
    /// A blob source record (`_speculative/sources`) is not valid (400,
    /// an extension code).
    SourcesInvalid,
    /// A blob recorded as living upstream could not be fetched: the
    /// upstream registry is unreachable, too slow or failing (503, code
    /// `UNAVAILABLE`, an extension: the spec has none; clients retry a 503).
    UpstreamUnavailable,
    /// A blob recorded as living upstream could not be fetched: the
    /// upstream registry refused the credential or sent wrong content
    /// (502, code `UNKNOWN`).
    UpstreamFailed,
    /// The server failed; details are in its log.
    Unknown,
}

/// One row of the table: what the client sees for a code.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The spec's code string.
    pub code: &'static str,
    /// Its message.
    pub message: &'static str,
    /// The HTTP status sent with it.
    pub status: StatusCode,
}

impl ErrorCode {
    /// The table: every code with its message and status, defined here once.
    pub fn spec(self) -> Spec {
        use ErrorCode::*;
        let (code, message, status) = match self {
            BlobUnknown => ("BLOB_UNKNOWN", "blob unknown to registry", 404),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
                404,
            ),
            RangeNotSatisfiable => (
                "BLOB_UPLOAD_INVALID",
                "the chunk does not start where the upload ends",
                416,
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                400,
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to registry",
                400,
            ),
            ManifestInvalid => ("MANIFEST_INVALID", "manifest invalid", 400),
            ManifestTooLarge => (
                "MANIFEST_INVALID",
                "manifest larger than the registry accepts",
                413,
            ),
            ManifestUnknown => ("MANIFEST_UNKNOWN", "manifest unknown to registry", 404),
            NameInvalid => ("NAME_INVALID", "invalid repository name", 400),
            NameUnknown => ("NAME_UNKNOWN", "repository name not known to registry", 404),
            SizeInvalid => (
                "SIZE_INVALID",
                "provided length did not match content length",
                400,
            ),
            TagInvalid => ("TAG_INVALID", "manifest tag did not match URI", 400),
            Unauthorized => ("UNAUTHORIZED", "authentication required", 401),
            Denied => ("DENIED", "requested access to the resource is denied", 403),
            Unsupported => ("UNSUPPORTED", "the operation is unsupported", 405),
            TooManyRequests => ("TOOMANYREQUESTS", "too many requests", 429),
            StorageFull => ("UNKNOWN", "storage is full", 507),
            SourcesInvalid => ("SOURCES_INVALID", "the blob source record is invalid", 400),
            UpstreamUnavailable => (
                "UNAVAILABLE",
                "the registry this blob is fetched from is unavailable",
                503,
            ),
            UpstreamFailed => (
                "UNKNOWN",
                "the registry this blob is fetched from failed",
                502,
            ),
            Unknown => ("UNKNOWN", "unknown error", 500),
        };
        Spec {
            code,
            message,
            status: StatusCode::from_u16(status).expect("valid status in the table"),
        }
    }
}

/// Seconds a client refused with `TOOMANYREQUESTS` is asked to wait.
pub const RETRY_AFTER_SECS: u64 = 10;

/// An error response: a code, an optional detail safe to show, and extra
/// headers (the auth challenge).
#[derive(Debug)]
pub struct ApiError {
    /// Which error.
    pub code: ErrorCode,
    /// Safe detail for the client (a digest, a name, a reason).
    pub detail: Option<String>,
    /// `WWW-Authenticate` value for 401 responses.
    pub challenge: Option<String>,
}

impl ApiError {
    /// An error with no detail.
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            detail: None,
            challenge: None,
        }
    }

    /// An error with a detail the client may see.
    pub fn with_detail(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: Some(detail.into()),
            challenge: None,
        }
    }

    /// A server failure: the cause goes to the log, the client sees UNKNOWN.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("{context}: {cause}");
        ApiError::new(ErrorCode::Unknown)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let spec = self.code.spec();
        let mut entry = serde_json::json!({"code": spec.code, "message": spec.message});
        if let Some(detail) = self.detail {
            entry["detail"] = serde_json::Value::String(detail);
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut response = (
            spec.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self.code == ErrorCode::TooManyRequests {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Storage failures as the client sees them: the spec's code with a safe
/// detail; I/O failures are logged and sent as `UNKNOWN`.
impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        use ErrorCode as C;
        let detail = error.to_string();
        let code = match error {
            StorageError::BlobUnknown(_) => C::BlobUnknown,
            StorageError::UploadUnknown(_) => C::BlobUploadUnknown,
            StorageError::ManifestUnknown(_) => C::ManifestUnknown,
            StorageError::RepositoryUnknown(_) => C::NameUnknown,
            StorageError::DigestMismatch { .. } => C::DigestInvalid,
            StorageError::RangeMismatch { .. } => C::RangeNotSatisfiable,
            StorageError::SizeMismatch { .. } => C::SizeInvalid,
            StorageError::ManifestInvalid(_) => C::ManifestInvalid,
            StorageError::ManifestBlobUnknown(_) => C::ManifestBlobUnknown,
            StorageError::TooManyUploads(_) => C::TooManyRequests,
            StorageError::Body(_) => {
                tracing::warn!("{detail}");
                return ApiError::new(C::BlobUploadInvalid);
            }
            StorageError::Io { ref source, .. } if is_storage_full(source) => {
                tracing::error!("storage: {detail}");
                return ApiError::new(C::StorageFull);
            }
            StorageError::Io { .. } => return ApiError::internal("storage", &detail),
        };
        ApiError::with_detail(code, detail)
    }
}

/// Whether an I/O error says the disk (or the user's quota) is full.
fn is_storage_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
            .is_some_and(is_storage_full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_renders_the_spec_json() {
        let response = ApiError::with_detail(ErrorCode::DigestInvalid, "sha256:x").into_response();
        assert_eq!(response.status(), 400);
    }

    #[test]
    fn a_full_disk_is_507_storage_is_full() {
        let full = StorageError::Io {
            context: "writing an upload".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let error = ApiError::from(full);
        assert_eq!(error.code, ErrorCode::StorageFull);
        let response = error.into_response();
        assert_eq!(response.status(), 507);
    }

    #[test]
    fn too_many_requests_asks_to_retry_later() {
        let error = ApiError::from(StorageError::TooManyUploads("x".into()));
        let response = error.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "10");
    }
}
