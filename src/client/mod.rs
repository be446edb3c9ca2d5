//! Registry client and copy engine, in layers:
//!
//! - [`mod@copy`]: the copy engine (one image, every platform, between two
//!   registries or within one), written against the [`Registry`] trait.
//! - [`Registry`] (`registry.rs`): the spec's blob, manifest and tag
//!   operations; [`RemoteRegistry`] (`remote.rs`) implements it over HTTP
//!   with one file per noun (`blob.rs`, `manifest.rs`, `tag.rs`,
//!   `tag_delete.rs`, `catalog.rs`), and our buildset registry's blob
//!   sources extension (`sources.rs`).
//! - authentication (`auth.rs`): the layer every operation sends through;
//!   it answers the registry's challenge, caches tokens per scope, and
//!   sends credentials only to the registry's own origin (and a token
//!   realm it may use).
//! - [`transport`]: one registry's HTTP client, which only sends: TLS
//!   trust (`tls.rs`), retries, typed errors (`error.rs`), which URLs are
//!   the registry's own origin, bounded reads of everything but blobs
//!   ([`limits`]), `Link` pages (`pages.rs`).
//!
//! Each layer uses only those below it (`scripts/import-graph.py` checks
//! that no files here import each other in a circle); the documents are
//! [`crate::oci`]'s.
//!
//! Typical use (the modules do this on a tokio runtime):
//!
//! ```no_run
//! # async fn demo() -> Result<(), speculative_images::client::Error> {
//! use speculative_images::client::{copy_reference, CopyOptions, Endpoint, Registry, RemoteRegistry};
//! let src = RemoteRegistry::new(Endpoint::new("inter.example.org:5000").with_credentials("zuul", "pw"))?;
//! let dst = RemoteRegistry::new(Endpoint::new("[::1]:5000").with_ca_pem("-----BEGIN CERTIFICATE-----..."))?;
//! let from = "inter.example.org:5000/org/img:1234_latest".parse().unwrap();
//! let to = "[::1]:5000/org/img:latest".parse().unwrap();
//! let report = copy_reference(&src, &from, &dst, &to, &CopyOptions::default()).await?;
//! println!("{:?} copied {} bytes", report.digest, report.bytes_copied);
//!
//! // Retag (promote): the same bytes under another tag, then delete the old one.
//! let repo = "org/img".parse().unwrap();
//! let manifest = dst.manifest_get(&repo, "change_42_latest").await?;
//! dst.manifest_put(&repo, "latest", &manifest).await?;
//! let tags = dst.tags_list(&repo).await?;
//! # let _ = tags;
//! dst.manifest_delete(&repo, &manifest.digest).await?;
//! # Ok(()) }
//! ```

mod auth;
mod blob;
mod catalog;
pub mod command;
pub mod copy;
mod endpoint;
mod error;
mod hub;
pub mod limits;
mod manifest;
pub mod memory;
mod pages;
mod quay;
mod registry;
mod remote;
pub mod runtime;
mod sources;
mod tag;
mod tag_delete;
mod tls;
pub mod transport;
mod verify;

/// The documents the client reads and writes are the shared model's.
pub use crate::oci::{Children, Descriptor, Manifest};
pub use auth::{parse_challenge, repository_scope, Challenge, DelegatedToken};
pub use copy::{
    copy, copy_manifests, copy_reference, predict_copy, CopyOptions, CopyReport, LazyLayer,
};
pub use endpoint::{Credentials, Endpoint};
pub use error::{redact_url, Error, ErrorDetail, ErrorKind, SpecError};
pub use hub::{HubApi, HubTag, HUB_API_URL};
pub use memory::{MemoryRegistry, Operation};
pub use quay::{QuayApi, QuayTag};
pub use registry::{no_blob_sources, BlobStream, Registry, TagDeleted, RECORDING_BLOB_SOURCES};
pub use remote::RemoteRegistry;
pub use sources::{BlobSources, RecordedBlob, RecordedUpstream};
pub use tls::{client_config, TlsConfigError};
pub use transport::RetryPolicy;
pub use verify::Verified;
