//! Manifests and tags: a manifest's bytes are stored as content under
//! their digest, kept exactly as pushed; a repository records which
//! manifests were pushed to it (with their media type) and where its tags
//! point. A manifest is accepted only when it is well-formed JSON of a
//! known kind and everything it names is already stored.

use bytes::Bytes;
use serde_json::Value;

use super::files::write_atomic;
use super::paths::Layout;
use super::referrers::{self, Referrer};
use super::{blocking, io_context, Result, Storage, StorageError};
use crate::oci::{
    media_type, Algorithm, Digest, DigestError, ManifestReference, RepositoryName, Tag,
};

/// The largest manifest accepted (distribution's limit).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A stored manifest, bytes exactly as pushed.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// Its bytes.
    pub bytes: Bytes,
}

/// A manifest as [`Storage::serve_manifest`] hands it out.
pub struct ServedManifest {
    /// Its digest.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its bytes, or the open file holding them.
    pub body: ManifestBody,
}

/// A manifest's bytes, in memory or to stream from its file.
pub enum ManifestBody {
    /// Read whole (small manifests).
    Bytes(Bytes),
    /// Open at its start (large ones).
    File(tokio::fs::File),
}

/// Something a manifest names that must already be stored.
enum Needed {
    Blob(Digest),
    Manifest(Digest),
}

/// What [`examine`] found in a manifest.
struct Examined {
    media_type: String,
    needed: Vec<Needed>,
    /// Set when the manifest names a `subject`.
    referrer: Option<Referrer>,
}

/// A manifest stored by [`Storage::put_manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifest {
    /// Its digest.
    pub digest: Digest,
    /// The digest of its `subject`, when it names one (now listed among
    /// that subject's referrers).
    pub subject: Option<Digest>,
}

