//! The referrers index: for each manifest of a repository that names a
//! `subject`, one file under the subject's directory holding the
//! descriptor the referrers API lists (written atomically when the
//! manifest is put, removed when it is deleted), so a listing reads one
//! directory instead of every manifest.

use std::collections::BTreeMap;

use serde_json::Value;

use super::files::{fsync_dir, write_atomic};
use super::paths::Layout;
use super::{blocking, io_context, Result, Storage};
use crate::oci::{Descriptor, Digest, RepositoryName};

/// What a manifest with a `subject` contributes to its subject's
/// referrers list.
#[derive(Debug, Clone)]
pub(super) struct Referrer {
    /// The manifest it refers to.
    pub subject: Digest,
    /// The manifest's `artifactType`, else (image manifests) its config's
    /// media type.
    artifact_type: Option<String>,
    /// The manifest's annotations.
    annotations: BTreeMap<String, String>,
}

impl Referrer {
    /// The referrer a manifest naming `subject` makes: its `artifactType`
    /// (else, for an image manifest, its config's media type) and its
    /// annotations.
    pub fn new(
        subject: Digest,
        artifact_type: Option<String>,
        annotations: BTreeMap<String, String>,
    ) -> Referrer {
        Referrer {
            subject,
            artifact_type,
            annotations,
        }
    }

    /// The descriptor the referrers API lists for the manifest.
    fn descriptor(&self, media_type: &str, digest: &Digest, size: usize) -> Value {
        let mut descriptor = serde_json::json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
        });
        if let Some(artifact_type) = &self.artifact_type {
            descriptor["artifactType"] = Value::String(artifact_type.clone());
        }
        if !self.annotations.is_empty() {
            descriptor["annotations"] = serde_json::json!(self.annotations);
        }
        descriptor
    }
}

/// Record manifest `digest` of `name` among its subject's referrers
/// (blocking).
pub(super) fn record(
    layout: &Layout,
    name: &RepositoryName,
    referrer: &Referrer,
    media_type: &str,
    digest: &Digest,
    size: usize,
) -> Result<()> {
    let descriptor = referrer.descriptor(media_type, digest, size).to_string();
    write_atomic(
        &layout.tmp_file(),
        &layout.referrer(name, &referrer.subject, digest),
        descriptor.as_bytes(),
    )
    .map_err(io_context(format!(
        "recording {digest} as a referrer of {} in {name}",
        referrer.subject
    )))
}

/// Remove manifest `digest` of `name` (whose bytes are `bytes`) from its
/// subject's referrers, if it has a subject (blocking).
pub(super) fn forget(
    layout: &Layout,
    name: &RepositoryName,
    digest: &Digest,
    bytes: &[u8],
) -> Result<()> {
    let Some(subject) = subject_of(bytes) else {
        return Ok(());
    };
    let entry = layout.referrer(name, &subject, digest);
    match std::fs::remove_file(&entry) {
        Ok(()) => fsync_dir(entry.parent().expect("a parent")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(io_context(format!(
        "removing {digest} from the referrers of {subject} in {name}"
    )))
}

/// The digest of the `subject` a stored manifest names, if it names one.
pub(super) fn subject_of(bytes: &[u8]) -> Option<Digest> {
    #[derive(serde::Deserialize)]
    struct WithSubject {
        subject: Option<Descriptor>,
    }
    serde_json::from_slice::<WithSubject>(bytes)
        .ok()?
        .subject
        .map(|s| s.digest)
}

impl Storage {
    /// The descriptors of the manifests of `repository` whose `subject` is
    /// `subject`, sorted by digest; only those of `artifact_type` when
    /// given. Empty for an unknown subject or repository.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>> {
        let layout = self.layout.clone();
        let (name, subject) = (repository.clone(), subject.clone());
        let artifact_type = artifact_type.map(str::to_string);
        blocking(move || {
            let dir = layout.referrers(&name, &subject);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_context(format!("listing referrers of {subject}"))(e)),
            };
            let mut found = Vec::new();
            for entry in entries.flatten() {
                let Ok(text) = std::fs::read(entry.path()) else {
                    continue;
                };
                let Ok(descriptor) = serde_json::from_slice::<Value>(&text) else {
                    continue;
                };
                let digest = descriptor["digest"].as_str().and_then(|d| d.parse().ok());
                // A crash between deleting a manifest and its entry leaves
                // the entry: list only manifests still in the repository.
                let present = digest.is_some_and(|d: Digest| layout.revision(&name, &d).is_file());
                let wanted = artifact_type
                    .as_deref()
                    .is_none_or(|t| descriptor["artifactType"].as_str() == Some(t));
                if present && wanted {
                    found.push(descriptor);
                }
            }
            found.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
            Ok(found)
        })
        .await
    }
}
