//! `pull_from_intermediate_registry`: bring the images of the changes ahead
//! (their `container_image` artifacts, stored in the intermediate registry)
//! into the buildset registry, every platform, under the names the
//! buildset's clients ask for: `<repository minus docker.io/>:<tag>`.
//!
//! Runs on the executor. It talks to both registries directly: no tunnel,
//! no credentials file, nothing written outside its own memory.
//!
//! Lazily (`lazy: auto`, the default): only the manifests and configs are
//! copied, and the buildset registry is told where the layers live
//! (its blob sources extension, docs/registry-api.md), to fetch each on
//! first request. The buildset registry runs on a node, which runs the
//! change's own code, so it is handed a credential that cannot write: a
//! pull-only token for exactly the repositories needed, valid
//! `lazy_token_lifetime`, from the intermediate registry (ours issues
//! them, see docs/intermediate-registry.md), else the site's read-only
//! user; with neither, every byte is copied as before, and the result
//! says why (`lazy: false`, `lazy_reason`).

use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ansible::{Context, Module, Outcome};
use crate::client::{
    copy_manifests, copy_reference, predict_copy, runtime, BlobSources, CopyOptions, Endpoint,
    ErrorKind, LazyLayer, Registry, RemoteRegistry, RECORDING_BLOB_SOURCES,
};
use crate::oci::{Reference, RepositoryName, Tag};
use crate::zuul::records::{read_records, ChangeKey, ChangeRecord};
use crate::zuul::results::require_buildset_registry;
use crate::zuul::{
    buildset_repository, BuildsetRegistry, IntermediateRegistry, ZuulContext, ZuulItem,
};

/// Arguments of `pull_from_intermediate_registry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The buildset registry; read from the result data file's
    /// `secret_data` when not given.
    #[serde(default)]
    pub buildset_registry: Option<BuildsetRegistry>,
    /// The site's intermediate registry.
    pub intermediate_registry: IntermediateRegistry,
    /// Artifacts to consider (default: `zuul.artifacts`).
    #[serde(default)]
    pub zuul_artifacts: Option<Vec<Value>>,
    /// The `zuul` variable.
    #[serde(default)]
    pub zuul: Option<ZuulContext>,
    /// Look up the change records of changes ahead (`zuul.items`) that
    /// no artifact covers.
    #[serde(default = "yes")]
    pub change_records: bool,
    /// Copy only manifests and configs, and let the buildset registry
    /// fetch the layers from the intermediate registry when asked.
    #[serde(default)]
    pub lazy: Lazy,
    /// Seconds the pull-only token handed to the buildset registry is
    /// valid (a lazy pull's layers must be fetched within it).
    #[serde(default = "default_token_lifetime")]
    pub lazy_token_lifetime: u64,
    /// Have the buildset registry fetch the recorded layers in the
    /// background while the jobs run.
    #[serde(default = "yes")]
    pub lazy_prefetch: bool,
    /// Prefetch only the layers of these platforms (`linux/amd64`); empty:
    /// every platform.
    #[serde(default)]
    pub lazy_prefetch_platforms: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_token_lifetime() -> u64 {
    3 * 3600
}

/// Whether to pull lazily (`auto`, `on`, `off`; YAML's `on`/`off`
/// booleans are taken too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lazy {
    /// Lazily when the registries allow it (a pull-only credential for
    /// the node, a buildset registry that records blob sources), else a
    /// full copy, saying why.
    #[default]
    Auto,
    /// Lazily, or fail.
    On,
    /// Always copy every byte.
    Off,
}

impl<'de> Deserialize<'de> for Lazy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Lazy, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Flag(bool),
            Word(String),
        }
        match Given::deserialize(deserializer)? {
            Given::Flag(true) => Ok(Lazy::On),
            Given::Flag(false) => Ok(Lazy::Off),
            Given::Word(word) => match word.to_ascii_lowercase().as_str() {
                "auto" => Ok(Lazy::Auto),
                "on" | "true" | "yes" => Ok(Lazy::On),
                "off" | "false" | "no" => Ok(Lazy::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "{word:?} is not one of auto, on, off"
                ))),
            },
        }
    }
}

/// The credential the buildset registry pulls layers with: never the
/// read-write one.
#[derive(Clone)]
enum NodeCredential {
    /// A pull-only token for exactly the repositories needed.
    Token(String),
    /// The site's read-only user.
    ReadOnly(String, String),
}

/// One image to bring over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// The artifact's name, for messages.
    pub name: String,
    /// Where it is.
    pub source: Reference,
    /// `metadata.repository` as given.
    pub repository: String,
    /// `metadata.tag`.
    pub tag: Tag,
}

/// What was pulled, as returned to Ansible.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    /// The repository in the buildset registry.
    pub repository: String,
    /// The tag in the buildset registry.
    pub tag: String,
    /// The manifest digest (the same in both registries).
    pub digest: Option<String>,
    /// The artifact's URL it came from.
    pub url: String,
    /// Whether the buildset registry changed.
    pub changed: bool,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Blobs the buildset registry already had.
    pub blobs_skipped: usize,
    /// How it was pulled: `lazy` (manifests and configs copied, layers
    /// recorded), `copy` (every byte), or `check` (check mode).
    pub mode: &'static str,
    /// Manifests written (index, platform manifests).
    pub manifests_copied: usize,
    /// Layers recorded for the buildset registry to fetch when asked.
    pub blobs_recorded: usize,
}

/// Where the images of one change ahead came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Its artifacts were in `zuul.artifacts` (or `zuul_artifacts`).
    Artifacts,
    /// Zuul passed none; the change records its push left were used.
    Records,
    /// Neither: this build does not test that change's images.
    Nothing,
}

