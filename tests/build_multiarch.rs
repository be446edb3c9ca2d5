//! Multi-arch images (`arch`): `build_docker_image` with each real builder
//! (docker through the daemon's BuildKit, podman, buildah) publishes one
//! index in our buildset registry, and that index's digest is what the
//! transfer, upload and promote modules carry on to the final tag, where
//! docker pulls and runs the amd64 image.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use speculative_images::client::{runtime, Registry, RemoteRegistry};
use speculative_images::oci::{Manifest, ManifestReference};

use crate::publish_support::{failure_msg, run_module, succeeded, unique, DockerCleanup};
use crate::support::aarch64::{emulation_available, ran_on_program, QEMU_AARCH64_HANDLER, RAN_ON};
use crate::support::buildset::BuildsetServer;
use crate::support::distribution::Distribution;
use crate::support::{random_password, run};
use crate::transfer_support::{client_for, registry_facts, DockerClient};

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// Label naming the test that built an image, so it can remove exactly
/// its own (the per-platform images of a manifest list have no name).
const TEST_LABEL: &str = "speculative-test";

/// A project whose `app` context has a `Containerfile`: `FROM scratch`, a
/// file unique to this test, a static busybox, `tail` after that.
fn project(home: &Path, tail: &str) -> PathBuf {
    let work = home.join("src/example.org/org/project");
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("build-id"), random_password()).unwrap();
    std::fs::copy("/bin/busybox", app.join("busybox")).unwrap();
    std::fs::write(
        app.join("Containerfile"),
        format!(
            "FROM scratch\nCOPY build-id /build-id\nCOPY busybox /bin/busybox\n\
             CMD [\"/bin/busybox\", \"cat\", \"/build-id\"]\n{tail}"
        ),
    )
    .unwrap();
    work
}

fn zuul() -> Value {
    json!({"change": "42", "pipeline": "gate", "build": "b42",
           "change_url": "https://review.example.org/c/org/project/+/42",
           "project": {"src_dir": "src/example.org/org/project"}})
}

fn build_args(command: &str, repository: &str, registry: Option<&BuildsetServer>) -> Value {
    let mut args = json!({
        "container_images": [{"context": "app", "repository": repository,
                              "tags": ["latest", "v1"], "arch": PLATFORMS,
                              "labels": [format!("{TEST_LABEL}={repository}")]}],
        "family": "container", "container_command": command, "zuul": zuul(),
    });
    if let Some(registry) = registry {
        args["buildset_registry"] = registry_facts(registry);
    }
    args
}

/// Removes what podman and buildah left in containers-storage for
/// repositories under a prefix: the manifest lists, and the images
/// labelled as built for them.
struct StorageCleanup(String);