impl Storage {
    /// Store a manifest under `reference` in `repository`. `content_type`
    /// is the media type the client sent. A manifest with a `subject` is
    /// recorded among that subject's referrers.
    pub async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifest> {
        let algorithm = match reference {
            ManifestReference::Digest(d) => d.algorithm(),
            ManifestReference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::compute(algorithm, &bytes);
        if let ManifestReference::Digest(expected) = reference {
            if *expected != digest {
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let Examined {
            media_type,
            needed,
            referrer,
        } = examine(&bytes, content_type)?;
        let subject = referrer.as_ref().map(|r| r.subject.clone());
        let layout = self.layout.clone();
        let (name, reference, digest2) = (repository.clone(), reference.clone(), digest.clone());
        blocking(move || {
            for need in needed {
                let present = match &need {
                    Needed::Blob(d) => {
                        layout.blob(d).is_file() && !layout.deleted_blob(&name, d).exists()
                    }
                    Needed::Manifest(d) => layout.revision(&name, d).is_file(),
                };
                if !present {
                    let (Needed::Blob(d) | Needed::Manifest(d)) = need;
                    return Err(StorageError::ManifestBlobUnknown(d));
                }
            }
            let blob = layout.blob(&digest2);
            if !blob.is_file() {
                write_atomic(&layout.tmp_file(), &blob, &bytes)
                    .map_err(io_context(format!("storing manifest {digest2}")))?;
            }
            write_atomic(
                &layout.tmp_file(),
                &layout.revision(&name, &digest2),
                media_type.as_bytes(),
            )
            .map_err(io_context(format!(
                "recording manifest {digest2} in {name}"
            )))?;
            if let ManifestReference::Tag(tag) = &reference {
                write_atomic(
                    &layout.tmp_file(),
                    &layout.tag(&name, tag),
                    digest2.to_string().as_bytes(),
                )
                .map_err(io_context(format!("tagging {name}:{tag}")))?;
            }
            if let Some(referrer) = &referrer {
                referrers::record(&layout, &name, referrer, &media_type, &digest2, bytes.len())?;
            }
            Ok(())
        })
        .await?;
        Ok(PutManifest { digest, subject })
    }

    /// The manifest `reference` names in `repository`.
    pub async fn get_manifest(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<StoredManifest> {
        let layout = self.layout.clone();
        let (name, reference) = (repository.clone(), reference.clone());
        blocking(move || {
            let unknown = || StorageError::ManifestUnknown(format!("{name}:{reference}"));
            let digest = resolve(&layout, &name, &reference)?.ok_or_else(unknown)?;
            let media_type = match std::fs::read_to_string(layout.revision(&name, &digest)) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                Err(e) => return Err(io_context(format!("reading manifest {digest}"))(e)),
            };
            let bytes = std::fs::read(layout.blob(&digest))
                .map_err(io_context(format!("reading manifest {digest}")))?;
            Ok(StoredManifest {
                digest,
                media_type,
                bytes: Bytes::from(bytes),
            })
        })
        .await
    }

    /// A manifest to send: read whole when at most `inline` bytes, else
    /// opened, to be streamed (so a client that does not read its
    /// responses holds a file, not the manifest, per stream).
    pub async fn serve_manifest(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
        inline: u64,
    ) -> Result<ServedManifest> {
        let layout = self.layout.clone();
        let (name, reference) = (repository.clone(), reference.clone());
        blocking(move || {
            let unknown = || StorageError::ManifestUnknown(format!("{name}:{reference}"));
            let digest = resolve(&layout, &name, &reference)?.ok_or_else(unknown)?;
            let media_type = match std::fs::read_to_string(layout.revision(&name, &digest)) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                Err(e) => return Err(io_context(format!("reading manifest {digest}"))(e)),
            };
            let context = || io_context(format!("reading manifest {digest}"));
            let mut file = std::fs::File::open(layout.blob(&digest)).map_err(context())?;
            let size = file.metadata().map_err(context())?.len();
            let body = if size <= inline {
                let mut bytes = Vec::with_capacity(size as usize);
                std::io::Read::read_to_end(&mut file, &mut bytes).map_err(context())?;
                ManifestBody::Bytes(Bytes::from(bytes))
            } else {
                ManifestBody::File(tokio::fs::File::from_std(file))
            };
            Ok(ServedManifest {
                digest,
                media_type,
                size,
                body,
            })
        })
        .await
    }

    /// Delete a tag, or a manifest by digest with every tag pointing at it.
    /// The content stays (other repositories may hold it).
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<()> {
        let layout = self.layout.clone();
        let (name, reference) = (repository.clone(), reference.clone());
        blocking(move || {
            let unknown = || StorageError::ManifestUnknown(format!("{name}:{reference}"));
            match &reference {
                ManifestReference::Tag(tag) => match std::fs::remove_file(layout.tag(&name, tag)) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(unknown()),
                    Err(e) => Err(io_context(format!("deleting tag {name}:{tag}"))(e)),
                },
                ManifestReference::Digest(digest) => {
                    match std::fs::remove_file(layout.revision(&name, digest)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                        Err(e) => return Err(io_context(format!("deleting manifest {digest}"))(e)),
                    }
                    if let Ok(bytes) = std::fs::read(layout.blob(digest)) {
                        referrers::forget(&layout, &name, digest, &bytes)?;
                    }
                    for tag in list_tags(&layout, &name)? {
                        let Ok(tag) = tag.parse::<Tag>() else {
                            continue;
                        };
                        let path = layout.tag(&name, &tag);
                        let points_here = std::fs::read_to_string(&path)
                            .map(|d| d.trim() == digest.to_string())
                            .unwrap_or(false);
                        if points_here {
                            std::fs::remove_file(&path)
                                .map_err(io_context(format!("deleting tag {name}:{tag}")))?;
                        }
                    }
                    Ok(())
                }
            }
        })
        .await
    }

    /// The tags of `repository`, sorted.
    pub async fn tags(&self, repository: &RepositoryName) -> Result<Vec<String>> {
        let layout = self.layout.clone();
        let name = repository.clone();
        blocking(move || {
            if !layout.manifests(&name).is_dir() {
                return Err(StorageError::RepositoryUnknown(name.to_string()));
            }
            list_tags(&layout, &name)
        })
        .await
    }

    /// Every repository holding at least one manifest record, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let layout = self.layout.clone();
        blocking(move || {
            let mut found = Vec::new();
            walk_repositories(&layout.repositories(), "", &mut found)?;
            found.sort();
            Ok(found)
        })
        .await
    }
}

/// The digest `reference` stands for, if the repository has it.
fn resolve(
    layout: &Layout,
    name: &RepositoryName,
    reference: &ManifestReference,
) -> Result<Option<Digest>> {
    match reference {
        ManifestReference::Digest(d) => Ok(Some(d.clone())),
        ManifestReference::Tag(tag) => match std::fs::read_to_string(layout.tag(name, tag)) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_context(format!("reading tag {name}:{tag}"))(e)),
        },
    }
}

