//! Credentials for one push, in a private temporary directory removed
//! when dropped: a docker-format `config.json` (docker reads it through
//! `DOCKER_CONFIG`, podman and buildah through `--authfile`) and, for the
//! tools that take one per command, a certificate directory holding the
//! registry's CA. Nothing is left in the user's own files.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::{BuildError, RegistryLogin};
use crate::oci::reference::is_docker_hub;

/// The key docker's `config.json` keeps Docker Hub's credentials under.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A temporary credentials directory.
pub struct AuthFile {
    dir: tempfile::TempDir,
}

impl AuthFile {
    /// Write the credentials of `login`.
    pub fn write(login: &RegistryLogin) -> Result<AuthFile, BuildError> {
        let dir = tempfile::Builder::new()
            .prefix("speculative-images-auth-")
            .tempdir()
            .map_err(|e| BuildError::file("creating a directory in", std::env::temp_dir(), e))?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", login.username, login.password));
        // The docker CLI files Docker Hub's credentials under its old index URL.
        let key = if is_docker_hub(&login.authority) {
            DOCKER_HUB_AUTH_KEY.to_string()
        } else {
            login.authority.clone()
        };
        let config = serde_json::json!({"auths": {key: {"auth": auth}}});
        let path = dir.path().join("config.json");
        write_private(&path, config.to_string().as_bytes())?;
        if let Some(ca) = &login.ca_pem {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs)
                .map_err(|e| BuildError::file("creating", certs.clone(), e))?;
            write_private(&certs.join("ca.crt"), ca.as_bytes())?;
        }
        Ok(AuthFile { dir })
    }

    /// The directory to use as `DOCKER_CONFIG`.
    pub fn docker_config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `config.json` to pass as `--authfile`.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// The directory to pass as `--cert-dir`, if a CA was given.
    pub fn cert_dir(&self) -> Option<PathBuf> {
        let certs = self.dir.path().join("certs");
        certs.exists().then_some(certs)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| BuildError::file("writing the registry credentials to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_and_removed_on_drop() {
        let login = RegistryLogin {
            authority: "127.0.0.1:5000".into(),
            username: "zuul".into(),
            password: "pw".into(),
            ca_pem: Some("PEM".into()),
        };
        let file = AuthFile::write(&login).unwrap();
        let text = std::fs::read_to_string(file.auth_file()).unwrap();
        assert_eq!(
            text,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"enV1bDpwdw=="}}}"#
        );
        let mode = std::fs::metadata(file.auth_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = file.cert_dir().unwrap().join("ca.crt");
        assert_eq!(std::fs::read_to_string(ca).unwrap(), "PEM");
        let dir = file.docker_config_dir().to_path_buf();
        let hub = AuthFile::write(&RegistryLogin {
            authority: "docker.io".into(),
            ..login.clone()
        })
        .unwrap();
        let text = std::fs::read_to_string(hub.auth_file()).unwrap();
        assert!(text.contains(r#""https://index.docker.io/v1/":"#), "{text}");
        drop(file);
        assert!(!dir.exists());
    }
}
