//! [`MemoryRegistry`]: a [`Registry`] held in memory, for fast tests of
//! what is written against the trait (the copy engine, promote, cleanup)
//! without a server. It keeps the rules a real registry enforces where
//! the callers rely on them: a blob is committed only if it hashes to its
//! digest and has its size, a manifest is refused while a blob or child
//! manifest it names is missing in the repository, a digest reference
//! must match the bytes. Faults can be injected per operation
//! ([`MemoryRegistry::fail_next`]), and every call is recorded
//! ([`MemoryRegistry::operations`]) so a test can assert what was done.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::StatusCode;

use super::error::{Error, ErrorKind};
use super::registry::{no_blob_sources, BlobStream, Registry, TagDeleted};
use super::sources::BlobSources;
use crate::oci::{Children, Descriptor, Digest, Manifest, ManifestReference, RepositoryName, Tag};

/// One operation of the [`Registry`] trait, to inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Registry::blob_head`].
    BlobHead,
    /// [`Registry::blob_get`].
    BlobGet,
    /// [`Registry::blob_put`].
    BlobPut,
    /// [`Registry::blob_mount`].
    BlobMount,
    /// [`Registry::manifest_get`].
    ManifestGet,
    /// [`Registry::manifest_head`].
    ManifestHead,
    /// [`Registry::manifest_put`].
    ManifestPut,
    /// [`Registry::manifest_delete`].
    ManifestDelete,
    /// [`Registry::tag_delete`].
    TagDelete,
    /// [`Registry::tags_list`].
    TagsList,
    /// [`Registry::record_blob_sources`].
    RecordBlobSources,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::BlobHead => "blob_head",
            Operation::BlobGet => "blob_get",
            Operation::BlobPut => "blob_put",
            Operation::BlobMount => "blob_mount",
            Operation::ManifestGet => "manifest_get",
            Operation::ManifestHead => "manifest_head",
            Operation::ManifestPut => "manifest_put",
            Operation::ManifestDelete => "manifest_delete",
            Operation::TagDelete => "tag_delete",
            Operation::TagsList => "tags_list",
            Operation::RecordBlobSources => "record_blob_sources",
        })
    }
}

#[derive(Default)]
struct Store {
    blobs: HashMap<(RepositoryName, Digest), Bytes>,
    manifests: HashMap<(RepositoryName, Digest), Manifest>,
    tags: BTreeMap<(RepositoryName, Tag), Digest>,
    /// Blobs recorded as living elsewhere (a buildset registry's lazy
    /// pull): where, and whether to prefetch them.
    sources: BTreeMap<(RepositoryName, Digest), (String, bool)>,
    /// Calls still to fail, per operation.
    faults: HashMap<Operation, u32>,
    /// `"<operation> <repository> <reference>"` of every call, in order.
    log: Vec<String>,
}

/// A registry in memory. Two handles with the same name count as the same
/// registry to the copy engine (which then mounts), as for remote ones.
pub struct MemoryRegistry {
    name: String,
    /// Whether it records blob sources, as our buildset registry does.
    records_sources: bool,
    store: Mutex<Store>,
}

impl fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("name", &self.name)
            .finish()
    }
}

impl MemoryRegistry {
    /// An empty registry called `name` (`host:port`, for messages).
    pub fn new(name: &str) -> Arc<MemoryRegistry> {
        Arc::new(MemoryRegistry {
            name: name.to_string(),
            records_sources: false,
            store: Mutex::default(),
        })
    }

    /// An empty registry that also records blob sources, as our buildset
    /// registry does for a lazy pull (a recorded blob counts as present).
    pub fn buildset(name: &str) -> Arc<MemoryRegistry> {
        Arc::new(MemoryRegistry {
            name: name.to_string(),
            records_sources: true,
            store: Mutex::default(),
        })
    }

    /// The blobs of `repository` recorded as living elsewhere: digest,
    /// where (`<url> <repository>`), and whether to prefetch it.
    pub fn recorded(&self, repository: &RepositoryName) -> Vec<(Digest, String, bool)> {
        self.lock()
            .sources
            .iter()
            .filter(|((r, _), _)| r == repository)
            .map(|((_, d), (at, prefetch))| (d.clone(), at.clone(), *prefetch))
            .collect()
    }

