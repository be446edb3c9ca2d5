//! The podman builder: `podman build` into the local containers storage,
//! `podman push` with a temporary auth file and the registry's CA passed
//! per command (no host configuration needed).

use std::io::Write;
use std::process::Command;

use super::auth_file::AuthFile;
use super::build_flags::{build_args, read_image_id};
use super::docker::scratch_dir;
use super::process::run_streamed;
use super::{manifest_list, BuildError, BuildSpec, Builder, RegistryLogin};
use super::{PlatformsBuilt, PlatformsPushed};

/// The podman CLI.
pub struct Podman;

impl Builder for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }

    fn build(&self, spec: &BuildSpec, log: &mut dyn Write) -> Result<String, BuildError> {
        oci_build("podman", spec, log)
    }

    fn build_platforms(
        &self,
        spec: &BuildSpec,
        log: &mut dyn Write,
    ) -> Result<PlatformsBuilt, BuildError> {
        manifest_list::build("podman", spec, log)
    }

    fn push_platforms(
        &self,
        _spec: &BuildSpec,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<PlatformsPushed, BuildError> {
        manifest_list::push("podman", local, remote, login, log)
    }

    fn image_id(&self, name: &str) -> Result<Option<String>, BuildError> {
        super::inspect_id(
            Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", name]),
        )
    }

    fn push(
        &self,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<(), BuildError> {
        oci_push("podman", local, remote, login, log)
    }
}

/// `build` for the containers-storage tools (podman, buildah), whose flags
/// are the same.
pub(super) fn oci_build(
    program: &'static str,
    spec: &BuildSpec,
    log: &mut dyn Write,
) -> Result<String, BuildError> {
    let scratch = scratch_dir()?;
    let iidfile = scratch.path().join("iid");
    run_streamed(
        Command::new(program)
            .envs(&spec.env)
            .args(build_args(spec, &iidfile))
            .current_dir(&spec.context_dir),
        &format!("{program} build"),
        log,
    )?;
    read_image_id(&iidfile).map(|id| super::bare_id(&id))
}

/// `push` for the containers-storage tools.
pub(super) fn oci_push(
    program: &'static str,
    local: &str,
    remote: &str,
    login: &RegistryLogin,
    log: &mut dyn Write,
) -> Result<(), BuildError> {
    let auth = AuthFile::write(login)?;
    let mut cmd = Command::new(program);
    cmd.arg("push").arg("--authfile").arg(auth.auth_file());
    if let Some(certs) = auth.cert_dir() {
        cmd.arg("--cert-dir").arg(certs);
    }
    cmd.arg(local).arg(format!("docker://{remote}"));
    run_streamed(&mut cmd, &format!("{program} push {remote}"), log)
}
