//! `build_docker_image`: build every image of `docker_images` with the
//! host's builder, tag it for the change, and push its tags to the buildset
//! registry when one is known. The naming rules live in
//! [`crate::builder::plan`], the builders in [`crate::builder`].
//!
//! An image with `arch` is built for each platform and published in the
//! buildset registry as one image index under every tag
//! ([`crate::builder::index`]); its digest is what the transfer, upload
//! and promote modules carry on. The same module serves both families of
//! Zuul's roles (`family: docker` or `container`), which differ only in
//! defaults.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::ansible::{Context, Module, Outcome};
use crate::builder::index::{self, PublishedIndex};
use crate::builder::plan::{plan_all, DefaultFile, Entry, ImageList, ImagePlan, PlanOptions, Push};
use crate::builder::siblings::SiblingsCopy;
use crate::builder::{self, AuthFile, Builder, PlatformsBuilt, PlatformsPushed, RegistryLogin};
use crate::client::{runtime, Endpoint, RemoteRegistry};
use crate::host::docker_preload;
use crate::oci::{RepositoryName, Tag};
use crate::zuul::results::find_buildset_registry;
use crate::zuul::{BuildsetRegistry, ContainerImage, ZuulContext};

/// Which of Zuul's role families the call comes from: it sets the
/// defaults of `container_command` and of the file an image is built from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// The `docker_*` roles: docker, `Dockerfile`.
    #[default]
    Docker,
    /// The `container_*` roles: podman, `Containerfile` when the context
    /// has one, else `Dockerfile`.
    Container,
}

/// Arguments of `build_docker_image`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The images to build (`container_images` is accepted too).
    #[serde(alias = "container_images")]
    pub docker_images: Vec<ContainerImage>,
    /// The `zuul` variable.
    #[serde(default)]
    pub zuul: ZuulContext,
    /// Directory contexts are relative to (default `~/<zuul.project.src_dir>`).
    #[serde(default)]
    pub zuul_work_dir: Option<PathBuf>,
    /// Dockerfile of images that name none (`container_filename` in the
    /// container family); default per `family`.
    #[serde(default, alias = "container_filename")]
    pub docker_dockerfile: Option<String>,
    /// The role family whose defaults apply.
    #[serde(default)]
    pub family: Family,
    /// Registry prefix of every repository.
    #[serde(default)]
    pub docker_registry: Option<String>,
    /// The buildset registry (default: from the result data file).
    #[serde(default)]
    pub buildset_registry: Option<BuildsetRegistry>,
    /// `docker`, `podman` or `buildah` (default per `family`).
    #[serde(default)]
    pub container_command: Option<String>,
    /// Added to the builder's environment (`container_build_extra_env`).
    #[serde(default, alias = "container_build_extra_env")]
    pub build_extra_env: std::collections::BTreeMap<String, String>,
    /// Where build logs go (default `~/zuul-output/logs/container-builds`,
    /// which Zuul collects from nodes).
    #[serde(default)]
    pub build_log_dir: Option<PathBuf>,
}

/// What the module returns per image.
#[derive(Debug, Serialize)]
struct Built {
    repository: String,
    tags: Vec<String>,
    buildset_registry_tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_id: Option<String>,
    /// The platforms of an `arch` build, as asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    arch: Vec<String>,
    /// Per platform, the local image (docker: image ID of its own tag;
    /// podman, buildah: manifest digest in the local manifest list).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    local_platforms: Vec<LocalPlatform>,
    /// The index published in the buildset registry (`arch` builds).
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<PublishedIndex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<PathBuf>,
}

/// One platform of an `arch` build, as left locally.
#[derive(Debug, Serialize)]
struct LocalPlatform {
    platform: String,
    image_id: String,
}

/// What one image's build left.
enum BuiltImage {
    /// One image (no `arch`): its ID.
    Single(String),
    /// Every platform of `arch`.
    Platforms(PlatformsBuilt),
}

/// The `build_docker_image` module.
pub struct BuildDockerImage;

impl Module for BuildDockerImage {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let command = args.container_command.clone().unwrap_or_else(|| {
            match args.family {
                Family::Docker => "docker",
                Family::Container => "podman",
            }
            .to_string()
        });
        let builder = builder::for_command(&command)?;
        let registry = find_buildset_registry(args.buildset_registry.as_ref(), &args.zuul)?;
        if let Some(registry) = &registry {
            ctx.secrets.add(registry.password.clone());
        }
        let list = match args.family {
            Family::Docker => ImageList::DockerImages,
            Family::Container => ImageList::ContainerImages,
        };
        let entry = |index| Entry { list, index };
        let options = PlanOptions {
            list,
            work_dir: work_dir(&args)?,
            default_dockerfile: match (&args.docker_dockerfile, args.family) {
                (Some(name), _) => DefaultFile::Named(name.clone()),
                (None, Family::Docker) => DefaultFile::default(),
                (None, Family::Container) => DefaultFile::ContainerfileOrDockerfile,
            },
            docker_registry: args.docker_registry.clone(),
            change: args.zuul.change.clone(),
            change_url: args.zuul.change_url.clone(),
            pipeline: args.zuul.pipeline.clone(),
            buildset_authority: registry
                .as_ref()
                .map(|r| builder::tool_authority(&r.host, r.port)),
            build_env: args.build_extra_env.clone(),
        };
        let plans = plan_all(&args.docker_images, &options)?;
        // What the builder cannot do fails before anything is built.
        for (index, plan) in plans.iter().enumerate() {
            builder
                .check(&plan.spec)
                .with_context(|| format!("{} ({})", entry(index), plan.repository))?;
        }

