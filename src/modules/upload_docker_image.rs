//! `upload_docker_image`: publish the images of `docker_images` to the
//! target registry (`docker_registry`, or Docker Hub) under their
//! temporary tags, for `promote_docker_image` to move the final tags onto
//! once the change merges; with `promote: false` under the final tags
//! directly (release pipelines). Both role families call it: the docker
//! family with `docker_credentials`, the container family with
//! `container_registry_credentials` and each image's `registry`. The
//! policy is in [`crate::publish`]; the copy is the client's copy engine.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};
use crate::client::runtime::block_on;
use crate::client::{Endpoint, RemoteRegistry};
use crate::publish::credentials::{Credentials, DockerCredentials, RegistryCredentials};
use crate::publish::targets::{image_references, uploads};
use crate::publish::upload::{copy_from_buildset, push_from_daemon, Uploaded};
use crate::zuul::results::find_buildset_registry;
use crate::zuul::{BuildsetRegistry, ContainerImage, ZuulContext};

/// Arguments of `upload_docker_image`.
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
    /// A login per registry host, looked up by each image's `registry`
    /// (the container family).
    #[serde(default)]
    pub container_registry_credentials: Option<BTreeMap<String, RegistryCredentials>>,
    /// False: publish under the final tags, not temporary ones.
    #[serde(default = "yes")]
    pub promote: bool,
    /// The target registry (default Docker Hub).
    #[serde(default)]
    pub docker_registry: Option<String>,
    /// PEM CA of the target registry, when not in the system store.
    #[serde(default)]
    pub docker_registry_cert: Option<String>,
    /// The buildset registry (default: from the result data file).
    #[serde(default)]
    pub buildset_registry: Option<BuildsetRegistry>,
    /// The `zuul` variable (`change`, `pipeline`).
    #[serde(default)]
    pub zuul: ZuulContext,
}

fn yes() -> bool {
    true
}

/// The `upload_docker_image` module.
pub struct UploadDockerImage;

impl Module for UploadDockerImage {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let credentials = Credentials::given(
            args.docker_credentials.as_ref(),
            args.container_registry_credentials.as_ref(),
            &mut ctx.secrets,
        )?;
        // Before anything is sent anywhere.
        let bases = image_references(&args.docker_images, args.docker_registry.as_deref())?;
        credentials.permit(&args.docker_images, &bases)?;
        let buildset = find_buildset_registry(args.buildset_registry.as_ref(), &args.zuul)?;
        if let Some(registry) = &buildset {
            ctx.secrets.add(registry.password.clone());
        }
        let pipeline = args.zuul.pipeline.clone().unwrap_or_default();
        if args.zuul.change.is_none() && pipeline.is_empty() {
            anyhow::bail!("zuul.change or zuul.pipeline is needed to name the temporary tags");
        }
        let planned = uploads(
            &args.docker_images,
            args.docker_registry.as_deref(),
            buildset.as_ref().map(|r| r.authority()).as_deref(),
            args.zuul.change.as_deref(),
            &pipeline,
            args.promote,
        )?;
        let targets: Vec<String> = planned.iter().map(|u| u.target.to_string()).collect();
        let uploaded = match &buildset {
            Some(registry) => {
                let source = RemoteRegistry::new(Endpoint::from(registry))?;
                let mut handles = HashMap::new();
                for upload in &planned {
                    if !handles.contains_key(&upload.target.registry) {
                        let login = login_for(&credentials, &upload.target.registry)?;
                        let handle = RemoteRegistry::new(login.endpoint(
                            &upload.target.registry,
                            args.docker_registry_cert.as_deref(),
                        ))?;
                        handles.insert(upload.target.registry.clone(), handle);
                    }
                }
                block_on(copy_from_buildset(
                    &source,
                    &handles,
                    &planned,
                    ctx.check_mode,
                ))
                .context("starting the async runtime")??
            }
            // A push from the daemon always writes; nothing to ask first.
            None if ctx.check_mode => planned.iter().map(Uploaded::predicted_push).collect(),
            None => {
                let registries: Vec<&str> =
                    planned.iter().map(|u| u.target.registry.as_str()).collect();
                let mut pushed = Vec::new();
                for registry in registries
                    .iter()
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let login = login_for(&credentials, registry)?;
                    let (username, password) = login.login().with_context(|| {
                        format!("the credentials for {registry} have no username and password")
                    })?;
                    let here: Vec<_> = planned
                        .iter()
                        .filter(|u| u.target.registry == registry)
                        .cloned()
                        .collect();
                    pushed.extend(push_from_daemon(&here, username, password).context(
                        "pushing from the local Docker daemon (no buildset registry is known)",
                    )?);
                }
                pushed
            }
        };
        let changed = uploaded.iter().any(|u| u.changed);
        Ok(Outcome::new(changed)
            .msg(format!(
                "{} {} tag(s) under {} tags, {} changed",
                if ctx.check_mode {
                    "would upload"
                } else {
                    "uploaded"
                },
                uploaded.len(),
                if args.promote { "temporary" } else { "final" },
                uploaded.iter().filter(|u| u.changed).count()
            ))
            .value("targets", targets)
            .value("uploaded", uploaded))
    }
}

/// The login `credentials` hold for `registry` (checked by `permit`
/// already, so only a daemon push to a host no image names can miss).
fn login_for<'a>(
    credentials: &'a Credentials,
    registry: &str,
) -> anyhow::Result<&'a RegistryCredentials> {
    credentials
        .for_registry(registry)
        .with_context(|| format!("no credentials for registry {registry}"))
}
