//! Promote: give an uploaded image its final tag by writing the very
//! manifest bytes of its temporary tag under the final tag. No layer is
//! read or written; an index or manifest list is written whole, so every
//! platform and the digest stay as they are.
//!
//! Per tag: GET the temporary tag's manifest (every manifest and index
//! media type accepted), PUT the same bytes and content type under the
//! final tag, HEAD the final tag to check it resolves to the same digest.
//! Every temporary tag is read before any final tag is written, so a
//! missing one publishes nothing. Cleaning up afterwards is [`retention`]'s
//! job, and only ever warns.
//!
//! [`retention`]: super::retention

use futures_util::future::try_join_all;

use crate::client::{Error as ClientError, Manifest, Registry};
use crate::oci::{Digest, ManifestReference, RepositoryName, Tag};

/// One tag to promote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPromotion {
    /// The repository on the target registry.
    pub repository: RepositoryName,
    /// The tag the upload wrote (`change_42_latest`).
    pub temporary: Tag,
    /// The tag to move (`latest`).
    pub final_tag: Tag,
}

/// A promoted tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Promoted {
    /// The repository.
    pub repository: String,
    /// The final tag.
    pub tag: String,
    /// The temporary tag it came from.
    pub temporary_tag: String,
    /// The digest both now name.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// Whether the final tag moved (false: it already named this digest).
    pub changed: bool,
}

impl Promoted {
    fn new(promotion: &TagPromotion, manifest: &Manifest, changed: bool) -> Promoted {
        Promoted {
            repository: promotion.repository.to_string(),
            tag: promotion.final_tag.to_string(),
            temporary_tag: promotion.temporary.to_string(),
            digest: manifest.digest.clone(),
            media_type: manifest.media_type.clone(),
            changed,
        }
    }
}

/// Why a promote failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The upload's temporary tag is not there.
    #[error(
        "the temporary tag {registry}/{repository}:{tag} does not exist (did upload_docker_image \
         run for this change?); nothing was promoted"
    )]
    TemporaryMissing {
        /// The registry.
        registry: String,
        /// The repository.
        repository: RepositoryName,
        /// The temporary tag.
        tag: Tag,
    },
    /// The final tag does not name what was written.
    #[error("after writing {registry}/{repository}:{tag} it names {actual}, not {expected}")]
    Diverged {
        /// The registry.
        registry: String,
        /// The repository.
        repository: RepositoryName,
        /// The final tag.
        tag: Tag,
        /// The digest written.
        expected: Digest,
        /// What the tag resolves to, if anything.
        actual: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Read the manifest of every temporary tag (all at once), failing if any
/// is missing.
pub async fn read_temporaries<R: Registry>(
    registry: &R,
    promotions: &[TagPromotion],
) -> Result<Vec<Manifest>, PromoteError> {
    try_join_all(promotions.iter().map(|p| async move {
        registry
            .manifest_get(&p.repository, &ManifestReference::from(&p.temporary))
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    PromoteError::TemporaryMissing {
                        registry: registry.name().to_string(),
                        repository: p.repository.clone(),
                        tag: p.temporary.clone(),
                    }
                } else {
                    e.into()
                }
            })
    }))
    .await
}

/// Write every promotion's manifest under its final tag, all at once; in
/// check mode only find out which final tags would move.
pub async fn write_all<R: Registry>(
    registry: &R,
    promotions: &[TagPromotion],
    manifests: &[Manifest],
    check_mode: bool,
) -> Result<Vec<Promoted>, PromoteError> {
    try_join_all(promotions.iter().zip(manifests).map(|(p, m)| async move {
        let current = registry
            .manifest_head(&p.repository, &ManifestReference::from(&p.final_tag))
            .await?;
        if current.as_ref() == Some(&m.digest) {
            return Ok(Promoted::new(p, m, false));
        }
        if check_mode {
            return Ok(Promoted::new(p, m, true));
        }
        write_final(registry, p, m).await
    }))
    .await
}

/// Write `manifest` under the final tag and check the tag resolves to it.
pub async fn write_final<R: Registry>(
    registry: &R,
    promotion: &TagPromotion,
    manifest: &Manifest,
) -> Result<Promoted, PromoteError> {
    let repository = &promotion.repository;
    let tag = &promotion.final_tag;
    let reference = ManifestReference::from(tag);
    registry
        .manifest_put(repository, &reference, manifest)
        .await?;
    let resolved = registry.manifest_head(repository, &reference).await?;
    if resolved.as_ref() != Some(&manifest.digest) {
        return Err(PromoteError::Diverged {
            registry: registry.name().to_string(),
            repository: repository.clone(),
            tag: tag.clone(),
            expected: manifest.digest.clone(),
            actual: resolved.map_or("nothing".to_string(), |d| d.to_string()),
        });
    }
    Ok(Promoted::new(promotion, manifest, true))
}
