//! Helpers shared by the build, upload and promote tests: running a module
//! the way Ansible does, and cleaning up what a test put into the shared
//! Docker daemon.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::module::ModuleRun;

/// Run module `name` as Ansible would: the binary with one args file,
/// `HOME` set to `home`. Returns the one JSON object it printed.
pub fn run_module(name: &str, args: Value, home: &Path) -> Value {
    run_module_with(name, args, home, None)
}

/// [`run_module`] with `TMPDIR` set to `tmp`, so a test sees every
/// temporary file the module and the tools it runs leave behind.
pub fn run_module_in_tmp(name: &str, args: Value, home: &Path, tmp: &Path) -> Value {
    run_module_with(name, args, home, Some(tmp))
}

fn run_module_with(name: &str, args: Value, home: &Path, tmp: Option<&Path>) -> Value {
    let mut run = ModuleRun::new(name, args).env("HOME", home);
    if let Some(tmp) = tmp {
        run = run.env("TMPDIR", tmp);
    }
    run.run().result
}

/// Assert a module left no credentials on the node: no
/// `<home>/.docker/config.json`, nothing at all in its `TMPDIR` `tmp` (the
/// temporary `DOCKER_CONFIG` included), and no file under `home` holding
/// `username`'s `password`, plain or as a docker `auth` value.
pub fn assert_no_credentials_left(home: &Path, tmp: &Path, username: &str, password: &str) {
    let docker_config = home.join(".docker/config.json");
    assert!(
        !docker_config.exists(),
        "{} was written:\n{}",
        docker_config.display(),
        std::fs::read_to_string(&docker_config).unwrap_or_default()
    );
    let left: Vec<_> = std::fs::read_dir(tmp)
        .expect("read TMPDIR")
        .map(|e| e.expect("TMPDIR entry").path())
        .collect();
    assert_eq!(left, Vec::<std::path::PathBuf>::new(), "left in TMPDIR");
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(password) && !text.contains(&auth),
                    "credentials in {}",
                    entry.path().display()
                );
            }
        }
    }
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

/// The digest `repository_tag` names on the Debian `docker-registry`
/// `registry`, as skopeo sees it; `None` when it does not exist.
pub fn distribution_digest(
    registry: &crate::support::distribution::Distribution,
    repository_tag: &str,
) -> Option<String> {
    skopeo_inspect(
        &format!("{}/{repository_tag}", registry.authority()),
        &registry.tls.cert_pem,
        &registry.username,
        &registry.password,
    )
    .map(|found| found["Digest"].as_str().unwrap().to_string())
}

/// Media types of the documents test images are made of.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types of one image format: OCI's or Docker's own.
struct Format {
    manifest: &'static str,
    index: &'static str,
    config: &'static str,
    layer: &'static str,
}

const OCI: Format = Format {
    manifest: OCI_MANIFEST,
    index: OCI_INDEX,
    config: "application/vnd.oci.image.config.v1+json",
    layer: "application/vnd.oci.image.layer.v1.tar",
};

const DOCKER: Format = Format {
    manifest: DOCKER_MANIFEST,
    index: DOCKER_LIST,
    config: "application/vnd.docker.container.image.v1+json",
    layer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
};

/// Add to `layout` an image in `format` for `arch` created at `created`
/// (RFC 3339), with one layer of `layer_bytes` random bytes; returns its
/// descriptor.
fn image(
    layout: &crate::registry_clients::OciLayout,
    format: &Format,
    arch: &str,
    created: &str,
    layer_bytes: usize,
) -> Value {
    let mut layer = vec![0u8; layer_bytes];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut layer);
    let layer = layout.blob(format.layer, &layer);
    let config = json!({
        "architecture": arch, "os": "linux", "created": created,
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    });
    let config = layout.blob(format.config, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": format.manifest, "config": config, "layers": [layer],
    });
    let mut descriptor = layout.blob(format.manifest, &serde_json::to_vec(&manifest).unwrap());
    descriptor["platform"] = json!({"architecture": arch, "os": "linux"});
    descriptor
}

/// Add to `layout` an index of `children` in `format`; returns its descriptor.
fn index(
    layout: &crate::registry_clients::OciLayout,
    format: &Format,
    children: &[Value],
) -> Value {
    let index = json!({"schemaVersion": 2, "mediaType": format.index, "manifests": children});
    layout.blob(format.index, &serde_json::to_vec(&index).unwrap())
}

/// An OCI image (see [`image`]).
pub fn oci_image(
    layout: &crate::registry_clients::OciLayout,
    arch: &str,
    created: &str,
    layer_bytes: usize,
) -> Value {
    image(layout, &OCI, arch, created, layer_bytes)
}

/// An image in Docker's own media types: v2 schema 2 manifest, docker
/// config and gzip layer types (see [`image`]).
pub fn docker_image(
    layout: &crate::registry_clients::OciLayout,
    arch: &str,
    created: &str,
    layer_bytes: usize,
) -> Value {
    image(layout, &DOCKER, arch, created, layer_bytes)
}

/// A Docker manifest list of [`docker_image`]s.
pub fn docker_list(layout: &crate::registry_clients::OciLayout, children: &[Value]) -> Value {
    index(layout, &DOCKER, children)
}

/// An OCI index of [`oci_image`]s.
pub fn oci_index(layout: &crate::registry_clients::OciLayout, children: &[Value]) -> Value {
    index(layout, &OCI, children)
}

