//! `build_docker_image`: build every image of `docker_images` with the
//! host's builder, tag it for the change, and push its tags to the buildset
//! registry when one is known. The naming rules live in
//! [`crate::builder::plan`], the builders in [`crate::builder`].

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::ansible::{Context, Module, Outcome};
use crate::builder::plan::{plan_all, ImagePlan, PlanOptions, Push};
use crate::builder::siblings::SiblingsCopy;
use crate::builder::{self, AuthFile, RegistryLogin};
use crate::client::{Endpoint, RemoteRegistry};
use crate::host::docker_preload;
use crate::zuul::results::find_buildset_registry;
use crate::zuul::{BuildsetRegistry, ContainerImage, ZuulContext};

fn default_dockerfile() -> String {
    "Dockerfile".to_string()
}

fn default_container_command() -> String {
    "docker".to_string()
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
    /// Dockerfile of images that name none.
    #[serde(default = "default_dockerfile")]
    pub docker_dockerfile: String,
    /// Registry prefix of every repository.
    #[serde(default)]
    pub docker_registry: Option<String>,
    /// The buildset registry (default: from the result data file).
    #[serde(default)]
    pub buildset_registry: Option<BuildsetRegistry>,
    /// `docker`, `podman` or `buildah`.
    #[serde(default = "default_container_command")]
    pub container_command: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<PathBuf>,
}

/// The `build_docker_image` module.
pub struct BuildDockerImage;

impl Module for BuildDockerImage {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let builder = builder::for_command(&args.container_command)?;
        let registry = find_buildset_registry(args.buildset_registry.as_ref(), &args.zuul)?;
        if let Some(registry) = &registry {
            ctx.secrets.add(registry.password.clone());
        }
        let options = PlanOptions {
            work_dir: work_dir(&args)?,
            default_dockerfile: args.docker_dockerfile.clone(),
            docker_registry: args.docker_registry.clone(),
            change: args.zuul.change.clone(),
            pipeline: args.zuul.pipeline.clone(),
            buildset_authority: registry
                .as_ref()
                .map(|r| builder::tool_authority(&r.host, r.port)),
        };
        let plans = plan_all(&args.docker_images, &options)?;
        // What the builder cannot do fails before anything is built.
        for (index, plan) in plans.iter().enumerate() {
            builder
                .check(&plan.spec)
                .with_context(|| format!("docker_images[{index}] ({})", plan.repository))?;
        }

        if ctx.check_mode {
            let images: Vec<Built> = plans.iter().map(|p| report(p, None, None)).collect();
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
                    "{what} docker_images[{index}] ({}), log in {}",
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
            let before = plan
                .spec
                .tags
                .iter()
                .map(|tag| builder.image_id(tag))
                .collect::<Result<Vec<_>, _>>()?;
            let image_id = builder
                .build(&plan.spec, &mut log)
                .with_context(|| failed("building"))?;
            drop(copy);
            // A rebuild from the cache moves no tag: nothing changed.
            changed |= before
                .iter()
                .any(|id| id.as_deref() != Some(image_id.as_str()));
            built.push((image_id, log_path));
        }

        if let Some(registry) = &registry {
            let login = login(registry);
            for (plan, (_, log_path)) in plans.iter().zip(&built) {
                let mut log = File::options()
                    .append(true)
                    .open(log_path)
                    .with_context(|| format!("opening the build log {}", log_path.display()))?;
                for Push { local, remote } in &plan.pushes {
                    builder
                        .push(local, remote, &login, &mut log)
                        .with_context(|| {
                            format!(
                                "pushing {local} to the buildset registry, log in {}",
                                log_path.display()
                            )
                        })?;
                }
            }
        }

        let images: Vec<Built> = plans
            .iter()
            .zip(built)
            .map(|(plan, (id, log))| report(plan, Some(id), Some(log)))
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

fn report(plan: &ImagePlan, image_id: Option<String>, log: Option<PathBuf>) -> Built {
    Built {
        repository: plan.repository.clone(),
        tags: plan.spec.tags.clone(),
        buildset_registry_tags: plan.pushes.iter().map(|p| p.remote.clone()).collect(),
        image_id,
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
