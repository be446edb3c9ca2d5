//! Multi-arch builds with docker, where no buildx is installed (Debian's
//! docker.io): one `docker build --platform X` per platform through the
//! daemon's BuildKit, each left locally as `<name>-<os>-<arch>` (and, for
//! the host's own platform, under the plain names too, so `docker run`
//! of the image works here), and pushed under such a tag for
//! [`super::index::assemble`] to gather into one manifest list.
//!
//! Why BuildKit: the classic builder's cache does not tell platforms
//! apart (checked with docker 20.10: `--platform linux/arm64` after
//! `linux/amd64` of a `FROM scratch` file returned the amd64 image). The
//! daemon's BuildKit keeps them apart and caches each, so a rebuild gives
//! the same images. A docker CLI from 23 on drives BuildKit only through
//! buildx; the 20.10 CLI of Debian's docker.io drives it itself when
//! `DOCKER_BUILDKIT=1`. [`buildkit_cli`] finds the first `docker` on
//! `PATH` that can.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::build_flags::{build_args_with, read_image_id};
use super::docker::{scratch_dir, Docker};
use super::process::run_streamed;
use super::{
    BuildError, BuildSpec, Builder, PlatformsBuilt, PlatformsPushed, RegistryLogin, TargetPlatform,
};

/// The first CLI version that needs buildx for BuildKit builds.
const FIRST_CLI_WITHOUT_BUILTIN_BUILDKIT: u32 = 23;

/// The first `docker` on `PATH` that runs BuildKit builds, found once.
pub fn buildkit_cli() -> Result<PathBuf, BuildError> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(find_buildkit_cli)
        .clone()
        .map_err(|found| BuildError::NoBuildKit { found })
}

fn find_buildkit_cli() -> Result<PathBuf, String> {
    let mut seen: Vec<(PathBuf, String)> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cli = dir.join("docker");
        if !is_executable(&cli) || seen.iter().any(|(p, _)| same_file(p, &cli)) {
            continue;
        }
        let output = |args: &[&str]| {
            Command::new(&cli)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .ok()
        };
        // Printed also when the daemon does not answer (then it fails).
        let version = output(&["version", "--format", "{{.Client.Version}}"])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_some_and(|m| m < FIRST_CLI_WITHOUT_BUILTIN_BUILDKIT)
            || output(&["buildx", "version"]).is_some_and(|o| o.status.success())
        {
            return Ok(cli);
        }
        seen.push((cli, version));
    }
    if seen.is_empty() {
        return Err("no docker on PATH".to_string());
    }
    Err(seen
        .iter()
        .map(|(p, v)| format!("{} {v} without buildx", p.display()))
        .collect::<Vec<_>>()
        .join(", "))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The local names one platform's image gets: every tag with the
/// platform's suffix, and the plain tags for the host's platform.
fn local_names(spec: &BuildSpec, platform: &TargetPlatform) -> Vec<String> {
    let mut names: Vec<String> = spec.tags.iter().map(|t| platform.tagged(t)).collect();
    if *platform == TargetPlatform::host() {
        names.extend(spec.tags.iter().cloned());
    }
    names
}

/// The image IDs `names` name, in order, from one `docker image inspect`;
/// `None` when any of them names no image.
fn ids_of(names: &[String]) -> Option<Vec<String>> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .args(names)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(super::bare_id)
        .collect();
    (ids.len() == names.len()).then_some(ids)
}

/// Build every platform of `spec`, one BuildKit build each.
pub fn build(spec: &BuildSpec, log: &mut dyn Write) -> Result<PlatformsBuilt, BuildError> {
    let cli = buildkit_cli()?;
    let scratch = scratch_dir()?;
    let mut images = Vec::new();
    let mut changed = false;
    for (n, platform) in spec.platforms.iter().enumerate() {
        let names = local_names(spec, platform);
        let before = ids_of(&names);
        let iidfile = scratch.path().join(format!("iid-{n}"));
        let platform_flag = platform.to_string();
        run_streamed(
            Command::new(&cli)
                .envs(&spec.env)
                .env("DOCKER_BUILDKIT", "1")
                .args(build_args_with(
                    spec,
                    &names,
                    &["--platform", &platform_flag],
                    Some(&iidfile),
                ))
                .current_dir(&spec.context_dir),
            &format!("docker build --platform {platform}"),
            log,
        )?;
        let id = super::bare_id(&read_image_id(&iidfile)?);
        changed |= before.is_none_or(|ids| ids.iter().any(|b| *b != id));
        images.push((platform.clone(), id));
    }
    Ok(PlatformsBuilt { images, changed })
}

/// Push each platform's image of `local` to `remote` with its platform's
/// suffix.
pub fn push(
    docker: &Docker,
    spec: &BuildSpec,
    local: &str,
    remote: &str,
    login: &RegistryLogin,
    log: &mut dyn Write,
) -> Result<PlatformsPushed, BuildError> {
    let mut parts = Vec::new();
    for platform in &spec.platforms {
        let target = platform.tagged(remote);
        docker.push(&platform.tagged(local), &target, login, log)?;
        let tag = target.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        parts.push((platform.clone(), tag.to_string()));
    }
    Ok(PlatformsPushed::PerPlatform(parts))
}
