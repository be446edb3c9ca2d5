//! `push_to_intermediate_registry`: hand the images this buildset built to
//! the intermediate registry, so changes queued behind can use them. Each
//! image and tag `<buildset>/<repository>:<tag>` is copied (every platform)
//! to `<intermediate>/<repository>:<zuul.build>_<tag>`, and the artifact
//! records Zuul passes to later changes are returned. After a successful
//! push, a change record (`zuul::records`) naming those artifacts is left
//! in the intermediate registry, for changes behind this one that Zuul
//! gives no artifacts of it.
//!
//! Blobs the buildset registry only records as living in the
//! intermediate registry (a lazy pull, see `pull_from_intermediate_registry`)
//! are mounted there from the repository that holds them, so an image
//! built on a lazily pulled one sends only its own layers.
//!
//! Runs on the executor, talking to both registries directly. Nothing is
//! pushed when the job failed (`zuul_success: false`).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ansible::{Context, Module, Outcome};
use crate::client::{
    copy_reference, predict_copy, runtime, CopyOptions, Endpoint, Registry, RemoteRegistry,
};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::zuul::records::{write_record, ChangeRecord, RecordWritten, RECORDS_REPOSITORY};
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
    /// Leave a change record in the intermediate registry after the push.
    #[serde(default = "yes")]
    pub change_records: bool,
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
        let buildset = crate::zuul::results::require_buildset_registry(
            args.buildset_registry.as_ref(),
            &args.zuul,
        )?;
        let check_mode = ctx.check_mode;
        let pushed = runtime::block_on(push_to(&plan, &buildset, &intermediate, check_mode))
            .context("starting the async runtime")??;
        let artifacts: Vec<Value> = plan.iter().map(|p| p.artifact()).collect();
        let record = if args.change_records {
            change_record(&args.zuul, &build, &artifacts, ctx)
        } else {
            None
        };
        let written = match &record {
            Some(record) => Some(
                runtime::block_on(write_change_record(&intermediate, record, check_mode))
                    .context("starting the async runtime")??,
            ),
            None => None,
        };
        let changed =
            pushed.iter().any(|p| p.changed) || written.as_ref().is_some_and(|w| w.changed);
        let bytes: u64 = pushed.iter().map(|p| p.bytes_copied).sum();
        let msg = format!(
            "{} tag(s) {} the intermediate registry {}, {} changed; {bytes} bytes transferred",
            pushed.len(),
            if check_mode { "checked against" } else { "in" },
            intermediate.authority(),
            pushed.iter().filter(|p| p.changed).count()
        );
        let mut outcome = Outcome::new(changed)
            .msg(msg)
            .value("artifacts", artifacts)
            .value("images", pushed);
        if let Some(written) = written {
            outcome = outcome.value("change_record", written);
        }
        Ok(outcome)
    }
}

/// The record of this push, when the job runs for a change; `None` (with a
/// warning when something is missing) otherwise.
fn change_record(
    zuul: &ZuulContext,
    build: &str,
    artifacts: &[Value],
    ctx: &mut Context,
) -> Option<ChangeRecord> {
    // A job without a change (periodic, post) is ahead of nothing.
    let change = zuul.change.clone().filter(|c| !c.is_empty())?;
    let project = zuul.project.as_ref().and_then(|p| p.identity());
    let job = zuul.job.as_deref().filter(|j| !j.is_empty());
    let (Some(project), Some(job)) = (project, job) else {
        ctx.warn(
            "zuul.project.canonical_name (or zuul.project.name) or zuul.job is missing: \
             no change record written, so changes behind this one that build images \
             themselves will not find these images",
        );
        return None;
    };
    let pushed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Some(ChangeRecord {
        project: project.to_string(),
        change,
        patchset: zuul.patchset.clone().unwrap_or_default(),
        job: job.to_string(),
        build: build.to_string(),
        buildset: zuul.buildset.clone(),
        pipeline: zuul.pipeline.clone(),
        tenant: zuul.tenant.clone(),
        pushed_at_ms,
        artifacts: artifacts.to_vec(),
    })
}

