//! Manifests and tags: a manifest's bytes are stored as content under
//! their digest, kept exactly as pushed; a repository records which
//! manifests were pushed to it (with their media type) and where its tags
//! point. A manifest is accepted only when it is well-formed JSON of a
//! known kind and everything it names is already stored (a blob may
//! instead be recorded as fetchable from upstream, see `sources`).

use bytes::Bytes;

use super::files::write_atomic;
use super::paths::Layout;
use super::referrers::{self, Referrer};
use super::{blocking, io_context, Result, Storage, StorageError};
use crate::oci::{
    media_type, Algorithm, Descriptor, Digest, ImageIndex, ImageManifest, ManifestReference,
    RepositoryName, Tag,
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
        let (layout, sources) = (self.layout.clone(), self.sources.clone());
        let (name, reference, digest2) = (repository.clone(), reference.clone(), digest.clone());
        blocking(move || {
            // A prune does not delete what this checks until it is committed.
            let _lock = super::lock::shared(&layout)?;
            for need in needed {
                let present = match &need {
                    // Stored here, or recorded as fetchable from upstream.
                    Needed::Blob(d) => {
                        (layout.blob(d).is_file() && !layout.deleted_blob(&name, d).exists())
                            || sources.contains(&name, d)
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
            let (digest, media_type) = locate(&layout, &name, &reference)?;
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
            let (digest, media_type) = locate(&layout, &name, &reference)?;
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

/// The fields read before the kind of document is known.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
}

/// The digest `reference` names in `repository` and the media type it was
/// stored with; MANIFEST_UNKNOWN when either is missing.
fn locate(
    layout: &Layout,
    name: &RepositoryName,
    reference: &ManifestReference,
) -> Result<(Digest, String)> {
    let unknown = || StorageError::ManifestUnknown(format!("{name}:{reference}"));
    let digest = resolve(layout, name, reference)?.ok_or_else(unknown)?;
    match std::fs::read_to_string(layout.revision(name, &digest)) {
        Ok(media_type) => Ok((digest, media_type)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(unknown()),
        Err(e) => Err(io_context(format!("reading manifest {digest}"))(e)),
    }
}

/// What [`check_manifest`] makes of a manifest a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedManifest {
    /// The media type it would be stored with.
    pub media_type: String,
    /// What it names that must be stored before it: the config and the
    /// layers of an image (foreign layers left out), the manifests of an
    /// index.
    pub names: Vec<Digest>,
    /// The digest of its `subject`, when it names one.
    pub subject: Option<Digest>,
}

/// The parsing entry point of a manifest PUT: what
/// [`Storage::put_manifest`] checks of the bytes before it looks at the
/// disk, with `content_type` the `Content-Type` the client sent.
/// `ManifestInvalid` says which field is wrong.
pub fn check_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<CheckedManifest> {
    let examined = examine(bytes, content_type)?;
    Ok(CheckedManifest {
        media_type: examined.media_type,
        names: examined
            .needed
            .into_iter()
            .map(|(Needed::Blob(d) | Needed::Manifest(d))| d)
            .collect(),
        subject: examined.referrer.map(|r| r.subject),
    })
}

/// Check a manifest's shape against the image spec, reading it as the
/// shared model ([`ImageManifest`] or [`ImageIndex`]); return its media
/// type, what it names and the subject it refers to. Errors name the
/// field (`layers[0]: size must be a non-negative integer`).
fn examine(bytes: &[u8], content_type: Option<&str>) -> Result<Examined> {
    let invalid = |why: &str| StorageError::ManifestInvalid(why.to_string());
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid("larger than 4 MiB"));
    }
    // serde would take a struct from a JSON array too.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => invalid("not a JSON object"),
                Err(e) => invalid(&format!("not valid JSON: {e}")),
            },
        );
    }
    let head: Head = parse(bytes)?;
    if head.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let declared = head.media_type.as_deref();
    let content_type = content_type
        .map(media_type::essence)
        .filter(|c| !matches!(*c, "" | "application/octet-stream" | "application/json"));
    let media_type = match (content_type, declared) {
        (Some(sent), Some(declared)) if sent != declared => {
            return Err(invalid(&format!(
                "Content-Type {sent} differs from mediaType {declared}"
            )))
        }
        (Some(sent), _) => sent.to_string(),
        (None, declared) => media_type::implied_by(declared, head.manifests.is_some()).to_string(),
    };
    if !media_type::is_manifest_type(&media_type) {
        return Err(invalid(&format!("unsupported media type {media_type}")));
    }
    let mut needed = Vec::new();
    let (subject, artifact_type, config_type, annotations) = if media_type::is_index(&media_type) {
        let index: ImageIndex = parse(bytes)?;
        for (i, m) in index.manifests.iter().enumerate() {
            check_descriptor(m, &format!("manifests[{i}]"))?;
            needed.push(Needed::Manifest(m.digest.clone()));
        }
        (index.subject, index.artifact_type, None, index.annotations)
    } else {
        let image: ImageManifest = parse(bytes)?;
        check_descriptor(&image.config, "config")?;
        needed.push(Needed::Blob(image.config.digest.clone()));
        for (i, layer) in image.layers.iter().enumerate() {
            check_descriptor(layer, &format!("layers[{i}]"))?;
            // Foreign (non-distributable) layers live at their URLs.
            if !layer.is_foreign() {
                needed.push(Needed::Blob(layer.digest.clone()));
            }
        }
        let config_type = Some(image.config.media_type);
        (
            image.subject,
            image.artifact_type,
            config_type,
            image.annotations,
        )
    };
    let referrer = match subject {
        Some(subject) => {
            check_descriptor(&subject, "subject")?;
            let artifact_type = artifact_type.filter(|t| !t.is_empty()).or(config_type);
            Some(Referrer::new(subject.digest, artifact_type, annotations))
        }
        None => None,
    };
    Ok(Examined {
        media_type,
        needed,
        referrer,
    })
}

