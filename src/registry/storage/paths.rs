//! Every path of the registry's storage, built here and nowhere else.
//!
//! ```text
//! <root>/
//! ├── blobs/
//! │   └── <algorithm>/<first 2 hex>/<hex>     bytes of every blob and manifest,
//! │                                           named by their verified digest
//! ├── repositories/
//! │   └── <name, any depth>/                  e.g. quay.io/org/img
//! │       ├── _manifests/                     (`_` cannot start a name component)
//! │       │   ├── revisions/<algorithm>/<hex> media type of a manifest pushed here
//! │       │   ├── tags/<tag>                  digest the tag points at
//! │       │   └── referrers/<algorithm>/<hex>/ one file per manifest of this repository
//! │       │       └── <algorithm>-<hex>       whose `subject` is that digest: its
//! │       │                                   descriptor (JSON) as the referrers API lists it
//! │       └── _deleted_blobs/<algorithm>/<hex> a blob deleted through this repository
//! │                                           (blobs are shared; it stays for the others)
//! ├── uploads/
//! │   └── <32 hex id>/
//! │       ├── repository                      name of the repository it is for
//! │       └── data                            bytes received so far
//! ├── sources/
//! │   └── <sha256 hex>.json                   blobs of a repository not stored here
//! │                                           yet, where they live upstream and the
//! │                                           credential to pull them (mode 0600;
//! │                                           see `storage::sources`)
//! ├── tmp/                                    files being written (uploads done,
//! │                                           blobs being fetched), renamed into
//! │                                           place when complete; emptied at start
//! └── prune.lock                              held shared by manifest PUTs, exclusive
//!                                             by a prune (see `storage::lock`)
//! ```
//!
//! Content enters `blobs/` only by `rename` of a complete, fsynced, verified
//! file, so a crash leaves at most an orphan in `uploads/` or `tmp/`.

use std::path::{Path, PathBuf};

use crate::oci::{Digest, RepositoryName, Tag};

/// Name of the per-repository directory holding revisions and tags.
pub const MANIFESTS_DIR: &str = "_manifests";

/// Name of the per-repository directory recording deleted blobs.
pub const DELETED_BLOBS_DIR: &str = "_deleted_blobs";

/// The on-disk layout under one root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of all content.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where the content named `digest` lives.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs()
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    /// Directory of all repositories.
    pub fn repositories(&self) -> PathBuf {
        self.root.join("repositories")
    }

    /// The directory of a repository.
    fn repository(&self, name: &RepositoryName) -> PathBuf {
        let mut path = self.repositories();
        for component in name.components() {
            path.push(component);
        }
        path
    }

    /// The `_manifests` directory of a repository; a repository exists
    /// when this exists.
    pub fn manifests(&self, name: &RepositoryName) -> PathBuf {
        self.repository(name).join(MANIFESTS_DIR)
    }

    /// The directory of the descriptors of `name`'s manifests whose
    /// `subject` is `subject`.
    pub fn referrers(&self, name: &RepositoryName, subject: &Digest) -> PathBuf {
        self.manifests(name)
            .join("referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    /// The descriptor of `referrer` among the referrers of `subject`.
    pub fn referrer(&self, name: &RepositoryName, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers(name, subject).join(format!(
            "{}-{}",
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    /// The record that blob `digest` was deleted through `name`.
    pub fn deleted_blob(&self, name: &RepositoryName, digest: &Digest) -> PathBuf {
        self.repository(name)
            .join(DELETED_BLOBS_DIR)
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The record that manifest `digest` was pushed to `name`, holding its
    /// media type.
    pub fn revision(&self, name: &RepositoryName, digest: &Digest) -> PathBuf {
        self.manifests(name)
            .join("revisions")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Directory of a repository's tags.
    pub fn tags(&self, name: &RepositoryName) -> PathBuf {
        self.manifests(name).join("tags")
    }

    /// The file holding the digest `tag` points at.
    pub fn tag(&self, name: &RepositoryName, tag: &Tag) -> PathBuf {
        self.tags(name).join(tag.as_str())
    }

    /// Directory of the blob source records.
    pub fn sources(&self) -> PathBuf {
        self.root.join("sources")
    }

    /// Directory of all uploads in progress.
    pub fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// Directory of one upload (`id` must be validated by the caller).
    pub fn upload(&self, id: &str) -> PathBuf {
        self.uploads().join(id)
    }

    /// Bytes received so far by an upload.
    pub fn upload_data(&self, id: &str) -> PathBuf {
        self.upload(id).join("data")
    }

    /// The repository an upload is for.
    pub fn upload_repository(&self, id: &str) -> PathBuf {
        self.upload(id).join("repository")
    }

    /// The prune lock's file.
    pub fn prune_lock(&self) -> PathBuf {
        self.root.join("prune.lock")
    }

    /// Directory of files being written.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh file name under [`Layout::tmp`].
    pub fn tmp_file(&self) -> PathBuf {
        self.tmp().join(super::files::random_id())
    }
}