        if ctx.check_mode {
            let images: Vec<Built> = plans.iter().map(|p| report(p, None, None, None)).collect();
            return Ok(Outcome::new(!images.is_empty())
                .msg(format!("would build {} image(s)", images.len()))
                .value("images", images)
                .value("preloaded", Vec::<String>::new()));
        }

        // Docker mirrors only Docker Hub: a FROM naming another registry's
        // image would go to that registry itself. The buildset registry's
        // images of other registries are put in docker's store under their
        // own names first, as use_buildset_registry does; in the
        // producers-only layout those of the changes ahead arrive only
        // after that role ran.
        let preloaded = match &registry {
            Some(registry) if builder.mirrors_only_docker_hub() => {
                preload_other_registries(registry)?
            }
            _ => Vec::new(),
        };

        let log_dir = log_dir(&args)?;
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating the build log directory {}", log_dir.display()))?;
        let home_src = home()?.join("src");

        // Build everything first: a failed build publishes nothing.
        let mut built = Vec::new();
        let mut changed = !preloaded.is_empty();
        for (index, plan) in plans.iter().enumerate() {
            let log_path = log_dir.join(log_name(&plan.repository));
            let mut log = File::create(&log_path)
                .with_context(|| format!("creating the build log {}", log_path.display()))?;
            let failed = |what: &str| {
                format!(
                    "{what} {} ({}), log in {}",
                    entry(index),
                    plan.repository,
                    log_path.display()
                )
            };
            let copy = if plan.siblings.is_empty() {
                None
            } else {
                Some(
                    SiblingsCopy::create(&plan.spec.context_dir, &home_src, &plan.siblings)
                        .with_context(|| failed("preparing the siblings of"))?,
                )
            };
            let (image, moved) =
                build_one(builder.as_ref(), plan, &mut log).with_context(|| failed("building"))?;
            drop(copy);
            changed |= moved;
            built.push((image, log_path));
        }

        let mut indexes = vec![None; plans.len()];
        if let Some(registry) = &registry {
            let login = login(registry);
            let client = RemoteRegistry::new(Endpoint::from(registry))
                .context("setting up a client of the buildset registry")?;
            for (n, (plan, (image, log_path))) in plans.iter().zip(&built).enumerate() {
                let mut log = File::options()
                    .append(true)
                    .open(log_path)
                    .with_context(|| format!("opening the build log {}", log_path.display()))?;
                let pushing = |local: &str| {
                    format!(
                        "pushing {local} to the buildset registry, log in {}",
                        log_path.display()
                    )
                };
                match image {
                    BuiltImage::Single(_) => {
                        for Push { local, remote } in &plan.pushes {
                            builder
                                .push(local, remote, &login, &mut log)
                                .with_context(|| pushing(local))?;
                        }
                    }
                    BuiltImage::Platforms(_) => {
                        let Some(first) = plan.pushes.first() else {
                            continue;
                        };
                        let pushed = builder
                            .push_platforms(
                                &plan.spec,
                                &first.local,
                                &first.remote,
                                &login,
                                &mut log,
                            )
                            .with_context(|| pushing(&first.local))?;
                        let published = publish_index(&client, plan, pushed)
                            .with_context(|| pushing(&first.local))?;
                        indexes[n] = Some(published);
                    }
                }
            }
        }

        let images: Vec<Built> = plans
            .iter()
            .zip(built)
            .zip(indexes)
            .map(|((plan, (image, log)), index)| report(plan, Some(image), index, Some(log)))
            .collect();
        let pushed: usize = images.iter().map(|i| i.buildset_registry_tags.len()).sum();
        Ok(Outcome::new(changed)
            .msg(format!(
                "built {} image(s) with {}, pushed {pushed} tag(s) to the buildset registry",
                images.len(),
                builder.name()
            ))
            .value("images", images)
            .value("preloaded", preloaded))
    }
}

/// How the builder logs in to the buildset registry.
fn login(registry: &BuildsetRegistry) -> RegistryLogin {
    RegistryLogin {
        authority: builder::tool_authority(&registry.host, registry.port),
        username: registry.username.clone(),
        password: registry.password.clone(),
        ca_pem: Some(registry.cert.clone()),
    }
}

