//! Preloading the docker image store. Docker's `registry-mirrors` only
//! covers docker.io, so `docker run quay.io/org/img` would never see a
//! speculative quay.io image; instead every image of another registry that
//! the buildset registry holds is pulled from it and tagged with its
//! upstream name. An image already tagged so, pulled from the same digest,
//! is left alone.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::run_checked;
use crate::client::{Registry, RemoteRegistry};
use crate::oci::reference::DOCKER_HUB;
use crate::oci::ManifestReference;

/// One image to have in the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preload {
    /// The name users ask for (`quay.io/org/img:latest`).
    pub upstream: String,
    /// Where it comes from (`zuul-jobs.buildset-registry:5000/quay.io/org/img:latest`).
    pub source: String,
    /// The digest the buildset registry has for it.
    pub digest: String,
}

impl Preload {
    /// `<source repository>@<digest>`: what docker records after the pull.
    fn repo_digest(&self) -> String {
        let repo = self
            .source
            .rsplit_once(':')
            .map(|(repo, _)| repo)
            .unwrap_or(&self.source);
        format!("{repo}@{}", self.digest)
    }
}

/// Whether a buildset repository belongs to a registry other than
/// docker.io: its first path element is a registry host, by docker's rule
/// (a dot, a port, or `localhost`).
pub fn is_other_registry(repository: &str) -> bool {
    match repository.split_once('/') {
        Some((first, _)) => {
            (first.contains('.') || first.contains(':') || first == "localhost")
                && first != DOCKER_HUB
        }
        None => false,
    }
}

/// Every image of another registry in the buildset registry, to be pulled
/// from `pull_authority` (the name clients use for the registry).
pub async fn list(registry: &RemoteRegistry, pull_authority: &str) -> anyhow::Result<Vec<Preload>> {
    let mut out = Vec::new();
    for repository in registry.catalog().await? {
        if !is_other_registry(repository.as_str()) {
            continue;
        }
        for tag in registry.tags_list(&repository).await? {
            // A tag deleted since the listing is simply not preloaded.
            let Some(digest) = registry
                .manifest_head(&repository, &ManifestReference::from(&tag))
                .await?
            else {
                continue;
            };
            out.push(Preload {
                upstream: format!("{repository}:{tag}"),
                source: format!("{pull_authority}/{repository}:{tag}"),
                digest: digest.to_string(),
            });
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    repo_digests: Option<Vec<String>>,
}

/// The images not yet in the local store under their upstream name with
/// the buildset registry's digest.
pub fn missing(images: &[Preload]) -> anyhow::Result<Vec<Preload>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    // One call for all: docker prints the images it has and fails for the
    // others, which is the answer we want.
    let out = Command::new("docker")
        .args(["image", "inspect"])
        .args(images.iter().map(|i| &i.upstream))
        .output()
        .map_err(|e| anyhow::anyhow!("running docker image inspect: {e}"))?;
    let found: Vec<Inspect> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut digests_by_tag: HashMap<&str, &[String]> = HashMap::new();
    for image in &found {
        for tag in image.repo_tags.as_deref().unwrap_or_default() {
            digests_by_tag.insert(tag, image.repo_digests.as_deref().unwrap_or_default());
        }
    }
    Ok(images
        .iter()
        .filter(|i| {
            !digests_by_tag
                .get(i.upstream.as_str())
                .is_some_and(|digests| digests.contains(&i.repo_digest()))
        })
        .cloned()
        .collect())
}

/// Preload every image of another registry that `registry` holds and the
/// local store lacks (all of them in `check_mode`, where nothing is
/// pulled): list, compare, pull and tag. `docker_config` is a
/// DOCKER_CONFIG directory holding the registry's credentials. Returns the
/// upstream names preloaded (or that would be).
pub fn preload_missing(
    registry: &RemoteRegistry,
    pull_authority: &str,
    docker_config: &Path,
    check_mode: bool,
) -> anyhow::Result<Vec<String>> {
    let images = crate::client::runtime::block_on(list(registry, pull_authority))
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?
        .map_err(|e| e.context("listing the buildset registry's images to preload"))?;
    let missing = missing(&images)?;
    if !check_mode {
        for image in &missing {
            pull_and_tag(image, Some(docker_config))?;
        }
    }
    Ok(missing.into_iter().map(|p| p.upstream).collect())
}

/// Pull `image` from the buildset registry and tag it with its upstream
/// name. `docker_config` is a DOCKER_CONFIG directory holding the
/// registry's credentials, if it needs any.
pub fn pull_and_tag(image: &Preload, docker_config: Option<&Path>) -> anyhow::Result<()> {
    let mut pull = Command::new("docker");
    if let Some(dir) = docker_config {
        pull.env("DOCKER_CONFIG", dir);
    }
    pull.args(["pull", "--quiet", &image.source]);
    run_checked(pull)?;
    let mut tag = Command::new("docker");
    tag.args(["tag", &image.source, &image.upstream]);
    run_checked(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_other_registries_from_docker_hub() {
        assert!(is_other_registry("quay.io/org/img"));
        assert!(is_other_registry("localhost/img"));
        assert!(is_other_registry("registry.k8s.io/pause"));
        assert!(!is_other_registry("library/alpine"));
        assert!(!is_other_registry("org/img"));
        assert!(!is_other_registry("docker.io/library/alpine"));
        assert!(!is_other_registry("alpine"));
    }

    #[test]
    fn repo_digest_drops_the_tag() {
        let p = Preload {
            upstream: "quay.io/org/img:v1".into(),
            source: "zuul-jobs.buildset-registry:5000/quay.io/org/img:v1".into(),
            digest: "sha256:ab".into(),
        };
        assert_eq!(
            p.repo_digest(),
            "zuul-jobs.buildset-registry:5000/quay.io/org/img@sha256:ab"
        );
    }
}
