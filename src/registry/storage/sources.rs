//! Blob sources: where a blob this registry does not hold yet can be
//! fetched from. The executor records them (`PUT /v2/<name>/_speculative/sources`)
//! when it copies only the manifests of an image from the intermediate
//! registry; a manifest naming a recorded blob is accepted, a HEAD of it
//! answers from the record, and the first GET fetches it
//! ([`pull_through`](crate::registry::pull_through)).
//!
//! On disk, one file per repository and upstream (registry URL and
//! repository there), mode 0600 as it holds the credential to pull with:
//! `sources/<sha256 of repository, URL, upstream repository>.json`, each
//! replaced atomically. Recording again merges the blobs and replaces the
//! credential (a fresh token). The files are read once when the storage
//! opens; lookups go to the index in memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::paths::Layout;
use super::{io_context, Result};
use crate::host::atomic::{write_atomic, Ownership};
use crate::oci::{Digest, RepositoryName};

/// The registry a recorded blob lives in, and how to pull it there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// `https://host[:port]` of the registry (`http://` only for tests).
    pub url: url::Url,
    /// The repository there that holds the blobs.
    pub repository: String,
    /// The user to pull as (`token` with a delegated token as password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Its password or token; never logged nor shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM certificate(s) to trust for it instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url.as_str())
            .field("repository", &self.repository)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl Upstream {
    /// `url`, repository `repository`: for log lines (no credential).
    pub fn describe(&self) -> String {
        format!(
            "{}, repository {}",
            self.url.as_str().trim_end_matches('/'),
            self.repository
        )
    }

    /// A key naming this upstream and credential, to share one client.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        Digest::sha256(text.as_bytes()).hex().to_string()
    }
}

/// One recorded blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size, as the manifest naming it says.
    pub size: u64,
    /// Its media type, if given.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Fetch it in the background, before a client asks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prefetch: bool,
}

/// Where one blob of a repository comes from.
#[derive(Debug, Clone)]
pub struct BlobSource {
    /// The registry and repository holding it.
    pub upstream: Arc<Upstream>,
    /// Its size.
    pub size: u64,
    /// Its media type, if recorded.
    pub media_type: Option<String>,
    /// Whether to fetch it before a client asks.
    pub prefetch: bool,
}

/// One file of records.
#[derive(Serialize, Deserialize)]
struct SourceFile {
    repository: String,
    upstream: Upstream,
    blobs: Vec<SourcedBlob>,
}

/// Per repository, the source of each recorded blob.
type Index = HashMap<RepositoryName, HashMap<Digest, BlobSource>>;

/// The records, in memory and on disk.
pub struct Sources {
    dir: PathBuf,
    index: RwLock<Index>,
    /// Held while a file is rewritten (read, merge, replace).
    writing: Mutex<()>,
}

impl Sources {
    /// The records under `layout`, read from disk; unreadable files are
    /// skipped with a warning.
    pub fn load(layout: &Layout) -> Sources {
        let sources = Sources {
            dir: layout.sources(),
            index: RwLock::new(HashMap::new()),
            writing: Mutex::new(()),
        };
        sources.reload();
        sources
    }

    /// Read the files again (after a prune changed them).
    pub fn reload(&self) {
        let mut index = Index::new();
        for (path, file) in read_files(&self.dir) {
            let Ok(repository) = file.repository.parse::<RepositoryName>() else {
                tracing::warn!("{}: not a repository name; ignored", path.display());
                continue;
            };
            add(
                &mut index,
                &repository,
                Arc::new(file.upstream),
                &file.blobs,
            );
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
    }

    /// The source of `digest` in `repository`, if recorded.
    pub fn get(&self, repository: &RepositoryName, digest: &Digest) -> Option<BlobSource> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.get(repository)?.get(digest).cloned()
    }

    /// Whether `digest` is recorded in `repository`.
    pub fn contains(&self, repository: &RepositoryName, digest: &Digest) -> bool {
        self.get(repository, digest).is_some()
    }

