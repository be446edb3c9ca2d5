//! All integration tests, in one test binary. Each file under `tests/`
//! covers one part; `support/` starts the real services they talk to.

mod support;

mod client_copy;
mod client_fixtures;
mod client_trust;
mod distribution_fixture;
mod fuzz_regressions;
mod host_files;
mod host_real;
mod module_protocol;
mod registry_auth;
mod registry_clients;
mod registry_crash;
mod registry_crash_manifests;
mod registry_docker;
mod registry_inprocess;
mod registry_lazy;
mod registry_limits;
mod registry_protocol;
mod registry_prune;
mod registry_server;
mod registry_site;
mod registry_spec;
mod run_buildset_registry;
mod transfer_modules;
mod transfer_records;
mod transfer_support;

mod publish_support;

mod build_docker_image;
mod build_multiarch;
mod build_preload;
mod publish_container;
mod publish_promote;
mod publish_tag_apis;
mod publish_upload;
