//! The variables Zuul's container roles use, with the same names and
//! shapes, so users can migrate without renaming anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::naming::authority;
use crate::client::Endpoint;

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
    /// A user of the site that may only pull, for the buildset registry
    /// to fetch layers with (lazy pull) where the registry issues no
    /// pull-only tokens.
    #[serde(default)]
    pub read_only_username: Option<String>,
    /// That user's password.
    #[serde(default)]
    pub read_only_password: Option<String>,
}

impl IntermediateRegistry {
    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// How the client reaches the buildset registry: its credentials, and its
/// own certificate as the only one trusted.
impl From<&BuildsetRegistry> for Endpoint {
    fn from(r: &BuildsetRegistry) -> Endpoint {
        Endpoint::new(r.authority())
            .with_credentials(&r.username, &r.password)
            .with_ca_pem(&r.cert)
    }
}

/// How the client reaches the intermediate registry: its credentials, and
/// its certificate when one is given (the system roots otherwise).
impl From<&IntermediateRegistry> for Endpoint {
    fn from(r: &IntermediateRegistry) -> Endpoint {
        let endpoint = Endpoint::new(r.authority()).with_credentials(&r.username, &r.password);
        match &r.cert {
            Some(cert) if !cert.trim().is_empty() => endpoint.with_ca_pem(cert),
            _ => endpoint,
        }
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
    /// Dockerfile name, relative to the context (default `docker_dockerfile`);
    /// the container family calls it `container_filename`.
    #[serde(default, alias = "container_filename")]
    pub dockerfile: Option<String>,
    /// The container family's target registry (`quay.io`): the key of
    /// `container_registry_credentials` this image is published with.
    #[serde(default)]
    pub registry: Option<String>,
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
    /// Extra image labels: a map, or upstream's list of `key=value`.
    #[serde(default, deserialize_with = "labels_map_or_list")]
    pub labels: BTreeMap<String, String>,
    /// Platforms for a multi-arch build.
    #[serde(default)]
    pub arch: Vec<String>,
}

/// One entry of `zuul.artifacts`. Only `url` is required: zuul-jobs' roles
/// read `url` and `metadata` alone, and so do ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Artifact name (`<repository>:<tag>` for ours), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    #[serde(default, deserialize_with = "string_or_number")]
    pub change: Option<String>,
    /// URL of the change (`zuul.change_url`), labelled on images built
    /// for it.
    #[serde(default)]
    pub change_url: Option<String>,
    /// Patchset of the change (a string; a number is read as one).
    #[serde(default, deserialize_with = "string_or_number")]
    pub patchset: Option<String>,
    /// Build UUID.
    #[serde(default)]
    pub build: Option<String>,
    /// Buildset UUID.
    #[serde(default)]
    pub buildset: Option<String>,
    /// Job name.
    #[serde(default)]
    pub job: Option<String>,
    /// Pipeline name.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Tenant name.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Artifacts of changes ahead (Zuul omits the key when there are none).
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// The items of the queue up to this one: the changes ahead, oldest
    /// first, and this item last.
    #[serde(default)]
    pub items: Vec<ZuulItem>,
    /// The project under test.
    #[serde(default)]
    pub project: Option<ZuulProject>,
    /// Executor paths.
    #[serde(default)]
    pub executor: Option<ZuulExecutor>,
}

/// `zuul.project` (and the `project` of each of `zuul.items`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZuulProject {
    /// Name within its connection (`org/project`).
    #[serde(default)]
    pub name: Option<String>,
    /// Last part of the name (`project`).
    #[serde(default)]
    pub short_name: Option<String>,
    /// Hostname and name (`review.example.org/org/project`).
    #[serde(default)]
    pub canonical_name: Option<String>,
    /// Source checkout, relative to the home directory.
    #[serde(default)]
    pub src_dir: Option<String>,
}

impl ZuulProject {
    /// The name that identifies the project across connections:
    /// `canonical_name`, else `name` (simulated Zuuls may give only that).
    pub fn identity(&self) -> Option<&str> {
        self.canonical_name
            .as_deref()
            .or(self.name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// Whether `name` (an artifact's `project`) is one of this project's
    /// names.
    pub fn is_named(&self, name: &str) -> bool {
        [&self.name, &self.short_name, &self.canonical_name]
            .iter()
            .any(|n| n.as_deref() == Some(name))
    }
}

/// One of `zuul.items`: a change (or, without `change`, a branch head).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZuulItem {
    /// The item's project.
    #[serde(default)]
    pub project: ZuulProject,
    /// Change number; absent for a branch head.
    #[serde(default, deserialize_with = "string_or_number")]
    pub change: Option<String>,
    /// Patchset.
    #[serde(default, deserialize_with = "string_or_number")]
    pub patchset: Option<String>,
    /// Target branch.
    #[serde(default)]
    pub branch: Option<String>,
}

/// Zuul passes change and patchset numbers as strings; hand-written
/// variables often carry them as numbers. Both are read as the string.
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(D::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

/// `labels` as a map (`{team: infra}`) or as the container family's list
/// of `key=value` strings (`["team=infra"]`); an entry without `=` or with
/// an empty key is refused, naming it.
fn labels_map_or_list<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Labels {
        Map(BTreeMap<String, String>),
        List(Vec<String>),
    }
    let list = match Labels::deserialize(deserializer).map_err(|_| {
        D::Error::custom("expected a map of label to value, or a list of \"key=value\" strings")
    })? {
        Labels::Map(map) => return Ok(map),
        Labels::List(list) => list,
    };
    list.into_iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.to_string()))
            }
            _ => Err(D::Error::custom(format!(
                "label {entry:?} is not of the form \"key=value\""
            ))),
        })
        .collect()
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

    /// The changes ahead of this item, oldest first: every item but the
    /// last (this one), without branch heads (items with no change).
    pub fn changes_ahead(&self) -> impl Iterator<Item = &ZuulItem> {
        let ahead = self.items.len().saturating_sub(1);
        self.items[..ahead].iter().filter(|i| i.change.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(json: serde_json::Value) -> Result<ContainerImage, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn labels_are_read_as_a_map_or_as_upstreams_list() {
        let map = image(serde_json::json!({"repository": "o/i", "labels": {"team": "infra"}}));
        let list =
            image(serde_json::json!({"repository": "o/i", "labels": ["team=infra", "a=b=c"]}));
        assert_eq!(
            map.unwrap().labels,
            BTreeMap::from([("team".into(), "infra".into())])
        );
        assert_eq!(
            list.unwrap().labels,
            BTreeMap::from([("team".into(), "infra".into()), ("a".into(), "b=c".into())])
        );
    }

    #[test]
    fn a_label_without_a_key_or_an_equals_sign_is_refused_by_name() {
        for bad in ["team", "=infra"] {
            let err = image(serde_json::json!({"repository": "o/i", "labels": [bad]})).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("label {bad:?} is not of the form")),
                "{err}"
            );
        }
        let err = image(serde_json::json!({"repository": "o/i", "labels": 3})).unwrap_err();
        assert!(err.to_string().contains("list of \"key=value\""), "{err}");
    }

    #[test]
    fn the_container_familys_keys_are_accepted() {
        let image = image(serde_json::json!({
            "repository": "quay.io/o/i",
            "registry": "quay.io",
            "container_filename": "Containerfile.app",
        }))
        .unwrap();
        assert_eq!(image.registry.as_deref(), Some("quay.io"));
        assert_eq!(image.dockerfile.as_deref(), Some("Containerfile.app"));
    }
}