fn list_tags(layout: &Layout, name: &RepositoryName) -> Result<Vec<String>> {
    let dir = layout.tags(name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_context(format!("listing tags of {name}"))(e)),
    };
    let mut tags: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|t| t.parse::<Tag>().is_ok())
        .collect();
    tags.sort();
    Ok(tags)
}

fn walk_repositories(dir: &std::path::Path, prefix: &str, found: &mut Vec<String>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_context("listing repositories")(e)),
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if file_name == super::paths::MANIFESTS_DIR {
            if !prefix.is_empty() {
                found.push(prefix.to_string());
            }
            continue;
        }
        if file_name == super::paths::DELETED_BLOBS_DIR {
            continue;
        }
        let name = if prefix.is_empty() {
            file_name
        } else {
            format!("{prefix}/{file_name}")
        };
        walk_repositories(&entry.path(), &name, found)?;
    }
    Ok(())
}

/// Check a manifest's shape; return its media type, what it names and
/// the subject it refers to.
fn examine(bytes: &[u8], content_type: Option<&str>) -> Result<Examined> {
    let invalid = |why: &str| StorageError::ManifestInvalid(why.to_string());
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid("larger than 4 MiB"));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(&format!("not valid JSON: {e}")))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let declared = match obj.get("mediaType") {
        None => None,
        Some(Value::String(declared)) => Some(declared.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !matches!(*c, "" | "application/octet-stream" | "application/json"));
    let media_type = match (content_type, declared) {
        (Some(sent), Some(declared)) if sent != declared => {
            return Err(invalid(&format!(
                "Content-Type {sent} differs from mediaType {declared}"
            )))
        }
        (Some(sent), _) => sent.to_string(),
        (None, Some(declared)) => declared.to_string(),
        (None, None) if obj.contains_key("manifests") => media_type::OCI_INDEX.to_string(),
        (None, None) => media_type::OCI_MANIFEST.to_string(),
    };
    if !media_type::is_manifest_type(&media_type) {
        return Err(invalid(&format!("unsupported media type {media_type}")));
    }
    let mut needed = Vec::new();
    if media_type::is_index(&media_type) {
        let manifests = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("an index needs a manifests array"))?;
        for (i, m) in manifests.iter().enumerate() {
            needed.push(Needed::Manifest(descriptor(m, &format!("manifests[{i}]"))?));
        }
    } else {
        let config = obj
            .get("config")
            .ok_or_else(|| invalid("a manifest needs a config"))?;
        needed.push(Needed::Blob(descriptor(config, "config")?));
        let layers = obj
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("a manifest needs a layers array"))?;
        for (i, layer) in layers.iter().enumerate() {
            let digest = descriptor(layer, &format!("layers[{i}]"))?;
            // Foreign (non-distributable) layers live at their URLs.
            let foreign = layer
                .get("urls")
                .and_then(Value::as_array)
                .is_some_and(|u| !u.is_empty());
            if !foreign {
                needed.push(Needed::Blob(digest));
            }
        }
    }
    if let Some(subject) = obj.get("subject") {
        descriptor(subject, "subject")?;
    }
    let referrer = Referrer::of(obj, &media_type)?;
    Ok(Examined {
        media_type,
        needed,
        referrer,
    })
}

/// Check a descriptor (`field` names it in errors): a `mediaType` of the
/// form type/subtype, a non-negative integer `size` and a valid `digest`,
/// as the image-spec requires; returns the digest.
fn descriptor(d: &Value, field: &str) -> Result<Digest> {
    let invalid = |why: String| StorageError::ManifestInvalid(format!("{field}: {why}"));
    let d = d
        .as_object()
        .ok_or_else(|| invalid("must be a descriptor object".into()))?;
    let media_type = d
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("mediaType is missing or not a string".into()))?;
    if !is_media_type(media_type) {
        return Err(invalid(format!(
            "mediaType {media_type:?} is not type/subtype"
        )));
    }
    if d.get("size").and_then(Value::as_u64).is_none() {
        return Err(invalid("size must be a non-negative integer".into()));
    }
    d.get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("digest is missing or not a string".into()))?
        .parse()
        .map_err(|e: DigestError| invalid(format!("digest: {e}")))
}

/// The image-spec's media type grammar (RFC 6838 names).
fn is_media_type(text: &str) -> bool {
    static GRAMMAR: std::sync::LazyLock<regex_lite::Regex> = std::sync::LazyLock::new(|| {
        regex_lite::Regex::new(
            r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
        )
        .expect("a valid pattern")
    });
    GRAMMAR.is_match(text)
}
