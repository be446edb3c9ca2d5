//! `promote_docker_image` (executor only, no node): move the final tags of
//! `docker_images` onto the images `upload_docker_image` published under
//! temporary tags, by writing their manifests, never their layers; then
//! delete the temporary tags and the ones older than a day that earlier
//! uploads leaked. With `method: intermediate-registry` (the container
//! family's newer mode) it copies the gate build's image from the
//! intermediate registry to the final tag instead. Both role families call
//! it. The steps are in [`crate::publish::promote`],
//! [`crate::publish::intermediate`] and [`crate::publish::cleanup`].

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};
use crate::client::runtime::block_on;
use crate::client::{Endpoint, RemoteRegistry};
use crate::oci::{Reference, Tag};
use crate::publish::cleanup::{after_promote, Cleanup, TagApi};
use crate::publish::credentials::{Credentials, DockerCredentials, RegistryCredentials};
use crate::publish::intermediate::{
    artifacts_from_api, image_artifacts, plan as plan_from_gate, promote_all, PromotedFromGate,
};
use crate::publish::promote::{read_temporaries, write_all, Promoted, TagPromotion};
use crate::publish::targets::image_references;
use crate::zuul::{temporary_tag, ContainerImage, IntermediateRegistry, ZuulContext};

/// How the final tags are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// From the upload's temporary tags, manifests only.
    #[default]
    Tag,
    /// From the gate build's image in the intermediate registry.
    IntermediateRegistry,
}

/// Arguments of `promote_docker_image`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The images (`container_images` is accepted too).
    #[serde(alias = "container_images")]
    pub docker_images: Vec<ContainerImage>,
    /// Login for the target registry, and the repositories it may write
    /// (the docker family).
    #[serde(default)]
    pub docker_credentials: Option<DockerCredentials>,
    /// A login per registry host, by each image's `registry` (the
    /// container family).
    #[serde(default)]
    pub container_registry_credentials: Option<BTreeMap<String, RegistryCredentials>>,
    /// The target registry (default Docker Hub).
    #[serde(default)]
    pub docker_registry: Option<String>,
    /// PEM CA of the target registry, when not in the system store.
    #[serde(default)]
    pub docker_registry_cert: Option<String>,
    /// Docker Hub's API, for its tag deletes (tests point it elsewhere).
    #[serde(default)]
    pub docker_hub_api: Option<String>,
    /// quay.io's API, for its tag deletes (default `https://<registry>/api/v1`).
    #[serde(default)]
    pub quay_api: Option<String>,
    /// `tag` (default) or `intermediate-registry`.
    #[serde(default)]
    pub method: Method,
    /// The site's intermediate registry (method `intermediate-registry`).
    #[serde(default)]
    pub intermediate_registry: Option<IntermediateRegistry>,
    /// Zuul's REST API for the tenant, to find the gate build when
    /// `zuul.artifacts` has no images.
    #[serde(default)]
    pub api: Option<String>,
    /// The pipeline the gate build ran in (for the default query).
    #[serde(default)]
    pub api_pipeline: Option<String>,
    /// The gate build's job (for the default query).
    #[serde(default)]
    pub api_job: Option<String>,
    /// The query for `<api>/builds` (default: change, patchset, pipeline,
    /// job name).
    #[serde(default)]
    pub api_query: Option<String>,
    /// PEM CA of Zuul's API, when not in the system store.
    #[serde(default)]
    pub api_cert: Option<String>,
    /// The `zuul` variable (`change`, `pipeline`, `artifacts`).
    #[serde(default)]
    pub zuul: ZuulContext,
}

/// The `promote_docker_image` module.
pub struct PromoteDockerImage;

