//! `pull_from_intermediate_registry`: bring the images of the changes ahead
//! (their `container_image` artifacts, stored in the intermediate registry)
//! into the buildset registry, every platform, under the names the
//! buildset's clients ask for: `<repository minus docker.io/>:<tag>`.
//!
//! Runs on the executor. It talks to both registries directly: no tunnel,
//! no credentials file, nothing written outside its own memory.

use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ansible::{Context, Module, Outcome};
use crate::client::{copy_reference, runtime, CopyOptions, Endpoint, Registry, RemoteRegistry};
use crate::oci::{Reference, RepositoryName, Tag};
use crate::zuul::{buildset_repository, BuildsetRegistry, IntermediateRegistry, ZuulContext};

/// Arguments of `pull_from_intermediate_registry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The buildset registry; read from the result data file's
    /// `secret_data` when not given.
    #[serde(default)]
    pub buildset_registry: Option<BuildsetRegistry>,
    /// The site's intermediate registry.
    pub intermediate_registry: IntermediateRegistry,
    /// Artifacts to consider (default: `zuul.artifacts`).
    #[serde(default)]
    pub zuul_artifacts: Option<Vec<Value>>,
    /// The `zuul` variable.
    #[serde(default)]
    pub zuul: Option<ZuulContext>,
}

/// One image to bring over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// The artifact's name, for messages.
    pub name: String,
    /// Where it is.
    pub source: Reference,
    /// `metadata.repository` as given.
    pub repository: String,
    /// `metadata.tag`.
    pub tag: Tag,
}

/// What was pulled, as returned to Ansible.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    /// The repository in the buildset registry.
    pub repository: String,
    /// The tag in the buildset registry.
    pub tag: String,
    /// The manifest digest (the same in both registries).
    pub digest: Option<String>,
    /// The artifact's URL it came from.
    pub url: String,
    /// Whether the buildset registry changed.
    pub changed: bool,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Blobs the buildset registry already had.
    pub blobs_skipped: usize,
}

/// The `pull_from_intermediate_registry` module.
pub struct PullFromIntermediateRegistry;

impl Module for PullFromIntermediateRegistry {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let zuul = args.zuul.clone().unwrap_or_default();
        let artifacts = args.zuul_artifacts.clone().unwrap_or_else(|| {
            zuul.artifacts
                .iter()
                .filter_map(|a| serde_json::to_value(a).ok())
                .collect()
        });
        let pulls = plan(&artifacts)?;
        if pulls.is_empty() {
            return Ok(Outcome::new(false)
                .msg("no container image artifacts to pull")
                .value("images", Vec::<Pulled>::new()));
        }
        let buildset = buildset_registry(args.buildset_registry, &zuul)?;
        let intermediate = &args.intermediate_registry;
        let check_mode = ctx.check_mode;
        for pull in &pulls {
            if pull.source.registry != intermediate.authority() {
                ctx.warn(format!(
                    "artifact {:?} is in registry {}, not in the intermediate registry {}: pulled without credentials",
                    pull.name,
                    pull.source.registry,
                    intermediate.authority()
                ));
            }
        }
        let pulled = runtime::block_on(pull_all(pulls, buildset, intermediate.clone(), check_mode))
            .context("starting the async runtime")??;
        let changed = pulled.iter().any(|p| p.changed);
        let copied: usize = pulled.iter().map(|p| p.blobs_copied).sum();
        let bytes: u64 = pulled.iter().map(|p| p.bytes_copied).sum();
        let msg = format!(
            "{} image(s) {} the buildset registry, {} changed; {copied} blob(s), {bytes} bytes transferred",
            pulled.len(),
            if check_mode { "checked against" } else { "in" },
            pulled.iter().filter(|p| p.changed).count()
        );
        Ok(Outcome::new(changed).msg(msg).value("images", pulled))
    }
}

/// The images to pull: every artifact with `metadata.type ==
/// container_image`, in order (a later artifact for the same name wins, as
/// it does in Zuul's role). A malformed one fails, naming it.
pub fn plan(artifacts: &[Value]) -> anyhow::Result<Vec<Pull>> {
    let mut pulls = Vec::new();
    for (i, artifact) in artifacts.iter().enumerate() {
        let label = match artifact.get("name").and_then(Value::as_str) {
            Some(name) => format!("artifact {i} ({name:?})"),
            None => format!("artifact {i}"),
        };
        let metadata = artifact.get("metadata");
        if metadata.and_then(|m| m.get("type")).and_then(Value::as_str) != Some("container_image") {
            continue;
        }
        let field = |key: &str| -> anyhow::Result<String> {
            metadata
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow::anyhow!("{label}: metadata.{key} is missing or not a string")
                })
        };
        let repository = field("repository")?;
        let tag: Tag = field("tag")?
            .parse()
            .with_context(|| format!("{label}: metadata.tag"))?;
        buildset_repository(&repository)
            .parse::<RepositoryName>()
            .with_context(|| format!("{label}: metadata.repository"))?;
        let url = artifact
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("{label}: url is missing or not a string"))?;
        let source = parse_url(url).with_context(|| format!("{label}: url"))?;
        pulls.push(Pull {
            name: artifact
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            source,
            repository,
            tag,
        });
    }
    Ok(pulls)
}