/// One change ahead, as returned to Ansible.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeAhead {
    /// The project (canonical name, else name).
    pub project: String,
    /// Change number.
    pub change: String,
    /// Patchset.
    pub patchset: String,
    /// Where its images came from.
    pub source: Source,
    /// Its container images (`<repository>:<tag>`), in pull order.
    pub images: Vec<String>,
    /// The records used (`source: records`): tag, job, build, pipeline.
    pub records: Vec<Value>,
    /// Pipelines (and tenants) whose records of this change were not used.
    #[serde(skip)]
    pub other_pipelines: Vec<String>,
}

/// Records of one change ahead: those of this job's tenant and pipeline,
/// those skipped, and the other pipelines that have records.
type Lookup = (Vec<ChangeRecord>, Vec<String>, Vec<String>);

/// Keep the records written in this job's tenant and pipeline: a record
/// of the same change in another pipeline (check, say) was built on
/// another speculative state. A side with no value on either part (a
/// simulated Zuul) matches.
fn this_queue(records: Vec<ChangeRecord>, skipped: Vec<String>, zuul: &ZuulContext) -> Lookup {
    let same = |ours: &Option<String>, theirs: &Option<String>| match (ours, theirs) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let (kept, others): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| same(&zuul.pipeline, &r.pipeline) && same(&zuul.tenant, &r.tenant));
    let mut elsewhere: Vec<String> = others
        .iter()
        .map(|r| match (&r.tenant, &r.pipeline) {
            (Some(t), Some(p)) => format!("{t}/{p}"),
            (None, Some(p)) => p.clone(),
            (_, None) => "(none)".to_string(),
        })
        .collect();
    elsewhere.sort();
    elsewhere.dedup();
    (kept, skipped, elsewhere)
}

/// The `pull_from_intermediate_registry` module.
pub struct PullFromIntermediateRegistry;

impl Module for PullFromIntermediateRegistry {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let zuul = args.zuul.clone().unwrap_or_default();
        let given = args.zuul_artifacts.clone().unwrap_or_else(|| {
            zuul.artifacts
                .iter()
                .filter_map(|a| serde_json::to_value(a).ok())
                .collect()
        });
        let intermediate = &args.intermediate_registry;
        let ahead: Vec<ZuulItem> = zuul.changes_ahead().cloned().collect();
        let lookups = if args.change_records && !ahead.is_empty() {
            let wanted: Vec<Option<ChangeKey>> = ahead
                .iter()
                .map(|item| {
                    (!covers_any(&given, item))
                        .then(|| change_key(item))
                        .flatten()
                })
                .collect();
            let found = runtime::block_on(look_up_records(intermediate.clone(), wanted))
                .context("starting the async runtime")??;
            found
                .into_iter()
                .map(|lookup| lookup.map(|(records, skipped)| this_queue(records, skipped, &zuul)))
                .collect()
        } else {
            vec![None; ahead.len()]
        };
        let (artifacts, changes_ahead, problems) = gather(&given, &ahead, lookups);
        for problem in &problems {
            ctx.warn(problem.clone());
        }
        let missing: Vec<String> = changes_ahead
            .iter()
            .filter(|c| c.source == Source::Nothing)
            .map(|c| {
                let elsewhere = if c.other_pipelines.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (it has records of pipeline(s) {}, not of this one: not used)",
                        c.other_pipelines.join(", ")
                    )
                };
                format!(
                    "change {},{} of {} is ahead of this one, but neither zuul.artifacts nor its \
                     change records in the intermediate registry name an image of it{elsewhere}: \
                     this build does not test its images (if it builds any, the buildset uses \
                     whatever image the registries or the node already have)",
                    c.change, c.patchset, c.project
                )
            })
            .collect();
        for warning in &missing {
            ctx.warn(warning.clone());
        }
        let speculation_warnings: Vec<String> = missing.iter().chain(&problems).cloned().collect();
        let pulls = plan(&artifacts)?;
        if pulls.is_empty() {
            let msg = if missing.is_empty() {
                "no container image artifacts to pull".to_string()
            } else {
                format!(
                    "no container image artifacts to pull; {} change(s) ahead gave no images",
                    missing.len()
                )
            };
            return Ok(Outcome::new(false)
                .msg(msg)
                .value("images", Vec::<Pulled>::new())
                .value("changes_ahead", changes_ahead)
                .value("speculation_warnings", speculation_warnings));
        }
        let buildset = require_buildset_registry(args.buildset_registry.as_ref(), &zuul)?;
        let check_mode = ctx.check_mode;
        for pull in &pulls {
            if pull.source.registry != intermediate.authority() {
                ctx.warn(format!(
                    "artifact {:?} is in registry {}, not in the intermediate registry {}: pulled without credentials",
                    pull.name,
                    pull.source.registry,
                    intermediate.authority()
                ));
            }
        }
        let (credential, mut lazy_reason) = if check_mode {
            (
                None,
                Some("check mode: nothing copied nor recorded".to_string()),
            )
        } else if args.lazy == Lazy::Off {
            (None, Some("lazy: off".to_string()))
        } else {
            let repositories: Vec<String> = pulls
                .iter()
                .filter(|p| p.source.registry == intermediate.authority())
                .map(|p| p.source.repository.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let found = runtime::block_on(node_credential(
                intermediate.clone(),
                repositories,
                args.lazy_token_lifetime,
            ))
            .context("starting the async runtime")??;
            match found {
                Ok(credential) => {
                    if let NodeCredential::Token(token) = &credential {
                        ctx.secrets.add(token.clone());
                    }
                    (Some(credential), None)
                }
                Err(reason) if args.lazy == Lazy::On => {
                    anyhow::bail!("lazy: on, but {reason}")
                }
                Err(reason) => (None, Some(reason)),
            }
        };
        let plan = PullPlan {
            buildset,
            intermediate: intermediate.clone(),
            check_mode,
            credential,
            lazy_required: args.lazy == Lazy::On,
            prefetch: args
                .lazy_prefetch
                .then(|| args.lazy_prefetch_platforms.clone()),
        };
        let (pulled, fallback) =
            runtime::block_on(pull_all(pulls, plan)).context("starting the async runtime")??;
        if fallback.is_some() {
            lazy_reason = fallback;
        }
        let lazy = pulled.iter().any(|p| p.mode == "lazy");
        let recorded: usize = pulled.iter().map(|p| p.blobs_recorded).sum();
        let changed = pulled.iter().any(|p| p.changed);
        let copied: usize = pulled.iter().map(|p| p.blobs_copied).sum();
        let bytes: u64 = pulled.iter().map(|p| p.bytes_copied).sum();
        let from_records = changes_ahead
            .iter()
            .filter(|c| c.source == Source::Records)
            .count();
        let mut msg = format!(
            "{} image(s) {} the buildset registry, {} changed; {copied} blob(s), {bytes} bytes transferred",
            pulled.len(),
            if check_mode { "checked against" } else { "in" },
            pulled.iter().filter(|p| p.changed).count()
        );
        if lazy {
            msg.push_str(&format!(
                "; lazy: {recorded} layer(s) left in the intermediate registry for the buildset registry to fetch"
            ));
        } else if let Some(reason) = &lazy_reason {
            msg.push_str(&format!("; not lazy: {reason}"));
        }
        if from_records > 0 {
            msg.push_str(&format!(
                "; {from_records} change(s) ahead found by their change records"
            ));
        }
        if !missing.is_empty() {
            msg.push_str(&format!(
                "; {} change(s) ahead gave no images",
                missing.len()
            ));
        }
        Ok(Outcome::new(changed)
            .msg(msg)
            .value("images", pulled)
            .value("lazy", lazy)
            .value("lazy_reason", lazy_reason)
            .value("changes_ahead", changes_ahead)
            .value("speculation_warnings", speculation_warnings))
    }
}

