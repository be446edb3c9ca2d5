//! The docker CLI builder: `docker build` through the local daemon, and
//! `docker push` with the credentials in a temporary `DOCKER_CONFIG`. The
//! daemon itself must trust the registry's CA (`/etc/docker/certs.d`, which
//! `use_buildset_registry` writes).

use std::io::Write;
use std::process::Command;

use super::auth_file::AuthFile;
use super::build_flags::{build_args, read_image_id};
use super::process::{run_captured, run_streamed};
use super::{docker_platforms, BuildError, BuildSpec, Builder, RegistryLogin};
use super::{PlatformsBuilt, PlatformsPushed};

/// The docker CLI.
pub struct Docker;

impl Builder for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn check(&self, spec: &BuildSpec) -> Result<(), BuildError> {
        if !spec.platforms.is_empty() {
            docker_platforms::buildkit_cli()?;
        }
        Ok(())
    }

    fn build(&self, spec: &BuildSpec, log: &mut dyn Write) -> Result<String, BuildError> {
        let scratch = scratch_dir()?;
        let iidfile = scratch.path().join("iid");
        run_streamed(
            Command::new("docker")
                .envs(&spec.env)
                .args(build_args(spec, &iidfile))
                .current_dir(&spec.context_dir),
            "docker build",
            log,
        )?;
        read_image_id(&iidfile).map(|id| super::bare_id(&id))
    }

    fn build_platforms(
        &self,
        spec: &BuildSpec,
        log: &mut dyn Write,
    ) -> Result<PlatformsBuilt, BuildError> {
        docker_platforms::build(spec, log)
    }

    fn push_platforms(
        &self,
        spec: &BuildSpec,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<PlatformsPushed, BuildError> {
        docker_platforms::push(self, spec, local, remote, login, log)
    }

    fn image_id(&self, name: &str) -> Result<Option<String>, BuildError> {
        super::inspect_id(
            Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", name]),
        )
    }

    fn push(
        &self,
        local: &str,
        remote: &str,
        login: &RegistryLogin,
        log: &mut dyn Write,
    ) -> Result<(), BuildError> {
        let auth = AuthFile::write(login)?;
        // A name the image already had (the build's own tag) stays.
        let had_name = self.image_id(remote)?.is_some();
        run_captured(
            Command::new("docker").args(["tag", local, remote]),
            &format!("docker tag {local} {remote}"),
        )?;
        let pushed = run_streamed(
            Command::new("docker")
                .env("DOCKER_CONFIG", auth.docker_config_dir())
                .args(["push", remote]),
            &format!("docker push {remote}"),
            log,
        );
        // The registry's name was only needed for the push.
        let untagged = if had_name {
            Ok(String::new())
        } else {
            run_captured(
                Command::new("docker").args(["rmi", remote]),
                &format!("docker rmi {remote}"),
            )
        };
        pushed.map_err(explain_untrusted)?;
        untagged.map(|_| ())
    }

    fn mirrors_only_docker_hub(&self) -> bool {
        true
    }
}

/// A push refused for an unknown CA most likely means the daemon was not
/// pointed at the registry: say so.
fn explain_untrusted(err: BuildError) -> BuildError {
    match err {
        BuildError::Failed {
            command,
            status,
            mut tail,
        } if tail.contains("x509") => {
            tail.push_str(
                "\n(the Docker daemon does not trust this registry's certificate: \
                 run speculative.images.use_buildset_registry on this host first)",
            );
            BuildError::Failed {
                command,
                status,
                tail,
            }
        }
        other => other,
    }
}

/// A private directory for files a build writes (its image ID).
pub(super) fn scratch_dir() -> Result<tempfile::TempDir, BuildError> {
    tempfile::Builder::new()
        .prefix("speculative-images-build-")
        .tempdir()
        .map_err(|e| BuildError::file("creating a directory in", std::env::temp_dir(), e))
}
