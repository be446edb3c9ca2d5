//! The buildah builder: same storage and flags as podman, without a
//! daemon or a container runtime for the push.

use std::io::Write;

use super::podman::{oci_build, oci_push};
use super::{manifest_list, BuildError, BuildSpec, Builder, RegistryLogin};
use super::{PlatformsBuilt, PlatformsPushed};

/// The buildah CLI.
pub struct Buildah;

impl Builder for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }

    fn build(&self, spec: &BuildSpec, log: &mut dyn Write) -> Result<String, BuildError> {
        oci_build("buildah", spec, log)
    }

    fn build_platforms(
        &self,
        spec: &BuildSpec,
        log: &mut dyn Write,
    ) -> Result<PlatformsBuilt, BuildError> {
        manifest_list::build("buildah", spec, log)
    }

    fn push_platforms(
        &self,
        _spec: &BuildSpec,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<PlatformsPushed, BuildError> {
        manifest_list::push("buildah", local, remote, login, log)
    }

    fn image_id(&self, name: &str) -> Result<Option<String>, BuildError> {
        super::inspect_id(std::process::Command::new("buildah").args([
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.FromImageID}}",
            name,
        ]))
    }

    fn push(
        &self,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<(), BuildError> {
        oci_push("buildah", local, remote, login, log)
    }
}
