//! What to build and under which names, decided before anything runs:
//! the naming rules of `build_docker_image` in one pure function, so check
//! mode reports exactly what a real run does.
//!
//! For an image `org/img` with tags `[latest]` in change 42, the build is
//! tagged `org/img:latest` and `org/img:change_42_latest` (with
//! `docker_registry` set, both under `<docker_registry>/org/img`), labelled
//! `org.zuul-ci.change=42`, and each plain tag is pushed to the buildset
//! registry as `<authority>/<buildset repository>:latest`, the buildset
//! repository being the image's `repository` (not prefixed with
//! `docker_registry`) under the shared naming rule, as zuul-jobs does and
//! as `push_to_intermediate_registry` looks it up.

use std::path::PathBuf;

use serde::Serialize;

use super::siblings;
use super::{BuildSpec, TargetPlatform};
use crate::oci::{Reference, Tag};
use crate::zuul::full_repository;
use crate::zuul::{buildset_repository, temporary_tag, ContainerImage};

/// The label every image built for a change carries.
pub const CHANGE_LABEL: &str = "org.zuul-ci.change";
/// The label naming the change's URL (`zuul.change_url`), beside it.
pub const CHANGE_URL_LABEL: &str = "org.zuul-ci.change_url";

/// The file a context is built from when neither the image nor the run
/// names one: the container family's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultFile {
    /// This file (`docker_dockerfile`, `container_filename`).
    Named(String),
    /// `Containerfile` when the context has one, else `Dockerfile`.
    ContainerfileOrDockerfile,
}

impl Default for DefaultFile {
    fn default() -> Self {
        DefaultFile::Named("Dockerfile".to_string())
    }
}

/// The name the images' list has in the role family that passes it, as
/// messages name its entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageList {
    /// `docker_images`.
    #[default]
    DockerImages,
    /// `container_images`.
    ContainerImages,
}

impl std::fmt::Display for ImageList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageList::DockerImages => "docker_images",
            ImageList::ContainerImages => "container_images",
        })
    }
}

/// One entry of the images' list (`container_images[2]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The list.
    pub list: ImageList,
    /// Position in it.
    pub index: usize,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)
    }
}

/// Settings shared by every image of one run.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// What the images' list is called.
    pub list: ImageList,
    /// `zuul_work_dir`: contexts are relative to it.
    pub work_dir: PathBuf,
    /// The Dockerfile when an image names none.
    pub default_dockerfile: DefaultFile,
    /// `docker_registry`: prefix of every repository, when set.
    pub docker_registry: Option<String>,
    /// `zuul.change`.
    pub change: Option<String>,
    /// `zuul.change_url`.
    pub change_url: Option<String>,
    /// `zuul.pipeline`, naming the extra tag when there is no change.
    pub pipeline: Option<String>,
    /// The buildset registry's `host:port` as container tools write it.
    pub buildset_authority: Option<String>,
    /// Added to every build command's environment.
    pub build_env: std::collections::BTreeMap<String, String>,
}

/// One local image pushed to one remote name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// Local name (`org/img:latest`).
    pub local: String,
    /// Remote name (`127.0.0.1:5000/org/img:latest`).
    pub remote: String,
}

/// Everything about one image of `docker_images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    /// The repository built, with the `docker_registry` prefix.
    pub repository: String,
    /// The repository in the buildset registry (see
    /// [`buildset_repository`]).
    pub buildset_repository: String,
    /// The build itself (sibling build arg included).
    pub spec: BuildSpec,
    /// Siblings to copy into the context.
    pub siblings: Vec<String>,
    /// Pushes to the buildset registry (none when there is none).
    pub pushes: Vec<Push>,
}

/// Why an entry of `docker_images` cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The repository is not an image name without tag.
    #[error("{entry}.repository: {problem}")]
    Repository {
        /// The entry.
        entry: Entry,
        /// What is wrong.
        problem: String,
    },
    /// A tag, or a tag derived from it, is not a valid tag.
    #[error("{entry}.tags: {problem}")]
    Tag {
        /// The entry.
        entry: Entry,
        /// What is wrong.
        problem: String,
    },
    /// An entry of `arch` is not a platform, or one is listed twice.
    #[error("{entry}.arch: {problem}")]
    Arch {
        /// The entry.
        entry: Entry,
        /// What is wrong.
        problem: String,
    },
    /// The context directory or Dockerfile is not there.
    #[error("{entry}.{field}: {path} does not exist")]
    Missing {
        /// The entry.
        entry: Entry,
        /// `context` or `dockerfile`.
        field: &'static str,
        /// The path looked for.
        path: PathBuf,
    },
}

