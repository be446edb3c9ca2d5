//! The server's configuration, as the server runs it: [`ServerConfig`].
//! Two files give it: the JSON that `run_buildset_registry` writes (mode
//! 0600) for a buildset registry, and a site's YAML or TOML file for an
//! intermediate registry ([`site`](super::site)), resolved into the same
//! struct. `speculative-images serve --config FILE` / `buildset-registry
//! --config FILE` choose by the file's extension ([`ServerConfig::from_file`]).

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
    /// Users who may log in (bcrypt hashes), each with a role.
    #[serde(default)]
    pub users: Vec<User>,
    /// Where clients reach this registry (`https://host:port`); the token
    /// realm is built from it. Without it, from the `Host` the client
    /// used, checked (see [`auth::realm`](super::auth::realm)).
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// The longest lifetime a client may ask for a delegated token
    /// (`expires_in`), in seconds.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// Secret that signs bearer tokens (hex); generated per registry.
    pub token_secret: String,
    /// Whether anonymous clients may pull (default true, like zuul-registry).
    #[serde(default = "yes")]
    pub anonymous_pull: bool,
    /// Whether manifests, tags and blobs may be deleted (default true);
    /// when false every such DELETE answers 405 UNSUPPORTED.
    #[serde(default = "yes")]
    pub delete_enabled: bool,
    /// Prune the storage on a schedule (a site's `prune:` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<super::prune_schedule::PruneSchedule>,
    /// Deadlines and caps that keep one client from starving the others.
    #[serde(default)]
    pub limits: Limits,
}

/// Deadlines and caps per connection, per HTTP/2 stream and on upload
/// sessions (the `limits:` section of a site's file). Every field has a
/// default fit for a site; a file names only what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds a client has to finish the TLS handshake.
    pub tls_handshake_secs: u64,
    /// Seconds a client has to send a whole request head (HTTP/1.1; also
    /// the first request of an HTTP/2 connection).
    pub request_head_secs: u64,
    /// Seconds a connection may stay open with no request in flight.
    pub idle_secs: u64,
    /// Seconds a request may go without a byte of its body arriving or
    /// of its response leaving (a stalled upload, a zero window).
    pub stall_secs: u64,
    /// Connections open at once, in total (also held under the process's
    /// file descriptor limit).
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// Upload sessions open at once, in total.
    pub max_uploads: usize,
    /// Upload sessions open at once per user (and for tokens without a
    /// user, all anonymous clients together).
    pub max_uploads_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake_secs: 10,
            request_head_secs: 30,
            idle_secs: 90,
            stall_secs: 60,
            max_connections: 4096,
            max_connections_per_client: 256,
            http2_max_streams: 32,
            max_uploads: 1024,
            max_uploads_per_user: 128,
        }
    }
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
    /// What the user may do (default read-write: the buildset registry's
    /// one user pushes).
    #[serde(default)]
    pub role: Role,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Pull only: manifests, blobs, tags, the catalog.
    ReadOnly,
    /// Pull, push and delete.
    #[default]
    ReadWrite,
}

/// Twelve hours: a working day of jobs that pull with a delegated token.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 12 * 3600;

fn default_max_token_lifetime() -> u64 {
    DEFAULT_MAX_TOKEN_LIFETIME_SECS
}

fn yes() -> bool {
    true
}

impl ServerConfig {
    /// Read a configuration file, choosing the format by its extension:
    /// `.json` is the buildset registry's [`ServerConfig`], `.yaml`,
    /// `.yml` and `.toml` a site's [`SiteConfig`](super::site::SiteConfig).
    pub fn from_file(path: &Path) -> anyhow::Result<ServerConfig> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => ServerConfig::load(path),
            Some("yaml" | "yml" | "toml") => super::site::load(path),
            _ => anyhow::bail!(
                "registry config {}: the name must end in .json (buildset registry), \
                 or .yaml, .yml or .toml (site configuration)",
                path.display()
            ),
        }
    }

    /// Read the buildset registry's JSON configuration file.
    pub fn load(path: &Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading registry config {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing registry config {}", path.display()))
    }
}