/// The credential for the buildset registry to pull `repositories` of
/// the intermediate registry with: a pull-only token valid `lifetime`
/// seconds where the registry issues them, else its read-only user; or
/// why there is none. An intermediate registry that cannot be reached
/// fails at once (a full copy would fail the same way).
async fn node_credential(
    intermediate: IntermediateRegistry,
    repositories: Vec<String>,
    lifetime: u64,
) -> anyhow::Result<Result<NodeCredential, String>> {
    let read_only = match (
        &intermediate.read_only_username,
        &intermediate.read_only_password,
    ) {
        (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
            Some(NodeCredential::ReadOnly(user.clone(), password.clone()))
        }
        _ => None,
    };
    if repositories.is_empty() {
        return Ok(Err("no image comes from the intermediate registry".into()));
    }
    let client = RemoteRegistry::new(Endpoint::from(&intermediate))?;
    let why = match client.delegated_token(&repositories, lifetime).await {
        Ok(Some(token)) => match token.expires_in {
            // What was asked for (a second less when the clock ticked).
            Some(secs) if secs <= lifetime && secs + 2 >= lifetime => {
                return Ok(Ok(NodeCredential::Token(token.token)))
            }
            said => format!(
                "the intermediate registry's token service does not issue tokens valid \
                 {lifetime} s (it said {})",
                said.map_or("nothing".to_string(), |s| format!("{s} s"))
            ),
        },
        Ok(None) => "the intermediate registry issues no tokens".to_string(),
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::Connect(_) | ErrorKind::Tls(_) | ErrorKind::Timeout
            ) =>
        {
            return Err(anyhow::Error::new(e).context("reaching the intermediate registry"))
        }
        Err(e) => format!("asking the intermediate registry for a pull-only token failed: {e}"),
    };
    Ok(read_only.ok_or_else(|| {
        format!(
            "{why}, and intermediate_registry has no read_only_username and \
             read_only_password: the buildset registry gets no credential that cannot write"
        )
    }))
}

/// How [`pull_all`] pulls.
struct PullPlan {
    buildset: BuildsetRegistry,
    intermediate: IntermediateRegistry,
    check_mode: bool,
    /// Set: pull lazily what comes from the intermediate registry.
    credential: Option<NodeCredential>,
    /// `lazy: on`: a buildset registry that cannot record fails the task.
    lazy_required: bool,
    /// Prefetch the layers of these platforms (empty: all); `None`: none.
    prefetch: Option<Vec<String>>,
}

/// The key of a change ahead's records; `None` when its project has no
/// name to compute it from.
fn change_key(item: &ZuulItem) -> Option<ChangeKey> {
    Some(ChangeKey {
        project: item.project.identity()?.to_string(),
        change: item.change.clone()?,
        patchset: item.patchset.clone().unwrap_or_default(),
    })
}

/// A string field that Zuul writes as a string and people as a number.
fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_container_image(artifact: &Value) -> bool {
    artifact
        .get("metadata")
        .and_then(|m| m.get("type"))
        .and_then(Value::as_str)
        == Some("container_image")
}

