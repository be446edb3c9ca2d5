//! Multi-arch builds with the containers-storage tools (podman, buildah):
//! one `build --platform a,b --manifest <name>` into a local manifest list,
//! which every tag of the image names, and `manifest push --all`.
//!
//! The build runs with `--layers=false`: podman 4.3's layer cache does
//! not tell platforms apart (checked here: `--platform
//! linux/amd64,linux/arm64` of a `FROM scratch` file gave one image for
//! both), so every platform is built afresh and a rebuild always yields
//! new images: `changed` is always true, and what the tags named before
//! is not looked up (each podman command costs about 0.1 s here).

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::auth_file::AuthFile;
use super::build_flags::build_args_with;
use super::platform::platform_flag;
use super::process::{run_captured, run_streamed};
use super::{BuildError, BuildSpec, PlatformsBuilt, PlatformsPushed, RegistryLogin};
use crate::oci::Platform;

/// The entries (platform, manifest digest) of the local manifest list
/// `name` (which must exist: `manifest inspect` of a name not held
/// locally asks registries), or `None` when it cannot be read.
fn instances(program: &str, name: &str) -> Option<Vec<(Option<Platform>, String)>> {
    #[derive(Deserialize)]
    struct List {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<Platform>,
    }
    let out = Command::new(program)
        .args(["manifest", "inspect", name])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let list: List = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        list.manifests
            .into_iter()
            .map(|e| (e.platform, e.digest))
            .collect(),
    )
}

/// Build every platform of `spec` into a manifest list named by each of
/// `spec.tags`.
pub fn build(
    program: &'static str,
    spec: &BuildSpec,
    log: &mut dyn Write,
) -> Result<PlatformsBuilt, BuildError> {
    // `--manifest` adds to a list of that name that exists: start afresh.
    // One command for every tag; it fails for the names that are no list,
    // and a list it could not remove shows as a platform listed twice when
    // the index is published.
    let _ = Command::new(program)
        .args(["manifest", "rm"])
        .args(&spec.tags)
        .stdin(Stdio::null())
        .output();
    let first = spec.tags.first().cloned().unwrap_or_default();
    let platforms = platform_flag(&spec.platforms);
    let what = format!("{program} build --platform {platforms}");
    run_streamed(
        Command::new(program)
            .envs(&spec.env)
            .args(build_args_with(
                spec,
                &[],
                &[
                    "--platform",
                    &platforms,
                    "--manifest",
                    &first,
                    "--layers=false",
                ],
                None,
            ))
            .current_dir(&spec.context_dir),
        &what,
        log,
    )?;
    if spec.tags.len() > 1 {
        run_captured(
            Command::new(program)
                .arg("tag")
                .arg(&first)
                .args(&spec.tags[1..]),
            &format!("{program} tag {first}"),
        )?;
    }
    let after = instances(program, &first).ok_or_else(|| BuildError::Output {
        command: what.clone(),
        problem: format!("left no manifest list {first}"),
    })?;
    let mut images = Vec::new();
    for platform in &spec.platforms {
        let found: Vec<&String> = after
            .iter()
            .filter(|(p, _)| {
                p.as_ref()
                    .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
            })
            .map(|(_, digest)| digest)
            .collect();
        let [digest] = found.as_slice() else {
            return Err(BuildError::Output {
                command: what.clone(),
                problem: format!(
                    "left {} {platform} images in the manifest list {first}, not one",
                    found.len()
                ),
            });
        };
        images.push((platform.clone(), digest.to_string()));
    }
    Ok(PlatformsBuilt {
        images,
        changed: true,
    })
}

/// Push the manifest list `local` with every image it holds to `remote`.
pub fn push(
    program: &'static str,
    local: &str,
    remote: &str,
    login: &RegistryLogin,
    log: &mut dyn Write,
) -> Result<PlatformsPushed, BuildError> {
    let auth = AuthFile::write(login)?;
    let mut cmd = Command::new(program);
    cmd.args(["manifest", "push", "--all", "--authfile"])
        .arg(auth.auth_file());
    if let Some(certs) = auth.cert_dir() {
        cmd.arg("--cert-dir").arg(certs);
    }
    cmd.arg(local).arg(format!("docker://{remote}"));
    run_streamed(
        &mut cmd,
        &format!("{program} manifest push --all {remote}"),
        log,
    )?;
    let tag = remote.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
    Ok(PlatformsPushed::Index(tag.to_string()))
}
