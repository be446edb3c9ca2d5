//! `promote_docker_image` (executor only, no node): move the final tags of
//! `docker_images` onto the images `upload_docker_image` published under
//! temporary tags, by writing their manifests, never their layers; then
//! delete the temporary tags and the ones older than a day that earlier
//! uploads leaked. The steps are in [`crate::publish::promote`] and
//! [`crate::publish::cleanup`].

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};
use crate::client::runtime::block_on;
use crate::client::{RemoteRegistry, HUB_API_URL};
use crate::oci::{Reference, Tag};
use crate::publish::cleanup::{after_promote, Cleanup};
use crate::publish::credentials::DockerCredentials;
use crate::publish::promote::{read_temporaries, write_all, Promoted, TagPromotion};
use crate::zuul::full_repository;
use crate::zuul::{temporary_tag, ContainerImage, ZuulContext};

/// Arguments of `promote_docker_image`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The images (`container_images` is accepted too).
    #[serde(alias = "container_images")]
    pub docker_images: Vec<ContainerImage>,
    /// Login for the target registry, and the repositories it may write.
    pub docker_credentials: DockerCredentials,
    /// The target registry (default Docker Hub).
    #[serde(default)]
    pub docker_registry: Option<String>,
    /// PEM CA of the target registry, when not in the system store.
    #[serde(default)]
    pub docker_registry_cert: Option<String>,
    /// Docker Hub's API, for its tag deletes (tests point it elsewhere).
    #[serde(default)]
    pub docker_hub_api: Option<String>,
    /// The `zuul` variable (`change`, `pipeline`).
    #[serde(default)]
    pub zuul: ZuulContext,
}

/// The `promote_docker_image` module.
pub struct PromoteDockerImage;

impl Module for PromoteDockerImage {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        args.docker_credentials
            .permit(args.docker_images.iter().map(|i| i.repository.as_str()))?;
        let by_registry = plan(&args)?;
        let check_mode = ctx.check_mode;
        let (promoted, cleanup) = block_on(promote(&args, by_registry, check_mode))
            .context("starting the async runtime")??;
        for warning in &cleanup.warnings {
            ctx.warn(warning.clone());
        }
        let verb = if check_mode {
            "would promote"
        } else {
            "promoted"
        };
        // The temporary tags are deleted after a promote (check mode reads
        // them, so it predicts that they will be): a change too.
        let deletes = if check_mode {
            !promoted.is_empty()
        } else {
            !cleanup.deleted.is_empty()
        };
        let moved = promoted.iter().filter(|p| p.changed).count();
        Ok(Outcome::new(moved > 0 || deletes)
            .msg(format!("{verb} {} tag(s), {moved} moved", promoted.len()))
            .value("promoted", promoted)
            .value("deleted", cleanup.deleted))
    }
}

/// Every tag to promote, grouped by target registry.
fn plan(args: &Args) -> anyhow::Result<BTreeMap<String, Vec<TagPromotion>>> {
    let pipeline = args.zuul.pipeline.clone().unwrap_or_default();
    if args.zuul.change.is_none() && pipeline.is_empty() {
        anyhow::bail!("zuul.change or zuul.pipeline is needed to name the temporary tags");
    }
    let mut by_registry: BTreeMap<String, Vec<TagPromotion>> = BTreeMap::new();
    for (index, image) in args.docker_images.iter().enumerate() {
        let full = full_repository(&image.repository, args.docker_registry.as_deref());
        let reference: Reference = full
            .parse()
            .with_context(|| format!("docker_images[{index}].repository"))?;
        for tag in &image.tags {
            let final_tag: Tag = tag
                .parse()
                .with_context(|| format!("docker_images[{index}].tags"))?;
            let temporary: Tag = temporary_tag(args.zuul.change.as_deref(), &pipeline, tag)
                .parse()
                .with_context(|| format!("docker_images[{index}].tags"))?;
            by_registry
                .entry(reference.registry.clone())
                .or_default()
                .push(TagPromotion {
                    repository: reference.repository.clone(),
                    temporary,
                    final_tag,
                });
        }
    }
    Ok(by_registry)
}

async fn promote(
    args: &Args,
    by_registry: BTreeMap<String, Vec<TagPromotion>>,
    check_mode: bool,
) -> anyhow::Result<(Vec<Promoted>, Cleanup)> {
    let creds = &args.docker_credentials;
    let mut handles = Vec::new();
    for (registry, promotions) in by_registry {
        let endpoint = creds.endpoint(&registry, args.docker_registry_cert.as_deref());
        handles.push((RemoteRegistry::new(endpoint)?, promotions));
    }

    // Read every temporary tag before writing any final one.
    let mut reads = Vec::new();
    for (handle, promotions) in &handles {
        reads.push(read_temporaries(handle.as_ref(), promotions).await?);
    }
    let mut promoted = Vec::new();
    let mut cleanup = Cleanup::default();
    for ((handle, promotions), manifests) in handles.iter().zip(&reads) {
        promoted.extend(write_all(handle.as_ref(), promotions, manifests, check_mode).await?);
        if !check_mode {
            clean_up(args, handle, promotions, &mut cleanup).await;
        }
    }
    Ok((promoted, cleanup))
}

/// Delete the promoted temporary tags, then leaked ones; only warns.
async fn clean_up(
    args: &Args,
    handle: &Arc<RemoteRegistry>,
    promotions: &[TagPromotion],
    report: &mut Cleanup,
) {
    let hub_api = (handle.endpoint().api_authority() == crate::oci::reference::DOCKER_HUB_API)
        .then(|| args.docker_hub_api.as_deref().unwrap_or(HUB_API_URL));
    after_promote(
        handle.as_ref(),
        hub_api,
        &args.docker_credentials,
        promotions,
        args.zuul.pipeline.as_deref(),
        chrono::Utc::now(),
        report,
    )
    .await;
}