    /// Make the next `times` calls of `operation` fail as a registry
    /// answering 503 would (an error the callers may retry).
    pub fn fail_next(&self, operation: Operation, times: u32) {
        *self.lock().faults.entry(operation).or_default() += times;
    }

    /// Every call so far, in order, as `"<operation> <repository>
    /// <digest or tag>"` (`"blob_get org/img sha256:..."`).
    pub fn operations(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Store `content` as a blob of `repository` directly (test setup);
    /// its digest.
    pub fn insert_blob(&self, repository: &RepositoryName, content: impl Into<Bytes>) -> Digest {
        let content = content.into();
        let digest = Digest::sha256(&content);
        self.lock()
            .blobs
            .insert((repository.clone(), digest.clone()), content);
        digest
    }

    /// Store `manifest` in `repository` directly, tagged `tag` if given
    /// (test setup; nothing is checked).
    pub fn insert_manifest(
        &self,
        repository: &RepositoryName,
        tag: Option<&Tag>,
        manifest: &Manifest,
    ) {
        let mut store = self.lock();
        store.manifests.insert(
            (repository.clone(), manifest.digest.clone()),
            manifest.clone(),
        );
        if let Some(tag) = tag {
            store
                .tags
                .insert((repository.clone(), tag.clone()), manifest.digest.clone());
        }
    }

    /// Store an image directly (test setup): an OCI manifest whose config
    /// names `arch` and whose layers hold `layers`, in `repository`,
    /// tagged `tag` if given. Returns the manifest.
    pub fn insert_image(
        &self,
        repository: &RepositoryName,
        tag: Option<&Tag>,
        arch: &str,
        layers: &[&str],
    ) -> Manifest {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
        let descriptor = |media: &str, content: &str| {
            serde_json::json!({"mediaType": media, "size": content.len(),
                "digest": self.insert_blob(repository, content.to_string())})
        };
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media_type::OCI_MANIFEST,
            "config": descriptor(crate::oci::media_type::OCI_CONFIG, &config),
            "layers": layers
                .iter()
                .map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l))
                .collect::<Vec<_>>(),
        });
        let manifest = Manifest::new("", Bytes::from(doc.to_string()));
        self.insert_manifest(repository, tag, &manifest);
        manifest
    }

    /// Whether `repository` holds blob `digest`.
    pub fn has_blob(&self, repository: &RepositoryName, digest: &Digest) -> bool {
        self.lock()
            .blobs
            .contains_key(&(repository.clone(), digest.clone()))
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record the call; the injected failure if one is due.
    fn call(
        &self,
        operation: Operation,
        repository: &RepositoryName,
        what: &dyn fmt::Display,
    ) -> Result<MutexGuard<'_, Store>, Error> {
        let mut store = self.lock();
        let action = format!("{operation} {repository} {what}")
            .trim_end()
            .to_string();
        store.log.push(action.clone());
        if let Some(left) = store.faults.get_mut(&operation).filter(|n| **n > 0) {
            *left -= 1;
            let mut error = Error::new(ErrorKind::Status, &self.name, action);
            error.status = Some(StatusCode::SERVICE_UNAVAILABLE);
            return Err(error);
        }
        Ok(store)
    }

    fn error(&self, kind: ErrorKind, action: String) -> Error {
        let status = match kind {
            ErrorKind::NotFound => Some(StatusCode::NOT_FOUND),
            ErrorKind::DigestMismatch { .. } | ErrorKind::SizeMismatch { .. } => {
                Some(StatusCode::BAD_REQUEST)
            }
            _ => None,
        };
        let mut error = Error::new(kind, &self.name, action);
        error.status = status;
        error
    }

    fn resolve(
        store: &Store,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Option<Digest> {
        match reference {
            ManifestReference::Digest(d) => store
                .manifests
                .contains_key(&(repository.clone(), d.clone()))
                .then(|| d.clone()),
            ManifestReference::Tag(t) => store.tags.get(&(repository.clone(), t.clone())).cloned(),
        }
    }

    /// What `manifest` names that `repository` lacks, if anything.
    fn missing_child(
        store: &Store,
        repository: &RepositoryName,
        manifest: &Manifest,
    ) -> Result<Option<Digest>, String> {
        let key = |d: &Digest| (repository.clone(), d.clone());
        Ok(match manifest.children().map_err(|e| e.to_string())? {
            Children::Blobs(blobs) => blobs
                .into_iter()
                .find(|b| {
                    !store.blobs.contains_key(&key(&b.digest))
                        && !store.sources.contains_key(&key(&b.digest))
                })
                .map(|b| b.digest),
            Children::Manifests(children) => children
                .into_iter()
                .find(|m| !store.manifests.contains_key(&key(&m.digest)))
                .map(|m| m.digest),
        })
    }
}

