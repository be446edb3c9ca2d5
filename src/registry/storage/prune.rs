//! Pruning: remove tags matching a pattern older than an age, then the
//! manifests nothing kept references, then the blobs no kept manifest
//! references, then stale uploads.
//!
//! What stays:
//! - every tag the patterns do not match, and every matching tag younger
//!   than `older_than` (a tag's age is the time it was last pushed);
//! - every manifest a kept tag points at, every child of a kept index
//!   (the platform manifests of a multi-arch image answer by digest), and
//!   every referrer (a manifest with a `subject`) whose subject is kept;
//! - every manifest and blob written less than `grace` before the prune
//!   started (a blob uploaded for a manifest not pushed yet, a platform
//!   manifest pushed before its index), and what they reference;
//! - every blob a kept manifest of any repository references (blobs are
//!   shared), including blobs deleted through one repository
//!   (`_deleted_blobs`): those go, with their records, only when nothing
//!   references them.
//!
//! Safe while pushes run: the prune decides and deletes under the
//! exclusive prune lock (`storage::lock`), which a manifest PUT holds shared
//! from its check of the blobs to its commit; a blob is unlinked only
//! after it has been moved aside and found to be the same, old file (a
//! blob uploaded again meanwhile is put back), and reading a blob's size
//! (HEAD, a mount) refreshes its time, so a client told a blob exists can
//! use it for at least the grace period. Deletion goes tags, then
//! manifests (indexes before their children), then blobs, each an atomic
//! unlink, so that a prune killed at any point leaves every tag pointing
//! at a complete manifest and every manifest with all it names (a blob
//! moved aside when the prune died is put back by the next prune or the
//! next start of the server, and decided again).
//!
//! Blob source records (`storage::sources`) stay while a kept manifest of
//! their repository names the blob, or when written within the grace
//! period (recorded for a manifest not pushed yet); the others go with
//! the prune, under its lock, so no manifest is left naming a blob that
//! is neither stored nor recorded.
//!
//! The `speculative-images/changes` record repository is an ordinary
//! repository: its tags go when a pattern matches them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::files::fsync_dir;
use super::paths::{Layout, DELETED_BLOBS_DIR, MANIFESTS_DIR};
use super::{blocking, io_context, lock, referrers, Result, Sources, Storage};
use crate::oci::{Children, Digest, Manifest, RepositoryName, Tag};

/// Uploads untouched this long are removed (the server's own rule).
pub const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// Uploads idle this long lose their open file (as the server does).
const IDLE_UPLOAD: Duration = Duration::from_secs(600);

/// The grace period when none is given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Files under `tmp/` holding a blob being deleted:
/// `prune-<algorithm>-<hex>-<random id>`.
const TRASH_PREFIX: &str = "prune-";

/// Which tags a prune removes, by name: `TAG_GLOB` for every repository
/// or `REPOSITORY_GLOB:TAG_GLOB` (neither a tag nor a repository name
/// holds a `:`). `*` matches any run of characters (`/` too, in a
/// repository glob), `?` one character, `[abc]`, `[a-z]`, `[!a]` one of
/// (or none of) a set.
#[derive(Debug, Clone)]
pub struct TagPattern {
    text: String,
    repository: Option<regex_lite::Regex>,
    tag: regex_lite::Regex,
}

impl PartialEq for TagPattern {
    fn eq(&self, other: &TagPattern) -> bool {
        self.text == other.text
    }
}

impl Eq for TagPattern {}

impl std::fmt::Display for TagPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for TagPattern {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<TagPattern, String> {
        let (repository, tag) = match text.split_once(':') {
            Some((repository, tag)) => (Some(repository), tag),
            None => (None, text),
        };
        let repository = match repository {
            Some(r) => Some(glob(r, "/").map_err(|e| format!("{text:?}: repository {e}"))?),
            None => None,
        };
        let tag = glob(tag, "").map_err(|e| format!("{text:?}: tag {e}"))?;
        Ok(TagPattern {
            text: text.to_string(),
            repository,
            tag,
        })
    }
}

