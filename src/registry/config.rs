//! The server's configuration file: JSON, written by `run_buildset_registry`
//! (mode 0600) and read by `speculative-images serve --config FILE` /
//! `buildset-registry --config FILE`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to listen on (`[::]:5000` listens on IPv4 and IPv6).
    pub listen: Vec<SocketAddr>,
    /// TLS certificate and key; plain HTTP when absent (tests only).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Directory holding blobs, manifests and uploads.
    pub storage: PathBuf,
    /// Users allowed to push and delete (bcrypt hashes).
    #[serde(default)]
    pub users: Vec<User>,
    /// Secret that signs bearer tokens (hex); generated per registry.
    pub token_secret: String,
    /// Whether anonymous clients may pull (default true, like zuul-registry).
    #[serde(default = "yes")]
    pub anonymous_pull: bool,
    /// Whether manifests, tags and blobs may be deleted (default true);
    /// when false every such DELETE answers 405 UNSUPPORTED.
    #[serde(default = "yes")]
    pub delete_enabled: bool,
}

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// A user and the bcrypt hash of their password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub username: String,
    /// bcrypt hash of the password.
    pub password_bcrypt: String,
}

fn yes() -> bool {
    true
}

impl ServerConfig {
    /// Read a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading registry config {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing registry config {}", path.display()))
    }
}
