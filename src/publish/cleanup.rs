//! Deleting tags after a promote: the temporary tags just promoted, then
//! the temporary tags older than a day that earlier uploads leaked
//! ([`super::retention`] says which). Every failure here is a warning: the
//! image is already published.
//!
//! Two kinds of tag store: a registry speaking the distribution spec
//! (delete a tag by name; ages from the image config's `created`), and
//! Docker Hub (its own API; ages from `last_updated`). A registry that
//! only deletes manifests by digest gets that, but only when no other
//! tag names the same manifest, so a final tag is never taken along.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::StreamExt;

use super::credentials::DockerCredentials;
use super::promote::TagPromotion;
use super::retention::{is_stale, is_temporary, parse_time};
use crate::client::{Children, Error as ClientError, HubApi, Registry, TagDeleted};
use crate::oci::{Digest, ManifestReference, RepositoryName, Tag};

/// The largest image config read to learn an image's age.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Where tags are deleted.
pub enum TagStore<'a, R: Registry> {
    /// A distribution-spec registry.
    Registry(&'a R),
    /// Docker Hub's API (the registry handle is still used for nothing).
    Hub(&'a HubApi),
}

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// `repository:tag` of every tag deleted.
    pub deleted: Vec<String>,
    /// What could not be deleted, and why.
    pub warnings: Vec<String>,
}

impl<R: Registry> TagStore<'_, R> {
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
        let aged = match self.temporary_tags(repository, pipeline, keep).await {
            Ok(aged) => aged,
            Err(why) => {
                report.warnings.push(format!(
                    "could not list the tags of {repository} to remove leaked temporary tags: {why}"
                ));
                return;
            }
        };
        let mut stale = Vec::new();
        for (tag, written) in aged {
            match written {
                Some(written) if is_stale(written, now) => stale.push((repository.clone(), tag)),
                Some(_) => {}
                None => report.warnings.push(format!(
                    "could not tell the age of {repository}:{tag}; left in place"
                )),
            }
        }
        self.delete_all(&stale, report).await;
    }

    /// The temporary tags of `repository` not in `keep`, with when they
    /// were written (when known).
    async fn temporary_tags(
        &self,
        repository: &RepositoryName,
        pipeline: Option<&str>,
        keep: &[Tag],
    ) -> Result<Vec<(Tag, Option<DateTime<Utc>>)>, String> {
        let wanted =
            |name: &str| is_temporary(name, pipeline) && !keep.iter().any(|k| k.as_str() == name);
        match self {
            TagStore::Hub(hub) => Ok(hub
                .tags(repository)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|t| wanted(&t.name))
                .filter_map(|t| {
                    let written = t.last_updated.as_deref().and_then(parse_time);
                    t.name.parse().ok().map(|tag| (tag, written))
                })
                .collect()),
            TagStore::Registry(registry) => {
                let tags = registry
                    .tags_list(repository)
                    .await
                    .map_err(|e| e.to_string())?;
                let candidates: Vec<Tag> =
                    tags.into_iter().filter(|t| wanted(t.as_str())).collect();
                let ages = join_all(
                    candidates
                        .iter()
                        .map(|tag| created(*registry, repository, tag)),
                )
                .await;
                Ok(candidates
                    .into_iter()
                    .zip(ages)
                    .map(|(tag, age)| (tag, age.ok().flatten()))
                    .collect())
            }
        }
    }
}

