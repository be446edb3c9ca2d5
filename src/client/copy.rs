//! The copy engine: one image (manifest, Docker manifest list or OCI index
//! with every platform) from a repository of one [`Registry`] to a
//! repository of another, or of the same one.
//!
//! Contracts:
//! - Nothing is written when the destination already names the same
//!   manifest digest (`changed: false`, no blob touched).
//! - Manifest bytes are written exactly as read, so the digest at the
//!   destination is the source's.
//! - A blob the destination has (HEAD) is not transferred; within one
//!   registry a missing blob is mounted from the source repository, and
//!   one the caller knows the destination holds elsewhere
//!   ([`CopyOptions::mount_from`]) from that repository; only
//!   otherwise is it streamed from source to destination, never held whole
//!   in memory nor written to disk, and checked against its digest and
//!   size on the way (a mismatch aborts the upload).
//! - Up to `parallelism` blobs are in flight at once; a transfer that fails
//!   transiently (connection reset, 5xx, 429) is restarted with backoff.
//! - Manifests are written last, children before their index, so a reader
//!   never finds a manifest whose content is missing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::error::{Error, ErrorKind};
use super::registry::Registry;
use super::transport::RetryPolicy;
use super::verify::Verified;
use crate::oci::{
    Children, Descriptor, Digest, Manifest, ManifestReference, Reference, RepositoryName, Tag,
};

/// Deepest nesting of indexes followed (an index of indexes is legal but
/// rare; a loop would be a broken registry).
const MAX_DEPTH: usize = 4;

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Blobs in flight at once.
    pub parallelism: usize,
    /// Restarts of one blob transfer after a transient failure, and the
    /// waits between them (the transport's policy, applied to a whole
    /// transfer; its `max_wait` is not used here).
    pub blob_retry: RetryPolicy,
    /// Blobs the destination registry holds in another repository, to be
    /// mounted from there (cross-repository) instead of transferred.
    pub mount_from: Arc<std::collections::HashMap<Digest, RepositoryName>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            parallelism: 8,
            blob_retry: RetryPolicy::default(),
            mount_from: Arc::default(),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Digest of the top manifest (the same at source and destination).
    pub digest: Option<Digest>,
    /// Its media type.
    pub media_type: String,
    /// Whether the destination changed (a manifest was written).
    pub changed: bool,
    /// Manifests written (children and top).
    pub manifests_written: usize,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from the source repository.
    pub blobs_mounted: usize,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Bytes transferred (blob content).
    pub bytes_copied: u64,
    /// Layers not transferred but recorded as living at the source
    /// ([`copy_manifests`]).
    pub blobs_recorded: usize,
}

/// Copy `src_ref` from `src` to `dst_ref` on `dst`: the registry parts of
/// the references are not used (the handles say where to connect); the
/// destination's tag, or else its digest, or else the source's digest is
/// what the image is stored under. Mounts are tried when both handles name
/// the same registry.
pub async fn copy_reference<S: Registry, D: Registry>(
    src: &Arc<S>,
    src_ref: &Reference,
    dst: &Arc<D>,
    dst_ref: &Reference,
    options: &CopyOptions,
) -> Result<CopyReport, Error> {
    copy(
        src,
        &src_ref.repository,
        &src_ref.manifest_reference(),
        dst,
        &dst_ref.repository,
        dst_ref.tag.as_ref(),
        options,
    )
    .await
    .map_err(|e| e.during(format_args!("copying {src_ref} to {dst_ref}")))
}