/// Push `descriptor` (tagged `layout_tag` in `layout`) to the registry as
/// `repository:tag` with skopeo, every platform, digests kept. Returns the
/// digest.
pub fn push_to(
    registry: &crate::support::buildset::BuildsetServer,
    layout: &crate::registry_clients::OciLayout,
    descriptor: Value,
    repository_tag: &str,
) -> String {
    let creds = format!("{}:{}", registry.username, registry.password);
    let authority = registry.authority();
    skopeo_push(
        &authority,
        &registry.ca_pem,
        &creds,
        layout,
        descriptor,
        repository_tag,
    )
}

/// [`push_to`] for a Debian `docker-registry`.
pub fn push_to_distribution(
    registry: &crate::support::distribution::Distribution,
    layout: &crate::registry_clients::OciLayout,
    descriptor: Value,
    repository_tag: &str,
) -> String {
    let creds = format!("{}:{}", registry.username, registry.password);
    let authority = registry.authority();
    skopeo_push(
        &authority,
        &registry.tls.cert_pem,
        &creds,
        layout,
        descriptor,
        repository_tag,
    )
}

/// Push with skopeo to the registry at `authority`, trusting `ca_pem`,
/// logging in with `creds` (`user:password`).
fn skopeo_push(
    authority: &str,
    ca_pem: &str,
    creds: &str,
    layout: &crate::registry_clients::OciLayout,
    descriptor: Value,
    repository_tag: &str,
) -> String {
    layout.tag("push", descriptor.clone());
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("ca.crt"), ca_pem).unwrap();
    crate::support::run(
        Command::new("skopeo")
            .args(["copy", "--all", "--preserve-digests", "--dest-cert-dir"])
            .arg(certs.path())
            .arg("--dest-creds")
            .arg(creds)
            .arg(format!("oci:{}:push", layout.path().display()))
            .arg(format!("docker://{authority}/{repository_tag}")),
    );
    descriptor["digest"].as_str().unwrap().to_string()
}

/// Push `descriptor` (a manifest or list in `layout`) and everything it
/// references to the registry as `repository:reference` over plain HTTP
/// with the user's Basic credentials: every byte as written, media types
/// skopeo's OCI layout reader would not take (Docker's) included. Returns
/// the digest.
pub fn push_raw(
    registry: &crate::support::buildset::BuildsetServer,
    layout: &crate::registry_clients::OciLayout,
    descriptor: &Value,
    repository: &str,
    reference: &str,
) -> String {
    let client = registry.client();
    let read = |d: &Value| {
        let digest = d["digest"].as_str().unwrap();
        std::fs::read(
            layout
                .path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let bytes = read(descriptor);
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    if let Some(children) = document["manifests"].as_array() {
        for child in children {
            push_raw(
                registry,
                layout,
                child,
                repository,
                child["digest"].as_str().unwrap(),
            );
        }
    } else {
        let layers = document["layers"].as_array().unwrap();
        for blob in std::iter::once(&document["config"]).chain(layers) {
            let reply = client
                .post(format!(
                    "{}/v2/{repository}/blobs/uploads/?digest={}",
                    registry.url(),
                    blob["digest"].as_str().unwrap()
                ))
                .basic_auth(&registry.username, Some(&registry.password))
                .body(read(blob))
                .send()
                .expect("POST blob");
            assert_eq!(reply.status(), 201, "{}", registry.log());
        }
    }
    let reply = client
        .put(format!(
            "{}/v2/{repository}/manifests/{reference}",
            registry.url()
        ))
        .basic_auth(&registry.username, Some(&registry.password))
        .header("content-type", descriptor["mediaType"].as_str().unwrap())
        .body(bytes)
        .send()
        .expect("PUT manifest");
    assert_eq!(reply.status(), 201, "{}", registry.log());
    descriptor["digest"].as_str().unwrap().to_string()
}

/// The digest `repository:reference` names on the registry, or `None`
/// (anonymous pull).
pub fn digest_of(
    registry: &crate::support::buildset::BuildsetServer,
    repository: &str,
    reference: &str,
) -> Option<String> {
    let response = registry
        .client()
        .head(format!(
            "{}/v2/{repository}/manifests/{reference}",
            registry.url()
        ))
        .header(
            "Accept",
            format!(
                "{OCI_MANIFEST}, {OCI_INDEX}, \
                 application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json"
            ),
        )
        .send()
        .expect("HEAD manifest");
    if response.status() == 404 {
        return None;
    }
    assert_eq!(response.status(), 200, "{}", registry.log());
    Some(
        response.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string(),
    )
}

/// The digest and `Content-Type` of the manifest `repository:reference`
/// names on the registry (anonymous GET, every manifest type accepted), or
/// `None`.
pub fn manifest_of(
    registry: &crate::support::buildset::BuildsetServer,
    repository: &str,
    reference: &str,
) -> Option<(String, String)> {
    let response = registry
        .client()
        .get(format!(
            "{}/v2/{repository}/manifests/{reference}",
            registry.url()
        ))
        .header(
            "Accept",
            format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
        )
        .send()
        .expect("GET manifest");
    if response.status() == 404 {
        return None;
    }
    assert_eq!(response.status(), 200, "{}", registry.log());
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
    Some((header("docker-content-digest"), header("content-type")))
}

/// The registry's request log lines after the first `mark` lines.
pub fn log_since(registry: &crate::support::buildset::BuildsetServer, mark: usize) -> Vec<String> {
    registry
        .log()
        .lines()
        .skip(mark)
        .map(str::to_string)
        .collect()
}

/// How many lines the registry's log has now.
pub fn log_mark(registry: &crate::support::buildset::BuildsetServer) -> usize {
    registry.log().lines().count()
}
