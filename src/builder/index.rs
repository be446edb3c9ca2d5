//! The one image index a multi-arch build publishes in the buildset
//! registry, whose digest every later hop carries.
//!
//! podman and buildah push their own manifest list ([`adopt`]); docker
//! pushes one image per platform, which [`assemble`] gathers into a
//! manifest list. Either way, before the index is written under the
//! image's tags, each platform's image config is read and must say the
//! platform it was built for: a builder whose cache handed one platform's
//! image to another (seen with podman 4.3's layer cache on `FROM scratch`)
//! fails here rather than publishing a wrong image.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Serialize;

use super::platform::TargetPlatform;
use crate::client::{Error, Registry, TagDeleted};
use crate::oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::oci::{
    Descriptor, Digest, ImageIndex, Manifest, ManifestError, ManifestReference, RepositoryName, Tag,
};

/// Largest image config read to check its platform.
const MAX_CONFIG_BYTES: usize = 4 << 20;

/// The index as published, for the module's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedIndex {
    /// Its digest, the same under every tag.
    pub digest: Digest,
    /// Its media type (OCI index or Docker manifest list).
    pub media_type: String,
    /// Each platform's manifest, in the order of `arch`.
    pub platforms: Vec<PublishedPlatform>,
}

/// One platform of a [`PublishedIndex`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPlatform {
    /// The platform as `arch` names it (`linux/arm64`).
    pub platform: String,
    /// Its image manifest's digest.
    pub digest: Digest,
}

/// Why the index could not be published.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] Error),
    /// A manifest there does not parse.
    #[error(transparent)]
    Invalid(#[from] ManifestError),
    /// A platform's image is not what was built for it.
    #[error("the image built for {platform} in {repository} {problem}")]
    Platform {
        /// The platform asked for.
        platform: String,
        /// The buildset repository.
        repository: String,
        /// What is wrong with it.
        problem: String,
    },
    /// What the builder pushed is not an index.
    #[error("{repository}:{tag} is not an image index but a {media_type}")]
    NotAnIndex {
        /// The buildset repository.
        repository: String,
        /// The tag pushed.
        tag: String,
        /// What it is.
        media_type: String,
    },
}

/// Gather the per-platform images pushed as `repository:<tag>` into one
/// manifest list (an OCI index unless every image is a Docker manifest),
/// write it under every one of `tags` and delete the per-platform tags
/// (where the registry deletes tags by name).
pub async fn assemble<R: Registry>(
    registry: &Arc<R>,
    repository: &RepositoryName,
    parts: &[(TargetPlatform, Tag)],
    tags: &[Tag],
) -> Result<PublishedIndex, IndexError> {
    let mut manifests = Vec::new();
    for (platform, tag) in parts {
        let manifest = registry
            .manifest_get(repository, &ManifestReference::from(tag))
            .await?;
        check_platform(registry, repository, platform, &manifest).await?;
        let mut descriptor = Descriptor::new(
            manifest.media_type.clone(),
            manifest.digest.clone(),
            manifest.bytes.len() as u64,
        );
        descriptor.platform = Some(platform.descriptor_platform());
        manifests.push(descriptor);
    }
    let media_type = if manifests.iter().all(|m| m.media_type == DOCKER_MANIFEST) {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(media_type.to_string()),
        artifact_type: None,
        manifests,
        subject: None,
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&index).expect("an index serialises");
    let manifest = Manifest::new(media_type, Bytes::from(bytes));
    put_under(registry, repository, &manifest, tags).await?;
    for (_, tag) in parts {
        match registry.tag_delete(repository, tag).await? {
            TagDeleted::Deleted | TagDeleted::Absent | TagDeleted::Unsupported => {}
        }
    }
    Ok(published(&manifest, &index, parts.iter().map(|(p, _)| p)))
}