/// What [`copy_reference`] would report, found with read-only requests (a
/// manifest HEAD on each side): the source's digest, and `changed` unless
/// the destination already holds that digest under `dst_ref`. For check
/// mode; nothing is written and no blob is read. A source that does not
/// exist fails as the copy would, with [`ErrorKind::NotFound`].
pub async fn predict_copy<S: Registry, D: Registry>(
    src: &S,
    src_ref: &Reference,
    dst: &D,
    dst_ref: &Reference,
) -> Result<CopyReport, Error> {
    let digest = src
        .manifest_head(&src_ref.repository, &src_ref.manifest_reference())
        .await
        .map_err(|e| e.during(format_args!("checking {src_ref}")))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                src.name(),
                format!("checking {src_ref}: the registry holds no such manifest"),
            )
        })?;
    let there = dst
        .manifest_head(&dst_ref.repository, &dst_ref.manifest_reference())
        .await
        .map_err(|e| e.during(format_args!("checking {dst_ref}")))?;
    Ok(CopyReport {
        changed: there.as_ref() != Some(&digest),
        digest: Some(digest),
        ..CopyReport::default()
    })
}

/// Copy the image `src_reference` (tag or digest) of `src_repository` to
/// `dst_repository`, tagged `dst_tag` (or stored by digest only).
pub async fn copy<S: Registry, D: Registry>(
    src: &Arc<S>,
    src_repository: &RepositoryName,
    src_reference: &ManifestReference,
    dst: &Arc<D>,
    dst_repository: &RepositoryName,
    dst_tag: Option<&Tag>,
    options: &CopyOptions,
) -> Result<CopyReport, Error> {
    let walked = match walk(
        src,
        src_repository,
        src_reference,
        dst,
        dst_repository,
        dst_tag,
    )
    .await?
    {
        Walk::InPlace(report) => return Ok(report),
        Walk::Needed(walked) => walked,
    };
    let Walked {
        dst_reference,
        mut report,
        manifests,
        blobs,
    } = walked;

    let counts = transfer_blobs(src, src_repository, dst, dst_repository, blobs, options).await?;
    counts.add_to(&mut report);

    put_manifests(dst, dst_repository, &dst_reference, manifests, &mut report).await?;
    Ok(report)
}

/// A layer [`copy_manifests`] leaves at the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LazyLayer {
    /// The layer.
    pub descriptor: Descriptor,
    /// The platforms (`os/architecture[/variant]`) of the index entries
    /// whose image names it; empty for an image without an index.
    pub platforms: Vec<String>,
}

/// Copy an image's manifests (index, platform manifests) and configs
/// only, every platform; its layers are handed to `record` instead, for
/// the destination to fetch from the source when a client asks (our
/// buildset registry's blob sources). `record` runs before any manifest
/// is written, so the destination accepts them. As [`copy`] otherwise:
/// nothing is done when the destination names the same digest already.
#[allow(clippy::too_many_arguments)]
pub async fn copy_manifests<S, D, R, Fut>(
    src: &Arc<S>,
    src_repository: &RepositoryName,
    src_reference: &ManifestReference,
    dst: &Arc<D>,
    dst_repository: &RepositoryName,
    dst_tag: Option<&Tag>,
    options: &CopyOptions,
    record: R,
) -> Result<CopyReport, Error>
where
    S: Registry,
    D: Registry,
    R: FnOnce(Vec<LazyLayer>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let walked = match walk(
        src,
        src_repository,
        src_reference,
        dst,
        dst_repository,
        dst_tag,
    )
    .await?
    {
        Walk::InPlace(report) => return Ok(report),
        Walk::Needed(walked) => walked,
    };
    // Only configs are copied: the layers are recorded instead.
    let Walked {
        dst_reference,
        mut report,
        manifests,
        ..
    } = walked;
    // Which platform each image of the top index is for.
    let mut platform_of: BTreeMap<Digest, String> = BTreeMap::new();
    if let Some(index) = manifests.last().filter(|m| m.is_index()) {
        for entry in index.index().map(|i| i.manifests).unwrap_or_default() {
            if let Some(p) = &entry.platform {
                let mut name = format!("{}/{}", p.os, p.architecture);
                if let Some(variant) = &p.variant {
                    name.push('/');
                    name.push_str(variant);
                }
                platform_of.insert(entry.digest.clone(), name);
            }
        }
    }
    let mut configs = BTreeMap::new();
    let mut layers: BTreeMap<Digest, LazyLayer> = BTreeMap::new();
    for manifest in manifests.iter().filter(|m| !m.is_index()) {
        let platform = platform_of.get(&manifest.digest);
        let image = manifest.image().map_err(|why| {
            Error::new(
                ErrorKind::InvalidResponse(why.to_string()),
                src.name(),
                format!("reading manifest {}", manifest.digest),
            )
        })?;
        configs.insert(image.config.digest.clone(), image.config.size);
        for layer in image.layers.into_iter().filter(|l| !l.is_foreign()) {
            let entry = layers
                .entry(layer.digest.clone())
                .or_insert_with(|| LazyLayer {
                    descriptor: layer,
                    platforms: Vec::new(),
                });
            if let Some(platform) = platform {
                if !entry.platforms.contains(platform) {
                    entry.platforms.push(platform.clone());
                }
            }
        }
    }
    layers.retain(|digest, _| !configs.contains_key(digest));
    report.blobs_recorded = layers.len();
    if !layers.is_empty() {
        record(layers.into_values().collect()).await?;
    }
    let counts = transfer_blobs(src, src_repository, dst, dst_repository, configs, options).await?;
    counts.add_to(&mut report);
    put_manifests(dst, dst_repository, &dst_reference, manifests, &mut report).await?;
    Ok(report)
}

