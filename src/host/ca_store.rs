//! The system CA store, so every TLS client on the host (curl, git,
//! buildah's helpers) trusts the buildset registry. Debian and
//! RHEL/Fedora keep local anchors in different directories and rebuild
//! their bundle with different commands; the rebuild runs only when the
//! anchor changed.

use std::path::PathBuf;
use std::process::Command;

use super::HostPaths;

/// File name of our anchor; one buildset registry per host at a time, so a
/// newer registry's CA replaces the older one.
pub const ANCHOR_NAME: &str = "speculative-images-buildset-registry.crt";

/// A distribution family's CA store layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStore {
    /// `/usr/local/share/ca-certificates` + `update-ca-certificates`.
    Debian,
    /// `/etc/pki/ca-trust/source/anchors` + `update-ca-trust extract`.
    RedHat,
}

impl CaStore {
    /// The store this host has, if any.
    pub fn detect(paths: &HostPaths) -> Option<CaStore> {
        [CaStore::Debian, CaStore::RedHat]
            .into_iter()
            .find(|store| paths.path(store.anchor_dir()).is_dir())
    }

    /// Directory of local anchors (host path).
    pub fn anchor_dir(self) -> &'static str {
        match self {
            CaStore::Debian => "/usr/local/share/ca-certificates",
            CaStore::RedHat => "/etc/pki/ca-trust/source/anchors",
        }
    }

    /// Where our anchor goes, on disk.
    pub fn anchor_path(self, paths: &HostPaths) -> PathBuf {
        paths.path(self.anchor_dir()).join(ANCHOR_NAME)
    }

    /// The command that rebuilds the bundle.
    pub fn update_command(self) -> Command {
        match self {
            CaStore::Debian => Command::new("update-ca-certificates"),
            CaStore::RedHat => {
                let mut cmd = Command::new("update-ca-trust");
                cmd.arg("extract");
                cmd
            }
        }
    }

    /// Rebuild the bundle; the error carries the command's output.
    pub fn update(self) -> anyhow::Result<()> {
        super::run_checked(self.update_command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_anchor_directory() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::under(dir.path());
        assert_eq!(CaStore::detect(&paths), None);
        std::fs::create_dir_all(paths.path("/etc/pki/ca-trust/source/anchors")).unwrap();
        assert_eq!(CaStore::detect(&paths), Some(CaStore::RedHat));
        std::fs::create_dir_all(paths.path("/usr/local/share/ca-certificates")).unwrap();
        assert_eq!(CaStore::detect(&paths), Some(CaStore::Debian));
        assert_eq!(
            CaStore::Debian.anchor_path(&paths),
            dir.path()
                .join("usr/local/share/ca-certificates")
                .join(ANCHOR_NAME)
        );
    }
}