impl Serialize for TagPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for TagPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl TagPattern {
    /// Whether `repository:tag` is one this pattern removes.
    pub fn matches(&self, repository: &str, tag: &str) -> bool {
        self.repository
            .as_ref()
            .is_none_or(|r| r.is_match(repository))
            && self.tag.is_match(tag)
    }
}

/// A glob as an anchored regex; `extra` are characters other than a
/// tag's that the names it matches may hold.
fn glob(text: &str, extra: &str) -> std::result::Result<regex_lite::Regex, String> {
    if text.is_empty() {
        return Err("pattern is empty".into());
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') || extra.contains(c);
    let mut regex = String::from("^");
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '[' => {
                let mut set = String::new();
                let mut closed = false;
                for (i, c) in chars.by_ref().enumerate() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '!' if i == 0 => set.push('^'),
                        '-' => set.push('-'),
                        c if allowed(c) => set.push_str(&regex_lite::escape(&c.to_string())),
                        c => return Err(format!("pattern: {c:?} cannot occur in a name")),
                    }
                }
                if !closed || set.is_empty() || set == "^" {
                    return Err("pattern: a [ is not closed by ]".into());
                }
                regex.push('[');
                regex.push_str(&set);
                regex.push(']');
            }
            c if allowed(c) => regex.push_str(&regex_lite::escape(&c.to_string())),
            c => return Err(format!("pattern: {c:?} cannot occur in a name")),
        }
    }
    regex.push('$');
    regex_lite::Regex::new(&regex).map_err(|e| format!("pattern: {e}"))
}

/// What a prune removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunePolicy {
    /// Tags matching any of these...
    pub tags: Vec<TagPattern>,
    /// ...last pushed longer ago than this go.
    pub older_than: Duration,
    /// Unreferenced manifests and blobs younger than this stay.
    pub grace: Duration,
    /// Only report what would go.
    pub dry_run: bool,
}

/// One thing a prune removes (or would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    /// A tag, with the manifest it pointed at and its age.
    Tag {
        /// Its repository.
        repository: String,
        /// The tag.
        tag: String,
        /// What it pointed at.
        digest: Option<Digest>,
        /// Time since it was pushed.
        age: Duration,
    },
    /// A manifest of a repository (its bytes go with the blobs, when no
    /// other repository keeps it).
    Manifest {
        /// Its repository.
        repository: String,
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Content (a layer, a config, a manifest's bytes).
    Blob {
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// An upload abandoned for longer than [`STALE_UPLOAD`].
    Upload {
        /// Its id.
        id: String,
        /// Bytes it received.
        size: u64,
    },
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pruned::Tag {
                repository,
                tag,
                digest,
                age,
            } => {
                let digest = digest.as_ref().map(|d| d.to_string());
                write!(
                    f,
                    "tag       {repository}:{tag} -> {} ({} old)",
                    digest.as_deref().unwrap_or("?"),
                    show_age(*age)
                )
            }
            Pruned::Manifest {
                repository,
                digest,
                size,
            } => write!(f, "manifest  {repository}@{digest} ({})", show_size(*size)),
            Pruned::Blob { digest, size } => {
                write!(f, "blob      {digest} ({})", show_size(*size))
            }
            Pruned::Upload { id, size } => write!(f, "upload    {id} ({})", show_size(*size)),
        }
    }
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Each item, in the order removed: tags, manifests, blobs, uploads.
    pub items: Vec<Pruned>,
}

