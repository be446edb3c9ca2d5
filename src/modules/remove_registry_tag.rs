//! `remove_registry_tag` (zuul-jobs' `remove-registry-tag`): remove one tag
//! of a repository, or every tag matching a regular expression that is
//! older than an age in whole seconds, through quay.io's API (its
//! `api_token`), Docker Hub's API (user and password) or the distribution
//! spec's tag or manifest delete on any other registry. The stores are
//! [`crate::publish::cleanup`]'s, which promote uses too.

use std::collections::BTreeMap;

use anyhow::Context as _;
use regex_lite::Regex;
use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};
use crate::client::runtime::block_on;
use crate::client::RemoteRegistry;
use crate::oci::{Reference, RepositoryName, Tag};
use crate::publish::cleanup::{Cleanup, TagApi, TagStore};
use crate::publish::credentials::{Credentials, DockerCredentials, RegistryCredentials};
use crate::publish::retention::MAX_AGE_SECONDS;

fn default_age() -> u64 {
    MAX_AGE_SECONDS
}

/// Arguments of `remove_registry_tag`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The full repository, registry first (`quay.io/org/app`).
    pub repository: String,
    /// One tag to remove; without it, every tag `regex` matches that is
    /// older than `age`.
    #[serde(default)]
    pub tag: Option<String>,
    /// Which tags to remove (default `^change_.*$`, and
    /// `^<zuul.pipeline>_.*$` when a pipeline is known).
    #[serde(default)]
    pub regex: Option<String>,
    /// Seconds since a tag was last written after which it is removed.
    #[serde(default = "default_age")]
    pub age: u64,
    /// The registry's API (default by registry: quay.io's
    /// `https://<registry>/api/v1`, Docker Hub's `https://hub.docker.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Logins per registry host; `type` picks the API.
    #[serde(default)]
    pub container_registry_credentials: Option<BTreeMap<String, RegistryCredentials>>,
    /// The docker family's one login.
    #[serde(default)]
    pub docker_credentials: Option<DockerCredentials>,
    /// PEM CA of the registry, when not in the system store.
    #[serde(default)]
    pub registry_cert: Option<String>,
    /// The `zuul` variable (`pipeline`, for the default regex).
    #[serde(default)]
    pub zuul: crate::zuul::ZuulContext,
}

/// The `remove_registry_tag` module.
pub struct RemoveRegistryTag;

impl Module for RemoveRegistryTag {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let credentials = Credentials::given(
            args.docker_credentials.as_ref(),
            args.container_registry_credentials.as_ref(),
            &mut ctx.secrets,
        )?;
        if !args.repository.contains('/') {
            anyhow::bail!(
                "repository {:?} must be the full repository, registry first \
                 (quay.io/org/image)",
                args.repository
            );
        }
        let reference: Reference = args
            .repository
            .parse()
            .with_context(|| format!("repository {:?}", args.repository))?;
        if reference.tag.is_some() || reference.digest.is_some() {
            anyhow::bail!(
                "repository {:?} names a tag or digest; give the tag as tag",
                args.repository
            );
        }
        let registry = reference.registry.clone();
        let login = credentials.for_registry(&registry).with_context(|| {
            format!("registry {registry:?} has no entry in container_registry_credentials")
        })?;
        let api = TagApi::of(&registry, login.kind.as_deref()).map_err(|why| {
            anyhow::anyhow!("container_registry_credentials[{registry:?}]: {why}")
        })?;
        let one: Option<Tag> = match &args.tag {
            Some(tag) => Some(tag.parse().with_context(|| format!("tag {tag:?}"))?),
            None => None,
        };
        let regex = match (&args.regex, &args.zuul.pipeline) {
            (Some(regex), _) => regex.clone(),
            (None, Some(pipeline)) if !pipeline.is_empty() => {
                format!("^change_.*$|^{}_.*$", regex_lite::escape(pipeline))
            }
            (None, _) => "^change_.*$".to_string(),
        };
        let matcher =
            Regex::new(&regex).with_context(|| format!("regex {regex:?} is not valid"))?;
        let endpoint = login.endpoint(&registry, args.registry_cert.as_deref());
        let handle = RemoteRegistry::new(endpoint)?;
        let base = api.base(&registry, args.api_url.as_deref());
        let check_mode = ctx.check_mode;
        let repository: RepositoryName = reference.repository.clone();
        let report = block_on(async {
            let store = TagStore::open(handle.as_ref(), api, &base, Some(login))
                .await
                .map_err(|why| anyhow::anyhow!(why))?;
            let mut report = Cleanup::default();
            let doomed = match &one {
                // Only if it is there: a second run changes nothing.
                Some(tag) => store
                    .dated_tags(&repository, &|name: &str| name == tag.as_str())
                    .await
                    .map_err(|why| anyhow::anyhow!("listing the tags of {reference}: {why}"))?
                    .into_iter()
                    .map(|(tag, _)| (repository.clone(), tag))
                    .collect(),
                None => store
                    .stale_tags(
                        &repository,
                        &|name: &str| matcher.is_match(name),
                        args.age,
                        chrono::Utc::now(),
                        &mut report,
                    )
                    .await
                    .map_err(|why| anyhow::anyhow!("listing the tags of {reference}: {why}"))?,
            };
            if check_mode {
                report.deleted = doomed.iter().map(|(r, t)| format!("{r}:{t}")).collect();
            } else {
                store.delete_all(&doomed, &mut report).await;
            }
            anyhow::Ok((report, doomed.len()))
        })
        .context("starting the async runtime")??;
        let (report, wanted) = report;
        if report.deleted.len() < wanted {
            anyhow::bail!(
                "removed {} of {wanted} tag(s) of {reference}: {}",
                report.deleted.len(),
                report.warnings.join("; ")
            );
        }
        for warning in &report.warnings {
            ctx.warn(warning.clone());
        }
        let verb = if check_mode {
            "would remove"
        } else {
            "removed"
        };
        Ok(Outcome::new(!report.deleted.is_empty())
            .msg(format!(
                "{verb} {} tag(s) of {reference}",
                report.deleted.len()
            ))
            .value("deleted", report.deleted))
    }
}