/// Take the manifest list a builder pushed as `repository:<from>`: it must
/// hold exactly `platforms`, each image saying its platform; write it
/// under every one of `tags` (the same bytes, so the same digest).
pub async fn adopt<R: Registry>(
    registry: &Arc<R>,
    repository: &RepositoryName,
    from: &Tag,
    platforms: &[TargetPlatform],
    tags: &[Tag],
) -> Result<PublishedIndex, IndexError> {
    let manifest = registry
        .manifest_get(repository, &ManifestReference::from(from))
        .await?;
    if !manifest.is_index() {
        return Err(IndexError::NotAnIndex {
            repository: repository.to_string(),
            tag: from.to_string(),
            media_type: manifest.media_type.clone(),
        });
    }
    let index = manifest.index()?;
    let mut ordered = Vec::new();
    for platform in platforms {
        let found: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| platform.matches(&p.os, &p.architecture, p.variant.as_deref()))
            })
            .collect();
        let [descriptor] = found.as_slice() else {
            return Err(IndexError::Platform {
                platform: platform.to_string(),
                repository: repository.to_string(),
                problem: format!(
                    "is listed {} times in the index {} the builder pushed",
                    found.len(),
                    manifest.digest
                ),
            });
        };
        let image = registry
            .manifest_get(repository, &ManifestReference::from(&descriptor.digest))
            .await?;
        check_platform(registry, repository, platform, &image).await?;
        ordered.push(descriptor.digest.clone());
    }
    put_under(registry, repository, &manifest, tags).await?;
    Ok(PublishedIndex {
        digest: manifest.digest.clone(),
        media_type: manifest.media_type.clone(),
        platforms: platforms
            .iter()
            .zip(ordered)
            .map(|(p, digest)| PublishedPlatform {
                platform: p.to_string(),
                digest,
            })
            .collect(),
    })
}

fn published<'a>(
    manifest: &Manifest,
    index: &ImageIndex,
    platforms: impl Iterator<Item = &'a TargetPlatform>,
) -> PublishedIndex {
    PublishedIndex {
        digest: manifest.digest.clone(),
        media_type: manifest.media_type.clone(),
        platforms: platforms
            .zip(&index.manifests)
            .map(|(p, d)| PublishedPlatform {
                platform: p.to_string(),
                digest: d.digest.clone(),
            })
            .collect(),
    }
}

async fn put_under<R: Registry>(
    registry: &Arc<R>,
    repository: &RepositoryName,
    manifest: &Manifest,
    tags: &[Tag],
) -> Result<(), Error> {
    for tag in tags {
        registry
            .manifest_put(repository, &ManifestReference::from(tag), manifest)
            .await?;
    }
    Ok(())
}

