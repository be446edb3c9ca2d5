//! Real clients against our registry over TLS: skopeo copies a
//! multi-arch OCI index in and out with `--all` and the digests match;
//! podman pulls and pushes, under a `quay.io/org/img` name.

use std::path::Path;
use std::process::Command;

use speculative_images::oci::Digest;

use crate::support::buildset::BuildsetServer;
use crate::support::run;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image layout on disk, written by hand (no image can be pulled
/// here): blobs, `index.json`, `oci-layout`.
pub struct OciLayout {
    pub dir: tempfile::TempDir,
}

impl OciLayout {
    pub fn new() -> OciLayout {
        // podman names an image pulled from a layout after its path, so
        // the path must be a valid (lower-case) repository name.
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "oci-layout-{}",
                crate::support::random_password().to_lowercase()
            ))
            .rand_bytes(0)
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        OciLayout { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Store a blob; returns its descriptor.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> serde_json::Value {
        let digest = Digest::sha256(bytes);
        std::fs::write(self.path().join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
    }

    /// A one-layer image for `arch` whose layer is a tar holding `marker`.
    pub fn image(&self, arch: &str, marker: &str) -> serde_json::Value {
        let layer = tar_with_file("marker", marker.as_bytes());
        let layer = self.blob("application/vnd.oci.image.layer.v1.tar", &layer);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/marker"]},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        });
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer],
        });
        let mut descriptor = self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
        descriptor["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        descriptor
    }

    /// Name `descriptor` as `tag` in `index.json`.
    pub fn tag(&self, tag: &str, mut descriptor: serde_json::Value) {
        descriptor["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [descriptor]});
        std::fs::write(
            self.path().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }

    /// The digest `index.json` names for `tag`.
    pub fn digest_of(dir: &Path, tag: &str) -> String {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no {tag} in {index}"))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// A tar archive holding one file (made with `tar`).
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), content).unwrap();
    let out = run(Command::new("tar").arg("-C").arg(dir.path()).args([
        "--owner=0",
        "--group=0",
        "--mtime=@0",
        "-cf",
        "-",
        name,
    ]));
    out.into_bytes()
}

/// A directory holding `ca.crt` for `--cert-dir` options.
fn cert_dir(registry: &BuildsetServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &registry.ca_pem).unwrap();
    dir
}

#[test]
fn skopeo_copies_a_multi_arch_index_in_and_out_with_all() {
    let registry = BuildsetServer::start();
    let certs = cert_dir(&registry);
    let layout = OciLayout::new();
    let amd64 = layout.image("amd64", "built for amd64");
    let arm64 = layout.image("arm64", "built for arm64");
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64]});
    let index = layout.blob(OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    let index_digest = index["digest"].as_str().unwrap().to_string();
    layout.tag("multi", index);

    let creds = format!("{}:{}", registry.username, registry.password);
    let remote = format!("docker://{}/org/multi:latest", registry.authority());
    run(Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-creds",
            &creds,
        ])
        .arg("--dest-cert-dir")
        .arg(certs.path())
        .arg(format!("oci:{}:multi", layout.path().display()))
        .arg(&remote));

    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(certs.path())
        .arg(&remote));
    assert_eq!(
        Digest::sha256(raw.as_bytes()).to_string(),
        index_digest,
        "{raw}\n{}",
        registry.log()
    );

    // Out again, anonymously, every platform.
    let out = tempfile::tempdir().unwrap();
    run(Command::new("skopeo")
        .args(["copy", "--all", "--preserve-digests", "--src-cert-dir"])
        .arg(certs.path())
        .arg(&remote)
        .arg(format!("oci:{}:back", out.path().display())));
    assert_eq!(OciLayout::digest_of(out.path(), "back"), index_digest);
    for platform in [
        &platform_digest(&raw, "amd64"),
        &platform_digest(&raw, "arm64"),
    ] {
        assert!(
            out.path()
                .join("blobs/sha256")
                .join(&platform[7..])
                .is_file(),
            "platform manifest {platform} copied out"
        );
    }
}

/// The digest of the `arch` manifest in an index.
fn platform_digest(index: &str, arch: &str) -> String {
    let index: serde_json::Value = serde_json::from_str(index).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn podman_pushes_and_pulls_under_a_quay_io_name() {
    let registry = BuildsetServer::start();
    let certs = cert_dir(&registry);
    let layout = OciLayout::new();
    let marker = crate::support::random_password().to_lowercase();
    layout.tag("one", layout.image("amd64", &marker));

    let creds = format!("{}:{}", registry.username, registry.password);
    let name = format!("{}/quay.io/org/img-{marker}:latest", registry.authority());
    let cert_arg = format!("--cert-dir={}", certs.path().display());
    let podman = |args: &[&str]| run(Command::new("podman").args(args)).trim().to_string();

    // Into podman's store from the layout, then pushed to our registry.
    let image_id = podman(&[
        "pull",
        "-q",
        &format!("oci:{}:one", layout.path().display()),
    ]);
    podman(&["tag", &image_id, &name]);
    podman(&["push", "-q", &cert_arg, "--creds", &creds, &name]);
    let tags: serde_json::Value = registry
        .client()
        .get(format!(
            "{}/v2/quay.io/org/img-{marker}/tags/list",
            registry.url()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        tags["tags"],
        serde_json::json!(["latest"]),
        "{}",
        registry.log()
    );

    // Gone locally, pulled back (anonymously) under the same name.
    podman(&["rmi", "-f", &image_id]);
    podman(&["pull", "-q", &cert_arg, &name]);
    let pulled = podman(&["image", "inspect", "--format", "{{.Id}}", &name]);
    assert_eq!(pulled, image_id);
    let _ = Command::new("podman").args(["rmi", "-f", &name]).output();
}
