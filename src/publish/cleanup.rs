//! Deleting tags: after a promote, the temporary tags just promoted, then
//! the temporary tags older than a day that earlier uploads leaked
//! ([`super::retention`] says which; every failure there is a warning,
//! the image is already published); and `remove_registry_tag`'s removals.
//!
//! Three kinds of tag store: a registry speaking the distribution spec
//! (delete a tag by name; ages from the image config's `created`),
//! Docker Hub (its own API; ages from `last_updated`) and quay.io (its own
//! API with a bearer `api_token`; ages from `start_ts`). A registry that
//! only deletes manifests by digest gets that, but only when no other
//! tag names the same manifest, so a final tag is never taken along.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::StreamExt;

use super::credentials::RegistryCredentials;
use super::promote::TagPromotion;
use super::retention::{is_older, is_temporary, parse_time, MAX_AGE_SECONDS};
use crate::client::{
    Children, Error as ClientError, HubApi, QuayApi, Registry, TagDeleted, HUB_API_URL,
};
use crate::oci::{Digest, ManifestReference, RepositoryName, Tag};

/// The largest image config read to learn an image's age.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Which API a registry's tags are deleted through (`type` of
/// `container_registry_credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagApi {
    /// The distribution spec's tag (or manifest) delete.
    Registry,
    /// Docker Hub's own API.
    Hub,
    /// quay.io's own API.
    Quay,
}

impl TagApi {
    /// The API named by `kind` (`quay`, `docker`, `registry`), else guessed
    /// from the host as zuul-jobs does: quay.io's and Docker Hub's own,
    /// the distribution spec elsewhere.
    pub fn of(registry: &str, kind: Option<&str>) -> Result<TagApi, String> {
        match kind {
            Some("quay") => Ok(TagApi::Quay),
            Some("docker") => Ok(TagApi::Hub),
            Some("registry") => Ok(TagApi::Registry),
            Some(other) => Err(format!(
                "type {other:?} of the credentials for {registry} is none of quay, docker, registry"
            )),
            None if registry.contains("quay.io") => Ok(TagApi::Quay),
            None if matches!(
                registry,
                "docker.io" | "index.docker.io" | "registry-1.docker.io"
            ) =>
            {
                Ok(TagApi::Hub)
            }
            None => Ok(TagApi::Registry),
        }
    }

    /// Where the API answers for `registry`, unless `api_url` says.
    pub fn base(self, registry: &str, api_url: Option<&str>) -> String {
        match (api_url, self) {
            (Some(url), _) if !url.is_empty() => url.to_string(),
            (_, TagApi::Hub) => HUB_API_URL.to_string(),
            (_, TagApi::Quay) => format!("https://{registry}/api/v1"),
            (_, TagApi::Registry) => format!("https://{registry}/v2"),
        }
    }
}

/// Where tags are deleted.
pub enum TagStore<'a, R: Registry> {
    /// A distribution-spec registry.
    Registry(&'a R),
    /// Docker Hub's API.
    Hub(HubApi),
    /// quay.io's API.
    Quay(QuayApi),
}

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// `repository:tag` of every tag deleted.
    pub deleted: Vec<String>,
    /// What could not be deleted, and why.
    pub warnings: Vec<String>,
}

