//! Host configuration files, one format per file; every edit atomic,
//! idempotent and able to produce a diff.
//!
//! Each format file is a pure function from the old content (or none) to
//! the new content: it keeps whatever it does not own and returns the old
//! text unchanged when there is nothing to do. [`edit::FileEdit`] wraps
//! such a result with its path so a caller can first plan every file
//! (failing before anything is written), then show diffs, then write only
//! the files that differ. [`HostPaths`] roots every path, so the logic runs
//! on a temporary directory in tests and on `/` for real.

pub mod atomic;
pub mod buildkitd_toml;
pub mod buildset_clients;
pub mod ca_store;
pub mod certs_d;
pub mod daemon_json;
pub mod docker_config;
pub mod docker_daemon;
pub mod docker_preload;
pub mod edit;
pub mod etc_hosts;
pub mod registries_conf;
pub mod users;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::zuul::BUILDSET_REGISTRY_ALIAS;

pub use edit::FileEdit;

/// Whether `location` (a mirror URL or `host:port[/path]`) names the
/// registry alias but not `current`: a mirror of an earlier buildset
/// registry, dead now that the alias points elsewhere.
pub fn is_stale_alias(location: &str, current: &str) -> bool {
    let bare = |l: &str| {
        l.trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    };
    let (location, current) = (bare(location), bare(current));
    let authority = location.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host == BUILDSET_REGISTRY_ALIAS && location != current
}

/// Where the host's files are: the real root, or a directory standing in
/// for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    root: PathBuf,
}

impl HostPaths {
    /// The real host.
    pub fn system() -> Self {
        HostPaths { root: "/".into() }
    }

    /// A directory standing in for `/`.
    pub fn under(root: impl Into<PathBuf>) -> Self {
        HostPaths { root: root.into() }
    }

    /// Whether these are the real host's paths (commands and daemons only
    /// act on those).
    pub fn is_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The on-disk path of an absolute host path (`/etc/hosts`).
    pub fn path(&self, absolute: impl AsRef<Path>) -> PathBuf {
        let rel = absolute
            .as_ref()
            .strip_prefix("/")
            .unwrap_or(absolute.as_ref());
        self.root.join(rel)
    }

    /// `/etc/docker/daemon.json`.
    pub fn daemon_json(&self) -> PathBuf {
        self.path("/etc/docker/daemon.json")
    }

    /// `/etc/docker/certs.d`.
    pub fn docker_certs_d(&self) -> PathBuf {
        self.path("/etc/docker/certs.d")
    }

    /// `/etc/containers/registries.conf`.
    pub fn registries_conf(&self) -> PathBuf {
        self.path("/etc/containers/registries.conf")
    }

    /// `/etc/buildkit/buildkitd.toml`.
    pub fn buildkitd_toml(&self) -> PathBuf {
        self.path("/etc/buildkit/buildkitd.toml")
    }

    /// `/etc/hosts`.
    pub fn etc_hosts(&self) -> PathBuf {
        self.path("/etc/hosts")
    }

    /// `/etc/passwd`.
    pub fn etc_passwd(&self) -> PathBuf {
        self.path("/etc/passwd")
    }

    /// `/var/run/docker.pid`.
    pub fn docker_pid_file(&self) -> PathBuf {
        self.path("/var/run/docker.pid")
    }

    /// The host path an on-disk path stands for, for messages and diffs.
    pub fn display(&self, on_disk: &Path) -> String {
        match on_disk.strip_prefix(&self.root) {
            Ok(rel) if !self.is_system() => Path::new("/").join(rel).display().to_string(),
            _ => on_disk.display().to_string(),
        }
    }
}

/// Run a host command (update-ca-certificates, docker pull, ...); a failure
/// carries the command and its stderr.
pub(crate) fn run_checked(mut cmd: Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_alias_mirrors() {
        let ours = "zuul-jobs.buildset-registry:6000/quay.io";
        assert!(is_stale_alias(
            "zuul-jobs.buildset-registry:5000/quay.io",
            ours
        ));
        assert!(!is_stale_alias(ours, ours));
        assert!(!is_stale_alias("quay.io", ours));
        assert!(is_stale_alias(
            "https://zuul-jobs.buildset-registry:5000/",
            "https://zuul-jobs.buildset-registry:6000/"
        ));
        assert!(!is_stale_alias(
            "https://zuul-jobs.buildset-registry:6000",
            "https://zuul-jobs.buildset-registry:6000/"
        ));
        assert!(!is_stale_alias(
            "https://mirror.example.org/",
            "https://zuul-jobs.buildset-registry:6000/"
        ));
    }

    #[test]
    fn roots_paths() {
        let paths = HostPaths::under("/tmp/x");
        assert_eq!(
            paths.daemon_json(),
            PathBuf::from("/tmp/x/etc/docker/daemon.json")
        );
        assert_eq!(
            paths.display(&paths.daemon_json()),
            "/etc/docker/daemon.json"
        );
        let system = HostPaths::system();
        assert_eq!(system.etc_hosts(), PathBuf::from("/etc/hosts"));
        assert_eq!(system.display(&system.etc_hosts()), "/etc/hosts");
    }
}
