//! `push_to_intermediate_registry`: hand the images this buildset built to
//! the intermediate registry, so changes queued behind can use them. Each
//! image and tag `<buildset>/<repository>:<tag>` is copied (every platform)
//! to `<intermediate>/<repository>:<zuul.build>_<tag>`, and the artifact
//! records Zuul passes to later changes are returned.
//!
//! Runs on the executor, talking to both registries directly. Nothing is
//! pushed when the job failed (`zuul_success: false`).

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ansible::{Context, Module, Outcome};
use crate::client::{copy_reference, runtime, CopyOptions, Endpoint, Registry, RemoteRegistry};
use crate::oci::{Reference, RepositoryName, Tag};
use crate::zuul::{
    buildset_repository, intermediate_tag, BuildsetRegistry, IntermediateRegistry, ZuulContext,
};

/// Arguments of `push_to_intermediate_registry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The buildset registry; read from the result data file's
    /// `secret_data` when not given.
    #[serde(default)]
    pub buildset_registry: Option<BuildsetRegistry>,
    /// The site's intermediate registry.
    pub intermediate_registry: IntermediateRegistry,
    /// The images the job built (zuul-jobs' docker roles' name).
    #[serde(default)]
    pub docker_images: Option<Vec<Image>>,
    /// The same, under the name of zuul-jobs' generic container roles.
    #[serde(default)]
    pub container_images: Option<Vec<Image>>,
    /// The `zuul` variable (`zuul.build` names the intermediate tags).
    pub zuul: ZuulContext,
    /// Whether the job succeeded so far; nothing is pushed when false.
    #[serde(default = "yes")]
    pub zuul_success: bool,
}

fn yes() -> bool {
    true
}

/// The part of a `docker_images` entry this module uses (the build options
/// of the entry are the build module's business and are not checked here).
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    /// Repository (`org/img`, `quay.io/org/img`).
    pub repository: String,
    /// Tags (default `["latest"]`).
    #[serde(default = "latest")]
    pub tags: Vec<String>,
}

fn latest() -> Vec<String> {
    vec!["latest".to_string()]
}

/// One tag pushed.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The image's repository.
    pub repository: String,
    /// The tag in the buildset registry.
    pub tag: String,
    /// Where it went.
    pub url: String,
    /// Manifest digest (the same in both registries).
    pub digest: Option<String>,
    /// Whether the intermediate registry changed.
    pub changed: bool,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
}

/// The `push_to_intermediate_registry` module.
pub struct PushToIntermediateRegistry;

impl Module for PushToIntermediateRegistry {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        if !args.zuul_success {
            return Ok(Outcome::new(false)
                .msg("the job failed: nothing pushed")
                .value("artifacts", Vec::<Value>::new())
                .value("images", Vec::<Pushed>::new()));
        }
        let build = args
            .zuul
            .build
            .clone()
            .filter(|b| !b.is_empty())
            .context("argument zuul: zuul.build is missing (it names the intermediate tags)")?;
        let images = match (&args.docker_images, &args.container_images) {
            (Some(d), Some(c)) if !d.is_empty() && !c.is_empty() => {
                anyhow::bail!("give docker_images or container_images, not both")
            }
            (Some(d), _) if !d.is_empty() => d.clone(),
            (_, Some(c)) => c.clone(),
            _ => Vec::new(),
        };
        let intermediate = args.intermediate_registry.clone();
        let plan = plan(&images, &build, &intermediate.authority())?;
        if plan.is_empty() {
            return Ok(Outcome::new(false)
                .msg("no images to push")
                .value("artifacts", Vec::<Value>::new())
                .value("images", Vec::<Pushed>::new()));
        }
        let buildset = super::pull_from_intermediate_registry::buildset_registry(
            args.buildset_registry,
            &args.zuul,
        )?;
        let check_mode = ctx.check_mode;
        let pushed = runtime::block_on(push_all(&plan, &buildset, &intermediate, check_mode))
            .context("starting the async runtime")??;
        let artifacts: Vec<Value> = plan.iter().map(|p| p.artifact()).collect();
        let changed = pushed.iter().any(|p| p.changed);
        let bytes: u64 = pushed.iter().map(|p| p.bytes_copied).sum();
        let msg = format!(
            "{} tag(s) {} the intermediate registry {}, {} changed; {bytes} bytes transferred",
            pushed.len(),
            if check_mode { "checked against" } else { "in" },
            intermediate.authority(),
            pushed.iter().filter(|p| p.changed).count()
        );
        Ok(Outcome::new(changed)
            .msg(msg)
            .value("artifacts", artifacts)
            .value("images", pushed))
    }
}

/// One copy to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// `docker_images[].repository`.
    pub repository: String,
    /// The tag in the buildset registry.
    pub tag: Tag,
    /// `<buildset repository>` in the buildset registry.
    pub source_repository: RepositoryName,
    /// Destination in the intermediate registry.
    pub destination: Reference,
}