impl PruneReport {
    /// The summary line: counts and the bytes freed.
    pub fn summary(&self) -> String {
        let (mut tags, mut manifests, mut blobs, mut uploads) = (0, 0, 0, 0);
        let (mut blob_bytes, mut upload_bytes) = (0u64, 0u64);
        for item in &self.items {
            match item {
                Pruned::Tag { .. } => tags += 1,
                Pruned::Manifest { .. } => manifests += 1,
                Pruned::Blob { size, .. } => {
                    blobs += 1;
                    blob_bytes += size;
                }
                Pruned::Upload { size, .. } => {
                    uploads += 1;
                    upload_bytes += size;
                }
            }
        }
        let counts = format!(
            "{tags} tag{}, {manifests} manifest{}, {blobs} blob{} ({}), {uploads} upload{} ({})",
            plural(tags),
            plural(manifests),
            plural(blobs),
            show_size(blob_bytes),
            plural(uploads),
            show_size(upload_bytes)
        );
        let total = show_size(blob_bytes + upload_bytes);
        if self.dry_run {
            format!("dry run: would remove {counts}, freeing {total}; nothing was changed")
        } else {
            format!("removed {counts}, freed {total}")
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `1.5 MiB`, `512 B`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The largest whole unit: `9d`, `5h`, `12m`, `30s`.
fn show_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        s if s >= 86400 => format!("{}d", s / 86400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Storage {
    /// Prune as `policy` says; see the [module](self) for what stays.
    /// In a dry run nothing changes (not even the lock is taken).
    pub async fn prune(&self, policy: &PrunePolicy) -> Result<PruneReport> {
        let (layout, sources) = (self.layout.clone(), self.sources.clone());
        let policy2 = policy.clone();
        let mut report = blocking(move || prune_store(&layout, &sources, &policy2)).await?;
        let layout = self.layout.clone();
        let uploads = blocking(move || Ok(stale_uploads(&layout))).await?;
        if !policy.dry_run {
            self.tidy_uploads(IDLE_UPLOAD, STALE_UPLOAD).await;
        }
        report.items.extend(uploads);
        Ok(report)
    }
}

/// The times a file was last written (`mtime`) and last changed in any
/// way (`ctime`: a rename into place, a refresh); the newer of the two.
fn newest(meta: &std::fs::Metadata) -> SystemTime {
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec().max(0) as u32);
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH).max(ctime)
}

/// What a stored manifest names, read once per digest.
#[derive(Debug, Clone, Default)]
struct Parsed {
    manifests: Vec<Digest>,
    blobs: Vec<Digest>,
    subject: Option<Digest>,
}

/// One repository as found.
struct Repository {
    name: RepositoryName,
    /// Tag, the digest it names, when it was written.
    tags: Vec<(String, Option<Digest>, SystemTime)>,
    /// Manifest digest, when its record was written.
    revisions: BTreeMap<Digest, SystemTime>,
}

/// What goes, decided from one look at the store.
#[derive(Default)]
struct Plan {
    tags: Vec<(RepositoryName, String, Option<Digest>, Duration)>,
    /// Per repository, in an order where every index comes before what it
    /// names.
    manifests: Vec<(RepositoryName, Digest, u64)>,
    /// Blob, its size, the inode it was found as.
    blobs: Vec<(Digest, u64, u64)>,
    /// Per repository, the blobs its kept manifests name.
    kept_by_repository: HashMap<RepositoryName, BTreeSet<Digest>>,
}

fn prune_store(layout: &Layout, sources: &Sources, policy: &PrunePolicy) -> Result<PruneReport> {
    let start = SystemTime::now();
    let mut cache: HashMap<Digest, Parsed> = HashMap::new();
    restore_trash(layout);
    if policy.dry_run {
        let plan = plan(layout, policy, start, &mut cache)?;
        return Ok(report_of(&plan, true));
    }
    // Read every manifest before taking the lock, so that pushes wait
    // only while the store is listed again and the deletions run.
    plan(layout, policy, start, &mut cache)?;
    let _lock = lock::exclusive(layout)?;
    let plan = plan(layout, policy, start, &mut cache)?;
    let mut report = report_of(&plan, false);
    let mut kept_blobs = BTreeSet::new();
    delete(layout, &plan, start - policy.grace, &mut kept_blobs)?;
    // Blob sources only kept manifests of their repository name (or
    // recorded within the grace period, for a manifest not pushed yet).
    sources.retain(
        |repository, digest| {
            plan.kept_by_repository
                .get(repository)
                .is_some_and(|kept| kept.contains(digest))
        },
        start - policy.grace,
    )?;
    report.items.retain(|item| match item {
        Pruned::Blob { digest, .. } => !kept_blobs.contains(digest),
        _ => true,
    });
    Ok(report)
}

fn report_of(plan: &Plan, dry_run: bool) -> PruneReport {
    let mut items = Vec::new();
    for (repository, tag, digest, age) in &plan.tags {
        items.push(Pruned::Tag {
            repository: repository.to_string(),
            tag: tag.clone(),
            digest: digest.clone(),
            age: *age,
        });
    }
    for (repository, digest, size) in &plan.manifests {
        items.push(Pruned::Manifest {
            repository: repository.to_string(),
            digest: digest.clone(),
            size: *size,
        });
    }
    for (digest, size, _) in &plan.blobs {
        items.push(Pruned::Blob {
            digest: digest.clone(),
            size: *size,
        });
    }
    PruneReport { dry_run, items }
}

/// Decide what goes.
fn plan(
    layout: &Layout,
    policy: &PrunePolicy,
    start: SystemTime,
    cache: &mut HashMap<Digest, Parsed>,
) -> Result<Plan> {
    let fresh_since = start - policy.grace;
    let mut plan = Plan::default();
    let mut referenced: BTreeSet<Digest> = BTreeSet::new();
    for repository in scan_repositories(layout)? {
        let mut roots: Vec<Digest> = Vec::new();
        for (tag, digest, written) in &repository.tags {
            let age = start.duration_since(*written).unwrap_or_default();
            let matched = policy
                .tags
                .iter()
                .any(|p| p.matches(repository.name.as_str(), tag));
            if matched && age > policy.older_than {
                plan.tags
                    .push((repository.name.clone(), tag.clone(), digest.clone(), age));
            } else if let Some(digest) = digest {
                roots.push(digest.clone());
            }
        }
        for (digest, written) in &repository.revisions {
            if *written >= fresh_since {
                roots.push(digest.clone());
            }
        }
        for digest in repository.revisions.keys() {
            if !cache.contains_key(digest) {
                cache.insert(
                    digest.clone(),
                    parse_stored(layout, &repository.name, digest),
                );
            }
        }
        // Kept: the roots, what kept indexes name, referrers of kept
        // manifests; until nothing more is added.
        let mut kept: BTreeSet<Digest> = BTreeSet::new();
        let mut queue = roots;
        loop {
            while let Some(digest) = queue.pop() {
                if !repository.revisions.contains_key(&digest) || !kept.insert(digest.clone()) {
                    continue;
                }
                if let Some(parsed) = cache.get(&digest) {
                    queue.extend(parsed.manifests.iter().cloned());
                }
            }
            let referrers: Vec<Digest> = repository
                .revisions
                .keys()
                .filter(|d| !kept.contains(*d))
                .filter(|d| {
                    cache
                        .get(*d)
                        .and_then(|p| p.subject.as_ref())
                        .is_some_and(|s| kept.contains(s))
                })
                .cloned()
                .collect();
            if referrers.is_empty() {
                break;
            }
            queue = referrers;
        }
        let mut named_here = BTreeSet::new();
        for digest in &kept {
            referenced.insert(digest.clone());
            if let Some(parsed) = cache.get(digest) {
                named_here.extend(parsed.blobs.iter().cloned());
            }
        }
        referenced.extend(named_here.iter().cloned());
        plan.kept_by_repository
            .insert(repository.name.clone(), named_here);
        let doomed: Vec<Digest> = repository
            .revisions
            .keys()
            .filter(|d| !kept.contains(*d))
            .cloned()
            .collect();
        for digest in parents_first(doomed, cache) {
            let size = std::fs::metadata(layout.blob(&digest))
                .map(|m| m.len())
                .unwrap_or(0);
            plan.manifests.push((repository.name.clone(), digest, size));
        }
    }
    for (digest, meta) in scan_blobs(layout)? {
        if !referenced.contains(&digest) && newest(&meta) < fresh_since {
            plan.blobs.push((digest, meta.len(), meta.ino()));
        }
    }
    Ok(plan)
}

/// `doomed` ordered so that a manifest comes before every manifest it
/// names (an index before its platform manifests), so that a prune cut
/// short never leaves an index whose children are gone.
fn parents_first(doomed: Vec<Digest>, cache: &HashMap<Digest, Parsed>) -> Vec<Digest> {
    let set: BTreeSet<&Digest> = doomed.iter().collect();
    let mut parents: BTreeMap<&Digest, usize> = doomed.iter().map(|d| (d, 0)).collect();
    for d in &doomed {
        for child in cache.get(d).map(|p| &p.manifests[..]).unwrap_or(&[]) {
            if set.contains(child) {
                *parents.get_mut(child).expect("in the set") += 1;
            }
        }
    }
    let mut ready: Vec<&Digest> = parents
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| *d)
        .collect();
    let mut order = Vec::new();
    while let Some(d) = ready.pop() {
        order.push(d.clone());
        for child in cache.get(d).map(|p| &p.manifests[..]).unwrap_or(&[]) {
            if let Some(n) = parents.get_mut(child) {
                *n -= 1;
                if *n == 0 {
                    ready.push(child);
                }
            }
        }
    }
    order
}

/// What the stored manifest `digest` of `name` names; nothing when it
/// cannot be read (it cannot be served either).
fn parse_stored(layout: &Layout, name: &RepositoryName, digest: &Digest) -> Parsed {
    let (Ok(media_type), Ok(bytes)) = (
        std::fs::read_to_string(layout.revision(name, digest)),
        std::fs::read(layout.blob(digest)),
    ) else {
        return Parsed::default();
    };
    let subject = referrers::subject_of(&bytes);
    let manifest = Manifest {
        media_type,
        bytes: bytes.into(),
        digest: digest.clone(),
    };
    let mut parsed = Parsed {
        subject,
        ..Parsed::default()
    };
    match manifest.children() {
        Ok(Children::Manifests(ms)) => {
            parsed.manifests = ms.into_iter().map(|d| d.digest).collect()
        }
        Ok(Children::Blobs(bs)) => parsed.blobs = bs.into_iter().map(|d| d.digest).collect(),
        Err(_) => {}
    }
    parsed
}

/// Delete what `plan` names, tags first, then manifests, then blobs.
/// A blob found written since `fresh_since` or replaced since it was
/// planned is kept (and put in `kept`).
fn delete(
    layout: &Layout,
    plan: &Plan,
    fresh_since: SystemTime,
    kept: &mut BTreeSet<Digest>,
) -> Result<()> {
    for (name, tag, _, _) in &plan.tags {
        let Ok(parsed) = tag.parse::<Tag>() else {
            continue;
        };
        remove_file(&layout.tag(name, &parsed))
            .map_err(io_context(format!("deleting tag {name}:{tag}")))?;
    }
    for (name, digest, _) in &plan.manifests {
        remove_file(&layout.revision(name, digest))
            .map_err(io_context(format!("deleting manifest {name}@{digest}")))?;
        if let Ok(bytes) = std::fs::read(layout.blob(digest)) {
            referrers::forget(layout, name, digest, &bytes)?;
        }
    }
    let mut gone = Vec::new();
    for (digest, _, inode) in &plan.blobs {
        if delete_blob(layout, digest, *inode, fresh_since)? {
            gone.push(digest.clone());
        } else {
            kept.insert(digest.clone());
        }
    }
    tidy_repositories(layout, &gone)
}

/// Move the blob aside, check that it is the old file that was planned
/// (not one uploaded again meanwhile, nor one a client was just told
/// about), then unlink it; else put it back. Whether it went.
fn delete_blob(
    layout: &Layout,
    digest: &Digest,
    inode: u64,
    fresh_since: SystemTime,
) -> Result<bool> {
    let path = layout.blob(digest);
    let aside = layout.tmp().join(format!(
        "{TRASH_PREFIX}{}-{}-{}",
        digest.algorithm().as_str(),
        digest.hex(),
        super::files::random_id()
    ));
    let context = || format!("deleting blob {digest}");
    match std::fs::rename(&path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_context(context())(e)),
    }
    let meta = std::fs::metadata(&aside).map_err(io_context(context()))?;
    let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if meta.ino() != inode || written >= fresh_since {
        // The same bytes (the name is their digest): putting them back
        // over a copy uploaded meanwhile loses nothing.
        std::fs::rename(&aside, &path).map_err(io_context(context()))?;
        return Ok(false);
    }
    std::fs::remove_file(&aside).map_err(io_context(context()))?;
    fsync_dir(path.parent().expect("a parent")).map_err(io_context(context()))?;
    Ok(true)
}