/// Plan every image, failing on the first invalid one (nothing is built
/// unless all are valid).
pub fn plan_all(
    images: &[ContainerImage],
    options: &PlanOptions,
) -> Result<Vec<ImagePlan>, PlanError> {
    images
        .iter()
        .enumerate()
        .map(|(index, image)| plan_image(index, image, options))
        .collect()
}

/// Plan the image at `index` of `docker_images`.
pub fn plan_image(
    index: usize,
    image: &ContainerImage,
    options: &PlanOptions,
) -> Result<ImagePlan, PlanError> {
    let entry = Entry {
        list: options.list,
        index,
    };
    let repository = checked_repository(entry, image, options)?;
    let platforms = platforms(entry, image)?;
    let tags = local_tags(entry, image, options, &platforms)?;

    let context_dir = options.work_dir.join(&image.context);
    if !context_dir.is_dir() {
        return Err(PlanError::Missing {
            entry,
            field: "context",
            path: context_dir,
        });
    }
    let dockerfile = match (&image.dockerfile, &options.default_dockerfile) {
        (Some(named), _) | (None, DefaultFile::Named(named)) => named.clone(),
        (None, DefaultFile::ContainerfileOrDockerfile) => {
            if context_dir.join("Containerfile").is_file() {
                "Containerfile".to_string()
            } else {
                "Dockerfile".to_string()
            }
        }
    };
    if !context_dir.join(&dockerfile).is_file() {
        return Err(PlanError::Missing {
            entry,
            field: "dockerfile",
            path: context_dir.join(&dockerfile),
        });
    }

    let mut labels = image.labels.clone();
    if let Some(change) = &options.change {
        labels.insert(CHANGE_LABEL.to_string(), change.clone());
    }
    if let Some(url) = &options.change_url {
        labels.insert(CHANGE_URL_LABEL.to_string(), url.clone());
    }
    let mut build_args = image.build_args.clone();
    if !image.siblings.is_empty() {
        build_args.push(siblings::build_arg(&image.siblings));
    }
    let pushes = match &options.buildset_authority {
        Some(authority) => image
            .tags
            .iter()
            .map(|tag| Push {
                local: format!("{repository}:{tag}"),
                // Named as the transfer modules look it up: after the
                // image's own repository, whatever `docker_registry` says.
                remote: format!(
                    "{authority}/{}:{tag}",
                    buildset_repository(&image.repository)
                ),
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(ImagePlan {
        spec: BuildSpec {
            context_dir,
            path: image.path.clone().unwrap_or_else(|| ".".to_string()),
            dockerfile,
            target: image.target.clone(),
            build_args,
            labels,
            tags: tags.iter().map(|t| format!("{repository}:{t}")).collect(),
            platforms,
            env: options.build_env.clone(),
        },
        repository,
        buildset_repository: buildset_repository(&image.repository).to_string(),
        siblings: image.siblings.clone(),
        pushes,
    })
}

/// `<docker_registry>/<repository>`, validated as an image name without a
/// tag or digest.
fn checked_repository(
    entry: Entry,
    image: &ContainerImage,
    options: &PlanOptions,
) -> Result<String, PlanError> {
    let problem = |problem: String| PlanError::Repository { entry, problem };
    if image.repository.is_empty() {
        return Err(problem("must not be empty".into()));
    }
    let full = full_repository(&image.repository, options.docker_registry.as_deref());
    let parsed: Reference = full.parse().map_err(|e| problem(format!("{e}")))?;
    if parsed.tag.is_some() || parsed.digest.is_some() {
        return Err(problem(format!(
            "{full:?} carries a tag or digest; list tags under tags instead"
        )));
    }
    Ok(full)
}

/// The platforms of `arch`, each once.
fn platforms(entry: Entry, image: &ContainerImage) -> Result<Vec<TargetPlatform>, PlanError> {
    let mut platforms: Vec<TargetPlatform> = Vec::new();
    for name in &image.arch {
        let platform: TargetPlatform = name.parse().map_err(|e| PlanError::Arch {
            entry,
            problem: format!("{e}"),
        })?;
        if platforms.contains(&platform) {
            return Err(PlanError::Arch {
                entry,
                problem: format!("{name:?} is listed twice"),
            });
        }
        platforms.push(platform);
    }
    Ok(platforms)
}

/// Every tag the build gets: each of `tags` and its change tag (each of
/// which must stay a valid tag with a platform's suffix, for the builders
/// that tag each platform's image).
fn local_tags(
    entry: Entry,
    image: &ContainerImage,
    options: &PlanOptions,
    platforms: &[TargetPlatform],
) -> Result<Vec<String>, PlanError> {
    if image.tags.is_empty() {
        return Err(PlanError::Tag {
            entry,
            problem: "must list at least one tag".into(),
        });
    }
    let mut all = Vec::new();
    for tag in &image.tags {
        let mut names = vec![tag.clone()];
        if options.change.is_some() || options.pipeline.is_some() {
            let pipeline = options.pipeline.as_deref().unwrap_or_default();
            names.push(temporary_tag(options.change.as_deref(), pipeline, tag));
        }
        for name in names {
            let suffixed = platforms.iter().map(|p| p.tagged(&name));
            for candidate in std::iter::once(name.clone()).chain(suffixed) {
                candidate.parse::<Tag>().map_err(|e| PlanError::Tag {
                    entry,
                    problem: e.to_string(),
                })?;
            }
            all.push(name);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn image(repository: &str) -> ContainerImage {
        serde_json::from_value(serde_json::json!({
            "repository": repository, "context": "app", "tags": ["latest", "v1"],
            "siblings": ["example.org/lib"], "build_args": ["A=1"],
            "labels": {"team": "infra"},
        }))
        .unwrap()
    }

    fn options(dir: &Path) -> PlanOptions {
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::write(dir.join("app/Dockerfile"), "FROM scratch\n").unwrap();
        PlanOptions {
            list: ImageList::DockerImages,
            work_dir: dir.to_path_buf(),
            default_dockerfile: DefaultFile::default(),
            docker_registry: None,
            change: Some("42".into()),
            change_url: Some("https://review.example.org/42".into()),
            pipeline: Some("gate".into()),
            buildset_authority: Some("127.0.0.1:5000".into()),
            build_env: Default::default(),
        }
    }

    #[test]
    fn names_labels_and_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_image(0, &image("org/app"), &options(dir.path())).unwrap();
        assert_eq!(
            plan.spec.tags,
            [
                "org/app:latest",
                "org/app:change_42_latest",
                "org/app:v1",
                "org/app:change_42_v1"
            ]
        );
        assert_eq!(
            plan.spec.labels,
            BTreeMap::from([
                ("org.zuul-ci.change".to_string(), "42".to_string()),
                (
                    "org.zuul-ci.change_url".to_string(),
                    "https://review.example.org/42".to_string()
                ),
                ("team".to_string(), "infra".to_string())
            ])
        );
        assert_eq!(
            plan.spec.build_args,
            ["A=1", "ZUUL_SIBLINGS=example.org/lib"]
        );
        assert_eq!(plan.spec.context_dir, dir.path().join("app"));
        assert_eq!(plan.spec.path, ".");
        assert_eq!(
            plan.pushes,
            [
                Push {
                    local: "org/app:latest".into(),
                    remote: "127.0.0.1:5000/org/app:latest".into()
                },
                Push {
                    local: "org/app:v1".into(),
                    remote: "127.0.0.1:5000/org/app:v1".into()
                }
            ]
        );
    }

    #[test]
    fn docker_registry_prefix_and_buildset_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.docker_registry = Some("registry.example.org:5000".into());
        let plan = plan_image(0, &image("org/app"), &opts).unwrap();
        assert_eq!(plan.repository, "registry.example.org:5000/org/app");
        assert_eq!(
            plan.spec.tags[0],
            "registry.example.org:5000/org/app:latest"
        );
        assert_eq!(
            plan.pushes[0].local,
            "registry.example.org:5000/org/app:latest"
        );
        assert_eq!(plan.pushes[0].remote, "127.0.0.1:5000/org/app:latest");

        opts.docker_registry = None;
        opts.change = None;
        opts.change_url = None;
        let plan = plan_image(0, &image("docker.io/org/app"), &opts).unwrap();
        assert_eq!(plan.spec.tags[1], "docker.io/org/app:gate_latest");
        assert_eq!(plan.pushes[0].remote, "127.0.0.1:5000/org/app:latest");
        let plan = plan_image(0, &image("quay.io/org/app"), &opts).unwrap();
        assert_eq!(
            plan.pushes[0].remote,
            "127.0.0.1:5000/quay.io/org/app:latest"
        );
        assert!(!plan.spec.labels.contains_key(CHANGE_LABEL));
        assert!(!plan.spec.labels.contains_key(CHANGE_URL_LABEL));
    }

    #[test]
    fn bad_entries_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path());
        let err = plan_image(1, &image("Org/App"), &opts).unwrap_err();
        assert!(
            err.to_string().starts_with("docker_images[1].repository: "),
            "{err}"
        );
        let err = plan_image(0, &image("org/app:v2"), &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker_images[0].repository: \"org/app:v2\" carries a tag or digest; \
             list tags under tags instead"
        );
        let mut bad = image("org/app");
        bad.context = "nowhere".into();
        let err = plan_image(0, &bad, &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "docker_images[0].context: {} does not exist",
                dir.path().join("nowhere").display()
            )
        );
        let mut bad = image("org/app");
        bad.tags = vec!["-x".into()];
        let err = plan_image(0, &bad, &opts).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("docker_images[0].tags: tag \"-x\""),
            "{err}"
        );
    }

    #[test]
    fn arch_entries_are_platforms_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path());
        let mut multi = image("org/app");
        multi.arch = vec!["linux/amd64".into(), "linux/arm64".into()];
        let plan = plan_image(0, &multi, &opts).unwrap();
        assert_eq!(
            plan.spec.platforms,
            [
                "linux/amd64".parse::<TargetPlatform>().unwrap(),
                "linux/arm64".parse().unwrap()
            ]
        );
        multi.arch = vec!["linux/arm64".into(), "arm64".into()];
        assert_eq!(
            plan_image(2, &multi, &opts).unwrap_err().to_string(),
            "docker_images[2].arch: \"arm64\" is not a platform of the form \
             os/architecture[/variant] (e.g. linux/arm64)"
        );
        multi.arch = vec!["linux/arm64".into(), "linux/arm64".into()];
        assert_eq!(
            plan_image(0, &multi, &opts).unwrap_err().to_string(),
            "docker_images[0].arch: \"linux/arm64\" is listed twice"
        );
        // With a platform's suffix the change tag would pass 128 characters.
        multi.arch = vec!["linux/arm64".into()];
        multi.tags = vec!["t".repeat(110)];
        let err = plan_image(0, &multi, &opts).unwrap_err().to_string();
        assert!(err.starts_with("docker_images[0].tags: "), "{err}");
    }

    #[test]
    fn the_container_family_prefers_a_containerfile() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.default_dockerfile = DefaultFile::ContainerfileOrDockerfile;
        let plan = plan_image(0, &image("org/app"), &opts).unwrap();
        assert_eq!(plan.spec.dockerfile, "Dockerfile");
        std::fs::write(dir.path().join("app/Containerfile"), "FROM scratch\n").unwrap();
        let plan = plan_image(0, &image("org/app"), &opts).unwrap();
        assert_eq!(plan.spec.dockerfile, "Containerfile");
        opts.default_dockerfile = DefaultFile::default();
        let plan = plan_image(0, &image("org/app"), &opts).unwrap();
        assert_eq!(plan.spec.dockerfile, "Dockerfile");
        // Its messages name its list.
        opts.list = ImageList::ContainerImages;
        let err = plan_image(3, &image("Org/App"), &opts).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("container_images[3].repository: "),
            "{err}"
        );
    }
}