/// How a copy starts: with nothing to do, or with the image walked.
enum Walk {
    /// The destination already names the source's digest there.
    InPlace(CopyReport),
    /// What is to be written.
    Needed(Walked),
}

/// An image walked at the source, for a copy to write.
struct Walked {
    /// Where the top manifest goes: the tag, or its digest.
    dst_reference: ManifestReference,
    /// The report so far (digest and media type).
    report: CopyReport,
    /// Every manifest, children before parents, the top one last.
    manifests: Vec<Manifest>,
    /// Every blob, with its size.
    blobs: BTreeMap<Digest, u64>,
}

/// Read the source's top manifest and, unless the destination already
/// names its digest under `dst_tag` (or that digest), walk the image.
async fn walk<S: Registry, D: Registry>(
    src: &Arc<S>,
    src_repository: &RepositoryName,
    src_reference: &ManifestReference,
    dst: &Arc<D>,
    dst_repository: &RepositoryName,
    dst_tag: Option<&Tag>,
) -> Result<Walk, Error> {
    let top = src.manifest_get(src_repository, src_reference).await?;
    let dst_reference = match dst_tag {
        Some(tag) => ManifestReference::from(tag),
        None => ManifestReference::from(&top.digest),
    };
    let report = CopyReport {
        digest: Some(top.digest.clone()),
        media_type: top.media_type.clone(),
        ..CopyReport::default()
    };
    if dst.manifest_head(dst_repository, &dst_reference).await? == Some(top.digest.clone()) {
        return Ok(Walk::InPlace(report));
    }
    let mut manifests = Vec::new();
    let mut blobs = BTreeMap::new();
    collect(src, src_repository, top, 0, &mut manifests, &mut blobs).await?;
    Ok(Walk::Needed(Walked {
        dst_reference,
        report,
        manifests,
        blobs,
    }))
}

/// Add `manifest` and everything below it to `manifests` (children before
/// parents) and its blobs to `blobs`.
async fn collect<S: Registry>(
    src: &Arc<S>,
    repository: &RepositoryName,
    manifest: Manifest,
    depth: usize,
    manifests: &mut Vec<Manifest>,
    blobs: &mut BTreeMap<Digest, u64>,
) -> Result<(), Error> {
    let invalid = |why: crate::oci::ManifestError| {
        Error::new(
            ErrorKind::InvalidResponse(why.to_string()),
            src.name(),
            format!("reading manifest {}", manifest.digest),
        )
    };
    match manifest.children().map_err(invalid)? {
        Children::Blobs(descriptors) => {
            for Descriptor { digest, size, .. } in descriptors {
                blobs.insert(digest, size);
            }
        }
        Children::Manifests(descriptors) => {
            if depth >= MAX_DEPTH {
                return Err(Error::new(
                    ErrorKind::Unsupported(format!(
                        "index {} nests indexes more than {MAX_DEPTH} deep",
                        manifest.digest
                    )),
                    src.name(),
                    "reading the image",
                ));
            }
            for descriptor in descriptors {
                if manifests.iter().any(|m| m.digest == descriptor.digest) {
                    continue;
                }
                let child = src
                    .manifest_get(repository, &ManifestReference::from(&descriptor.digest))
                    .await?;
                Box::pin(collect(src, repository, child, depth + 1, manifests, blobs)).await?;
            }
        }
    }
    manifests.push(manifest);
    Ok(())
}