/// Remove the records of deleted blobs that are gone now, and the
/// directories of repositories left with no manifest and no tag.
fn tidy_repositories(layout: &Layout, gone: &[Digest]) -> Result<()> {
    for repository in scan_repositories(layout)? {
        for digest in gone {
            let _ = remove_file(&layout.deleted_blob(&repository.name, digest));
        }
        if repository.tags.is_empty() && repository.revisions.is_empty() {
            let manifests = layout.manifests(&repository.name);
            let dir = manifests.parent().expect("a parent").to_path_buf();
            std::fs::remove_dir_all(&manifests).map_err(io_context(format!(
                "removing repository {}",
                repository.name
            )))?;
            let _ = std::fs::remove_dir_all(dir.join(DELETED_BLOBS_DIR));
            remove_empty_parents(&dir, &layout.repositories());
        }
    }
    Ok(())
}

fn remove_empty_parents(dir: &Path, top: &Path) {
    let mut dir = dir.to_path_buf();
    while dir.starts_with(top) && dir != top {
        if std::fs::remove_dir(&dir).is_err() {
            return;
        }
        if !dir.pop() {
            return;
        }
    }
}

fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => fsync_dir(path.parent().expect("a parent")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Put back what a prune killed between moving a blob aside and
/// unlinking it left in `tmp/` (the next prune decides again), where no
/// copy has taken its place; remove the rest. [`Storage::open`] calls
/// this before it empties `tmp/`.
pub(super) fn restore_trash(layout: &Layout) {
    let Ok(entries) = std::fs::read_dir(layout.tmp()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(TRASH_PREFIX) else {
            continue;
        };
        let digest = rest
            .rsplit_once('-')
            .and_then(|(named, _)| named.split_once('-'))
            .and_then(|(algorithm, hex)| format!("{algorithm}:{hex}").parse::<Digest>().ok());
        if let Some(digest) = digest {
            let path = layout.blob(&digest);
            if !path.exists() && super::files::rename_into_place(&entry.path(), &path).is_ok() {
                continue;
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Every repository with its tags and manifest records.
fn scan_repositories(layout: &Layout) -> Result<Vec<Repository>> {
    let mut names = Vec::new();
    find_repositories(&layout.repositories(), "", &mut names)?;
    let mut found = Vec::new();
    for name in names {
        let Ok(name) = name.parse::<RepositoryName>() else {
            continue;
        };
        let mut tags = Vec::new();
        for entry in read_dir(&layout.tags(&name))? {
            let Ok(tag) = entry.file_name().into_string() else {
                continue;
            };
            if tag.parse::<Tag>().is_err() {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let digest = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| t.trim().parse().ok());
            let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            tags.push((tag, digest, written));
        }
        tags.sort();
        let mut revisions = BTreeMap::new();
        let root = layout.manifests(&name).join("revisions");
        for algorithm in read_dir(&root)? {
            let Some(algorithm) = algorithm.file_name().to_str().map(str::to_string) else {
                continue;
            };
            for entry in read_dir(&root.join(&algorithm))? {
                let Some(hex) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                revisions.insert(digest, newest(&meta));
            }
        }
        found.push(Repository {
            name,
            tags,
            revisions,
        });
    }
    Ok(found)
}

fn find_repositories(dir: &Path, prefix: &str, found: &mut Vec<String>) -> Result<()> {
    for entry in read_dir(dir)? {
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        if file_name == MANIFESTS_DIR {
            if !prefix.is_empty() {
                found.push(prefix.to_string());
            }
            continue;
        }
        if file_name == DELETED_BLOBS_DIR {
            continue;
        }
        let name = if prefix.is_empty() {
            file_name
        } else {
            format!("{prefix}/{file_name}")
        };
        find_repositories(&entry.path(), &name, found)?;
    }
    Ok(())
}

/// Every blob with its metadata.
fn scan_blobs(layout: &Layout) -> Result<Vec<(Digest, std::fs::Metadata)>> {
    let mut found = Vec::new();
    let root = layout.blobs();
    for algorithm in read_dir(&root)? {
        let Some(algorithm) = algorithm.file_name().to_str().map(str::to_string) else {
            continue;
        };
        for prefix in read_dir(&root.join(&algorithm))? {
            for entry in read_dir(&prefix.path())? {
                let Some(hex) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Ok(digest) = format!("{algorithm}:{hex}").parse::<Digest>() else {
                    continue;
                };
                if let Ok(meta) = entry.metadata() {
                    found.push((digest, meta));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(io_context(format!("listing {}", dir.display()))(e)),
    }
}

/// Uploads the server's sweep removes as stale: untouched on disk for
/// longer than [`STALE_UPLOAD`].
fn stale_uploads(layout: &Layout) -> Vec<Pruned> {
    let mut found = Vec::new();
    for entry in read_dir(&layout.uploads()).unwrap_or_default() {
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        let data: PathBuf = layout.upload_data(&id);
        let meta = std::fs::metadata(&data).or_else(|_| entry.metadata());
        let Ok(meta) = meta else { continue };
        let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let age = SystemTime::now()
            .duration_since(written)
            .unwrap_or_default();
        if age > STALE_UPLOAD {
            let size = if meta.is_file() { meta.len() } else { 0 };
            found.push(Pruned::Upload { id, size });
        }
    }
    found.sort_by(|a, b| format!("{a}").cmp(&format!("{b}")));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_tags_and_repositories() {
        let p: TagPattern = "*_*".parse().unwrap();
        assert!(p.matches("org/img", "1234_latest"));
        assert!(!p.matches("org/img", "latest"));
        let p: TagPattern = "org/*:change_?_[a-c]*".parse().unwrap();
        assert!(p.matches("org/deep/img", "change_1_beta"));
        assert!(!p.matches("other/img", "change_1_beta"));
        assert!(!p.matches("org/img", "change_1_delta"));
        let p: TagPattern = "v[!0-9]".parse().unwrap();
        assert!(p.matches("x", "vx") && !p.matches("x", "v1"));
        for (bad, says) in [
            ("", "tag pattern is empty"),
            ("[abc", "not closed"),
            ("a/b", "'/' cannot occur"),
            ("org/*:", "tag pattern is empty"),
            ("org img:*", "repository pattern: ' ' cannot occur"),
        ] {
            let error = bad.parse::<TagPattern>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn a_blob_a_killed_prune_left_aside_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let layout = storage.layout().clone();
        let (kept, copied) = (b"aside".to_vec(), b"copied".to_vec());
        let (kept_digest, copied_digest) = (Digest::sha256(&kept), Digest::sha256(&copied));
        for (digest, bytes) in [(&kept_digest, &kept), (&copied_digest, &copied)] {
            let aside = layout.tmp().join(format!(
                "{TRASH_PREFIX}{}-{}-{}",
                digest.algorithm().as_str(),
                digest.hex(),
                super::super::files::random_id()
            ));
            std::fs::write(aside, bytes).unwrap();
        }
        // A copy of the second was uploaded again meanwhile.
        std::fs::create_dir_all(layout.blob(&copied_digest).parent().unwrap()).unwrap();
        std::fs::write(layout.blob(&copied_digest), &copied).unwrap();
        drop(storage);
        Storage::open(dir.path()).unwrap();
        assert_eq!(std::fs::read(layout.blob(&kept_digest)).unwrap(), kept);
        assert_eq!(std::fs::read(layout.blob(&copied_digest)).unwrap(), copied);
        assert_eq!(std::fs::read_dir(layout.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn sizes_and_ages_read_as_people_write_them() {
        assert_eq!(show_size(512), "512 B");
        assert_eq!(show_size(1536), "1.5 KiB");
        assert_eq!(show_size(3 << 20), "3.0 MiB");
        assert_eq!(show_age(Duration::from_secs(9 * 86400 + 5)), "9d");
        assert_eq!(show_age(Duration::from_secs(59)), "59s");
    }
}