impl Push {
    /// The artifact record Zuul hands to later changes.
    pub fn artifact(&self) -> Value {
        json!({
            "name": format!("{}:{}", self.repository, self.tag),
            "url": format!("docker://{}", self.destination),
            "metadata": {
                "type": "container_image",
                "repository": self.repository,
                "tag": self.tag.as_str(),
            },
        })
    }
}

/// Every (image, tag) to push, with names checked up front.
pub fn plan(images: &[Image], build: &str, intermediate: &str) -> anyhow::Result<Vec<Push>> {
    let mut pushes = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let repository: RepositoryName = image
            .repository
            .parse()
            .with_context(|| format!("image {i}: repository"))?;
        let source_repository: RepositoryName = buildset_repository(&image.repository)
            .parse()
            .with_context(|| format!("image {i}: repository"))?;
        for tag in &image.tags {
            let tag: Tag = tag
                .parse()
                .with_context(|| format!("image {i} ({}): tags", image.repository))?;
            let intermediate_tag: Tag = intermediate_tag(build, tag.as_str())
                .parse()
                .with_context(|| format!("zuul.build {build:?} with tag {tag}"))?;
            pushes.push(Push {
                repository: image.repository.clone(),
                tag,
                source_repository: source_repository.clone(),
                destination: Reference::new(
                    intermediate.to_string(),
                    repository.clone(),
                    Some(intermediate_tag),
                ),
            });
        }
    }
    Ok(pushes)
}

async fn push_all(
    plan: &[Push],
    buildset: &BuildsetRegistry,
    intermediate: &IntermediateRegistry,
    check_mode: bool,
) -> anyhow::Result<Vec<Pushed>> {
    let src = RemoteRegistry::new(Endpoint::from(buildset))?;
    let dst = RemoteRegistry::new(Endpoint::from(intermediate))?;
    let mut pushed = Vec::new();
    for push in plan {
        let source = Reference::new(
            buildset.authority(),
            push.source_repository.clone(),
            Some(push.tag.clone()),
        );
        let url = format!("docker://{}", push.destination);
        if check_mode {
            let digest = src
                .manifest_head(&source.repository, push.tag.as_str())
                .await
                .with_context(|| format!("checking {source}"))?;
            if digest.is_none() {
                anyhow::bail!("{source} does not exist in the buildset registry");
            }
            let there = dst
                .manifest_head(&push.destination.repository, &push.destination.target())
                .await?;
            pushed.push(Pushed {
                repository: push.repository.clone(),
                tag: push.tag.to_string(),
                url,
                changed: there != digest,
                digest: digest.map(|d| d.to_string()),
                blobs_copied: 0,
                bytes_copied: 0,
            });
            continue;
        }
        let report = copy_reference(
            &src,
            &source,
            &dst,
            &push.destination,
            &CopyOptions::default(),
        )
        .await
        .with_context(|| format!("pushing {}:{}", push.repository, push.tag))?;
        pushed.push(Pushed {
            repository: push.repository.clone(),
            tag: push.tag.to_string(),
            url,
            digest: report.digest.map(|d| d.to_string()),
            changed: report.changed,
            blobs_copied: report.blobs_copied,
            bytes_copied: report.bytes_copied,
        });
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_one_copy_per_tag_with_zuul_shaped_artifacts() {
        let images = vec![
            Image {
                repository: "docker.io/org/img".into(),
                tags: vec!["latest".into(), "1.0".into()],
            },
            Image {
                repository: "quay.io/org/other".into(),
                tags: latest(),
            },
        ];
        let plan = plan(&images, "b1d", "[::1]:5000").unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0].source_repository.as_str(), "org/img");
        assert_eq!(
            plan[1].artifact(),
            json!({"name": "docker.io/org/img:1.0",
                   "url": "docker://[::1]:5000/docker.io/org/img:b1d_1.0",
                   "metadata": {"type": "container_image",
                                "repository": "docker.io/org/img", "tag": "1.0"}})
        );
        assert_eq!(plan[2].source_repository.as_str(), "quay.io/org/other");
        // What pull reads back from that artifact.
        let pulls =
            super::super::pull_from_intermediate_registry::plan(&[plan[1].artifact()]).unwrap();
        assert_eq!(pulls[0].source, plan[1].destination);
    }

    #[test]
    fn bad_names_are_named() {
        let images = vec![Image {
            repository: "org/img".into(),
            tags: vec!["no/slash".into()],
        }];
        let err = format!("{:#}", plan(&images, "b", "r:1").unwrap_err());
        assert!(
            err.starts_with("image 0 (org/img): tags: tag \"no/slash\" is invalid"),
            "{err}"
        );
    }
}
