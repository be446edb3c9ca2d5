//! Multi-arch builds with the containers-storage tools (podman, buildah):
//! one `build --platform a,b --manifest <name>` into a local manifest list,
//! which every tag of the image names, and `manifest push --all`.
//!
//! The build runs with `--layers=false`: podman 4.3's layer cache does
//! not tell platforms apart (checked here: `--platform
//! linux/amd64,linux/arm64` of a `FROM scratch` file gave one image for
//! both), so every platform is built afresh and a rebuild always yields
//! new images (`changed` is then true).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::auth_file::AuthFile;
use super::build_flags::build_args_with;
use super::platform::platform_flag;
use super::process::{run_captured, run_streamed};
use super::{BuildError, BuildSpec, PlatformsBuilt, PlatformsPushed, RegistryLogin};

/// Platform (`linux/arm64`) to manifest digest of the local manifest list
/// `name`, or `None` when `name` is no manifest list.
fn instances(program: &str, name: &str) -> Option<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    struct List {
        manifests: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<crate::oci::Platform>,
    }
    // `manifest inspect` of a name not held locally asks registries.
    let exists = Command::new(program)
        .args(["manifest", "exists", name])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !exists.status.success() {
        return None;
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
            .map(|e| {
                let platform = e.platform.map(|p| {
                    let mut name = format!("{}/{}", p.os, p.architecture);
                    if let Some(variant) = p.variant {
                        name = format!("{name}/{variant}");
                    }
                    name
                });
                (platform.unwrap_or_default(), e.digest)
            })
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
    let before: Vec<_> = spec.tags.iter().map(|t| instances(program, t)).collect();
    // `--manifest` adds to a list of that name that exists: start afresh.
    for (tag, old) in spec.tags.iter().zip(&before) {
        if old.is_some() {
            run_captured(
                Command::new(program).args(["manifest", "rm", tag]),
                &format!("{program} manifest rm {tag}"),
            )?;
        }
    }
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
        let digest = after
            .get(&platform.to_string())
            .ok_or_else(|| BuildError::Output {
                command: what.clone(),
                problem: format!(
                    "left no {platform} image in the manifest list {first} (it holds: {})",
                    after.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })?;
        images.push((platform.clone(), digest.clone()));
    }
    let changed = before.iter().any(|b| b.as_ref() != Some(&after));
    Ok(PlatformsBuilt { images, changed })
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
