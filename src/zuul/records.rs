//! Change records: what `push_to_intermediate_registry` leaves in the
//! intermediate registry, per change, patchset, pipeline and job, so that a later
//! change finds the images of the changes ahead of it even when Zuul does
//! not pass their artifacts (a change with its own image build job gets no
//! `zuul.artifacts` of the changes ahead; see docs/change-records.md and
//! docs/zuul-artifacts-across-changes.md).
//!
//! A record is an OCI image manifest in repository [`RECORDS_REPOSITORY`]
//! whose config blob (media type [`RECORD_MEDIA_TYPE`]) is the JSON
//! [`ChangeRecord`], with no layers. Its tag is
//!
//! ```text
//! <40 hex of sha256(["<canonical project>","<change>","<patchset>"])>-<16 hex of sha256(["<tenant>","<pipeline>","<job>"])>
//! ```
//!
//! (sha256 of the compact JSON array of strings), so the records of one
//! change and patchset share a prefix that a reader computes from
//! `zuul.items`, and each job in each pipeline has one tag that a rerun
//! overwrites. Distribution 2.8 (the seed's `registry:2`) and our own
//! registry server both accept this manifest (tests/transfer_records.rs).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::client::{Error, ErrorKind, Registry};
use crate::oci::{media_type, Digest, Manifest, ManifestReference, RepositoryName};

/// The repository holding every change record.
pub const RECORDS_REPOSITORY: &str = "speculative-images/changes";

/// Media type of a record's config blob (and the manifest's `artifactType`).
pub const RECORD_MEDIA_TYPE: &str = "application/vnd.speculative-images.change-record.v1+json";

/// The largest record config read back (a record lists a job's artifacts).
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Which change a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeKey {
    /// The project's canonical name (`review.example.org/org/app`).
    pub project: String,
    /// Change number.
    pub change: String,
    /// Patchset.
    pub patchset: String,
}

impl ChangeKey {
    /// The tag prefix every record of this change and patchset shares.
    pub fn tag_prefix(&self) -> String {
        hex_of(&[&self.project, &self.change, &self.patchset], 40)
    }
}

/// One job's record: who pushed which images, as returned to Zuul.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The project's canonical name.
    pub project: String,
    /// Change number.
    pub change: String,
    /// Patchset.
    pub patchset: String,
    /// The job that pushed.
    pub job: String,
    /// Its build UUID.
    pub build: String,
    /// Its buildset UUID.
    #[serde(default)]
    pub buildset: Option<String>,
    /// The pipeline it ran in.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The tenant it ran in.
    #[serde(default)]
    pub tenant: Option<String>,
    /// When the push finished (ms since the Unix epoch).
    pub pushed_at_ms: u64,
    /// The artifacts the job returned to Zuul, exactly.
    pub artifacts: Vec<Value>,
}

impl ChangeRecord {
    /// The change this record belongs to.
    pub fn key(&self) -> ChangeKey {
        ChangeKey {
            project: self.project.clone(),
            change: self.change.clone(),
            patchset: self.patchset.clone(),
        }
    }

    /// Its tag in [`RECORDS_REPOSITORY`].
    pub fn tag(&self) -> String {
        let job = hex_of(
            &[
                self.tenant.as_deref().unwrap_or(""),
                self.pipeline.as_deref().unwrap_or(""),
                &self.job,
            ],
            16,
        );
        format!("{}-{job}", self.key().tag_prefix())
    }

    /// The same record but for the time it was pushed: a rerun that
    /// pushed the same images under the same build changes nothing.
    fn same_content(&self, other: &ChangeRecord) -> bool {
        ChangeRecord {
            pushed_at_ms: 0,
            ..self.clone()
        } == ChangeRecord {
            pushed_at_ms: 0,
            ..other.clone()
        }
    }