/// Whether `artifact` is one of `item`'s (the `change`, `patchset` and
/// `project` Zuul adds, where present, match).
fn belongs_to(artifact: &Value, item: &ZuulItem) -> bool {
    let Some(change) = text_of(artifact.get("change")) else {
        return false;
    };
    if Some(&change) != item.change.as_ref() {
        return false;
    }
    if let (Some(patchset), Some(ours)) = (text_of(artifact.get("patchset")), &item.patchset) {
        if &patchset != ours {
            return false;
        }
    }
    match artifact.get("project").and_then(Value::as_str) {
        Some(project) => item.project.is_named(project),
        None => true,
    }
}

fn covers_any(artifacts: &[Value], item: &ZuulItem) -> bool {
    artifacts
        .iter()
        .any(|a| is_container_image(a) && belongs_to(a, item))
}

/// For each change ahead with a key, its records (and unreadable ones).
async fn look_up_records(
    intermediate: IntermediateRegistry,
    wanted: Vec<Option<ChangeKey>>,
) -> anyhow::Result<Vec<Option<(Vec<ChangeRecord>, Vec<String>)>>> {
    if wanted.iter().all(Option::is_none) {
        return Ok(vec![None; wanted.len()]);
    }
    let client = RemoteRegistry::new(Endpoint::from(&intermediate))?;
    let mut found = Vec::new();
    for key in wanted {
        let Some(key) = key else {
            found.push(None);
            continue;
        };
        let records = read_records(client.as_ref(), &key).await.with_context(|| {
            format!(
                "reading the change records of change {},{} of {} in the intermediate registry",
                key.change, key.patchset, key.project
            )
        })?;
        found.push(Some(records));
    }
    Ok(found)
}

/// The artifacts to pull, in order: the changes ahead oldest first (each
/// with its artifacts from Zuul, else from its records), then the given
/// artifacts that belong to no change ahead (this change's own earlier
/// jobs), so that the nearest wins when two name the same image. Also
/// where each change ahead's images came from, and the records skipped.
fn gather(
    given: &[Value],
    ahead: &[ZuulItem],
    lookups: Vec<Option<Lookup>>,
) -> (Vec<Value>, Vec<ChangeAhead>, Vec<String>) {
    let mut artifacts = Vec::new();
    let mut report = Vec::new();
    let mut problems = Vec::new();
    let mut used = vec![false; given.len()];
    for (item, lookup) in ahead.iter().zip(lookups) {
        let project = item
            .project
            .identity()
            .unwrap_or("(unnamed project)")
            .to_string();
        let change = item.change.clone().unwrap_or_default();
        let patchset = item.patchset.clone().unwrap_or_default();
        let mut entry = ChangeAhead {
            project,
            change,
            patchset,
            source: Source::Nothing,
            images: Vec::new(),
            records: Vec::new(),
            other_pipelines: Vec::new(),
        };
        if covers_any(given, item) {
            entry.source = Source::Artifacts;
            for (i, artifact) in given.iter().enumerate() {
                if !used[i] && belongs_to(artifact, item) {
                    used[i] = true;
                    artifacts.push(artifact.clone());
                }
            }
        } else if let Some((records, skipped, elsewhere)) = lookup {
            problems.extend(skipped);
            entry.other_pipelines = elsewhere;
            let mut from_records = Vec::new();
            for record in records {
                for artifact in &record.artifacts {
                    from_records.push(annotated(artifact, item, &record));
                }
                entry.records.push(json!({
                    "tag": record.tag(),
                    "job": record.job,
                    "build": record.build,
                    "pipeline": record.pipeline,
                    "pushed_at_ms": record.pushed_at_ms,
                }));
            }
            // Several jobs of a change push its images (its build and its
            // buildset-registry job): one pull each, the latest push.
            let from_records = latest_push_of_each_image(from_records);
            if from_records.iter().any(is_container_image) {
                entry.source = Source::Records;
            }
            artifacts.extend(from_records);
        }
        entry.images = artifacts
            .iter()
            .filter(|a| is_container_image(a) && belongs_to(a, item))
            .filter_map(image_name)
            .collect();
        report.push(entry);
    }
    for (i, artifact) in given.iter().enumerate() {
        if !used[i] {
            artifacts.push(artifact.clone());
        }
    }
    (artifacts, report, problems)
}

/// `artifacts` (oldest push first) without the container images that a
/// later one names again.
fn latest_push_of_each_image(artifacts: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<Value> = artifacts
        .into_iter()
        .rev()
        .filter(|a| !is_container_image(a) || image_name(a).is_none_or(|n| seen.insert(n)))
        .collect();
    kept.reverse();
    kept
}

/// A record's artifact with the keys Zuul adds to the artifacts it passes
/// (`project`, `change`, `patchset`, `job`), where it lacks them.
fn annotated(artifact: &Value, item: &ZuulItem, record: &ChangeRecord) -> Value {
    let mut artifact = artifact.clone();
    if let Value::Object(map) = &mut artifact {
        let project = item
            .project
            .name
            .clone()
            .unwrap_or_else(|| record.project.clone());
        for (key, value) in [
            ("project", project),
            ("change", record.change.clone()),
            ("patchset", record.patchset.clone()),
            ("job", record.job.clone()),
        ] {
            map.entry(key).or_insert(Value::String(value));
        }
    }
    artifact
}

/// `<repository>:<tag>` of a container image artifact.
fn image_name(artifact: &Value) -> Option<String> {
    let metadata = artifact.get("metadata")?;
    let repository = metadata.get("repository").and_then(Value::as_str)?;
    let tag = text_of(metadata.get("tag"))?;
    Some(format!("{repository}:{tag}"))
}

