//! The variables Zuul's container roles use, with the same names and
//! shapes, so users can migrate without renaming anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::naming::authority;

/// A running buildset registry, as `run_buildset_registry` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildsetRegistry {
    /// Address clients use (hostname, IPv4 or IPv6 literal).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User allowed to push.
    pub username: String,
    /// That user's password.
    pub password: String,
    /// PEM of the registry's self-signed certificate (also its CA).
    pub cert: String,
}

impl BuildsetRegistry {
    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

fn default_registry_port() -> u16 {
    5000
}

/// The site's intermediate registry, from the Zuul secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntermediateRegistry {
    /// Hostname or IP literal.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_registry_port")]
    pub port: u16,
    /// User.
    pub username: String,
    /// Password.
    pub password: String,
    /// PEM CA certificate to trust, when not in the system store.
    #[serde(default)]
    pub cert: Option<String>,
}

impl IntermediateRegistry {
    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

fn default_tags() -> Vec<String> {
    vec!["latest".to_string()]
}

fn default_context() -> String {
    ".".to_string()
}

/// One entry of `docker_images` / `container_images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerImage {
    /// Build context, relative to `zuul_work_dir`.
    #[serde(default = "default_context")]
    pub context: String,
    /// Dockerfile name, relative to the context (default `docker_dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Image repository (`org/img`, `quay.io/org/img`).
    pub repository: String,
    /// Sub-path of the context to build in (zuul-jobs' `path`).
    #[serde(default)]
    pub path: Option<String>,
    /// `KEY=VALUE` build arguments.
    #[serde(default)]
    pub build_args: Vec<String>,
    /// Build stage to stop at.
    #[serde(default)]
    pub target: Option<String>,
    /// Tags (default `["latest"]`).
    #[serde(default = "default_tags")]
    pub tags: Vec<String>,
    /// Sibling projects to copy into the context.
    #[serde(default)]
    pub siblings: Vec<String>,
    /// Extra image labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Platforms for a multi-arch build.
    #[serde(default)]
    pub arch: Vec<String>,
}

/// One entry of `zuul.artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Artifact name (`<repository>:<tag>` for images).
    pub name: String,
    /// Where it is (`docker://inter:5000/org/img:<build>_<tag>`).
    pub url: String,
    /// Free-form metadata; images carry `type`, `repository`, `tag`.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Other keys Zuul adds (project, change, job, ...), kept as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The parts of the `zuul` variable the modules read. Unknown keys are
/// ignored: Zuul passes many more.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZuulContext {
    /// Change number, absent in periodic pipelines.
    #[serde(default)]
    pub change: Option<String>,
    /// Build UUID.
    #[serde(default)]
    pub build: Option<String>,
    /// Pipeline name.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Artifacts of changes ahead.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// The project under test.
    #[serde(default)]
    pub project: Option<ZuulProject>,
    /// Executor paths.
    #[serde(default)]
    pub executor: Option<ZuulExecutor>,
}

/// `zuul.project`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZuulProject {
    /// Source checkout, relative to the home directory.
    #[serde(default)]
    pub src_dir: Option<String>,
}

/// `zuul.executor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZuulExecutor {
    /// The job's work directory.
    #[serde(default)]
    pub work_root: Option<String>,
    /// The JSON file `zuul_return` writes.
    #[serde(default)]
    pub result_data_file: Option<String>,
}

impl ZuulContext {
    /// The result data file, if known.
    pub fn result_data_file(&self) -> Option<&str> {
        self.executor.as_ref()?.result_data_file.as_deref()
    }
}
