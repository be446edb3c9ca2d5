//! Parsing `/v2/...` paths. Repository names contain slashes, so the name
//! is everything between `/v2/` and the last `/blobs/`, `/blobs/uploads/`,
//! `/manifests/`, `/referrers/`, `/tags/list` or `/_speculative/sources`;
//! it is validated here, once.

use crate::oci::RepositoryName;
use crate::registry::errors::{ApiError, ErrorCode};

/// The path of a repository's blob sources, after its name.
pub const SOURCES_SUFFIX: &str = "/_speculative/sources";

/// What a `/v2/` path addresses; names are validated, references and ids
/// are left to the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, String),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, String),
    /// `/v2/<name>/_speculative/sources`: where blobs not stored yet live
    /// (our extension; no name component starts with `_`).
    Sources(RepositoryName),
}

/// Parse a request path; `None` when it is not an API path at all.
pub fn parse(path: &str) -> Option<Result<Route, ApiError>> {
    let rest = path.strip_prefix("/v2")?;
    let rest = match rest {
        "" | "/" => return Some(Ok(Route::Base)),
        _ => rest.strip_prefix('/')?,
    };
    if rest == "_catalog" {
        return Some(Ok(Route::Catalog));
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(name_of(name).map(Route::Tags));
    }
    if let Some(name) = rest.strip_suffix(SOURCES_SUFFIX) {
        return Some(name_of(name).map(Route::Sources));
    }
    // The last marker whose tail has no '/', so names may contain markers.
    for (marker, build) in [
        (
            "/blobs/uploads/",
            (|n, t: &str| {
                if t.is_empty() {
                    Route::Uploads(n)
                } else {
                    Route::Upload(n, t.to_string())
                }
            }) as fn(RepositoryName, &str) -> Route,
        ),
        ("/blobs/", |n, t| Route::Blob(n, t.to_string())),
        ("/manifests/", |n, t| Route::Manifest(n, t.to_string())),
        ("/referrers/", |n, t| Route::Referrers(n, t.to_string())),
    ] {
        if let Some(at) = rest.rfind(marker) {
            let (name, tail) = (&rest[..at], &rest[at + marker.len()..]);
            if !tail.contains('/') && (marker == "/blobs/uploads/" || !tail.is_empty()) {
                // Some clients escape the digest's colon.
                let tail = tail.replace("%3A", ":").replace("%3a", ":");
                return Some(name_of(name).map(|n| build(n, &tail)));
            }
        }
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(name_of(name).map(Route::Uploads));
    }
    None
}

fn name_of(name: &str) -> Result<RepositoryName, ApiError> {
    name.parse::<RepositoryName>()
        .map_err(|e| ApiError::with_detail(ErrorCode::NameInvalid, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        parse(path).expect("an API path").expect("a valid route")
    }

    fn name(n: &str) -> RepositoryName {
        n.parse().unwrap()
    }

    #[test]
    fn names_of_any_depth() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(
            route("/v2/quay.io/org/img/manifests/latest"),
            Route::Manifest(name("quay.io/org/img"), "latest".into())
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Route::Blob(name("a"), "sha256:00".into())
        );
        assert_eq!(route("/v2/a/b/blobs/uploads/"), Route::Uploads(name("a/b")));
        assert_eq!(
            route("/v2/a/blobs/uploads/x1"),
            Route::Upload(name("a"), "x1".into())
        );
        assert_eq!(
            route("/v2/a/manifests/b/tags/list"),
            Route::Tags(name("a/manifests/b"))
        );
        assert_eq!(
            route("/v2/a/manifests/sha256%3A00"),
            Route::Manifest(name("a"), "sha256:00".into())
        );
        assert_eq!(
            route("/v2/blobs/blobs/uploads/"),
            Route::Uploads(name("blobs"))
        );
        assert_eq!(
            route("/v2/org/img/referrers/sha256:00"),
            Route::Referrers(name("org/img"), "sha256:00".into())
        );
        assert_eq!(
            route("/v2/quay.io/org/img/_speculative/sources"),
            Route::Sources(name("quay.io/org/img"))
        );
    }

    #[test]
    fn invalid_names_are_name_invalid() {
        for bad in [
            "/v2/../etc/manifests/x",
            "/v2/a//b/tags/list",
            "/v2/Alpine/blobs/uploads/",
        ] {
            let err = parse(bad).expect("an API path").unwrap_err();
            assert_eq!(err.code, ErrorCode::NameInvalid, "{bad}");
        }
        assert!(parse("/other").is_none());
    }
}