async fn write_change_record(
    intermediate: &IntermediateRegistry,
    record: &ChangeRecord,
    check_mode: bool,
) -> anyhow::Result<RecordWritten> {
    let client = RemoteRegistry::new(Endpoint::from(intermediate))?;
    write_record(client.as_ref(), record, check_mode)
        .await
        .with_context(|| {
            format!(
                "writing the change record {RECORDS_REPOSITORY}:{} in the intermediate registry {}",
                record.tag(),
                intermediate.authority()
            )
        })
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

/// Reach both registries, find what the buildset registry records as
/// living in the intermediate registry, and [`push_all`].
async fn push_to(
    plan: &[Push],
    buildset: &BuildsetRegistry,
    intermediate: &IntermediateRegistry,
    check_mode: bool,
) -> anyhow::Result<Vec<Pushed>> {
    let src = RemoteRegistry::new(Endpoint::from(buildset))?;
    let dst = RemoteRegistry::new(Endpoint::from(intermediate))?;
    let mut hints = MountHints::new();
    if !check_mode {
        for push in plan {
            if !hints.contains_key(&push.source_repository) {
                let found = mount_hints(&src, &push.source_repository, intermediate).await;
                hints.insert(push.source_repository.clone(), found);
            }
        }
    }
    push_all(plan, &src, &buildset.authority(), &dst, &hints, check_mode).await
}

/// By repository of the buildset registry, the blobs to mount from the
/// intermediate registry's repository that holds them (see
/// [`mount_hints`]).
type MountHints = HashMap<RepositoryName, Arc<HashMap<Digest, RepositoryName>>>;

/// Copy every push of `plan` from `src` (the buildset registry, named
/// `src_authority` in references) to `dst` (the intermediate registry),
/// or in check mode predict what each copy would do.
async fn push_all<S: Registry, D: Registry>(
    plan: &[Push],
    src: &Arc<S>,
    src_authority: &str,
    dst: &Arc<D>,
    hints: &MountHints,
    check_mode: bool,
) -> anyhow::Result<Vec<Pushed>> {
    let mut pushed = Vec::new();
    for push in plan {
        let source = Reference::new(
            src_authority.to_string(),
            push.source_repository.clone(),
            Some(push.tag.clone()),
        );
        let url = format!("docker://{}", push.destination);
        let report = if check_mode {
            predict_copy(src.as_ref(), &source, dst.as_ref(), &push.destination).await
        } else {
            let options = CopyOptions {
                mount_from: hints
                    .get(&push.source_repository)
                    .cloned()
                    .unwrap_or_default(),
                ..CopyOptions::default()
            };
            copy_reference(src, &source, dst, &push.destination, &options).await
        }
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

/// The blobs of `repository` that the buildset registry records as
/// living in the intermediate registry (a lazy pull), by the repository
/// there that holds them: mounted from it, never sent again. Nothing when
/// the buildset registry has no such records (or cannot list them).
async fn mount_hints(
    buildset: &RemoteRegistry,
    repository: &RepositoryName,
    intermediate: &IntermediateRegistry,
) -> Arc<HashMap<Digest, RepositoryName>> {
    let ours = format!("https://{}", intermediate.authority());
    let recorded = buildset.blob_sources(repository).await.unwrap_or_default();
    Arc::new(
        recorded
            .into_iter()
            .filter(|b| b.upstream.url.trim_end_matches('/') == ours)
            .filter_map(|b| Some((b.digest, b.upstream.repository.parse().ok()?)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::ManifestReference;

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

    #[tokio::test]
    async fn pushes_each_tag_once_mounts_what_the_intermediate_holds_and_check_mode_predicts() {
        use crate::client::MemoryRegistry;
        let (buildset, intermediate) = (
            MemoryRegistry::new("bsr:5000"),
            MemoryRegistry::new("inter:5000"),
        );
        let repo: RepositoryName = "org/img".parse().unwrap();
        let tag: Tag = "latest".parse().unwrap();
        let manifest = buildset.insert_image(&repo, Some(&tag), "amd64", &["base", "app"]);
        // A layer of a change ahead, pulled lazily: the intermediate
        // registry holds it in that change's repository.
        let ahead: RepositoryName = "org/base".parse().unwrap();
        let base = intermediate.insert_blob(&ahead, "base");
        let hints = MountHints::from([(
            repo.clone(),
            Arc::new(HashMap::from([(base.clone(), ahead.clone())])),
        )]);
        let images = vec![Image {
            repository: "org/img".into(),
            tags: latest(),
        }];
        let plan = plan(&images, "b1", "inter:5000").unwrap();
        let push = |check_mode| {
            push_all(
                &plan,
                &buildset,
                "bsr:5000",
                &intermediate,
                &hints,
                check_mode,
            )
        };

        let predicted = push(true).await.unwrap();
        assert!(predicted[0].changed);
        assert!(intermediate
            .operations()
            .iter()
            .all(|o| !o.contains("_put")));
        let pushed = push(false).await.unwrap();
        assert_eq!(
            pushed[0].digest.as_deref(),
            Some(manifest.digest.to_string().as_str())
        );
        assert!(pushed[0].changed);
        // The config and the new layer were sent; the base layer mounted.
        assert_eq!(pushed[0].blobs_copied, 2, "{:?}", intermediate.operations());
        assert!(intermediate
            .operations()
            .iter()
            .any(|o| o.starts_with("blob_mount org/img") && o.contains(&base.to_string())));
        let b1_latest: Tag = "b1_latest".parse().unwrap();
        assert_eq!(
            intermediate
                .manifest_head(&repo, &ManifestReference::Tag(b1_latest))
                .await
                .unwrap(),
            Some(manifest.digest.clone())
        );
        // Then check mode and a second push both find it there.
        assert!(!push(true).await.unwrap()[0].changed);
        assert!(!push(false).await.unwrap()[0].changed);
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