/// `bytes` as a `T` of the shared model, or `ManifestInvalid` naming
/// the field and what the spec wants of it.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut document = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut document)
        .map_err(|e| StorageError::ManifestInvalid(explain(&e)))
}

/// What is wrong, in the words of the image spec, at the place
/// `serde_path_to_error` found it.
fn explain(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    use serde_path_to_error::Segment;
    let inner = error.inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return format!("not valid JSON: {inner}");
    }
    // serde_json's message without " at line L column C".
    let shown = inner.to_string();
    let message = match shown.rsplit_once(" at line ") {
        Some((message, _)) if inner.line() > 0 => message.to_string(),
        _ => shown,
    };
    let mut path: Vec<String> = Vec::new();
    for segment in error.path().iter() {
        match segment {
            Segment::Seq { index } => match path.last_mut() {
                Some(last) => last.push_str(&format!("[{index}]")),
                None => path.push(format!("[{index}]")),
            },
            Segment::Map { key } => path.push(key.clone()),
            Segment::Enum { variant } => path.push(variant.clone()),
            Segment::Unknown => path.push("?".into()),
        }
    }
    // A missing field is reported at the object that lacks it.
    let (object, field) = match message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        Some(field) => (path.clone(), Some(field.to_string())),
        None => {
            let field = path.last().cloned();
            (path[..path.len().saturating_sub(1)].to_vec(), field)
        }
    };
    let is_descriptor = |p: &[String]| {
        matches!(p, [one] if one == "config" || one == "subject"
            || one.starts_with("layers[") || one.starts_with("manifests["))
    };
    match (object.as_slice(), field.as_deref()) {
        ([], None) => "not a JSON object".into(),
        ([], Some("schemaVersion")) => "schemaVersion must be 2".into(),
        ([], Some("mediaType")) => "mediaType must be a string".into(),
        ([], Some("config")) if field_missing(&message) => "a manifest needs a config".into(),
        ([], Some("layers")) => "a manifest needs a layers array".into(),
        ([], Some("manifests")) => "an index needs a manifests array".into(),
        ([], Some(f)) if is_descriptor(&[f.to_string()]) => {
            format!("{f}: must be a descriptor object")
        }
        (d, Some(f)) if is_descriptor(d) => {
            let d = &d[0];
            match f {
                "mediaType" => format!("{d}: mediaType is missing or not a string"),
                "size" => format!("{d}: size must be a non-negative integer"),
                "digest" if message.starts_with("invalid type") || field_missing(&message) => {
                    format!("{d}: digest is missing or not a string")
                }
                "digest" => format!("{d}: digest: {message}"),
                f => format!("{d}: {f}: {message}"),
            }
        }
        _ => format!("{}: {message}", error.path()),
    }
}

fn field_missing(message: &str) -> bool {
    message.starts_with("missing field `")
}

/// Check what serde does not: a descriptor's `mediaType` is of the form
/// type/subtype, as the image spec requires (`field` names it in errors).
fn check_descriptor(d: &Descriptor, field: &str) -> Result<()> {
    if !is_media_type(&d.media_type) {
        return Err(StorageError::ManifestInvalid(format!(
            "{field}: mediaType {:?} is not type/subtype",
            d.media_type
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn says(doc: &str, content_type: Option<&str>) -> String {
        match examine(doc.as_bytes(), content_type) {
            Err(StorageError::ManifestInvalid(why)) => why,
            Err(other) => panic!("{doc}: {other}"),
            Ok(_) => panic!("{doc}: accepted"),
        }
    }

    #[test]
    fn errors_name_the_field_and_what_the_spec_wants() {
        let d = Digest::sha256(b"x");
        let layer = format!(r#"{{"mediaType": "a/b", "digest": "{d}", "size": 1}}"#);
        for (doc, expected) in [
            ("{not json".to_string(), "not valid JSON: "),
            ("[1,2]".into(), "not a JSON object"),
            (r#"{"schemaVersion": 1}"#.into(), "schemaVersion must be 2"),
            (r#"{"schemaVersion": "2"}"#.into(), "schemaVersion must be 2"),
            (r#"{"schemaVersion": 2, "layers": []}"#.into(), "a manifest needs a config"),
            (
                format!(r#"{{"schemaVersion": 2, "config": {layer}}}"#),
                "a manifest needs a layers array",
            ),
            (
                format!(r#"{{"schemaVersion": 2, "config": {layer}, "layers": {{}}}}"#),
                "a manifest needs a layers array",
            ),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}"#
                    .into(),
                "an index needs a manifests array",
            ),
            (
                format!(r#"{{"schemaVersion": 2, "config": 5, "layers": [{layer}]}}"#),
                "config: must be a descriptor object",
            ),
            (
                r#"{"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": "sha256:zz", "size": 1}, "layers": []}"#.into(),
                "config: digest: ",
            ),
            (
                format!(r#"{{"schemaVersion": 2, "manifests": [{{"mediaType": "a/b", "digest": "{d}", "size": 1, "platform": {{"os": "linux"}}}}]}}"#),
                "manifests[0].platform: missing field `architecture`",
            ),
        ] {
            let shown = says(&doc, None);
            assert!(shown.starts_with(expected), "{doc}: {shown}");
        }
        assert_eq!(
            says(
                r#"{"schemaVersion": 2, "manifests": []}"#,
                Some("text/plain")
            ),
            "unsupported media type text/plain"
        );
    }
}