/// Write the collected manifests, last of a copy: children by digest, then
/// the top one (collected last) under `reference`, so that no tag names a
/// manifest whose children are missing.
async fn put_manifests<D: Registry>(
    dst: &Arc<D>,
    repository: &RepositoryName,
    reference: &ManifestReference,
    mut manifests: Vec<Manifest>,
    report: &mut CopyReport,
) -> Result<(), Error> {
    let top = manifests.pop().expect("the top manifest was collected");
    for child in &manifests {
        dst.manifest_put(repository, &ManifestReference::from(&child.digest), child)
            .await?;
        report.manifests_written += 1;
    }
    dst.manifest_put(repository, reference, &top).await?;
    report.manifests_written += 1;
    report.changed = true;
    Ok(())
}

#[derive(Default)]
struct Counts {
    skipped: AtomicUsize,
    mounted: AtomicUsize,
    copied: AtomicUsize,
    bytes: AtomicU64,
}

impl Counts {
    /// Put what the blob transfers did into `report`.
    fn add_to(&self, report: &mut CopyReport) {
        report.blobs_skipped = self.skipped.load(Ordering::Relaxed);
        report.blobs_mounted = self.mounted.load(Ordering::Relaxed);
        report.blobs_copied = self.copied.load(Ordering::Relaxed);
        report.bytes_copied = self.bytes.load(Ordering::Relaxed);
    }
}

async fn transfer_blobs<S: Registry, D: Registry>(
    src: &Arc<S>,
    src_repository: &RepositoryName,
    dst: &Arc<D>,
    dst_repository: &RepositoryName,
    blobs: BTreeMap<Digest, u64>,
    options: &CopyOptions,
) -> Result<Arc<Counts>, Error> {
    let counts = Arc::new(Counts::default());
    let permits = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let mount = src.name() == dst.name();
    // Largest first, so the long transfers start early.
    let mut order: Vec<(Digest, u64)> = blobs.into_iter().collect();
    order.sort_by_key(|b| std::cmp::Reverse(b.1));
    let mut tasks = JoinSet::new();
    for (digest, size) in order {
        let job = BlobJob {
            src: src.clone(),
            src_repository: src_repository.clone(),
            dst: dst.clone(),
            dst_repository: dst_repository.clone(),
            digest,
            size,
            mount,
            options: options.clone(),
            counts: counts.clone(),
        };
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            job.run().await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            // Dropping `tasks` aborts the transfers still running.
            Ok(Err(e)) => return Err(e),
            Err(join) => {
                return Err(Error::new(
                    ErrorKind::Internal(format!("a blob transfer task failed: {join}")),
                    dst.name(),
                    "copying blobs",
                ))
            }
        }
    }
    Ok(counts)
}

/// One blob to bring to the destination.
struct BlobJob<S, D> {
    src: Arc<S>,
    src_repository: RepositoryName,
    dst: Arc<D>,
    dst_repository: RepositoryName,
    digest: Digest,
    size: u64,
    mount: bool,
    options: CopyOptions,
    counts: Arc<Counts>,
}

