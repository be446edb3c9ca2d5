//! Where an instance keeps its files, and how they are written.
//!
//! ```text
//! <root>/                      0700, created by run_buildset_registry
//!   instance.json              {host, port}: written last, so its presence
//!                              means every file below is complete
//!   config.json         0600   the server's ServerConfig (token secret,
//!                              bcrypt hash of the password)
//!   password            0600   the password, returned on every run
//!   tls/ca.crt                 the CA clients trust (`buildset_registry.cert`)
//!   tls/server.crt             server certificate + CA, what the server presents
//!   tls/server.key      0600   the server's private key
//!   bin/buildset-registry      a copy of the module binary: Ansible deletes
//!                              the module after the task, the server outlives it
//!   storage/                   blobs, manifests and uploads
//!   registry.pid               pid of the server, when started detached
//!   registry.log        0600   the server's stdout and stderr
//! ```
//!
//! Every file is written beside its final name, fsynced and renamed, so a
//! crash never leaves a half-written file under its real name.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The paths of one instance under its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLayout {
    root: PathBuf,
}

/// Every entry directly under the root that belongs to an instance (what
/// `state: absent` removes; anything else there is left alone).
const OWN_ENTRIES: [&str; 8] = [
    "instance.json",
    "config.json",
    "password",
    "tls",
    "bin",
    "storage",
    "registry.pid",
    "registry.log",
];

impl InstanceLayout {
    /// The layout under `root` (an absolute path).
    pub fn new(root: impl Into<PathBuf>) -> InstanceLayout {
        InstanceLayout { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `instance.json`: the identity, written last.
    pub fn identity(&self) -> PathBuf {
        self.root.join("instance.json")
    }

    /// `config.json`: the server's configuration.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// `password`: the registry user's password.
    pub fn password(&self) -> PathBuf {
        self.root.join("password")
    }

    /// `tls/`.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// `tls/ca.crt`: what clients trust.
    pub fn ca(&self) -> PathBuf {
        self.tls_dir().join("ca.crt")
    }

    /// `tls/server.crt`: the chain the server presents.
    pub fn server_chain(&self) -> PathBuf {
        self.tls_dir().join("server.crt")
    }

    /// `tls/server.key`: the server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.tls_dir().join("server.key")
    }

    /// `bin/buildset-registry`: the server's own copy of the binary.
    pub fn binary(&self) -> PathBuf {
        self.root.join("bin").join("buildset-registry")
    }

    /// `storage/`.
    pub fn storage(&self) -> PathBuf {
        self.root.join("storage")
    }

    /// `registry.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("registry.pid")
    }

    /// `registry.log`.
    pub fn log(&self) -> PathBuf {
        self.root.join("registry.log")
    }

    /// The instance's own entries that exist under the root.
    pub fn existing_entries(&self) -> Vec<PathBuf> {
        OWN_ENTRIES
            .iter()
            .map(|e| self.root.join(e))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect()
    }

    /// Create the root (0700) and its subdirectories.
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        for dir in [
            self.root.clone(),
            self.tls_dir(),
            self.storage(),
            self.root.join("bin"),
        ] {
            fs::create_dir_all(&dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", self.root.display()))
    }

    /// The last `lines` lines of the server's log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Write `contents` to `path` atomically with exactly permissions `mode`
/// (the host's one atomic writer: beside, fsync, rename, fsync the
/// directory).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use crate::host::atomic::{self, Ownership};
    atomic::write_atomic(path, contents, Ownership::exactly(mode, None), 0o700)
        .with_context(|| format!("writing {}", path.display()))
}

/// Copy the file `from` to `to` (mode 0755) unless `to` already holds the
/// same bytes; returns whether it copied.
pub fn install_binary(from: &Path, to: &Path) -> anyhow::Result<bool> {
    let same = match (fs::metadata(from), fs::metadata(to)) {
        (Ok(a), Ok(b)) if a.len() == b.len() => fs::read(from)
            .ok()
            .zip(fs::read(to).ok())
            .is_some_and(|(x, y)| x == y),
        _ => false,
    };
    if same {
        return Ok(false);
    }
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_atomic(to, &bytes, 0o755)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn writes_atomically_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn installs_a_binary_once() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("module");
        let to = dir.path().join("copy");
        fs::write(&from, b"\x7fELF...").unwrap();
        assert!(install_binary(&from, &to).unwrap());
        assert!(!install_binary(&from, &to).unwrap());
        assert_eq!(fs::metadata(&to).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn lists_only_its_own_entries() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path());
        layout.create_dirs().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let mut names: Vec<String> = layout
            .existing_entries()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["bin", "storage", "tls"]);
    }
}
