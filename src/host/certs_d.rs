//! `/etc/docker/certs.d/<host>:<port>/ca.crt`: the CA docker (and
//! containers/image, which reads the same directory) trusts for one
//! registry. Read per connection, so no daemon reload is needed.

use std::convert::Infallible;
use std::path::PathBuf;

use super::HostPaths;

/// Where the CA for `authority` (`host:port`) goes.
pub fn ca_crt_path(paths: &HostPaths, authority: &str) -> PathBuf {
    paths.docker_certs_d().join(authority).join("ca.crt")
}

/// A PEM as we store it: trimmed, one final newline.
pub fn normalize_pem(pem: &str) -> String {
    format!("{}\n", pem.trim())
}

/// The file's content: the CA, whatever was there before.
pub fn with_ca(_old: Option<&str>, pem: &str) -> Result<String, Infallible> {
    Ok(normalize_pem(pem))
}