impl Drop for StorageCleanup {
    fn drop(&mut self) {
        let stdout = |args: &[&str]| {
            Command::new("podman")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let names = stdout(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        for name in names.lines().filter(|n| n.contains(&self.0)) {
            let _ = Command::new("podman")
                .args(["manifest", "rm", name])
                .output();
        }
        let ids = stdout(&["images", "-q", "--filter", &format!("label={TEST_LABEL}")]);
        for id in ids.lines() {
            let label = stdout(&[
                "image",
                "inspect",
                "--format",
                &format!("{{{{index .Labels \"{TEST_LABEL}\"}}}}"),
                id,
            ]);
            if label.trim().starts_with(&self.0) {
                let _ = Command::new("podman").args(["rmi", "-f", id]).output();
            }
        }
    }
}

/// The manifest `repository:reference` names in `registry`.
fn manifest(
    client: &std::sync::Arc<RemoteRegistry>,
    repository: &str,
    reference: &str,
) -> Manifest {
    let repository = repository.parse().unwrap();
    let reference: ManifestReference = reference.parse().unwrap();
    runtime::block_on(async { client.manifest_get(&repository, &reference).await })
        .unwrap()
        .unwrap_or_else(|e| panic!("{reference}: {e}"))
}

/// The `os/architecture` each image of `index` says in its config, beside
/// what the index says of it, sorted (builders list platforms in the
/// order their builds finished).
fn platforms_of(
    client: &std::sync::Arc<RemoteRegistry>,
    repository: &str,
    index: &Manifest,
) -> Vec<(String, String)> {
    assert!(
        index.is_index(),
        "{} is a {}",
        index.digest,
        index.media_type
    );
    let repo: speculative_images::oci::RepositoryName = repository.parse().unwrap();
    let mut found: Vec<(String, String)> = index
        .index()
        .unwrap()
        .manifests
        .iter()
        .map(|entry| {
            let p = entry
                .platform
                .as_ref()
                .expect("an index entry without platform");
            let image = manifest(client, repository, &entry.digest.to_string());
            let config = image.image().unwrap().config;
            let bytes = runtime::block_on(async {
                use futures_util::TryStreamExt as _;
                let stream = client.blob_get(&repo, &config.digest).await?;
                stream
                    .try_fold(Vec::new(), |mut all, chunk| async move {
                        all.extend_from_slice(&chunk);
                        Ok(all)
                    })
                    .await
            })
            .unwrap()
            .unwrap();
            let config: Value = serde_json::from_slice(&bytes).unwrap();
            (
                format!("{}/{}", p.os, p.architecture),
                format!(
                    "{}/{}",
                    config["os"].as_str().unwrap(),
                    config["architecture"].as_str().unwrap()
                ),
            )
        })
        .collect::<Vec<_>>();
    found.sort();
    found
}

/// Build a two-platform image with `command` into a buildset registry and
/// check what arrived; returns the module's result.
fn two_platforms_with(command: &str) -> Value {
    let home = tempfile::tempdir().unwrap();
    project(home.path(), "");
    let reg = BuildsetServer::start();
    let prefix = unique(&format!("multiarch-{command}"));
    let _docker = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: (command == "docker").then(|| reg.authority()),
    };
    let _storage = StorageCleanup(prefix.clone());
    if command == "docker" {
        crate::support::docker_trust(&reg.authority(), &reg.ca_pem);
    }
    let repository = format!("{prefix}/app");

    let result = succeeded(run_module(
        "build_docker_image",
        build_args(command, &repository, Some(&reg)),
        home.path(),
    ));
    assert_eq!(result["changed"], true, "{result:#}");
    let image = &result["images"][0];
    let client = client_for(&reg);
    let latest = manifest(&client, &repository, "latest");
    assert_eq!(
        image["index"]["digest"],
        latest.digest.to_string(),
        "{result:#}"
    );
    assert_eq!(manifest(&client, &repository, "v1").digest, latest.digest);
    // Exactly the two platforms (in whatever order the builder listed
    // them), each image's config saying its platform.
    let found = platforms_of(&client, &repository, &latest);
    assert_eq!(
        found,
        PLATFORMS.map(|p| (p.to_string(), p.to_string())),
        "{command}: index platforms (as listed, as configs say)"
    );
    let children: std::collections::BTreeMap<String, String> = latest
        .index()
        .unwrap()
        .manifests
        .iter()
        .map(|m| {
            let p = m.platform.as_ref().unwrap();
            (format!("{}/{}", p.os, p.architecture), m.digest.to_string())
        })
        .collect();
    let reported: std::collections::BTreeMap<String, String> = image["index"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let field = |name: &str| p[name].as_str().unwrap().to_string();
            (field("platform"), field("digest"))
        })
        .collect();
    assert_eq!(reported, children, "{result:#}");
    // Nothing but the image's own tags is left in the buildset registry.
    let tags = runtime::block_on(async { client.tags_list(&repository.parse().unwrap()).await })
        .unwrap()
        .unwrap();
    let mut tags: Vec<String> = tags.iter().map(ToString::to_string).collect();
    tags.sort();
    assert_eq!(tags, ["latest", "v1"], "{command}");
    assert!(!result.to_string().contains(&reg.password));
    result
}

#[test]
fn docker_publishes_one_index_of_both_platforms_and_a_rebuild_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let work = project(home.path(), "");
    let reg = BuildsetServer::start();
    crate::support::docker_trust(&reg.authority(), &reg.ca_pem);
    let prefix = unique("multiarch-rebuild");
    let _docker = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: Some(reg.authority()),
    };
    let repository = format!("{prefix}/app");
    let args = build_args("docker", &repository, Some(&reg));
    let first = succeeded(run_module("build_docker_image", args.clone(), home.path()));
    assert_eq!(first["changed"], true);
    let again = succeeded(run_module("build_docker_image", args, home.path()));
    assert_eq!(
        again["changed"], false,
        "first: {first:#}\nagain: {again:#}"
    );
    assert_eq!(again["images"][0]["index"], first["images"][0]["index"]);

    // Locally: each platform under its own tag, the host's under the
    // plain tags too, labelled with the change and its URL.
    let arch = |name: &str| {
        run(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{.Architecture}}",
            name,
        ]))
        .trim()
        .to_string()
    };
    assert_eq!(arch(&format!("{repository}:latest-linux-arm64")), "arm64");
    assert_eq!(
        arch(&format!("{repository}:change_42_v1-linux-amd64")),
        "amd64"
    );
    assert_eq!(arch(&format!("{repository}:latest")), "amd64");
    let labels: Value = serde_json::from_str(&run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &format!("{repository}:latest-linux-arm64"),
    ])))
    .unwrap();
    assert_eq!(
        labels,
        json!({"org.zuul-ci.change": "42",
               "org.zuul-ci.change_url": "https://review.example.org/c/org/project/+/42",
               TEST_LABEL: repository})
    );
    assert!(work.join("app/Containerfile").exists());
}