    /// The config blob and the manifest that names it.
    pub fn documents(&self) -> (Bytes, Manifest) {
        let config = Bytes::from(serde_json::to_vec(self).expect("a record serializes"));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": RECORD_MEDIA_TYPE,
            "config": {
                "mediaType": RECORD_MEDIA_TYPE,
                "digest": Digest::sha256(&config).to_string(),
                "size": config.len(),
            },
            "layers": [],
            "annotations": {
                "org.opencontainers.image.created": created(self.pushed_at_ms),
            },
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("a manifest serializes"));
        (config, Manifest::new(media_type::OCI_MANIFEST, bytes))
    }
}

/// RFC 3339 time of `ms` since the epoch.
fn created(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `len` hex digits of sha256 of the compact JSON array of `parts`.
fn hex_of(parts: &[&str], len: usize) -> String {
    let text = serde_json::to_string(parts).expect("strings serialize");
    let mut out = hex::encode(Sha256::digest(text.as_bytes()));
    out.truncate(len);
    out
}

fn records_repository() -> RepositoryName {
    RECORDS_REPOSITORY.parse().expect("a valid repository name")
}

/// What writing a record did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordWritten {
    /// `speculative-images/changes`.
    pub repository: String,
    /// The record's tag.
    pub tag: String,
    /// Its manifest digest.
    pub digest: String,
    /// Whether the registry changed (false when the same record was there).
    pub changed: bool,
}

/// Store `record` in `registry` (the intermediate registry), unless the
/// same record (but for `pushed_at_ms`) is already under its tag. With
/// `dry_run`, only say whether it would be written (`digest` empty).
pub async fn write_record<R: Registry>(
    registry: &R,
    record: &ChangeRecord,
    dry_run: bool,
) -> Result<RecordWritten, Error> {
    let repository = records_repository();
    let tag = record.tag();
    let reference: ManifestReference = tag.parse().map_err(|e| {
        Error::new(
            ErrorKind::Internal(format!("the record tag {tag:?} is not a tag: {e}")),
            registry.name(),
            "writing a change record",
        )
    })?;
    if registry
        .manifest_head(&repository, &reference)
        .await?
        .is_some()
    {
        let there = registry.manifest_get(&repository, &reference).await?;
        if let Ok(old) = read_config(registry, &repository, &there).await {
            if old.same_content(record) {
                return Ok(RecordWritten {
                    repository: repository.to_string(),
                    tag,
                    digest: there.digest.to_string(),
                    changed: false,
                });
            }
        }
    }
    if dry_run {
        return Ok(RecordWritten {
            repository: repository.to_string(),
            tag,
            digest: String::new(),
            changed: true,
        });
    }
    let (config, manifest) = record.documents();
    let config_digest = Digest::sha256(&config);
    if registry
        .blob_head(&repository, &config_digest)
        .await?
        .is_none()
    {
        let size = config.len() as u64;
        let body = Box::pin(futures_util::stream::once(async move { Ok(config) }));
        registry
            .blob_put(&repository, &config_digest, size, body)
            .await?;
    }
    let digest = registry
        .manifest_put(&repository, &reference, &manifest)
        .await?;
    Ok(RecordWritten {
        repository: repository.to_string(),
        tag,
        digest: digest.to_string(),
        changed: true,
    })
}

/// The records of change `key` in `registry`, oldest push first, and a
/// line for each record that could not be read (skipped).
pub async fn read_records<R: Registry>(
    registry: &R,
    key: &ChangeKey,
) -> Result<(Vec<ChangeRecord>, Vec<String>), Error> {
    let repository = records_repository();
    let prefix = format!("{}-", key.tag_prefix());
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for tag in registry.tags_list(&repository).await? {
        if !tag.as_str().starts_with(&prefix) {
            continue;
        }
        let manifest = registry
            .manifest_get(&repository, &ManifestReference::from(&tag))
            .await?;
        match read_config(registry, &repository, &manifest).await {
            Ok(record) if record.key() == *key => records.push(record),
            Ok(record) => problems.push(format!(
                "record {RECORDS_REPOSITORY}:{tag} is for change {},{} of {}, not this one: skipped",
                record.change, record.patchset, record.project
            )),
            Err(why) => problems.push(format!(
                "record {RECORDS_REPOSITORY}:{tag} is unreadable ({why}): skipped"
            )),
        }
    }
    records.sort_by_key(|r| r.pushed_at_ms);
    Ok((records, problems))
}

