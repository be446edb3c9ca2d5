//! Helpers shared by the build, upload and promote tests: running a module
//! the way Ansible does, and cleaning up what a test put into the shared
//! Docker daemon.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// Run module `name` as Ansible would: the binary with one args file,
/// `HOME` set to `home`. Returns the one JSON object it printed.
pub fn run_module(name: &str, mut args: Value, home: &Path) -> Value {
    args["_ansible_module_name"] = json!(format!("speculative.images.{name}"));
    let file = tempfile::NamedTempFile::new().expect("args file");
    std::fs::write(file.path(), args.to_string()).expect("write args");
    let out = Command::new(env!("CARGO_BIN_EXE_speculative-images"))
        .arg(file.path())
        .env("HOME", home)
        .output()
        .expect("run the module binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{name} printed no JSON ({e}):\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The module's failure message, or a panic showing its whole result.
pub fn failure_msg(result: &Value) -> String {
    assert_eq!(result["failed"], true, "expected a failure: {result:#}");
    result["msg"].as_str().expect("msg").to_string()
}

/// Assert the module succeeded and return its result.
pub fn succeeded(result: Value) -> Value {
    assert_eq!(result["failed"], false, "module failed: {result:#}");
    result
}

/// A unique lower-case name part, so parallel tests sharing one daemon and
/// one registry do not meet.
pub fn unique(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    let suffix = Alphanumeric
        .sample_string(&mut rand::rng(), 8)
        .to_ascii_lowercase();
    format!("{prefix}-{suffix}")
}

/// Removes local images of one repository prefix and a certs.d entry when
/// dropped; the daemon is shared, so only what the test made goes.
pub struct DockerCleanup {
    /// Repositories starting with this are removed.
    pub prefix: String,
    /// `/etc/docker/certs.d/<authority>` to remove, if any.
    pub certs_d: Option<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        if let Ok(out) = out {
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with(&self.prefix) || l.contains(&format!("/{}", self.prefix)))
                .map(str::to_string)
                .collect();
            if !names.is_empty() {
                let _ = Command::new("docker").arg("rmi").args(&names).output();
            }
        }
        if let Some(authority) = &self.certs_d {
            let _ = std::fs::remove_dir_all(Path::new("/etc/docker/certs.d").join(authority));
        }
    }
}

/// Inspect `reference` (without `docker://`) with skopeo, trusting `ca_pem`
/// and logging in as `username`; `None` when it does not exist.
pub fn skopeo_inspect(
    reference: &str,
    ca_pem: &str,
    username: &str,
    password: &str,
) -> Option<Value> {
    let certs = tempfile::tempdir().expect("tempdir");
    std::fs::write(certs.path().join("ca.crt"), ca_pem).expect("write ca");
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg("--cert-dir")
        .arg(certs.path())
        .arg("--creds")
        .arg(format!("{username}:{password}"))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("manifest unknown")
                || stderr.contains("not found")
                || stderr.contains("name unknown"),
            "skopeo inspect {reference} failed oddly: {stderr}"
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("skopeo JSON"))
}