/// The images to pull: every artifact with `metadata.type ==
/// container_image`, in order (a later artifact for the same name wins, as
/// it does in Zuul's role). A malformed one fails, naming it.
pub fn plan(artifacts: &[Value]) -> anyhow::Result<Vec<Pull>> {
    let mut pulls = Vec::new();
    for (i, artifact) in artifacts.iter().enumerate() {
        let label = match artifact.get("name").and_then(Value::as_str) {
            Some(name) => format!("artifact {i} ({name:?})"),
            None => format!("artifact {i}"),
        };
        let metadata = artifact.get("metadata");
        if metadata.and_then(|m| m.get("type")).and_then(Value::as_str) != Some("container_image") {
            continue;
        }
        let field = |key: &str| -> anyhow::Result<String> {
            match metadata.and_then(|m| m.get(key)) {
                Some(Value::String(s)) => Ok(s.clone()),
                // YAML reads `tag: 123` as a number; zuul-jobs' role renders
                // it into a string, and so do we (a tag only).
                Some(Value::Number(n)) if key == "tag" => Ok(n.to_string()),
                None | Some(Value::Null) => anyhow::bail!("{label}: metadata.{key} is missing"),
                Some(other) => anyhow::bail!(
                    "{label}: metadata.{key} is {}, expected a string",
                    kind_of(other)
                ),
            }
        };
        let repository = field("repository")?;
        let tag: Tag = field("tag")?
            .parse()
            .with_context(|| format!("{label}: metadata.tag"))?;
        buildset_repository(&repository)
            .parse::<RepositoryName>()
            .with_context(|| format!("{label}: metadata.repository"))?;
        let url = artifact
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("{label}: url is missing or not a string"))?;
        let source = parse_url(url).with_context(|| format!("{label}: url"))?;
        pulls.push(Pull {
            name: artifact
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{repository}:{tag}")),
            source,
            repository,
            tag,
        });
    }
    Ok(pulls)
}

/// How a JSON value is named in messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

/// A `docker://` image reference; other schemes and credentials in the URL
/// are refused without echoing what follows the scheme.
fn parse_url(url: &str) -> anyhow::Result<Reference> {
    let Some(rest) = url.strip_prefix("docker://") else {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if scheme.is_empty() {
            anyhow::bail!("{url:?} is not a docker:// URL");
        }
        anyhow::bail!("a {scheme}:// URL is not a container image; expected docker://");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        anyhow::bail!(
            "the URL carries credentials (user@host); give them in intermediate_registry instead"
        );
    }
    Ok(url.parse::<Reference>()?)
}

/// Reach the buildset and intermediate registries (and any other a pull
/// names), then [`pull_with`].
async fn pull_all(
    pulls: Vec<Pull>,
    plan: PullPlan,
) -> anyhow::Result<(Vec<Pulled>, Option<String>)> {
    let buildset = RemoteRegistry::new(Endpoint::from(&plan.buildset))?;
    let intermediate = RemoteRegistry::new(Endpoint::from(&plan.intermediate))?;
    let mut others: Vec<Arc<RemoteRegistry>> = Vec::new();
    let connect = |registry: &str| -> anyhow::Result<Arc<RemoteRegistry>> {
        if let Some(c) = others.iter().find(|c| c.name() == registry) {
            return Ok(c.clone());
        }
        let c = RemoteRegistry::new(Endpoint::new(registry.to_string()))?;
        others.push(c.clone());
        Ok(c)
    };
    pull_with(pulls, plan, &buildset, &intermediate, connect).await
}

/// Pull every image into `buildset_client` from `intermediate_client` (or
/// from the registry `connect` reaches, for an artifact of another
/// registry); also why lazy pulling stopped, if it did.
async fn pull_with<B: Registry, S: Registry>(
    pulls: Vec<Pull>,
    plan: PullPlan,
    buildset_client: &Arc<B>,
    intermediate_client: &Arc<S>,
    mut connect: impl FnMut(&str) -> anyhow::Result<Arc<S>>,
) -> anyhow::Result<(Vec<Pulled>, Option<String>)> {
    let PullPlan {
        buildset,
        intermediate,
        check_mode,
        mut credential,
        lazy_required,
        prefetch,
    } = plan;
    let mut pulled = Vec::new();
    let mut fallback = None;
    for pull in pulls {
        let from_intermediate = pull.source.registry == intermediate.authority();
        let src = if from_intermediate {
            intermediate_client.clone()
        } else {
            connect(&pull.source.registry)?
        };
        let repository = buildset_repository(&pull.repository).to_string();
        let destination = Reference::new(
            buildset.authority(),
            repository.parse()?,
            Some(pull.tag.clone()),
        );
        let copy_options = CopyOptions::default();
        let full_copy = || {
            copy_reference(
                &src,
                &pull.source,
                buildset_client,
                &destination,
                &copy_options,
            )
        };
        let lazily = credential
            .as_ref()
            .filter(|_| from_intermediate && !check_mode);
        let (report, mode) = if check_mode {
            let report = predict_copy(
                src.as_ref(),
                &pull.source,
                buildset_client.as_ref(),
                &destination,
            )
            .await;
            (report, "check")
        } else if let Some(node_credential) = lazily {
            let sources = blob_sources(&intermediate, &pull.source, node_credential);
            let lazy = pull_lazily(
                &src,
                &pull.source,
                buildset_client,
                &destination,
                &sources,
                prefetch.as_deref(),
            )
            .await;
            match lazy {
                Err(e) if !lazy_required && cannot_record(&e) => {
                    // An older buildset registry, or another server.
                    fallback = Some(format!(
                        "the buildset registry does not record blob sources ({e})"
                    ));
                    credential = None;
                    (full_copy().await, "copy")
                }
                other => (other, "lazy"),
            }
        } else {
            (full_copy().await, "copy")
        };
        let report = report.with_context(|| format!("pulling artifact {:?}", pull.name))?;
        let entry = Pulled {
            repository,
            tag: pull.tag.to_string(),
            digest: report.digest.map(|d| d.to_string()),
            url: format!("docker://{}", pull.source),
            changed: report.changed,
            blobs_copied: report.blobs_copied,
            bytes_copied: report.bytes_copied,
            blobs_skipped: report.blobs_skipped,
            mode,
            manifests_copied: report.manifests_written,
            blobs_recorded: report.blobs_recorded,
        };
        pulled.push(entry);
    }
    Ok((pulled, fallback))
}