/// The record a record manifest's config holds.
async fn read_config<R: Registry>(
    registry: &R,
    repository: &RepositoryName,
    manifest: &Manifest,
) -> Result<ChangeRecord, String> {
    #[derive(Deserialize)]
    struct Descriptor {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: Digest,
        size: u64,
    }
    #[derive(Deserialize)]
    struct Shape {
        config: Descriptor,
    }
    let shape: Shape = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| format!("its manifest is not an image manifest: {e}"))?;
    let config = shape.config;
    if config.media_type != RECORD_MEDIA_TYPE {
        return Err(format!(
            "its config has media type {}, not {RECORD_MEDIA_TYPE}",
            config.media_type
        ));
    }
    if config.size > MAX_RECORD_BYTES {
        return Err(format!("its config is {} bytes, over 1 MiB", config.size));
    }
    let mut stream = registry
        .blob_get(repository, &config.digest)
        .await
        .map_err(|e| format!("{e}"))?;
    let mut bytes = Vec::new();
    use futures_util::StreamExt as _;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(|e| format!("{e}"))?);
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err("its config is over 1 MiB".to_string());
        }
    }
    if !config.digest.matches(&bytes) {
        return Err(format!(
            "its config does not match digest {}",
            config.digest
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("its config is not a record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ChangeRecord {
        ChangeRecord {
            project: "review.example.org/org/app".into(),
            change: "1001".into(),
            patchset: "2".into(),
            job: "build-image".into(),
            build: "b1".into(),
            buildset: Some("bs1".into()),
            pipeline: Some("gate".into()),
            tenant: Some("example".into()),
            pushed_at_ms: 1_700_000_000_123,
            artifacts: vec![
                json!({"name": "org/app:latest", "url": "docker://r:5000/org/app:b1_latest",
                                   "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}}),
            ],
        }
    }

    #[test]
    fn tags_share_the_change_prefix_and_differ_per_job_and_pipeline() {
        let a = record();
        let tag = a.tag();
        let (prefix, job) = tag.split_once('-').unwrap();
        assert_eq!(prefix.len(), 40);
        assert_eq!(job.len(), 16);
        assert!(tag.parse::<crate::oci::Tag>().is_ok(), "{tag}");
        assert_eq!(prefix, a.key().tag_prefix());
        // The hash input is the JSON array: no two keys collide by joining.
        assert_eq!(
            prefix,
            &hex::encode(Sha256::digest(
                br#"["review.example.org/org/app","1001","2"]"#
            ))[..40]
        );
        let other_job = ChangeRecord {
            job: "build-other".into(),
            ..a.clone()
        };
        let check = ChangeRecord {
            pipeline: Some("check".into()),
            ..a.clone()
        };
        let other_patchset = ChangeRecord {
            patchset: "3".into(),
            ..a.clone()
        };
        assert!(other_job.tag().starts_with(prefix));
        assert_ne!(other_job.tag(), tag);
        assert_ne!(check.tag(), tag);
        assert!(!other_patchset.tag().starts_with(prefix));
    }

    #[test]
    fn the_manifest_names_the_config_and_no_layers() {
        let (config, manifest) = record().documents();
        let doc: Value = serde_json::from_slice(&manifest.bytes).unwrap();
        assert_eq!(doc["config"]["mediaType"], RECORD_MEDIA_TYPE);
        assert_eq!(doc["artifactType"], RECORD_MEDIA_TYPE);
        assert_eq!(doc["config"]["digest"], Digest::sha256(&config).to_string());
        assert_eq!(doc["layers"], json!([]));
        assert_eq!(
            doc["annotations"]["org.opencontainers.image.created"],
            "2023-11-14T22:13:20.123Z"
        );
        let back: ChangeRecord = serde_json::from_slice(&config).unwrap();
        assert_eq!(back, record());
        assert!(back.same_content(&ChangeRecord {
            pushed_at_ms: 5,
            ..record()
        }));
    }
}
