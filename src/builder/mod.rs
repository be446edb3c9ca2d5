//! Image builders behind one trait: the docker CLI (the default), podman
//! and buildah, chosen by `container_command`.
//!
//! A [`Builder`] builds one [`BuildSpec`] and pushes a local image to a
//! registry given a [`RegistryLogin`]. Everything a builder prints streams
//! into a log file as it comes (see [`process`]), and a failed command's
//! last lines travel in its [`BuildError`]. What to build, under which
//! names, is decided beforehand by [`plan`]; sibling projects are copied
//! into the context by [`siblings`].

pub mod buildah;
pub mod docker;
pub mod error;
pub mod plan;
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
    /// Platforms of a multi-arch build (empty: the host's).
    pub platforms: Vec<String>,
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
    /// `spec`. No builder here builds for other platforms (`arch`: that
    /// needs docker buildx, or a manifest list assembled from per-platform
    /// podman/buildah builds, neither of which is implemented).
    fn check(&self, spec: &BuildSpec) -> Result<(), BuildError> {
        if spec.platforms.is_empty() {
            Ok(())
        } else {
            Err(BuildError::Unsupported {
                builder: self.name(),
                feature: "arch",
            })
        }
    }

    /// Build `spec` (which [`Builder::check`] accepted), streaming the
    /// output to `log`; returns the image ID.
    fn build(&self, spec: &BuildSpec, log: &mut dyn Write) -> Result<String, BuildError>;

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
    fn every_builder_refuses_arch_by_its_name() {
        let mut spec = BuildSpec {
            context_dir: "/src/app".into(),
            path: ".".into(),
            dockerfile: "Dockerfile".into(),
            target: None,
            build_args: vec![],
            labels: Default::default(),
            tags: vec!["org/app:latest".into()],
            platforms: vec![],
        };
        for name in ["docker", "podman", "buildah"] {
            let builder = for_command(name).unwrap();
            assert!(builder.check(&spec).is_ok(), "{name}");
        }
        spec.platforms = vec!["linux/arm64".into()];
        for name in ["docker", "podman", "buildah"] {
            let builder = for_command(name).unwrap();
            assert_eq!(
                builder.check(&spec).unwrap_err().to_string(),
                format!("`arch` is not supported by the {name} builder")
            );
        }
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