impl Module for PromoteDockerImage {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let credentials = Credentials::given(
            args.docker_credentials.as_ref(),
            args.container_registry_credentials.as_ref(),
            &mut ctx.secrets,
        )?;
        if let Some(inter) = &args.intermediate_registry {
            ctx.secrets.add(inter.password.clone());
        }
        let bases = image_references(&args.docker_images, args.docker_registry.as_deref())?;
        credentials.permit(&args.docker_images, &bases)?;
        if args.method == Method::IntermediateRegistry {
            return from_intermediate(&args, &credentials, &bases, ctx);
        }
        let by_registry = plan(&args, &bases)?;
        let check_mode = ctx.check_mode;
        let (promoted, cleanup) = block_on(promote(&args, &credentials, by_registry, check_mode))
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
fn plan(args: &Args, bases: &[Reference]) -> anyhow::Result<BTreeMap<String, Vec<TagPromotion>>> {
    let pipeline = args.zuul.pipeline.clone().unwrap_or_default();
    if args.zuul.change.is_none() && pipeline.is_empty() {
        anyhow::bail!("zuul.change or zuul.pipeline is needed to name the temporary tags");
    }
    let mut by_registry: BTreeMap<String, Vec<TagPromotion>> = BTreeMap::new();
    for (index, (image, reference)) in args.docker_images.iter().zip(bases).enumerate() {
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

/// A handle on `registry` logged in with its credentials.
fn target(
    args: &Args,
    credentials: &Credentials,
    registry: &str,
) -> anyhow::Result<(Arc<RemoteRegistry>, RegistryCredentials)> {
    let login = credentials
        .for_registry(registry)
        .with_context(|| format!("no credentials for registry {registry}"))?
        .clone();
    let endpoint = login.endpoint(registry, args.docker_registry_cert.as_deref());
    Ok((RemoteRegistry::new(endpoint)?, login))
}

async fn promote(
    args: &Args,
    credentials: &Credentials,
    by_registry: BTreeMap<String, Vec<TagPromotion>>,
    check_mode: bool,
) -> anyhow::Result<(Vec<Promoted>, Cleanup)> {
    let mut handles = Vec::new();
    for (registry, promotions) in by_registry {
        let (handle, login) = target(args, credentials, &registry)?;
        handles.push((handle, login, promotions));
    }

    // Read every temporary tag before writing any final one.
    let mut reads = Vec::new();
    for (handle, _, promotions) in &handles {
        reads.push(read_temporaries(handle.as_ref(), promotions).await?);
    }
    let mut promoted = Vec::new();
    let mut cleanup = Cleanup::default();
    for ((handle, login, promotions), manifests) in handles.iter().zip(&reads) {
        promoted.extend(write_all(handle.as_ref(), promotions, manifests, check_mode).await?);
        if !check_mode {
            clean_up(args, handle, login, promotions, &mut cleanup).await;
        }
    }
    Ok((promoted, cleanup))
}

/// Delete the promoted temporary tags, then leaked ones; only warns.
async fn clean_up(
    args: &Args,
    handle: &Arc<RemoteRegistry>,
    login: &RegistryCredentials,
    promotions: &[TagPromotion],
    report: &mut Cleanup,
) {
    let registry = handle.endpoint().registry.clone();
    let api = if handle.endpoint().api_authority() == crate::oci::reference::DOCKER_HUB_API {
        Ok(TagApi::Hub)
    } else {
        TagApi::of(&registry, login.kind.as_deref())
    };
    let api = match api {
        Ok(api) => api,
        Err(why) => {
            report.warnings.push(why);
            return;
        }
    };
    let url = match api {
        TagApi::Hub => args.docker_hub_api.as_deref(),
        TagApi::Quay => args.quay_api.as_deref(),
        TagApi::Registry => None,
    };
    after_promote(
        handle.as_ref(),
        api,
        &api.base(&registry, url),
        login,
        promotions,
        args.zuul.pipeline.as_deref(),
        chrono::Utc::now(),
        report,
    )
    .await;
}

/// `method: intermediate-registry`: copy each tag's gate image from the
/// intermediate registry to its final tag.
fn from_intermediate(
    args: &Args,
    credentials: &Credentials,
    bases: &[Reference],
    ctx: &mut Context,
) -> anyhow::Result<Outcome> {
    let intermediate = args
        .intermediate_registry
        .as_ref()
        .context("method intermediate-registry needs intermediate_registry")?;
    let mut wanted = Vec::new();
    for (index, (image, base)) in args.docker_images.iter().zip(bases).enumerate() {
        for tag in &image.tags {
            let tag_name: Tag = tag
                .parse()
                .with_context(|| format!("container_images[{index}].tags"))?;
            wanted.push((
                image.repository.clone(),
                tag.clone(),
                base.with_tag(tag_name),
            ));
        }
    }
    let check_mode = ctx.check_mode;
    let (promoted, from): (Vec<PromotedFromGate>, &str) = block_on(async {
        let mut from = "zuul.artifacts";
        let mut artifacts = image_artifacts(&args.zuul.artifacts);
        if artifacts.is_empty() {
            let api = args.api.as_deref().context(
                "zuul.artifacts holds no container_image artifact and promote_container_image_api \
                 is not set, so the gate build cannot be found",
            )?;
            let query = match &args.api_query {
                Some(query) => query.clone(),
                None => default_query(args)?,
            };
            artifacts =
                image_artifacts(&artifacts_from_api(api, &query, args.api_cert.as_deref()).await?);
            from = "Zuul's API";
        }
        let planned = plan_from_gate(&wanted, &artifacts, &intermediate.authority())?;
        let source = RemoteRegistry::new(Endpoint::from(intermediate))?;
        let mut targets = BTreeMap::new();
        for p in &planned {
            if !targets.contains_key(&p.target.registry) {
                let (handle, _) = target(args, credentials, &p.target.registry)?;
                targets.insert(p.target.registry.clone(), handle);
            }
        }
        anyhow::Ok((
            promote_all(&source, &targets, &planned, check_mode).await?,
            from,
        ))
    })
    .context("starting the async runtime")??;
    let moved = promoted.iter().filter(|p| p.changed).count();
    let verb = if check_mode {
        "would promote"
    } else {
        "promoted"
    };
    Ok(Outcome::new(moved > 0)
        .msg(format!(
            "{verb} {} tag(s) from the intermediate registry (gate build found in {from}), \
             {moved} moved; every final tag names the digest the gate tested",
            promoted.len()
        ))
        .value("promoted", promoted)
        .value("deleted", Vec::<String>::new()))
}

/// zuul-jobs' default query: this change and patchset, in the gate
/// build's pipeline and job.
fn default_query(args: &Args) -> anyhow::Result<String> {
    let need = |value: &Option<String>, name: &str| {
        value
            .clone()
            .with_context(|| format!("{name} is needed to query Zuul's API for the gate build"))
    };
    Ok(format!(
        "change={}&patchset={}&pipeline={}&job_name={}",
        need(&args.zuul.change, "zuul.change")?,
        need(&args.zuul.patchset, "zuul.patchset")?,
        need(&args.api_pipeline, "promote_container_image_pipeline")?,
        need(&args.api_job, "promote_container_image_job")?,
    ))
}
