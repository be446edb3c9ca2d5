//! speculative.images: speculative container image gating for Zuul.
//!
//! The library holds all logic; the binaries in `src/bin/` are thin. Rooms:
//! - [`ansible`]: the binary-module protocol (args in, one JSON out, masking).
//! - [`oci`]: digests, names, references, media types.
//! - [`client`]: registry client and copy engine.
//! - [`registry`]: the registry server (buildset or intermediate registry).
//! - [`instance`]: a buildset registry deployed on this node: its files,
//!   certificates, process and probe (what `run_buildset_registry` does).
//! - [`host`]: host configuration files (docker, containers, buildkit, CA).
//! - [`builder`]: image builders (docker, podman, buildah).
//! - [`crypto`]: the TLS cryptography provider.
//! - [`pki`]: certificates for the registries we start.
//! - [`publish`]: upload and promote policy (targets, permits, retention).
//! - [`zuul`]: Zuul's variables, naming rules and result data.
//! - [`modules`]: one file per Ansible module, gluing the rooms together.
//! - [`cli`]: the multi-call binary's command line.
#![deny(missing_docs)]

pub mod ansible;
pub mod builder;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod host;
pub mod instance;
pub mod modules;
pub mod oci;
pub mod pki;
pub mod publish;
pub mod registry;
pub mod zuul;