/// Where the layers of `source` live, for the buildset registry.
fn blob_sources(
    intermediate: &IntermediateRegistry,
    source: &Reference,
    credential: &NodeCredential,
) -> BlobSources {
    let (username, password) = match credential {
        // Our site registry takes its tokens as a Basic password too.
        NodeCredential::Token(token) => ("token".to_string(), token.clone()),
        NodeCredential::ReadOnly(user, password) => (user.clone(), password.clone()),
    };
    BlobSources {
        url: format!("https://{}", intermediate.authority()),
        repository: source.repository.to_string(),
        username: Some(username),
        password: Some(password),
        ca_pem: intermediate.cert.clone().filter(|c| !c.trim().is_empty()),
    }
}

/// Copy the manifests and configs of `source` to `destination` and
/// record its layers as living where `sources` says.
async fn pull_lazily<S: Registry, B: Registry>(
    src: &Arc<S>,
    source: &Reference,
    buildset: &Arc<B>,
    destination: &Reference,
    sources: &BlobSources,
    prefetch: Option<&[String]>,
) -> Result<crate::client::CopyReport, crate::client::Error> {
    let repository = destination.repository.clone();
    // A layer of no known platform (an image without an index) is
    // prefetched whenever prefetching is on.
    let wanted = move |layer: &LazyLayer| match prefetch {
        None => false,
        Some([]) => true,
        Some(platforms) => {
            layer.platforms.is_empty() || layer.platforms.iter().any(|p| platforms.contains(p))
        }
    };
    copy_manifests(
        src,
        &source.repository,
        &source.manifest_reference(),
        buildset,
        &destination.repository,
        destination.tag.as_ref(),
        &CopyOptions::default(),
        |layers| async move {
            let blobs: Vec<_> = layers
                .iter()
                .map(|layer| (layer.descriptor.clone(), wanted(layer)))
                .collect();
            buildset
                .record_blob_sources(&repository, sources, &blobs)
                .await
        },
    )
    .await
    .map_err(|e| e.during(format_args!("pulling {source} lazily to {destination}")))
}