/// The cleanup after a promote on `registry`: the promoted temporary tags
/// first, then the leaked temporary tags of the same repositories older
/// than a day at `now`. On Docker Hub (`hub_api` is where its API answers)
/// through that API, logged in with `credentials`; elsewhere through the
/// registry. Never fails: what could not be done is a warning in `report`,
/// since the image is published already.
pub async fn after_promote<R: Registry>(
    registry: &R,
    hub_api: Option<&str>,
    credentials: &DockerCredentials,
    promotions: &[TagPromotion],
    pipeline: Option<&str>,
    now: DateTime<Utc>,
    report: &mut Cleanup,
) {
    let hub;
    let store = match hub_api {
        Some(base) => {
            match HubApi::login(base, &credentials.username, &credentials.password).await {
                Ok(api) => {
                    hub = api;
                    TagStore::Hub(&hub)
                }
                Err(e) => {
                    report.warnings.push(format!(
                        "could not log in to Docker Hub's API to delete temporary tags: {e}"
                    ));
                    return;
                }
            }
        }
        None => TagStore::Registry(registry),
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
    //! The cleanup after a promote on Docker Hub, against the stand-in for
    //! Hub's tag API (Hub itself cannot be reached here). `after_promote`
    //! is what `promote_docker_image` runs once every final tag is written,
    //! and it cannot fail: a Hub problem only adds warnings.

    use chrono::Duration;
    use serde_json::json;

    use super::*;
    use crate::client::hub_stand_in as stand_in;
    use crate::client::{Endpoint, RemoteRegistry};

    const PASSWORD: &str = "hub-Secret-9";

    fn credentials(password: &str) -> DockerCredentials {
        DockerCredentials {
            username: "zuul".into(),
            password: password.into(),
            repository: None,
            token_hosts: Vec::new(),
        }
    }

    fn promotion(temporary: &str, final_tag: &str) -> TagPromotion {
        TagPromotion {
            repository: "org/app".parse().unwrap(),
            temporary: temporary.parse().unwrap(),
            final_tag: final_tag.parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn on_docker_hub_the_tag_api_deletes_temporary_and_leaked_tags() {
        let now = Utc::now();
        let old = (now - Duration::hours(25)).to_rfc3339();
        let fresh = (now - Duration::hours(23)).to_rfc3339();
        let hub = stand_in::start(
            "zuul",
            PASSWORD,
            &[
                ("org/app", "latest", Some(&old)),
                ("org/app", "change_42_latest", Some(&fresh)),
                ("org/app", "change_7_latest", Some(&old)),
                ("org/app", "change_9_latest", Some(&fresh)),
                ("org/app", "promote_v2", Some(&old)),
                ("org/app", "change_5_latest", None),
                ("org/other", "change_1_latest", Some(&old)),
            ],
        )
        .await;
        let registry = RemoteRegistry::new(Endpoint::new("docker.io")).unwrap();
        let mut report = Cleanup::default();
        after_promote(
            registry.as_ref(),
            Some(&hub.base),
            &credentials(PASSWORD),
            &[promotion("change_42_latest", "latest")],
            Some("promote"),
            now,
            &mut report,
        )
        .await;

        assert_eq!(
            hub.logins(),
            [json!({"username": "zuul", "password": PASSWORD})]
        );
        let deleted = [
            "org/app:change_42_latest",
            "org/app:change_7_latest",
            "org/app:promote_v2",
        ];
        assert_eq!(hub.deleted(), deleted);
        assert_eq!(report.deleted, deleted);
        assert_eq!(
            report.warnings,
            ["could not tell the age of org/app:change_5_latest; left in place"]
        );
        // The final tag, the fresh temporary tag and the undated one stay;
        // another repository is not touched.
        assert_eq!(
            hub.tags("org/app"),
            ["latest", "change_9_latest", "change_5_latest"]
        );
        assert_eq!(hub.tags("org/other"), ["change_1_latest"]);
    }

    #[tokio::test]
    async fn a_failed_docker_hub_login_is_a_warning_without_the_password() {
        let hub = stand_in::start(
            "zuul",
            PASSWORD,
            &[("org/app", "change_42_latest", Some("2026-01-01T00:00:00Z"))],
        )
        .await;
        let registry = RemoteRegistry::new(Endpoint::new("docker.io")).unwrap();
        let mut report = Cleanup::default();
        let wrong = "wrong-Secret-1";
        after_promote(
            registry.as_ref(),
            Some(&hub.base),
            &credentials(wrong),
            &[promotion("change_42_latest", "latest")],
            None,
            Utc::now(),
            &mut report,
        )
        .await;

        assert_eq!(
            hub.logins(),
            [json!({"username": "zuul", "password": wrong})]
        );
        assert_eq!(
            report.warnings,
            [format!(
                "could not log in to Docker Hub's API to delete temporary tags: POST {}/v2/users/login/: 401 Unauthorized: registry hub.docker.com refused the credentials of user \"zuul\"",
                hub.base
            )]
        );
        assert!(!format!("{report:?}").contains(wrong));
        assert!(report.deleted.is_empty());
        assert!(hub.deleted().is_empty());
        assert_eq!(hub.tags("org/app"), ["change_42_latest"]);
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
            None,
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
