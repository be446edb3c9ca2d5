//! The registry server, as a buildset registry or a site's intermediate
//! registry: the OCI distribution API routes ([`routes`]), who may do
//! what ([`auth`]), content-addressed filesystem storage ([`storage`]),
//! the spec's errors ([`errors`]), blobs fetched on first request from
//! where the executor recorded them ([`pull_through`]), the listener with TLS ([`server`]),
//! pruning on a schedule ([`prune_schedule`]; the prune itself is
//! [`storage::prune`]), and its configuration ([`config`], [`site`]).

pub mod auth;
pub mod config;
pub mod errors;
pub mod prune_schedule;
pub mod pull_through;
pub mod routes;
pub mod server;
pub mod site;
pub mod storage;

use std::sync::Arc;

pub use config::ServerConfig;
pub use routes::{AppState, ServerState};
pub use server::serve;

/// The registry's router over `state` (for in-process tests and [`serve`]).
pub fn app(state: AppState) -> axum::Router {
    routes::app(state)
}

/// Build the shared state from a configuration: open the storage, load
/// the users. `scheme` is `https` when serving TLS.
pub fn state(config: &ServerConfig) -> anyhow::Result<AppState> {
    use anyhow::Context as _;
    let mut storage = storage::Storage::open(&config.storage)
        .with_context(|| format!("opening storage {}", config.storage.display()))?;
    storage.set_upload_limits(storage::UploadLimits {
        total: config.limits.max_uploads,
        per_user: config.limits.max_uploads_per_user,
        stall: std::time::Duration::from_secs(config.limits.stall_secs),
    });
    Ok(Arc::new(ServerState {
        storage: Arc::new(storage),
        pull_through: pull_through::PullThrough::new(),
        auth: auth::AccessControl::new(config),
        delete_enabled: config.delete_enabled,
        scheme: if config.tls.is_some() {
            "https"
        } else {
            "http"
        },
    }))
}