/// Pull into docker every image of another registry the buildset registry
/// holds that docker lacks, tagged with its upstream name.
fn preload_other_registries(registry: &BuildsetRegistry) -> anyhow::Result<Vec<String>> {
    let login = login(registry);
    let auth = AuthFile::write(&login)?;
    let client = RemoteRegistry::new(Endpoint::from(registry))?;
    docker_preload::preload_missing(&client, &login.authority, auth.docker_config_dir(), false)
        .context("preloading the buildset registry's images of other registries into docker")
}

/// Build one image (every platform of an `arch` build); returns what was
/// built and whether a local name moved (a rebuild from the cache moves
/// none).
fn build_one(
    builder: &dyn Builder,
    plan: &ImagePlan,
    log: &mut File,
) -> Result<(BuiltImage, bool), builder::BuildError> {
    if !plan.spec.platforms.is_empty() {
        let built = builder.build_platforms(&plan.spec, log)?;
        let changed = built.changed;
        return Ok((BuiltImage::Platforms(built), changed));
    }
    let before = plan
        .spec
        .tags
        .iter()
        .map(|tag| builder.image_id(tag))
        .collect::<Result<Vec<_>, _>>()?;
    let image_id = builder.build(&plan.spec, log)?;
    let changed = before
        .iter()
        .any(|id| id.as_deref() != Some(image_id.as_str()));
    Ok((BuiltImage::Single(image_id), changed))
}

/// Write the one index of an `arch` build under every buildset tag of
/// `plan`, from what the builder pushed.
fn publish_index(
    client: &std::sync::Arc<RemoteRegistry>,
    plan: &ImagePlan,
    pushed: PlatformsPushed,
) -> anyhow::Result<PublishedIndex> {
    let repository: RepositoryName = plan
        .buildset_repository
        .parse()
        .with_context(|| format!("buildset repository {:?}", plan.buildset_repository))?;
    let tag = |name: &str| -> anyhow::Result<Tag> {
        name.parse().with_context(|| format!("tag {name:?}"))
    };
    let tags = plan
        .pushes
        .iter()
        .map(|p| {
            tag(p
                .remote
                .rsplit_once(':')
                .map(|(_, t)| t)
                .unwrap_or_default())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let published = match pushed {
        PlatformsPushed::Index(from) => {
            let from = tag(&from)?;
            runtime::block_on(index::adopt(
                client,
                &repository,
                &from,
                &plan.spec.platforms,
                &tags,
            ))
        }
        PlatformsPushed::PerPlatform(parts) => {
            let parts = parts
                .into_iter()
                .map(|(platform, name)| Ok((platform, tag(&name)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            runtime::block_on(index::assemble(client, &repository, &parts, &tags))
        }
    };
    Ok(published.context("starting the client")??)
}

fn report(
    plan: &ImagePlan,
    image: Option<BuiltImage>,
    index: Option<PublishedIndex>,
    log: Option<PathBuf>,
) -> Built {
    let (image_id, local_platforms) = match image {
        Some(BuiltImage::Single(id)) => (Some(id), Vec::new()),
        Some(BuiltImage::Platforms(built)) => (
            None,
            built
                .images
                .into_iter()
                .map(|(platform, image_id)| LocalPlatform {
                    platform: platform.to_string(),
                    image_id,
                })
                .collect(),
        ),
        None => (None, Vec::new()),
    };
    Built {
        repository: plan.repository.clone(),
        tags: plan.spec.tags.clone(),
        buildset_registry_tags: plan.pushes.iter().map(|p| p.remote.clone()).collect(),
        image_id,
        arch: plan
            .spec
            .platforms
            .iter()
            .map(ToString::to_string)
            .collect(),
        local_platforms,
        index,
        log,
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")
}

/// `path` with a leading `~` expanded; relative paths are under the home
/// directory too.
fn under_home(path: &Path) -> anyhow::Result<PathBuf> {
    let rest = path.strip_prefix("~").unwrap_or(path);
    if rest.is_absolute() {
        return Ok(rest.to_path_buf());
    }
    Ok(home()?.join(rest))
}

fn work_dir(args: &Args) -> anyhow::Result<PathBuf> {
    // Relative paths are relative to the home directory, like Zuul's
    // `zuul.project.src_dir`.
    if let Some(dir) = &args.zuul_work_dir {
        return under_home(dir);
    }
    let src_dir = args
        .zuul
        .project
        .as_ref()
        .and_then(|p| p.src_dir.as_deref())
        .context("zuul_work_dir is not set and zuul.project.src_dir is unknown")?;
    Ok(home()?.join(src_dir))
}

fn log_dir(args: &Args) -> anyhow::Result<PathBuf> {
    match &args.build_log_dir {
        Some(dir) => under_home(dir),
        None => Ok(home()?.join("zuul-output/logs/container-builds")),
    }
}

/// `org/app` → `org_app.log`.
fn log_name(repository: &str) -> String {
    let safe: String = repository
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.log")
}
