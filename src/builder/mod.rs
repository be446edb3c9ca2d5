//! Image builders behind one trait: the docker CLI (the default), podman
//! and buildah, chosen by `container_command`.
//!
//! A [`Builder`] builds one [`BuildSpec`] and pushes a local image to a
//! registry given a [`RegistryLogin`]. Everything a builder prints streams
//! into a log file as it comes (see [`process`]), and a failed command's
//! last lines travel in its [`BuildError`]. What to build, under which
//! names, is decided beforehand by [`plan`]; sibling projects are copied
//! into the context by [`siblings`].
//!
//! A multi-arch build (`arch`, see [`platform`]) is each builder's own
//! (`build_platforms`, `push_platforms`): podman and buildah build and push
//! a manifest list, docker builds and pushes one image per platform; the
//! one index under every tag of the buildset registry is then written by
//! [`index`].

pub mod buildah;
pub mod docker;
mod docker_platforms;
pub mod error;
pub mod index;
mod manifest_list;
pub mod plan;
pub mod platform;
pub mod podman;
pub mod process;
pub mod siblings;

mod auth_file;

pub(crate) use auth_file::AuthFile;
mod build_flags;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub use error::BuildError;
pub use platform::TargetPlatform;

use crate::zuul::BUILDSET_REGISTRY_ALIAS;

/// One image build, in the terms every builder's `build` command takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// Directory the builder runs in (`<zuul_work_dir>/<context>`).
    pub context_dir: PathBuf,
    /// Build context path, relative to `context_dir` (default `.`).
    pub path: String,
    /// Dockerfile, relative to `context_dir`.
    pub dockerfile: String,
    /// Build stage to stop at.
    pub target: Option<String>,
    /// `KEY=VALUE` build arguments.
    pub build_args: Vec<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Full local names to tag the result with (`org/img:latest`).
    pub tags: Vec<String>,
    /// Platforms of a multi-arch build (empty: the host's, one image).
    pub platforms: Vec<TargetPlatform>,
    /// Variables added to the build command's environment.
    pub env: BTreeMap<String, String>,
}

/// A multi-arch build as it is left locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformsBuilt {
    /// Per platform, in the order of `arch`: its image's local ID (docker)
    /// or manifest digest in the local manifest list (podman, buildah).
    pub images: Vec<(TargetPlatform, String)>,
    /// Whether a local name now names something it did not before.
    pub changed: bool,
}

/// What a builder pushed of a multi-arch build to the remote repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformsPushed {
    /// Its own manifest list, under this tag.
    Index(String),
    /// One image per platform, each under its own tag.
    PerPlatform(Vec<(TargetPlatform, String)>),
}

/// How to log in to a registry to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// `host:port` as the builder's tools write it in image names.
    pub authority: String,
    /// User.
    pub username: String,
    /// Password (never printed).
    pub password: String,
    /// PEM CA to trust, for the tools that take one per command.
    pub ca_pem: Option<String>,
}

/// An image builder.
pub trait Builder {
    /// The command it runs (`docker`, `podman`, `buildah`).
    fn name(&self) -> &'static str;

    /// Refuse, before anything is built, what this builder cannot do with
    /// `spec` on this host.
    fn check(&self, _spec: &BuildSpec) -> Result<(), BuildError> {
        Ok(())
    }

    /// Build `spec` (which [`Builder::check`] accepted, and which names no
    /// platforms), streaming the output to `log`; returns the image ID.
    fn build(&self, spec: &BuildSpec, log: &mut dyn Write) -> Result<String, BuildError>;

    /// Build every one of `spec.platforms`, leaving them locally under
    /// `spec.tags` as the builder can hold them (a manifest list for
    /// podman and buildah, one tag per platform for docker).
    fn build_platforms(
        &self,
        spec: &BuildSpec,
        log: &mut dyn Write,
    ) -> Result<PlatformsBuilt, BuildError>;

    /// Push the multi-arch build of `spec` known locally as `local` (one
    /// of `spec.tags`) to `remote`, a full name under `login.authority`.
    fn push_platforms(
        &self,
        spec: &BuildSpec,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<PlatformsPushed, BuildError>;

    /// The ID of the local image `name`, or `None` when there is none
    /// (IDs compare equal across builders: no `sha256:` prefix).
    fn image_id(&self, name: &str) -> Result<Option<String>, BuildError>;

    /// Push the local image `local` to `remote` (a full name under
    /// `login.authority`), streaming the output to `log`.
    fn push(
        &self,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<(), BuildError>;

    /// Whether the builder finds only Docker Hub's images through the
    /// buildset registry (docker's `registry-mirrors`): the images of other
    /// registries must then be preloaded under their own names.
    fn mirrors_only_docker_hub(&self) -> bool {
        false
    }
}

/// The builder for `container_command`.
pub fn for_command(container_command: &str) -> Result<Box<dyn Builder>, BuildError> {
    match container_command {
        "docker" => Ok(Box::new(docker::Docker)),
        "podman" => Ok(Box::new(podman::Podman)),
        "buildah" => Ok(Box::new(buildah::Buildah)),
        other => Err(BuildError::UnknownBuilder(other.to_string())),
    }
}

/// An image ID without its `sha256:` prefix, as every builder can report it.
pub fn bare_id(id: &str) -> String {
    id.trim().trim_start_matches("sha256:").to_string()
}

/// Run an inspect command for an image ID; a failure means no such image.
fn inspect_id(cmd: &mut std::process::Command) -> Result<Option<String>, BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| BuildError::Spawn { program, source })?;
    let id = String::from_utf8_lossy(&out.stdout);
    Ok((out.status.success() && !id.trim().is_empty()).then(|| bare_id(&id)))
}

/// `host:port` of a registry as container tools must write it: an IPv6
/// literal host is replaced by [`BUILDSET_REGISTRY_ALIAS`].
pub fn tool_authority(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("{BUILDSET_REGISTRY_ALIAS}:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_go_through_the_alias() {
        assert_eq!(tool_authority("127.0.0.1", 5000), "127.0.0.1:5000");
        assert_eq!(tool_authority("reg.example", 443), "reg.example:443");
        assert_eq!(
            tool_authority("::1", 5000),
            "zuul-jobs.buildset-registry:5000"
        );
        assert_eq!(
            tool_authority("[fd00::5]", 5000),
            "zuul-jobs.buildset-registry:5000"
        );
    }

    #[test]
    fn unknown_builder_is_named() {
        let err = for_command("kaniko").err().unwrap();
        assert_eq!(
            err.to_string(),
            "container_command \"kaniko\" is not a known builder: use docker, podman or buildah"
        );
    }
}