impl Registry for MemoryRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn record_blob_sources(
        &self,
        repository: &RepositoryName,
        sources: &BlobSources,
        blobs: &[(Descriptor, bool)],
    ) -> Result<(), Error> {
        let mut store = self.call(Operation::RecordBlobSources, repository, &"")?;
        if !self.records_sources {
            return Err(no_blob_sources(&self.name));
        }
        let at = format!("{} {}", sources.url, sources.repository);
        for (descriptor, prefetch) in blobs {
            store.sources.insert(
                (repository.clone(), descriptor.digest.clone()),
                (at.clone(), *prefetch),
            );
        }
        Ok(())
    }

    async fn blob_head(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, Error> {
        let store = self.call(Operation::BlobHead, repository, digest)?;
        Ok(store
            .blobs
            .get(&(repository.clone(), digest.clone()))
            .map(|b| b.len() as u64))
    }

    async fn blob_get(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<BlobStream, Error> {
        let store = self.call(Operation::BlobGet, repository, digest)?;
        let Some(content) = store
            .blobs
            .get(&(repository.clone(), digest.clone()))
            .cloned()
        else {
            return Err(self.error(
                ErrorKind::NotFound,
                format!("blob_get {repository} {digest}"),
            ));
        };
        // In two chunks, as a body arrives over the network.
        let half = content.len() / 2;
        let chunks = vec![Ok(content.slice(..half)), Ok(content.slice(half..))];
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }

    async fn blob_put(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        mut body: BlobStream,
    ) -> Result<(), Error> {
        drop(self.call(Operation::BlobPut, repository, digest)?);
        let action = || format!("blob_put {repository} {digest}");
        let mut content = BytesMut::new();
        while let Some(chunk) = body.next().await {
            // A failing body (a broken source, a mismatch found on the
            // way) is what the caller gets, and nothing is committed.
            content.extend_from_slice(&chunk?);
        }
        let content = content.freeze();
        if content.len() as u64 != size {
            let kind = ErrorKind::SizeMismatch {
                expected: size,
                actual: content.len() as u64,
            };
            return Err(self.error(kind, action()));
        }
        let actual = Digest::compute(digest.algorithm(), &content);
        if actual != *digest {
            let kind = ErrorKind::DigestMismatch {
                expected: digest.clone(),
                actual,
            };
            return Err(self.error(kind, action()));
        }
        self.lock()
            .blobs
            .insert((repository.clone(), digest.clone()), content);
        Ok(())
    }

    async fn blob_mount(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool, Error> {
        let what = format!("{digest} from {from}");
        let mut store = self.call(Operation::BlobMount, repository, &what)?;
        let Some(content) = store.blobs.get(&(from.clone(), digest.clone())).cloned() else {
            return Ok(false);
        };
        store
            .blobs
            .insert((repository.clone(), digest.clone()), content);
        Ok(true)
    }

    async fn manifest_get(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Manifest, Error> {
        let store = self.call(Operation::ManifestGet, repository, reference)?;
        Self::resolve(&store, repository, reference)
            .and_then(|d| store.manifests.get(&(repository.clone(), d)).cloned())
            .ok_or_else(|| {
                self.error(
                    ErrorKind::NotFound,
                    format!("manifest_get {repository} {reference}"),
                )
            })
    }

    async fn manifest_head(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Option<Digest>, Error> {
        let store = self.call(Operation::ManifestHead, repository, reference)?;
        Ok(Self::resolve(&store, repository, reference))
    }

    async fn manifest_put(
        &self,
        repository: &RepositoryName,
        reference: &ManifestReference,
        manifest: &Manifest,
    ) -> Result<Digest, Error> {
        let mut store = self.call(Operation::ManifestPut, repository, reference)?;
        let action = || format!("manifest_put {repository} {reference}");
        let actual = Digest::sha256(&manifest.bytes);
        let named = reference.digest().unwrap_or(&manifest.digest);
        if actual != *named {
            let kind = ErrorKind::DigestMismatch {
                expected: named.clone(),
                actual,
            };
            return Err(self.error(kind, action()));
        }
        match Self::missing_child(&store, repository, manifest) {
            Err(why) => return Err(self.error(ErrorKind::InvalidResponse(why), action())),
            Ok(Some(missing)) => {
                let why =
                    format!("manifest {actual} names {missing}, which is not in {repository}");
                return Err(self.error(ErrorKind::InvalidResponse(why), action()));
            }
            Ok(None) => {}
        }
        store
            .manifests
            .insert((repository.clone(), actual.clone()), manifest.clone());
        if let ManifestReference::Tag(tag) = reference {
            store
                .tags
                .insert((repository.clone(), tag.clone()), actual.clone());
        }
        Ok(actual)
    }

    async fn manifest_delete(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), Error> {
        let mut store = self.call(Operation::ManifestDelete, repository, digest)?;
        if store
            .manifests
            .remove(&(repository.clone(), digest.clone()))
            .is_none()
        {
            return Err(self.error(
                ErrorKind::NotFound,
                format!("manifest_delete {repository} {digest}"),
            ));
        }
        store
            .tags
            .retain(|(r, _), d| !(r == repository && d == digest));
        Ok(())
    }

    async fn tag_delete(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<TagDeleted, Error> {
        let mut store = self.call(Operation::TagDelete, repository, tag)?;
        Ok(
            match store.tags.remove(&(repository.clone(), tag.clone())) {
                Some(_) => TagDeleted::Deleted,
                None => TagDeleted::Absent,
            },
        )
    }

    async fn tags_list(&self, repository: &RepositoryName) -> Result<Vec<Tag>, Error> {
        let store = self.call(Operation::TagsList, repository, &"")?;
        Ok(store
            .tags
            .keys()
            .filter(|(r, _)| r == repository)
            .map(|(_, t)| t.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepositoryName {
        name.parse().unwrap()
    }

    #[tokio::test]
    async fn keeps_a_registrys_rules_and_injects_faults() {
        let reg = MemoryRegistry::new("mem:1");
        let r = repo("org/img");
        // A blob that does not hash to its digest is not committed.
        let digest = Digest::sha256(b"right");
        let wrong: BlobStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from("wrong"))]));
        let err = reg.blob_put(&r, &digest, 5, wrong).await.unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::DigestMismatch { .. }),
            "{err}"
        );
        assert_eq!(reg.blob_head(&r, &digest).await.unwrap(), None);

        // A manifest naming a missing blob is refused.
        let config = Digest::sha256(b"{}");
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media_type::OCI_MANIFEST,
            "config": {"mediaType": crate::oci::media_type::OCI_CONFIG,
                       "digest": config, "size": 2},
            "layers": [],
        });
        let manifest = Manifest::new("", Bytes::from(doc.to_string()));
        let latest = ManifestReference::Tag(Tag::latest());
        let err = reg.manifest_put(&r, &latest, &manifest).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "manifest_put org/img latest: registry mem:1 answered against the protocol: \
                 manifest {} names {config}, which is not in org/img",
                manifest.digest
            )
        );
        reg.insert_blob(&r, "{}");
        assert_eq!(
            reg.manifest_put(&r, &latest, &manifest).await.unwrap(),
            manifest.digest
        );

        reg.fail_next(Operation::ManifestHead, 1);
        let err = reg.manifest_head(&r, &latest).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            reg.manifest_head(&r, &latest).await.unwrap(),
            Some(manifest.digest.clone())
        );

        assert_eq!(
            reg.tag_delete(&r, &Tag::latest()).await.unwrap(),
            TagDeleted::Deleted
        );
        assert_eq!(
            reg.tag_delete(&r, &Tag::latest()).await.unwrap(),
            TagDeleted::Absent
        );
        assert!(reg.tags_list(&r).await.unwrap().is_empty());
        assert_eq!(
            reg.operations().last().map(String::as_str),
            Some("tags_list org/img")
        );
    }
}