/// A `docker://` image reference; other schemes and credentials in the URL
/// are refused without echoing what follows the scheme.
fn parse_url(url: &str) -> anyhow::Result<Reference> {
    let Some(rest) = url.strip_prefix("docker://") else {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if scheme.is_empty() {
            anyhow::bail!("{url:?} is not a docker:// URL");
        }
        anyhow::bail!("a {scheme}:// URL is not a container image; expected docker://");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        anyhow::bail!(
            "the URL carries credentials (user@host); give them in intermediate_registry instead"
        );
    }
    Ok(url.parse::<Reference>()?)
}

/// The buildset registry: as given, or as `run_buildset_registry` left it
/// in the result data file.
pub(crate) fn buildset_registry(
    given: Option<BuildsetRegistry>,
    zuul: &ZuulContext,
) -> anyhow::Result<BuildsetRegistry> {
    if let Some(registry) = given {
        return Ok(registry);
    }
    let Some(path) = zuul.result_data_file() else {
        anyhow::bail!(
            "buildset_registry is not given and zuul.executor.result_data_file is unknown: \
             pass buildset_registry or run run_buildset_registry first"
        );
    };
    crate::zuul::results::buildset_registry_from(std::path::Path::new(path))?.ok_or_else(|| {
        anyhow::anyhow!(
            "buildset_registry is not given and the result data file {path} holds none: \
             pass buildset_registry or run run_buildset_registry first"
        )
    })
}

async fn pull_all(
    pulls: Vec<Pull>,
    buildset: BuildsetRegistry,
    intermediate: IntermediateRegistry,
    check_mode: bool,
) -> anyhow::Result<Vec<Pulled>> {
    let buildset_client = RemoteRegistry::new(Endpoint::from(&buildset))?;
    let intermediate_client = RemoteRegistry::new(Endpoint::from(&intermediate))?;
    let mut others: Vec<Arc<RemoteRegistry>> = Vec::new();
    let mut pulled = Vec::new();
    for pull in pulls {
        let src = if pull.source.registry == intermediate.authority() {
            intermediate_client.clone()
        } else if let Some(c) = others.iter().find(|c| c.name() == pull.source.registry) {
            c.clone()
        } else {
            let c = RemoteRegistry::new(Endpoint::new(pull.source.registry.clone()))?;
            others.push(c.clone());
            c
        };
        let repository = buildset_repository(&pull.repository).to_string();
        let destination = Reference::new(
            buildset.authority(),
            repository.parse()?,
            Some(pull.tag.clone()),
        );
        let entry = if check_mode {
            let source_digest = src
                .manifest_head(&pull.source.repository, &pull.source.target())
                .await
                .with_context(|| format!("checking {}", pull.name))?;
            let present = buildset_client
                .manifest_head(&destination.repository, pull.tag.as_str())
                .await?;
            Pulled {
                repository,
                tag: pull.tag.to_string(),
                changed: present != source_digest,
                digest: source_digest.map(|d| d.to_string()),
                url: format!("docker://{}", pull.source),
                blobs_copied: 0,
                bytes_copied: 0,
                blobs_skipped: 0,
            }
        } else {
            let report = copy_reference(
                &src,
                &pull.source,
                &buildset_client,
                &destination,
                &CopyOptions::default(),
            )
            .await
            .with_context(|| format!("pulling artifact {:?}", pull.name))?;
            Pulled {
                repository,
                tag: pull.tag.to_string(),
                digest: report.digest.map(|d| d.to_string()),
                url: format!("docker://{}", pull.source),
                changed: report.changed,
                blobs_copied: report.blobs_copied,
                bytes_copied: report.bytes_copied,
                blobs_skipped: report.blobs_skipped,
            }
        };
        pulled.push(entry);
    }
    Ok(pulled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plans_container_images_and_ignores_other_artifacts() {
        let artifacts = vec![
            json!({"name": "docs", "url": "https://logs/docs", "metadata": {"type": "docs_site"}}),
            json!({"name": "library/alpine:latest",
                   "url": "docker://inter:5000/docker.io/library/alpine:abc_latest",
                   "metadata": {"type": "container_image",
                                "repository": "docker.io/library/alpine", "tag": "latest"},
                   "project": "org/alpine", "change": "42"}),
            json!({"name": "no metadata", "url": "x"}),
        ];
        let pulls = plan(&artifacts).unwrap();
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0].repository, "docker.io/library/alpine");
        assert_eq!(pulls[0].source.registry, "inter:5000");
        assert_eq!(
            pulls[0].source.repository.as_str(),
            "docker.io/library/alpine"
        );
        assert_eq!(buildset_repository(&pulls[0].repository), "library/alpine");
    }

    #[test]
    fn malformed_artifacts_are_named() {
        let err = |a: Value| format!("{:#}", plan(&[a]).unwrap_err());
        assert_eq!(
            err(json!({"name": "org/img:latest", "url": "https://example.org/img.tar",
                       "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}})),
            "artifact 0 (\"org/img:latest\"): url: a https:// URL is not a container image; expected docker://"
        );
        assert_eq!(
            err(
                json!({"name": "x", "url": "docker://inter:5000/org/img:1_latest",
                       "metadata": {"type": "container_image", "tag": "latest"}})
            ),
            "artifact 0 (\"x\"): metadata.repository is missing or not a string"
        );
        let msg = err(
            json!({"name": "x", "url": "docker://zuul:hunter2@inter:5000/org/img:1_latest",
                   "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}}),
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("carries credentials"), "{msg}");
        assert!(err(json!({"name": "x", "url": "docker://inter:5000/org/img:1_latest",
                   "metadata": {"type": "container_image", "repository": "Org/Img", "tag": "latest"}}))
            .starts_with("artifact 0 (\"x\"): metadata.repository: repository name \"Org/Img\" is invalid"));
    }
}