impl<'a, R: Registry> TagStore<'a, R> {
    /// The store of `api` for `registry`: Docker Hub's logged in with the
    /// user and password of `credentials`, quay.io's with its `api_token`.
    pub async fn open(
        registry: &'a R,
        api: TagApi,
        base: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<TagStore<'a, R>, String> {
        match api {
            TagApi::Registry => Ok(TagStore::Registry(registry)),
            TagApi::Hub => {
                let Some((username, password)) = credentials.and_then(|c| c.login()) else {
                    return Err("Docker Hub's API needs a username and password".to_string());
                };
                HubApi::login(base, username, password)
                    .await
                    .map(TagStore::Hub)
                    .map_err(|e| format!("could not log in to Docker Hub's API: {e}"))
            }
            TagApi::Quay => {
                let Some(token) = credentials.and_then(|c| c.api_token.as_deref()) else {
                    return Err(format!(
                        "quay.io's API needs the api_token of the credentials for {}",
                        registry.name()
                    ));
                };
                QuayApi::new(base, token)
                    .map(TagStore::Quay)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Delete every `(repository, tag)`, all at once, recording each
    /// outcome in `report` in the order given.
    pub async fn delete_all(&self, tags: &[(RepositoryName, Tag)], report: &mut Cleanup) {
        let outcomes = join_all(tags.iter().map(|(r, t)| self.delete(r, t))).await;
        for ((repository, tag), outcome) in tags.iter().zip(outcomes) {
            match outcome {
                Ok(()) => report.deleted.push(format!("{repository}:{tag}")),
                Err(why) => report
                    .warnings
                    .push(format!("could not delete tag {repository}:{tag}: {why}")),
            }
        }
    }

    /// Delete `tag` of `repository`.
    async fn delete(&self, repository: &RepositoryName, tag: &Tag) -> Result<(), String> {
        match self {
            TagStore::Registry(registry) => delete_on_registry(*registry, repository, tag).await,
            TagStore::Hub(hub) => hub
                .delete_tag(repository, tag)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            TagStore::Quay(quay) => quay
                .delete_tag(repository, tag)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// Delete every temporary tag of `repository` (for `pipeline` too)
    /// older than a day at `now`, except those in `keep`.
    pub async fn delete_leaked(
        &self,
        repository: &RepositoryName,
        pipeline: Option<&str>,
        keep: &[Tag],
        now: DateTime<Utc>,
        report: &mut Cleanup,
    ) {
        let wanted =
            |name: &str| is_temporary(name, pipeline) && !keep.iter().any(|k| k.as_str() == name);
        match self
            .stale_tags(repository, &wanted, MAX_AGE_SECONDS, now, report)
            .await
        {
            Ok(stale) => self.delete_all(&stale, report).await,
            Err(why) => report.warnings.push(format!(
                "could not list the tags of {repository} to remove leaked temporary tags: {why}"
            )),
        }
    }

    /// The tags of `repository` that `wanted` accepts and that are more
    /// than `max_age` whole seconds old at `now`; a tag whose age cannot be
    /// told is left, with a warning in `report`.
    pub async fn stale_tags(
        &self,
        repository: &RepositoryName,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        max_age: u64,
        now: DateTime<Utc>,
        report: &mut Cleanup,
    ) -> Result<Vec<(RepositoryName, Tag)>, String> {
        let aged = self.dated_tags(repository, wanted).await?;
        let mut stale = Vec::new();
        for (tag, written) in aged {
            match written {
                Some(written) if is_older(written, now, max_age) => {
                    stale.push((repository.clone(), tag))
                }
                Some(_) => {}
                None => report.warnings.push(format!(
                    "could not tell the age of {repository}:{tag}; left in place"
                )),
            }
        }
        Ok(stale)
    }

    /// The tags of `repository` that `wanted` accepts, with when they were
    /// written (when known).
    pub async fn dated_tags(
        &self,
        repository: &RepositoryName,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<(Tag, Option<DateTime<Utc>>)>, String> {
        // The registries' own APIs list each tag with when it was written.
        let listed: Vec<(String, Option<DateTime<Utc>>)> = match self {
            TagStore::Hub(hub) => hub
                .tags(repository)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| {
                    let written = t.last_updated.as_deref().and_then(parse_time);
                    (t.name, written)
                })
                .collect(),
            TagStore::Quay(quay) => quay
                .tags(repository)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| {
                    let written = t.written();
                    (t.name, written)
                })
                .collect(),
            TagStore::Registry(registry) => {
                return dated_on_registry(*registry, repository, wanted).await
            }
        };
        Ok(listed
            .into_iter()
            .filter(|(name, _)| wanted(name))
            .filter_map(|(name, written)| name.parse().ok().map(|tag| (tag, written)))
            .collect())
    }
}

/// The tags of `repository` on a registry that `wanted` accepts, dated by
/// their image configs' `created`.
async fn dated_on_registry<R: Registry>(
    registry: &R,
    repository: &RepositoryName,
    wanted: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<(Tag, Option<DateTime<Utc>>)>, String> {
    let tags = registry
        .tags_list(repository)
        .await
        .map_err(|e| e.to_string())?;
    let candidates: Vec<Tag> = tags.into_iter().filter(|t| wanted(t.as_str())).collect();
    let ages = join_all(
        candidates
            .iter()
            .map(|tag| created(registry, repository, tag)),
    )
    .await;
    Ok(candidates
        .into_iter()
        .zip(ages)
        .map(|(tag, age)| (tag, age.ok().flatten()))
        .collect())
}

/// The cleanup after a promote on `registry`: the promoted temporary tags
/// first, then the leaked temporary tags of the same repositories older
/// than a day at `now`, through `api` at `base`, logged in with
/// `credentials`. Never fails: what could not be done is a warning in
/// `report`, since the image is published already.
#[allow(clippy::too_many_arguments)]
pub async fn after_promote<R: Registry>(
    registry: &R,
    api: TagApi,
    base: &str,
    credentials: &RegistryCredentials,
    promotions: &[TagPromotion],
    pipeline: Option<&str>,
    now: DateTime<Utc>,
    report: &mut Cleanup,
) {
    let store = match TagStore::open(registry, api, base, Some(credentials)).await {
        Ok(store) => store,
        Err(why) => {
            report
                .warnings
                .push(format!("{why}; temporary tags were not deleted"));
            return;
        }
    };
    let temporaries: Vec<_> = promotions
        .iter()
        .map(|p| (p.repository.clone(), p.temporary.clone()))
        .collect();
    store.delete_all(&temporaries, report).await;
    let mut repositories: Vec<_> = promotions.iter().map(|p| &p.repository).collect();
    repositories.dedup();
    for repository in repositories {
        store
            .delete_leaked(repository, pipeline, &[], now, report)
            .await;
    }
}

/// Delete a tag by name; where the registry cannot, delete its manifest by
/// digest if no other tag names it.
async fn delete_on_registry<R: Registry>(
    registry: &R,
    repository: &RepositoryName,
    tag: &Tag,
) -> Result<(), String> {
    match registry
        .tag_delete(repository, tag)
        .await
        .map_err(|e| e.to_string())?
    {
        TagDeleted::Deleted | TagDeleted::Absent => return Ok(()),
        TagDeleted::Unsupported => {}
    }
    let Some(digest) = registry
        .manifest_head(repository, &ManifestReference::from(tag))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    if let Some(other) = other_tag_naming(registry, repository, tag, &digest).await? {
        return Err(format!(
            "registry {} deletes manifests only by digest, and tag {other} names the same \
             manifest; left in place",
            registry.name()
        ));
    }
    registry
        .manifest_delete(repository, &digest)
        .await
        .map_err(|e| e.to_string())
}

async fn other_tag_naming<R: Registry>(
    registry: &R,
    repository: &RepositoryName,
    tag: &Tag,
    digest: &Digest,
) -> Result<Option<Tag>, String> {
    let tags = registry
        .tags_list(repository)
        .await
        .map_err(|e| e.to_string())?;
    for other in tags.into_iter().filter(|t| t != tag) {
        let named = registry
            .manifest_head(repository, &ManifestReference::from(&other))
            .await
            .map_err(|e| e.to_string())?;
        if named.as_ref() == Some(digest) {
            return Ok(Some(other));
        }
    }
    Ok(None)
}

/// When the image `tag` names was created, from its config (the first
/// platform's, for an index).
pub async fn created<R: Registry>(
    registry: &R,
    repository: &RepositoryName,
    tag: &Tag,
) -> Result<Option<DateTime<Utc>>, ClientError> {
    let mut manifest = registry
        .manifest_get(repository, &ManifestReference::from(tag))
        .await?;
    if manifest.is_index() {
        let Ok(Children::Manifests(children)) = manifest.children() else {
            return Ok(None);
        };
        let Some(first) = children.first() else {
            return Ok(None);
        };
        manifest = registry
            .manifest_get(repository, &ManifestReference::from(&first.digest))
            .await?;
    }
    let Ok(Children::Blobs(blobs)) = manifest.children() else {
        return Ok(None);
    };
    // The config comes first.
    let Some(config) = blobs.first() else {
        return Ok(None);
    };
    if config.size > MAX_CONFIG_BYTES as u64 {
        return Ok(None);
    }
    let mut stream = registry.blob_get(repository, &config.digest).await?;
    let mut bytes = Vec::with_capacity(config.size as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() > MAX_CONFIG_BYTES {
            return Ok(None);
        }
    }
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        created: Option<String>,
    }
    Ok(serde_json::from_slice::<Config>(&bytes)
        .ok()
        .and_then(|c| c.created)
        .as_deref()
        .and_then(parse_time))
}

#[cfg(test)]
mod tests {
    //! The cleanup after a promote on a registry (the Docker Hub and
    //! quay.io stores are tested against their stand-ins in
    //! `tests/publish_tag_apis.rs`).

    use chrono::Duration;
    use serde_json::json;

    use super::*;

    const PASSWORD: &str = "hub-Secret-9";

    fn credentials(password: &str) -> RegistryCredentials {
        RegistryCredentials {
            username: Some("zuul".into()),
            password: Some(password.into()),
            ..RegistryCredentials::default()
        }
    }

    fn promotion(temporary: &str, final_tag: &str) -> TagPromotion {
        TagPromotion {
            repository: "org/app".parse().unwrap(),
            temporary: temporary.parse().unwrap(),
            final_tag: final_tag.parse().unwrap(),
        }
    }

    /// An image whose config says it was `created`, tagged `tags`.
    fn dated_image(registry: &crate::client::MemoryRegistry, created: &str, tags: &[&str]) {
        use crate::oci::{media_type, Manifest};
        let repository: RepositoryName = "org/app".parse().unwrap();
        let config = json!({"created": created, "architecture": "amd64"}).to_string();
        let size = config.len();
        let digest = registry.insert_blob(&repository, config);
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": digest, "size": size},
            "layers": [],
        });
        let manifest = Manifest::new("", bytes::Bytes::from(doc.to_string()));
        for tag in tags {
            registry.insert_manifest(&repository, Some(&tag.parse().unwrap()), &manifest);
        }
    }

    #[tokio::test]
    async fn on_a_registry_the_promoted_and_the_stale_temporary_tags_are_deleted() {
        let now = Utc::now();
        let registry = crate::client::MemoryRegistry::new("reg:5000");
        dated_image(
            &registry,
            &(now - Duration::hours(1)).to_rfc3339(),
            &["latest", "change_42_latest"],
        );
        dated_image(
            &registry,
            &(now - Duration::hours(30)).to_rfc3339(),
            &["change_7_latest"],
        );
        dated_image(
            &registry,
            &(now - Duration::hours(2)).to_rfc3339(),
            &["change_9_latest"],
        );
        let mut report = Cleanup::default();
        after_promote(
            registry.as_ref(),
            TagApi::Registry,
            "",
            &credentials(PASSWORD),
            &[promotion("change_42_latest", "latest")],
            None,
            now,
            &mut report,
        )
        .await;
        assert_eq!(
            report.deleted,
            ["org/app:change_42_latest", "org/app:change_7_latest"]
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let left: Vec<String> = registry
            .tags_list(&"org/app".parse().unwrap())
            .await
            .unwrap()
            .iter()
            .map(Tag::to_string)
            .collect();
        assert_eq!(left, ["change_9_latest", "latest"]);
    }
}
