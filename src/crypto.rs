//! The one cryptography provider behind every TLS connection and
//! certificate: *ring*.
//!
//! rustls' default, aws-lc-rs, doubled the size of the static module
//! binary (Ansible copies it to the node for every task) and seeds itself
//! with a CPU-jitter entropy source that costs each module run tens of
//! milliseconds; *ring* does neither.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider, for configurations built explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make it the process default, for clients built without an explicit TLS
/// configuration (reqwest with the system roots). Idempotent.
pub fn install_default() {
    // An error only means a default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