/// Whether `error` says the buildset registry has no blob sources
/// extension (404 or 405 to its `PUT`, or a registry that has none).
fn cannot_record(error: &crate::client::Error) -> bool {
    let unsupported = matches!(error.kind, ErrorKind::Unsupported(_));
    (error.action.contains("/_speculative/sources")
        && (error.is_not_found()
            || error.status == Some(reqwest::StatusCode::METHOD_NOT_ALLOWED)
            || error.has_code("UNSUPPORTED")))
        || (unsupported && error.action.contains(RECORDING_BLOB_SOURCES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::MemoryRegistry;
    use crate::oci::{Digest, Manifest, ManifestReference};
    use serde_json::json;

    /// The image `org/app:b1_latest` (layers `base`, `app`) in an
    /// intermediate registry in memory, and the pull of it.
    fn intermediate_with_an_image() -> (Arc<MemoryRegistry>, Manifest, Pull) {
        let intermediate = MemoryRegistry::new("inter:5000");
        let repository: RepositoryName = "org/app".parse().unwrap();
        let tag: Tag = "b1_latest".parse().unwrap();
        let manifest =
            intermediate.insert_image(&repository, Some(&tag), "amd64", &["base", "app"]);
        let pull = Pull {
            name: "org/app:latest".into(),
            source: "inter:5000/org/app:b1_latest".parse().unwrap(),
            repository: "org/app".into(),
            tag: "latest".parse().unwrap(),
        };
        (intermediate, manifest, pull)
    }

    fn pull_plan(check_mode: bool, credential: Option<NodeCredential>) -> PullPlan {
        PullPlan {
            buildset: BuildsetRegistry {
                host: "bsr".into(),
                port: 5000,
                username: "zuul".into(),
                password: "buildset-password".into(),
                cert: String::new(),
            },
            intermediate: IntermediateRegistry {
                host: "inter".into(),
                port: 5000,
                username: "zuul".into(),
                password: "read-write-password".into(),
                cert: None,
                read_only_username: None,
                read_only_password: None,
            },
            check_mode,
            credential,
            lazy_required: false,
            prefetch: Some(Vec::new()),
        }
    }

    async fn pull(
        buildset: &Arc<MemoryRegistry>,
        intermediate: &Arc<MemoryRegistry>,
        pull: &Pull,
        plan: PullPlan,
    ) -> (Vec<Pulled>, Option<String>) {
        let unreachable = |registry: &str| anyhow::bail!("no registry {registry} here");
        pull_with(
            vec![pull.clone()],
            plan,
            buildset,
            intermediate,
            unreachable,
        )
        .await
        .unwrap()
    }

    fn layers(manifest: &Manifest) -> Vec<Digest> {
        match manifest.children().unwrap() {
            crate::oci::Children::Blobs(blobs) => blobs.into_iter().map(|b| b.digest).collect(),
            crate::oci::Children::Manifests(_) => unreachable!("an image"),
        }
    }

    #[tokio::test]
    async fn a_lazy_pull_copies_the_manifest_and_records_where_each_layer_lives() {
        let (intermediate, manifest, app) = intermediate_with_an_image();
        let buildset = MemoryRegistry::buildset("bsr:5000");
        let token = NodeCredential::Token("pull-only".into());
        let (pulled, fallback) = pull(
            &buildset,
            &intermediate,
            &app,
            pull_plan(false, Some(token)),
        )
        .await;
        assert_eq!(fallback, None);
        assert_eq!(pulled[0].mode, "lazy");
        assert_eq!(
            pulled[0].digest.as_deref(),
            Some(manifest.digest.to_string().as_str())
        );
        assert_eq!(pulled[0].blobs_recorded, 2, "{:?}", buildset.operations());
        let repository: RepositoryName = "org/app".parse().unwrap();
        let latest = ManifestReference::Tag("latest".parse().unwrap());
        assert_eq!(
            buildset.manifest_head(&repository, &latest).await.unwrap(),
            Some(manifest.digest.clone())
        );
        let recorded = buildset.recorded(&repository);
        let [_config, base, app_layer] = &layers(&manifest)[..] else {
            panic!("config and two layers")
        };
        for layer in [base, app_layer] {
            assert!(
                !buildset.has_blob(&repository, layer),
                "layer {layer} was copied"
            );
            assert!(
                recorded.contains(&(layer.clone(), "https://inter:5000 org/app".into(), true)),
                "{recorded:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_buildset_registry_that_records_nothing_gets_a_full_copy_and_the_reason() {
        let (intermediate, manifest, app) = intermediate_with_an_image();
        let buildset = MemoryRegistry::new("bsr:5000");
        let token = NodeCredential::Token("pull-only".into());
        let (pulled, fallback) = pull(
            &buildset,
            &intermediate,
            &app,
            pull_plan(false, Some(token)),
        )
        .await;
        assert_eq!(pulled[0].mode, "copy");
        let reason = fallback.expect("a reason");
        assert!(
            reason.starts_with("the buildset registry does not record blob sources"),
            "{reason}"
        );
        let repository: RepositoryName = "org/app".parse().unwrap();
        for blob in layers(&manifest) {
            assert!(buildset.has_blob(&repository, &blob), "{blob} not copied");
        }
    }

    #[tokio::test]
    async fn check_mode_predicts_the_pull_and_writes_nothing() {
        let (intermediate, _manifest, app) = intermediate_with_an_image();
        let buildset = MemoryRegistry::buildset("bsr:5000");
        let (pulled, _) = pull(&buildset, &intermediate, &app, pull_plan(true, None)).await;
        assert_eq!(pulled[0].mode, "check");
        assert!(pulled[0].changed);
        let writes: Vec<_> = buildset
            .operations()
            .into_iter()
            .filter(|o| o.contains("_put") || o.starts_with("record"))
            .collect();
        assert_eq!(writes, Vec::<String>::new());
    }

    #[test]
    fn plans_container_images_and_ignores_other_artifacts() {
        let artifacts = vec![
            json!({"name": "docs", "url": "https://logs/docs", "metadata": {"type": "docs_site"}}),
            json!({"name": "library/alpine:latest",
                   "url": "docker://inter:5000/docker.io/library/alpine:abc_latest",
                   "metadata": {"type": "container_image",
                                "repository": "docker.io/library/alpine", "tag": "latest"},
                   "project": "org/alpine", "change": "42"}),
            json!({"name": "no metadata", "url": "x"}),
        ];
        let pulls = plan(&artifacts).unwrap();
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0].repository, "docker.io/library/alpine");
        assert_eq!(pulls[0].source.registry, "inter:5000");
        assert_eq!(
            pulls[0].source.repository.as_str(),
            "docker.io/library/alpine"
        );
        assert_eq!(buildset_repository(&pulls[0].repository), "library/alpine");
    }

    fn item(name: &str, change: Option<&str>) -> ZuulItem {
        serde_json::from_value(json!({
            "project": {"name": name, "short_name": name.rsplit('/').next().unwrap(),
                        "canonical_name": format!("review.example.org/{name}")},
            "change": change, "patchset": "1", "branch": "main",
        }))
        .unwrap()
    }

    fn image(change: &str, project: &str, tag: &str) -> Value {
        json!({"url": format!("docker://inter:5000/org/img:{change}_{tag}"),
               "metadata": {"type": "container_image", "repository": "org/img", "tag": tag},
               "project": project, "change": change, "patchset": "1"})
    }

    fn record(change: &str, pipeline: &str, pushed_at_ms: u64) -> ChangeRecord {
        ChangeRecord {
            project: "review.example.org/org/a".into(),
            change: change.into(),
            patchset: "1".into(),
            job: "build".into(),
            build: format!("b{pushed_at_ms}"),
            buildset: None,
            pipeline: Some(pipeline.into()),
            tenant: Some("t".into()),
            pushed_at_ms,
            artifacts: vec![json!({"name": "org/img:latest",
                "url": format!("docker://inter:5000/org/img:b{pushed_at_ms}_latest"),
                "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}})],
        }
    }

    #[test]
    fn zuul_items_ahead_skip_branch_heads_and_the_current_item() {
        let zuul: ZuulContext = serde_json::from_value(json!({
            "items": [
                {"project": {"name": "org/head"}, "branch": "main"},
                {"project": {"name": "org/a"}, "change": 1, "patchset": 2},
                {"project": {"name": "org/b"}, "change": "3", "patchset": "1"},
            ],
            "artifacts": [{"url": "docker://r/x:1", "metadata": {"type": "container_image"}}],
        }))
        .unwrap();
        let ahead: Vec<_> = zuul.changes_ahead().collect();
        assert_eq!(ahead.len(), 1);
        assert_eq!(ahead[0].change.as_deref(), Some("1"));
        assert_eq!(ahead[0].patchset.as_deref(), Some("2"));
        assert_eq!(zuul.artifacts[0].name, None);
    }

    #[test]
    fn artifacts_belong_by_change_patchset_and_any_project_name() {
        let a = item("org/a", Some("10"));
        assert!(belongs_to(&image("10", "org/a", "latest"), &a));
        assert!(belongs_to(&image("10", "a", "latest"), &a));
        assert!(belongs_to(
            &image("10", "review.example.org/org/a", "latest"),
            &a
        ));
        assert!(!belongs_to(&image("10", "org/other", "latest"), &a));
        assert!(!belongs_to(&image("11", "org/a", "latest"), &a));
        let mut other_patchset = image("10", "org/a", "latest");
        other_patchset["patchset"] = json!("2");
        assert!(!belongs_to(&other_patchset, &a));
    }

    #[test]
    fn changes_ahead_come_oldest_first_then_the_own_artifacts() {
        let ahead = vec![item("org/a", Some("10")), item("org/b", Some("20"))];
        let own = json!({"url": "docker://inter:5000/org/img:own_latest",
                         "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}});
        // Zuul's order may differ: the nearest change ahead must win.
        let given = vec![own.clone(), image("20", "org/b", "latest")];
        let lookups = vec![
            Some((
                vec![record("10", "gate", 1), record("10", "gate", 2)],
                vec![],
                vec![],
            )),
            None,
        ];
        let (artifacts, report, problems) = gather(&given, &ahead, lookups);
        assert!(problems.is_empty());
        let urls: Vec<_> = artifacts
            .iter()
            .map(|a| a["url"].as_str().unwrap())
            .collect();
        // Change 10's two records name one image: only the later push.
        assert_eq!(
            urls,
            [
                "docker://inter:5000/org/img:b2_latest",
                "docker://inter:5000/org/img:20_latest",
                "docker://inter:5000/org/img:own_latest",
            ]
        );
        assert_eq!(report[0].source, Source::Records);
        assert_eq!(report[0].records.len(), 2);
        assert_eq!(report[0].images, ["org/img:latest"]);
        assert_eq!(report[1].source, Source::Artifacts);
        assert_eq!(report[1].images, ["org/img:latest"]);
        // Record artifacts carry the keys Zuul adds.
        assert_eq!(artifacts[0]["change"], "10");
        assert_eq!(artifacts[0]["project"], "org/a");
        assert_eq!(artifacts[0]["job"], "build");
    }

    #[test]
    fn only_records_of_this_tenant_and_pipeline_are_used() {
        let zuul: ZuulContext =
            serde_json::from_value(json!({"tenant": "t", "pipeline": "gate"})).unwrap();
        let (kept, _, elsewhere) = this_queue(
            vec![record("10", "check", 1), record("10", "gate", 2)],
            vec![],
            &zuul,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].pushed_at_ms, 2);
        assert_eq!(elsewhere, ["t/check"]);
        let (artifacts, report, _) = gather(
            &[],
            &[item("org/a", Some("10"))],
            vec![Some((vec![], vec![], elsewhere))],
        );
        assert!(artifacts.is_empty());
        assert_eq!(report[0].source, Source::Nothing);
        assert_eq!(report[0].other_pipelines, ["t/check"]);
    }

    #[test]
    fn upstream_tags_may_be_numbers_and_names_are_optional() {
        let pulls = plan(&[json!({"url": "docker://inter:5000/org/img:1_123",
            "metadata": {"type": "container_image", "repository": "docker.io/org/img", "tag": 123}})])
        .unwrap();
        assert_eq!(pulls[0].tag.as_str(), "123");
        assert_eq!(pulls[0].name, "docker.io/org/img:123");
        let err = format!(
            "{:#}",
            plan(&[json!({"url": "docker://inter:5000/org/img:1_x",
                "metadata": {"type": "container_image", "repository": 5, "tag": "x"}})])
            .unwrap_err()
        );
        assert_eq!(
            err,
            "artifact 0: metadata.repository is a number, expected a string"
        );
    }

    #[test]
    fn malformed_artifacts_are_named() {
        let err = |a: Value| format!("{:#}", plan(&[a]).unwrap_err());
        assert_eq!(
            err(json!({"name": "org/img:latest", "url": "https://example.org/img.tar",
                       "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}})),
            "artifact 0 (\"org/img:latest\"): url: a https:// URL is not a container image; expected docker://"
        );
        assert_eq!(
            err(
                json!({"name": "x", "url": "docker://inter:5000/org/img:1_latest",
                       "metadata": {"type": "container_image", "tag": "latest"}})
            ),
            "artifact 0 (\"x\"): metadata.repository is missing"
        );
        let msg = err(
            json!({"name": "x", "url": "docker://zuul:hunter2@inter:5000/org/img:1_latest",
                   "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}}),
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("carries credentials"), "{msg}");
        assert!(err(json!({"name": "x", "url": "docker://inter:5000/org/img:1_latest",
                   "metadata": {"type": "container_image", "repository": "Org/Img", "tag": "latest"}}))
            .starts_with("artifact 0 (\"x\"): metadata.repository: repository name \"Org/Img\" is invalid"));
    }
}