impl<S: Registry, D: Registry> BlobJob<S, D> {
    async fn run(self) -> Result<(), Error> {
        if self
            .dst
            .blob_head(&self.dst_repository, &self.digest)
            .await?
            .is_some()
        {
            self.counts.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(from) = self.options.mount_from.get(&self.digest) {
            if self
                .dst
                .blob_mount(&self.dst_repository, &self.digest, from)
                .await?
            {
                self.counts.mounted.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        if self.mount
            && self
                .dst
                .blob_mount(&self.dst_repository, &self.digest, &self.src_repository)
                .await?
        {
            self.counts.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.stream().await {
                Ok(()) => {
                    self.counts.copied.fetch_add(1, Ordering::Relaxed);
                    self.counts.bytes.fetch_add(self.size, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if e.is_retryable() && attempt < self.options.blob_retry.retries => {
                    let wait = self.options.blob_retry.delay(attempt);
                    tracing::debug!(digest = %self.digest, error = %e, ?wait, "restarting blob");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.during(format_args!("copying blob {}", self.digest))),
            }
        }
    }

    async fn stream(&self) -> Result<(), Error> {
        let body = self
            .src
            .blob_get(&self.src_repository, &self.digest)
            .await?;
        let verified = Verified::new(body, self.digest.clone(), self.size, self.src.name());
        self.dst
            .blob_put(
                &self.dst_repository,
                &self.digest,
                self.size,
                Box::pin(verified),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    //! The engine's contracts on the in-memory registry: what is read and
    //! written, in which order, and what a transient failure costs.

    use std::time::Duration;

    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::client::memory::{MemoryRegistry, Operation};
    use crate::oci::media_type;

    fn repo(name: &str) -> RepositoryName {
        name.parse().unwrap()
    }

    fn tag(name: &str) -> Tag {
        name.parse().unwrap()
    }

    fn options() -> CopyOptions {
        CopyOptions {
            blob_retry: RetryPolicy {
                backoff: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            ..CopyOptions::default()
        }
    }

    /// An image of `layers` (and a config naming `arch`) stored in
    /// `repository` of `registry`, tagged `tag` if given.
    fn image(
        registry: &MemoryRegistry,
        repository: &RepositoryName,
        tag: Option<&Tag>,
        arch: &str,
        layers: &[&str],
    ) -> Manifest {
        registry.insert_image(repository, tag, arch, layers)
    }

    /// Copy `from_tag` of `from` on `src` to `to` on `dst`, tagged `to_tag`.
    async fn copy_tag(
        src: &Arc<MemoryRegistry>,
        from: &str,
        dst: &Arc<MemoryRegistry>,
        to: &str,
        to_tag: Option<&str>,
        options: &CopyOptions,
    ) -> Result<CopyReport, Error> {
        let (from, from_tag) = from.split_once(':').expect("repository:tag");
        let reference = ManifestReference::Tag(tag(from_tag));
        let to_tag = to_tag.map(tag);
        copy(
            src,
            &repo(from),
            &reference,
            dst,
            &repo(to),
            to_tag.as_ref(),
            options,
        )
        .await
    }

    fn count(registry: &MemoryRegistry, prefix: &str) -> usize {
        registry
            .operations()
            .iter()
            .filter(|o| o.starts_with(prefix))
            .count()
    }

    #[tokio::test]
    async fn copies_an_image_then_finds_it_already_there() {
        let (src, dst) = (MemoryRegistry::new("a:1"), MemoryRegistry::new("b:1"));
        let manifest = image(
            &src,
            &repo("org/img"),
            Some(&tag("1")),
            "amd64",
            &["one", "three"],
        );
        let report = copy_tag(
            &src,
            "org/img:1",
            &dst,
            "org/img",
            Some("latest"),
            &options(),
        )
        .await
        .unwrap();
        assert_eq!(report.digest.as_ref(), Some(&manifest.digest));
        assert!(report.changed);
        assert_eq!(
            (
                report.blobs_copied,
                report.blobs_skipped,
                report.blobs_mounted
            ),
            (3, 0, 0)
        );
        let config_len = r#"{"architecture":"amd64","os":"linux"}"#.len() as u64;
        assert_eq!(report.bytes_copied, config_len + 3 + 5);
        assert_eq!(report.manifests_written, 1);
        let arrived = dst
            .manifest_get(&repo("org/img"), &ManifestReference::Tag(tag("latest")))
            .await
            .unwrap();
        assert_eq!(arrived, manifest);

        // Again: one HEAD of the manifest at the destination, nothing else.
        let before = dst.operations().len();
        let again = copy_tag(
            &src,
            "org/img:1",
            &dst,
            "org/img",
            Some("latest"),
            &options(),
        )
        .await
        .unwrap();
        assert!(!again.changed);
        assert_eq!(dst.operations()[before..], ["manifest_head org/img latest"]);
    }

    #[tokio::test]
    async fn blobs_the_destination_has_are_not_transferred() {
        let (src, dst) = (MemoryRegistry::new("a:1"), MemoryRegistry::new("b:1"));
        image(
            &src,
            &repo("org/img"),
            Some(&tag("1")),
            "amd64",
            &["base", "top"],
        );
        let base = dst.insert_blob(&repo("org/img"), "base");
        let report = copy_tag(&src, "org/img:1", &dst, "org/img", None, &options())
            .await
            .unwrap();
        assert_eq!((report.blobs_copied, report.blobs_skipped), (2, 1));
        assert!(!src
            .operations()
            .contains(&format!("blob_get org/img {base}")));
        assert_eq!(count(&dst, "blob_put"), 2);
        // Without a tag, stored under its digest only.
        assert!(dst.tags_list(&repo("org/img")).await.unwrap().is_empty());
        let digest = report.digest.unwrap();
        assert_eq!(
            dst.manifest_head(&repo("org/img"), &ManifestReference::Digest(digest.clone()))
                .await
                .unwrap(),
            Some(digest)
        );
    }

    #[tokio::test]
    async fn within_one_registry_blobs_are_mounted_not_transferred() {
        let reg = MemoryRegistry::new("a:1");
        image(&reg, &repo("org/img"), Some(&tag("1")), "amd64", &["layer"]);
        let report = copy_tag(&reg, "org/img:1", &reg, "other/img", Some("1"), &options())
            .await
            .unwrap();
        assert_eq!(
            (
                report.blobs_mounted,
                report.blobs_copied,
                report.bytes_copied
            ),
            (2, 0, 0)
        );
        assert_eq!(count(&reg, "blob_get"), 0);
        assert_eq!(count(&reg, "blob_mount other/img"), 2);
    }

    #[tokio::test]
    async fn blobs_the_destination_holds_elsewhere_are_mounted_from_there() {
        let (src, dst) = (MemoryRegistry::new("a:1"), MemoryRegistry::new("b:1"));
        image(
            &src,
            &repo("org/app"),
            Some(&tag("1")),
            "amd64",
            &["base", "top"],
        );
        let base = dst.insert_blob(&repo("org/base"), "base");
        let options = CopyOptions {
            mount_from: Arc::new([(base.clone(), repo("org/base"))].into_iter().collect()),
            ..options()
        };
        let report = copy_tag(&src, "org/app:1", &dst, "org/app", Some("1"), &options)
            .await
            .unwrap();
        assert_eq!((report.blobs_mounted, report.blobs_copied), (1, 2));
        assert!(dst
            .operations()
            .contains(&format!("blob_mount org/app {base} from org/base")));
        assert!(!src
            .operations()
            .contains(&format!("blob_get org/app {base}")));
    }

    #[tokio::test]
    async fn copy_manifests_records_the_layers_and_copies_the_rest() {
        let (src, dst) = (MemoryRegistry::new("a:1"), MemoryRegistry::new("b:1"));
        image(
            &src,
            &repo("org/img"),
            Some(&tag("1")),
            "amd64",
            &["l1", "l2"],
        );
        let recorded = std::sync::Mutex::new(Vec::new());
        let report = copy_manifests(
            &src,
            &repo("org/img"),
            &ManifestReference::Tag(tag("1")),
            &dst,
            &repo("org/img"),
            Some(&tag("latest")),
            &options(),
            |layers| {
                *recorded.lock().unwrap() = layers;
                async { Ok(()) }
            },
        )
        .await;
        // The memory registry refuses a manifest naming missing blobs: the
        // layers were recorded, not copied.
        assert!(report.is_err(), "{report:?}");
        let layers = recorded.into_inner().unwrap();
        assert_eq!(layers.len(), 2);
        assert!(layers.iter().all(|l| l.platforms.is_empty()));
        // Only the config was read.
        assert_eq!(count(&src, "blob_get"), 1, "{:#?}", src.operations());
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_too_many_fail_the_copy() {
        let (src, dst) = (MemoryRegistry::new("a:1"), MemoryRegistry::new("b:1"));
        image(&src, &repo("org/img"), Some(&tag("1")), "amd64", &["layer"]);
        src.fail_next(Operation::BlobGet, 2);
        let report = copy_tag(&src, "org/img:1", &dst, "org/img", Some("1"), &options())
            .await
            .unwrap();
        assert_eq!(report.blobs_copied, 2);
        assert_eq!(count(&src, "blob_get"), 4, "{:#?}", src.operations());

        // More failures than retries: the error, and no manifest written.
        let dst = MemoryRegistry::new("c:1");
        src.fail_next(Operation::BlobGet, 4);
        let one = CopyOptions {
            parallelism: 1,
            ..options()
        };
        let err = copy_tag(&src, "org/img:1", &dst, "org/img", Some("1"), &one)
            .await
            .unwrap_err();
        assert_eq!(err.status, Some(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert!(err.action.starts_with("copying blob sha256:"), "{err}");
        assert_eq!(count(&dst, "manifest_put"), 0);
    }

    #[tokio::test]
    async fn a_multi_platform_index_is_copied_whole_children_first() {
        let (src, dst) = (MemoryRegistry::new("a:1"), MemoryRegistry::new("b:1"));
        let r = repo("multi/img");
        let amd64 = image(&src, &r, None, "amd64", &["x86"]);
        let arm64 = image(&src, &r, None, "arm64", &["arm"]);
        let entry = |m: &Manifest, arch: &str| {
            json!({"mediaType": m.media_type, "digest": m.digest, "size": m.bytes.len(),
                   "platform": {"architecture": arch, "os": "linux"}})
        };
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [entry(&amd64, "amd64"), entry(&arm64, "arm64")],
        });
        // Odd whitespace: the bytes, not a re-serialisation, must arrive.
        let index = Manifest::new("", Bytes::from(format!("{doc}\n\n")));
        src.insert_manifest(&r, Some(&tag("latest")), &index);

        let report = copy_tag(
            &src,
            "multi/img:latest",
            &dst,
            "multi/img",
            Some("latest"),
            &options(),
        )
        .await
        .unwrap();
        assert_eq!(report.digest.as_ref(), Some(&index.digest));
        assert_eq!(report.media_type, media_type::OCI_INDEX);
        assert_eq!((report.manifests_written, report.blobs_copied), (3, 4));
        // The memory registry refuses a manifest whose children are
        // missing, so the index went last.
        let puts: Vec<String> = dst
            .operations()
            .into_iter()
            .filter(|o| o.starts_with("manifest_put"))
            .collect();
        assert_eq!(
            puts,
            [
                format!("manifest_put multi/img {}", amd64.digest),
                format!("manifest_put multi/img {}", arm64.digest),
                "manifest_put multi/img latest".to_string(),
            ]
        );
        let arrived = dst
            .manifest_get(&r, &ManifestReference::Tag(tag("latest")))
            .await
            .unwrap();
        assert_eq!(arrived.bytes, index.bytes);
        assert_eq!(dst.tags_list(&r).await.unwrap(), [tag("latest")]);
    }
}