    /// Every record of `repository`, by digest.
    pub fn of(&self, repository: &RepositoryName) -> BTreeMap<Digest, BlobSource> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index
            .get(repository)
            .map(|m| m.iter().map(|(d, s)| (d.clone(), s.clone())).collect())
            .unwrap_or_default()
    }

    /// Every recorded blob marked for prefetching, with its repository.
    pub fn prefetched(&self) -> Vec<(RepositoryName, Digest)> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<(RepositoryName, Digest)> = index
            .iter()
            .flat_map(|(repository, blobs)| {
                blobs
                    .iter()
                    .filter(|(_, source)| source.prefetch)
                    .map(move |(digest, _)| (repository.clone(), digest.clone()))
            })
            .collect();
        found.sort();
        found
    }

    /// Record that `blobs` of `repository` live at `upstream` (blocking:
    /// one fsynced file write). Returns how many blobs the file holds.
    pub fn record(
        &self,
        repository: &RepositoryName,
        upstream: Upstream,
        blobs: &[SourcedBlob],
    ) -> Result<usize> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path(repository, &upstream);
        let mut merged: BTreeMap<Digest, SourcedBlob> = BTreeMap::new();
        if let Some(old) = read_file(&path) {
            merged.extend(old.blobs.into_iter().map(|b| (b.digest.clone(), b)));
        }
        merged.extend(blobs.iter().map(|b| (b.digest.clone(), b.clone())));
        let file = SourceFile {
            repository: repository.to_string(),
            upstream,
            blobs: merged.into_values().collect(),
        };
        write_file(&path, &file)?;
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        add(&mut index, repository, Arc::new(file.upstream), &file.blobs);
        Ok(file.blobs.len())
    }

    /// Keep only the records `keep` says to, and those of files written
    /// since `fresh_since` (blocking; a prune calls it). A file left with
    /// no record is removed.
    pub fn retain(
        &self,
        keep: impl Fn(&RepositoryName, &Digest) -> bool,
        fresh_since: SystemTime,
    ) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        for (path, mut file) in read_files(&self.dir) {
            let fresh = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= fresh_since);
            let Ok(repository) = file.repository.parse::<RepositoryName>() else {
                continue;
            };
            if fresh {
                continue;
            }
            let before = file.blobs.len();
            file.blobs.retain(|b| keep(&repository, &b.digest));
            if file.blobs.is_empty() {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_context(format!("removing {}", path.display()))(e)),
                }
            } else if file.blobs.len() != before {
                write_file(&path, &file)?;
            }
        }
        drop(_writing);
        self.reload();
        Ok(())
    }

    /// Drop the record of `digest` in `repository` (blocking; a blob
    /// DELETE of a blob that is only recorded). Whether there was one.
    pub fn forget(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        if !self.contains(repository, digest) {
            return Ok(false);
        }
        let name = repository.to_string();
        let stale = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        // Every other record stays: only this pair fails `keep`, and no
        // file counts as fresh.
        self.retain(|r, d| !(r.as_str() == name && d == digest), stale)?;
        Ok(true)
    }

    /// The file of `repository`'s records from `upstream`.
    fn path(&self, repository: &RepositoryName, upstream: &Upstream) -> PathBuf {
        let key = format!(
            "{repository}\n{}\n{}",
            upstream.url.as_str(),
            upstream.repository
        );
        self.dir
            .join(format!("{}.json", Digest::sha256(key.as_bytes()).hex()))
    }
}

/// Add `blobs` from `upstream` to `repository`'s entries.
fn add(
    index: &mut Index,
    repository: &RepositoryName,
    upstream: Arc<Upstream>,
    blobs: &[SourcedBlob],
) {
    let entries = index.entry(repository.clone()).or_default();
    for blob in blobs {
        entries.insert(
            blob.digest.clone(),
            BlobSource {
                upstream: upstream.clone(),
                size: blob.size,
                media_type: blob.media_type.clone(),
                prefetch: blob.prefetch,
            },
        );
    }
}

fn read_file(path: &Path) -> Option<SourceFile> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!("{}: unreadable blob sources ({e}); ignored", path.display());
            None
        }
    }
}

/// Every readable file of records, sorted by name.
fn read_files(dir: &Path) -> Vec<(PathBuf, SourceFile)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| read_file(&p).map(|f| (p, f)))
        .collect()
}

fn write_file(path: &Path, file: &SourceFile) -> Result<()> {
    let bytes = serde_json::to_vec(file).expect("records serialise");
    write_atomic(path, &bytes, Ownership::exactly(0o600, None), 0o700).map_err(io_context(format!(
        "recording blob sources in {}",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn digests(sources: &Sources, repository: &RepositoryName) -> BTreeSet<Digest> {
        sources.of(repository).into_keys().collect()
    }

    fn upstream(password: &str) -> Upstream {
        Upstream {
            url: "https://inter.example.org:5000".parse().unwrap(),
            repository: "org/img".into(),
            username: Some("token".into()),
            password: Some(password.into()),
            ca_pem: None,
        }
    }

    fn blob(content: &str) -> SourcedBlob {
        SourcedBlob {
            digest: Digest::sha256(content.as_bytes()),
            size: content.len() as u64,
            media_type: None,
            prefetch: false,
        }
    }

    #[test]
    fn records_merge_survive_a_reload_and_hide_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let sources = Sources::load(&layout);
        let repo: RepositoryName = "org/img".parse().unwrap();
        assert_eq!(
            sources
                .record(&repo, upstream("one"), &[blob("a")])
                .unwrap(),
            1
        );
        assert_eq!(
            sources
                .record(&repo, upstream("two"), &[blob("b")])
                .unwrap(),
            2
        );
        let again = Sources::load(&layout);
        assert_eq!(digests(&again, &repo), digests(&sources, &repo));
        let source = again.get(&repo, &blob("a").digest).unwrap();
        assert_eq!(source.upstream.password.as_deref(), Some("two"));
        assert_eq!(source.size, 1);
        assert!(!format!("{source:?}").contains("two"));
        let other: RepositoryName = "org/other".parse().unwrap();
        assert!(!again.contains(&other, &blob("a").digest));
        // Private: the file holds a credential.
        use std::os::unix::fs::PermissionsExt as _;
        for entry in std::fs::read_dir(layout.sources()).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn retain_drops_what_is_not_kept_unless_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let sources = Sources::load(&layout);
        let repo: RepositoryName = "org/img".parse().unwrap();
        sources
            .record(&repo, upstream("x"), &[blob("a"), blob("b")])
            .unwrap();
        let kept = blob("a").digest;
        // Written just now: kept whatever the manifests say.
        sources
            .retain(
                |_, _| false,
                SystemTime::now() - std::time::Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(digests(&sources, &repo).len(), 2);
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        sources.retain(|_, d| *d == kept, later).unwrap();
        assert_eq!(digests(&sources, &repo), BTreeSet::from([kept]));
        sources.retain(|_, _| false, later).unwrap();
        assert!(digests(&sources, &repo).is_empty());
        assert_eq!(std::fs::read_dir(layout.sources()).unwrap().count(), 0);
    }
}
