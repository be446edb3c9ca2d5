//! Publishing images: the policy between a built image and its final tag.
//!
//! - [`credentials`]: `docker_credentials`, and which repositories it may
//!   write (checked before any request is sent).
//! - [`targets`]: where an upload copies each tag from and to, under its
//!   temporary tag.
//! - [`retention`]: which temporary tags a promote cleans up.
//! - [`upload`], [`promote`], [`cleanup`]: those steps on the registry
//!   client; [`cleanup`] also removes tags for `remove_registry_tag`.
//! - [`intermediate`]: promote from the intermediate registry, the gate
//!   build's image found in `zuul.artifacts` or Zuul's API.
//!
//! The modules `upload_docker_image`, `promote_docker_image` (both role
//! families) and `remove_registry_tag` glue these to the registry client.

pub mod cleanup;
pub mod credentials;
pub mod intermediate;
pub mod promote;
pub mod retention;
pub mod targets;
pub mod upload;