/// Read `image`'s config: it must be an image for `platform`.
async fn check_platform<R: Registry>(
    registry: &Arc<R>,
    repository: &RepositoryName,
    platform: &TargetPlatform,
    image: &Manifest,
) -> Result<(), IndexError> {
    let problem = |problem: String| IndexError::Platform {
        platform: platform.to_string(),
        repository: repository.to_string(),
        problem,
    };
    if image.is_index() {
        return Err(problem(format!(
            "is an index ({}), not an image",
            image.digest
        )));
    }
    let config = image.image()?.config;
    if config.size > MAX_CONFIG_BYTES as u64 {
        return Err(problem(format!(
            "has a config of {} bytes, more than any builder writes",
            config.size
        )));
    }
    let mut stream = registry.blob_get(repository, &config.digest).await?;
    let mut bytes = Vec::with_capacity(config.size as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(problem("has a config larger than it says".to_string()));
        }
    }
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let config: Config = serde_json::from_slice(&bytes)
        .map_err(|e| problem(format!("has a config that does not parse: {e}")))?;
    if platform.matches(&config.os, &config.architecture, config.variant.as_deref()) {
        Ok(())
    } else {
        let mut found = format!("{}/{}", config.os, config.architecture);
        if let Some(variant) = &config.variant {
            found = format!("{found}/{variant}");
        }
        Err(problem(format!(
            "says it is for {found} (the builder's cache may have handed it another \
             platform's image)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::client::MemoryRegistry;

    fn repo() -> RepositoryName {
        "org/app".parse().unwrap()
    }

    fn tag(name: &str) -> Tag {
        name.parse().unwrap()
    }

    /// An image whose config says `os/arch`, tagged `tag`, in Docker's
    /// media types as `docker push` leaves it.
    fn image(registry: &MemoryRegistry, arch: &str, tag_name: &str) -> Manifest {
        let config = json!({"os": "linux", "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}});
        let config = serde_json::to_vec(&config).unwrap();
        let size = config.len() as u64;
        let digest = registry.insert_blob(&repo(), config);
        let manifest = json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": digest, "size": size},
            "layers": [],
        });
        let manifest = Manifest::new(
            DOCKER_MANIFEST,
            serde_json::to_vec(&manifest).unwrap().into(),
        );
        registry.insert_manifest(&repo(), Some(&tag(tag_name)), &manifest);
        manifest
    }

    fn platforms() -> Vec<TargetPlatform> {
        vec![
            "linux/amd64".parse().unwrap(),
            "linux/arm64".parse().unwrap(),
        ]
    }

    #[tokio::test]
    async fn per_platform_images_become_one_list_under_every_tag() {
        let registry = MemoryRegistry::new("buildset");
        let amd = image(&registry, "amd64", "latest-linux-amd64");
        let arm = image(&registry, "arm64", "latest-linux-arm64");
        let parts: Vec<_> = platforms()
            .into_iter()
            .zip([tag("latest-linux-amd64"), tag("latest-linux-arm64")])
            .collect();
        let published = assemble(&registry, &repo(), &parts, &[tag("latest"), tag("v1")])
            .await
            .unwrap();
        assert_eq!(published.media_type, DOCKER_MANIFEST_LIST);
        assert_eq!(
            published.platforms,
            [
                PublishedPlatform {
                    platform: "linux/amd64".into(),
                    digest: amd.digest.clone()
                },
                PublishedPlatform {
                    platform: "linux/arm64".into(),
                    digest: arm.digest.clone()
                },
            ]
        );
        for name in ["latest", "v1"] {
            let stored = registry
                .manifest_get(&repo(), &ManifestReference::from(&tag(name)))
                .await
                .unwrap();
            assert_eq!(stored.digest, published.digest, "{name}");
            let entries = stored.index().unwrap().manifests;
            assert_eq!(entries[1].platform.as_ref().unwrap().architecture, "arm64");
            assert_eq!(entries[1].size, arm.bytes.len() as u64);
        }
        let mut tags: Vec<String> = registry
            .tags_list(&repo())
            .await
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        tags.sort();
        assert_eq!(tags, ["latest", "v1"], "the per-platform tags are gone");
    }

    #[tokio::test]
    async fn an_image_of_another_platform_is_refused_before_any_tag_is_written() {
        let registry = MemoryRegistry::new("buildset");
        image(&registry, "amd64", "latest-linux-amd64");
        // What a cache that ignores platforms hands the arm64 build.
        image(&registry, "amd64", "latest-linux-arm64");
        let parts: Vec<_> = platforms()
            .into_iter()
            .zip([tag("latest-linux-amd64"), tag("latest-linux-arm64")])
            .collect();
        let err = assemble(&registry, &repo(), &parts, &[tag("latest")])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the image built for linux/arm64 in org/app says it is for linux/amd64 (the \
             builder's cache may have handed it another platform's image)"
        );
        assert!(registry
            .manifest_head(&repo(), &ManifestReference::from(&tag("latest")))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_builders_list_is_adopted_whole_or_refused_naming_the_platform() {
        let registry = MemoryRegistry::new("buildset");
        let amd = image(&registry, "amd64", "a");
        let arm = image(&registry, "arm64", "b");
        let entry = |m: &Manifest, arch: &str| {
            json!({"mediaType": DOCKER_MANIFEST, "digest": m.digest, "size": m.bytes.len(),
                   "platform": {"os": "linux", "architecture": arch, "variant": "v8"}})
        };
        let list = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")]});
        let list = Manifest::new(OCI_INDEX, serde_json::to_vec(&list).unwrap().into());
        registry.insert_manifest(&repo(), Some(&tag("latest")), &list);
        let published = adopt(
            &registry,
            &repo(),
            &tag("latest"),
            &platforms(),
            &[tag("latest"), tag("v1")],
        )
        .await
        .unwrap();
        assert_eq!(published.digest, list.digest);
        assert_eq!(
            published.platforms[0].digest, amd.digest,
            "in the order of arch"
        );
        assert_eq!(
            registry
                .manifest_head(&repo(), &ManifestReference::from(&tag("v1")))
                .await
                .unwrap(),
            Some(list.digest.clone())
        );

        let only_amd = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                              "manifests": [entry(&amd, "amd64")]});
        let only_amd = Manifest::new(OCI_INDEX, serde_json::to_vec(&only_amd).unwrap().into());
        registry.insert_manifest(&repo(), Some(&tag("half")), &only_amd);
        let err = adopt(&registry, &repo(), &tag("half"), &platforms(), &[tag("v2")])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the image built for linux/arm64 in org/app is listed 0 times in the index {} \
                 the builder pushed",
                only_amd.digest
            )
        );
        let err = adopt(&registry, &repo(), &tag("a"), &platforms(), &[tag("v2")])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("org/app:a is not an image index but a {DOCKER_MANIFEST}")
        );
    }
}