#[test]
fn docker_builds_both_platforms_into_one_index() {
    two_platforms_with("docker");
}

#[test]
fn podman_builds_both_platforms_into_one_index() {
    two_platforms_with("podman");
}

#[test]
fn buildah_builds_both_platforms_into_one_index() {
    two_platforms_with("buildah");
}

#[test]
fn without_a_buildset_registry_podman_leaves_the_manifest_list_under_every_tag() {
    let home = tempfile::tempdir().unwrap();
    project(home.path(), "");
    let prefix = unique("multiarch-local");
    let _storage = StorageCleanup(prefix.clone());
    let repository = format!("{prefix}/app");
    let result = succeeded(run_module(
        "build_docker_image",
        build_args("podman", &repository, None),
        home.path(),
    ));
    assert_eq!(result["images"][0].get("index"), None, "{result:#}");
    for tag in ["latest", "change_42_latest", "v1", "change_42_v1"] {
        let list: Value = serde_json::from_str(&run(Command::new("podman").args([
            "manifest",
            "inspect",
            &format!("{repository}:{tag}"),
        ])))
        .unwrap();
        let mut platforms: Vec<String> = list["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        // In the order the builds finished.
        platforms.sort();
        assert_eq!(platforms, PLATFORMS, "{tag}");
    }
    let local: Vec<&str> = result["images"][0]["local_platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(local, PLATFORMS);
}

#[test]
fn a_bad_platform_is_refused_before_anything_is_built() {
    let home = tempfile::tempdir().unwrap();
    project(home.path(), "");
    let prefix = unique("multiarch-bad");
    let mut args = build_args("docker", &format!("{prefix}/app"), None);
    args["container_images"][0]["arch"] = json!(["linux/amd64", "arm64"]);
    let result = run_module("build_docker_image", args, home.path());
    assert_eq!(
        failure_msg(&result),
        "container_images[0].arch: \"arm64\" is not a platform of the form \
         os/architecture[/variant] (e.g. linux/arm64)"
    );
    assert!(!home.path().join("zuul-output").exists());
}

#[test]
fn a_run_step_in_the_arm64_stage_runs_emulated() {
    if !emulation_available() {
        println!(
            "SKIPPED: {QEMU_AARCH64_HANDLER} is absent (run scripts/ensure-binfmt.sh as root): \
             arm64 binaries cannot run on this host"
        );
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("src/example.org/org/project");
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("build-id"), random_password()).unwrap();
    std::fs::write(app.join("probe-arm64"), ran_on_program()).unwrap();
    std::fs::copy("/bin/busybox", app.join("busybox")).unwrap();
    // busybox run as `true` does nothing: the amd64 step runs natively.
    std::fs::copy("/bin/busybox", app.join("probe-amd64")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            app.join("probe-arm64"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    // The same RUN in both platforms' stage: on arm64 it runs the
    // aarch64 program, which only qemu can run here.
    std::fs::write(
        app.join("Containerfile"),
        "FROM scratch\n\
         ARG TARGETARCH\n\
         COPY build-id /build-id\n\
         COPY busybox /bin/busybox\n\
         COPY probe-${TARGETARCH} /usr/bin/true\n\
         RUN [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    let reg = BuildsetServer::start();
    crate::support::docker_trust(&reg.authority(), &reg.ca_pem);
    let prefix = unique("multiarch-run");
    let _docker = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: Some(reg.authority()),
    };
    let repository = format!("{prefix}/app");
    let result = succeeded(run_module(
        "build_docker_image",
        build_args("docker", &repository, Some(&reg)),
        home.path(),
    ));
    let client = client_for(&reg);
    let index = manifest(&client, &repository, "latest");
    assert_eq!(
        result["images"][0]["index"]["digest"],
        index.digest.to_string()
    );
    assert_eq!(
        platforms_of(&client, &repository, &index),
        PLATFORMS.map(|p| (p.to_string(), p.to_string()))
    );
    // What the RUN wrote, read from each platform's local image.
    let file_in = |name: &str| {
        let id = run(Command::new("docker").args(["create", name, "/bin/busybox"]));
        let out = Command::new("docker")
            .args(["cp", &format!("{}:{RAN_ON}", id.trim()), "-"])
            .output()
            .unwrap();
        let _ = Command::new("docker").args(["rm", id.trim()]).output();
        out.status.success().then_some(out.stdout)
    };
    let tar = file_in(&format!("{repository}:latest-linux-arm64")).expect("no /ran-on in arm64");
    assert!(
        tar.windows(7).any(|w| w == b"aarch64"),
        "{RAN_ON} of the arm64 image does not say aarch64"
    );
    assert_eq!(file_in(&format!("{repository}:latest-linux-amd64")), None);
}

#[test]
fn the_index_digest_is_carried_through_the_whole_gate_and_the_amd64_image_runs() {
    through_the_gate_with("docker");
}

#[test]
fn a_podman_index_is_carried_through_the_whole_gate_and_the_amd64_image_runs() {
    through_the_gate_with("podman");
}

#[test]
fn a_buildah_index_is_carried_through_the_whole_gate_and_the_amd64_image_runs() {
    through_the_gate_with("buildah");
}

/// Build a two-platform image with `command` and carry it through every
/// hop of the gate to its final tag, checking its digest at each.
fn through_the_gate_with(command: &str) {
    let home = tempfile::tempdir().unwrap();
    let work = project(home.path(), "");
    let build_id = std::fs::read_to_string(work.join("app/build-id")).unwrap();
    let buildset = BuildsetServer::start();
    let inter = Distribution::start();
    crate::support::docker_trust(&buildset.authority(), &buildset.ca_pem);
    let prefix = unique(&format!("multiarch-gate-{command}"));
    let _docker = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: Some(buildset.authority()),
    };
    let _storage = StorageCleanup(prefix.clone());
    let repository = format!("{prefix}/app");
    let images = json!([{"context": "app", "repository": repository, "tags": ["latest"],
                         "arch": PLATFORMS, "labels": {TEST_LABEL: repository}}]);

    // The gate job builds into its buildset registry ...
    let built = succeeded(run_module(
        "build_docker_image",
        json!({"docker_images": images, "docker_dockerfile": "Containerfile",
               "container_command": command, "zuul": zuul(),
               "buildset_registry": registry_facts(&buildset)}),
        home.path(),
    ));
    let digest = built["images"][0]["index"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let digest_in = |reg: &dyn Fn() -> std::sync::Arc<RemoteRegistry>, tag: &str| {
        manifest(&reg(), &repository, tag).digest.to_string()
    };
    assert_eq!(digest_in(&|| client_for(&buildset), "latest"), digest);

    // ... hands it to the intermediate registry ...
    let pushed = crate::transfer_support::run_module(
        "push_to_intermediate_registry",
        json!({"buildset_registry": registry_facts(&buildset),
               "intermediate_registry": registry_facts(&inter),
               "docker_images": images, "zuul": zuul()}),
        false,
    );
    assert_eq!(pushed["failed"], false, "{pushed:#}");
    assert_eq!(digest_in(&|| client_for(&inter), "b42_latest"), digest);

    // ... a later buildset pulls it from there ...
    let next = BuildsetServer::start();
    let pulled = crate::transfer_support::run_module(
        "pull_from_intermediate_registry",
        json!({"buildset_registry": registry_facts(&next),
               "intermediate_registry": registry_facts(&inter),
               "zuul_artifacts": pushed["artifacts"]}),
        false,
    );
    assert_eq!(pulled["failed"], false, "{pulled:#}");
    assert_eq!(pulled["images"][0]["digest"], digest.as_str(), "{pulled:#}");
    assert_eq!(digest_in(&|| client_for(&next), "latest"), digest);

    // ... upload publishes it under the temporary tag, promote under the
    // final one.
    let target = BuildsetServer::start();
    let publish_args = |with_buildset: bool| {
        let mut args = json!({
            "docker_images": images,
            "docker_registry": target.authority(),
            "docker_registry_cert": target.ca_pem,
            "docker_credentials": {"username": target.username, "password": target.password,
                                   "repository": "^multiarch-gate-"},
            "zuul": zuul(),
        });
        if with_buildset {
            args["buildset_registry"] = registry_facts(&next);
        }
        args
    };
    succeeded(run_module(
        "upload_docker_image",
        publish_args(true),
        home.path(),
    ));
    assert_eq!(
        digest_in(&|| client_for(&target), "change_42_latest"),
        digest
    );
    let mut promote = publish_args(false);
    promote["zuul"]["pipeline"] = json!("promote");
    succeeded(run_module("promote_docker_image", promote, home.path()));
    assert_eq!(digest_in(&|| client_for(&target), "latest"), digest);
    let index = manifest(&client_for(&target), &repository, "latest");
    assert_eq!(
        platforms_of(&client_for(&target), &repository, &index),
        PLATFORMS.map(|p| (p.to_string(), p.to_string()))
    );

    // A consumer on amd64 pulls the index and runs its amd64 image.
    let mut docker = DockerClient::login(&target);
    let reference = format!("{}/{repository}:latest", target.authority());
    assert_eq!(docker.pull(&reference), digest);
    assert_eq!(docker.run_image(&reference), build_id);
}
