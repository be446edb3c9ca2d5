//! The buildset registry server: OCI distribution API routes, auth, and
//! content-addressed filesystem storage.

pub mod config;

pub use config::ServerConfig;
pub mod instance;
