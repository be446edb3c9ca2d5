//! `speculative-images prune`, the real binary on the storage of a running
//! server (the real binary too), checked as a user checks it: which tags,
//! manifests and blobs answer 200 or 404 over HTTP afterwards.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use speculative_images::oci::Digest;

use crate::support::buildset::BuildsetServer;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DAY: Duration = Duration::from_secs(86400);

/// A client of `server` with its user's credentials.
struct Client<'a> {
    server: &'a BuildsetServer,
    http: reqwest::blocking::Client,
}

impl<'a> Client<'a> {
    fn new(server: &'a BuildsetServer) -> Client<'a> {
        Client {
            server,
            http: server.client(),
        }
    }

    fn send(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(
                method.parse().unwrap(),
                format!("{}/v2/{path}", self.server.url()),
            )
            .basic_auth(&self.server.username, Some(&self.server.password))
    }

    fn status(&self, method: &str, path: &str) -> u16 {
        let reply = self
            .send(method, path)
            .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
            .send()
            .unwrap();
        let status = reply.status().as_u16();
        // Read the body whole (a stream dropped unread is reset).
        reply.bytes().unwrap();
        status
    }

    /// Upload `bytes` (monolithic POST); its digest.
    fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        let reply = self
            .send("POST", &format!("{repo}/blobs/uploads/?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(reply.status(), 201, "{repo}: blob upload");
        digest
    }

    /// Upload `bytes` unless a HEAD says the registry has them (what
    /// docker does).
    fn blob_unless_present(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256(bytes);
        if self.status("HEAD", &format!("{repo}/blobs/{digest}")) == 200 {
            return digest;
        }
        self.blob(repo, bytes)
    }

    fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let reply = self
            .send("PUT", &format!("{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        let status = reply.status();
        assert_eq!(status, 201, "{repo}:{reference}: {}", reply.text().unwrap());
        Digest::sha256(bytes)
    }
}

/// An image manifest over `config` and `layers` (digest, size).
fn image(
    config: (&Digest, usize),
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config.0.to_string(), "size": config.1},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({"mediaType": LAYER, "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
    });
    if let Some((digest, size)) = subject {
        doc["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": size});
        doc["artifactType"] = "application/vnd.example.sbom".into();
    }
    serde_json::to_vec(&doc).unwrap()
}

/// What one pushed image is made of.
#[derive(Debug, Clone)]
struct Pushed {
    repo: String,
    tag: String,
    manifest: Digest,
    /// Platform manifests of an index.
    children: Vec<Digest>,
    blobs: Vec<Digest>,
}

impl Pushed {
    fn answers(&self, client: &Client) -> bool {
        let ok = |path: String| client.status("GET", &path) == 200;
        ok(format!("{}/manifests/{}", self.repo, self.tag)) && self.all_but_tag_answer(client)
    }

    fn all_but_tag_answer(&self, client: &Client) -> bool {
        let ok = |path: String| client.status("GET", &path) == 200;
        ok(format!("{}/manifests/{}", self.repo, self.manifest))
            && self
                .children
                .iter()
                .all(|c| ok(format!("{}/manifests/{c}", self.repo)))
            && self
                .blobs
                .iter()
                .all(|b| ok(format!("{}/blobs/{b}", self.repo)))
    }

    /// Nothing of it answers (but `shared`).
    fn gone(&self, client: &Client, shared: &[Digest]) -> bool {
        let gone = |path: String| client.status("GET", &path) == 404;
        gone(format!("{}/manifests/{}", self.repo, self.tag))
            && gone(format!("{}/manifests/{}", self.repo, self.manifest))
            && self
                .children
                .iter()
                .all(|c| gone(format!("{}/manifests/{c}", self.repo)))
            && self
                .blobs
                .iter()
                .filter(|b| !shared.contains(b))
                .all(|b| gone(format!("{}/blobs/{b}", self.repo)))
    }
}

/// Push a one-platform image (a unique config and layer, plus `shared`).
fn push_image(client: &Client, repo: &str, tag: &str, shared: &[u8]) -> Pushed {
    let config_bytes = format!("{{\"image\":\"{repo}:{tag}:{}\"}}", rand::random::<u64>());
    let layer_bytes = format!("layer of {repo}:{tag} {}", rand::random::<u64>());
    let config = client.blob(repo, config_bytes.as_bytes());
    let layer = client.blob(repo, layer_bytes.as_bytes());
    let common = client.blob_unless_present(repo, shared);
    let doc = image(
        (&config, config_bytes.len()),
        &[(&layer, layer_bytes.len()), (&common, shared.len())],
        None,
    );
    let manifest = client.manifest(repo, tag, OCI_MANIFEST, &doc);
    Pushed {
        repo: repo.into(),
        tag: tag.into(),
        manifest: manifest.clone(),
        children: vec![],
        blobs: vec![config, layer, common, manifest],
    }
}

/// Push a two-platform image: children by digest, the index by tag.
fn push_index(client: &Client, repo: &str, tag: &str) -> Pushed {
    let mut children = Vec::new();
    let mut blobs = Vec::new();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config_bytes = format!("{{\"arch\":\"{arch}\",\"n\":{}}}", rand::random::<u64>());
        let layer_bytes = format!("{arch} layer {}", rand::random::<u64>());
        let config = client.blob(repo, config_bytes.as_bytes());
        let layer = client.blob(repo, layer_bytes.as_bytes());
        let doc = image(
            (&config, config_bytes.len()),
            &[(&layer, layer_bytes.len())],
            None,
        );
        let digest = Digest::sha256(&doc);
        client.manifest(repo, &digest.to_string(), OCI_MANIFEST, &doc);
        entries.push(serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": doc.len(), "platform": {"architecture": arch, "os": "linux"}}));
        children.push(digest.clone());
        blobs.extend([config, layer, digest]);
    }
    let index = serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    let manifest = client.manifest(repo, tag, OCI_INDEX, &index);
    blobs.push(manifest.clone());
    Pushed {
        repo: repo.into(),
        tag: tag.into(),
        manifest,
        children,
        blobs,
    }
}

/// Make a tag look pushed `age` ago.
fn age_tag(storage: &Path, repo: &str, tag: &str, age: Duration) {
    let path = storage
        .join("repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

fn prune(storage: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_speculative-images"))
        .arg("prune")
        .arg("--storage")
        .arg(storage)
        .args(args)
        .output()
        .unwrap()
}

fn succeeds(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every file under `root` with its size and modification time.
fn tree(root: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            let name = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            if meta.is_dir() {
                dirs.push(entry.path());
                found.insert(format!("{name}/"), (0, SystemTime::UNIX_EPOCH));
            } else {
                found.insert(name, (meta.len(), meta.modified().unwrap()));
            }
        }
    }
    found
}

#[test]
fn old_tags_matching_the_pattern_go_with_what_only_they_held() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let storage = &server.storage;
    let shared = b"a base layer every image has";
    let old_build = push_image(&client, "org/img", "1234_latest", shared);
    let young_build = push_image(&client, "org/img", "5678_latest", shared);
    let release = push_image(&client, "org/img", "latest", shared);
    let elsewhere = push_image(&client, "other/img", "1234_latest", shared);
    let record = push_image(&client, "speculative-images/changes", "1234_1", shared);
    for (p, age) in [
        (&old_build, 8 * DAY),
        (&young_build, DAY),
        (&release, 30 * DAY),
        (&elsewhere, 30 * DAY),
        (&record, 30 * DAY),
    ] {
        age_tag(storage, &p.repo, &p.tag, age);
    }
    let out = succeeds(prune(
        storage,
        &[
            "--tags",
            "org/*:*_*",
            "--tags",
            "speculative-images/changes:*",
            "--older-than",
            "7d",
            "--grace",
            "0s",
        ],
    ));
    assert!(
        out.contains(&format!(
            "removed tag       org/img:1234_latest -> {} (8d old)",
            old_build.manifest
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "removed manifest  org/img@{} (",
            old_build.manifest
        )),
        "{out}"
    );
    // Two tags, their manifests, and of each its config, layer and bytes.
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("removed 2 tags, 2 manifests, 6 blobs ("),
        "{out}"
    );
    assert!(old_build.gone(&client, &[Digest::sha256(shared)]));
    assert!(record.gone(&client, &[Digest::sha256(shared)]));
    for kept in [&young_build, &release, &elsewhere] {
        assert!(kept.answers(&client), "{kept:?}");
    }
    // The record repository is gone from the catalog with its last tag.
    let catalog: serde_json::Value = client
        .send("GET", "_catalog")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["org/img", "other/img"])
    );
    // Nothing more to do the second time.
    let again = succeeds(prune(
        storage,
        &[
            "--tags",
            "org/*:*_*",
            "--tags",
            "speculative-images/changes:*",
            "--older-than",
            "7d",
            "--grace",
            "0s",
        ],
    ));
    assert_eq!(
        again.trim(),
        "removed 0 tags, 0 manifests, 0 blobs (0 B), 0 uploads (0 B), freed 0 B",
    );
}

#[test]
fn every_child_of_a_kept_index_stays_and_those_of_a_removed_one_go() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let kept = push_index(&client, "org/multi", "1_latest");
    let removed = push_index(&client, "org/multi", "2_latest");
    age_tag(&server.storage, "org/multi", "2_latest", 9 * DAY);
    // An untagged manifest nothing names goes; one pushed within the
    // grace period stays.
    let stray = push_image(&client, "org/multi", "stray", b"stray base");
    succeeds(prune(
        &server.storage,
        &["--tags", "*_*", "--older-than", "7d", "--grace", "0s"],
    ));
    assert!(kept.answers(&client), "{kept:?}");
    assert!(removed.gone(&client, &[]), "{removed:?}");
    assert!(stray.answers(&client));
}

#[test]
fn referrers_stay_with_their_subject_and_go_with_it() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let repo = "org/signed";
    let kept = push_image(&client, repo, "1_v", b"base");
    let removed = push_image(&client, repo, "2_v", b"base");
    let mut sboms = Vec::new();
    for subject in [&kept, &removed] {
        let config = client.blob(repo, b"{}");
        let layer_bytes = format!("sbom of {}", subject.manifest);
        let layer = client.blob(repo, layer_bytes.as_bytes());
        let size = client
            .send("GET", &format!("{repo}/manifests/{}", subject.manifest))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .len();
        let doc = image(
            (&config, 2),
            &[(&layer, layer_bytes.len())],
            Some((&subject.manifest, size)),
        );
        let digest = Digest::sha256(&doc);
        client.manifest(repo, &digest.to_string(), OCI_MANIFEST, &doc);
        sboms.push((digest, layer));
    }
    age_tag(&server.storage, repo, "2_v", 9 * DAY);
    succeeds(prune(
        &server.storage,
        &["--tags", "*_*", "--older-than", "7d", "--grace", "0s"],
    ));
    assert!(kept.answers(&client));
    let (kept_sbom, kept_layer) = &sboms[0];
    assert_eq!(
        client.status("GET", &format!("{repo}/manifests/{kept_sbom}")),
        200
    );
    assert_eq!(
        client.status("GET", &format!("{repo}/blobs/{kept_layer}")),
        200
    );
    let listed: serde_json::Value = client
        .send("GET", &format!("{repo}/referrers/{}", kept.manifest))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["manifests"][0]["digest"], kept_sbom.to_string());
    let (removed_sbom, removed_layer) = &sboms[1];
    assert!(removed.gone(&client, &[Digest::sha256(b"base"), Digest::sha256(b"{}")]));
    assert_eq!(
        client.status("GET", &format!("{repo}/manifests/{removed_sbom}")),
        404
    );
    assert_eq!(
        client.status("GET", &format!("{repo}/blobs/{removed_layer}")),
        404
    );
    let listed: serde_json::Value = client
        .send("GET", &format!("{repo}/referrers/{}", removed.manifest))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["manifests"], serde_json::json!([]));
}

#[test]
fn a_dry_run_prints_what_would_go_with_sizes_and_changes_nothing() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let old = push_image(&client, "org/img", "1_latest", b"base");
    push_image(&client, "org/img", "2_latest", b"base");
    age_tag(&server.storage, "org/img", "1_latest", 8 * DAY);
    // An upload abandoned two days ago.
    let upload = server
        .storage
        .join("uploads")
        .join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::write(upload.join("repository"), "org/img").unwrap();
    std::fs::write(upload.join("data"), vec![0u8; 3000]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(upload.join("data"))
        .unwrap()
        .set_modified(SystemTime::now() - 2 * DAY)
        .unwrap();
    let before = tree(&server.storage);
    let args = ["--tags", "*_*", "--older-than", "7d", "--grace", "0s"];
    let dry = succeeds(prune(
        &server.storage,
        &[&args[..], &["--dry-run"]].concat(),
    ));
    assert_eq!(tree(&server.storage), before, "{dry}");
    assert!(old.answers(&client));
    assert!(
        dry.contains(&format!(
            "would remove tag       org/img:1_latest -> {}",
            old.manifest
        )),
        "{dry}"
    );
    assert!(
        dry.contains("would remove upload    0123456789abcdef0123456789abcdef (2.9 KiB)"),
        "{dry}"
    );
    for blob in &old.blobs[..2] {
        assert!(
            dry.contains(&format!("would remove blob      {blob} (")),
            "{dry}"
        );
    }
    let summary = dry.lines().last().unwrap();
    assert!(
        summary.starts_with("dry run: would remove 1 tag, 1 manifest, 3 blobs (")
            && summary.ends_with("nothing was changed"),
        "{dry}"
    );
    // The real run removes what the dry run listed.
    let real = succeeds(prune(&server.storage, &args));
    let listed = |out: &str, prefix: &str| -> Vec<String> {
        let items = out.lines().count() - 1;
        out.lines()
            .take(items)
            .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .collect()
    };
    assert_eq!(listed(&dry, "would remove "), listed(&real, "removed "));
    assert!(old.gone(&client, &[Digest::sha256(b"base")]));
    assert!(!upload.exists());
}

#[test]
fn bad_patterns_and_ages_are_refused_naming_the_flag_and_nothing_changes() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let old = push_image(&client, "org/img", "1_latest", b"base");
    age_tag(&server.storage, "org/img", "1_latest", 8 * DAY);
    let before = tree(&server.storage);
    for (args, says) in [
        (vec!["--tags", "[abc", "--older-than", "7d"], "--tags"),
        (
            vec!["--tags", "a/b", "--older-than", "7d"],
            "'/' cannot occur in a name",
        ),
        (
            vec!["--tags", "*_*", "--older-than", "seven days"],
            "--older-than",
        ),
        (
            vec!["--tags", "*_*", "--older-than", "7d", "--grace", "soon"],
            "--grace",
        ),
        (vec!["--tags", "*_*"], "--older-than: needed with --tags"),
        (
            vec!["--older-than", "7d"],
            "--tags: needed with --older-than",
        ),
    ] {
        let output = prune(&server.storage, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let output = prune(&server.storage.join("nonexistent"), &[]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not a registry's storage"),
        "{output:?}"
    );
    assert_eq!(tree(&server.storage), before);
    assert!(old.answers(&client));
}

#[test]
fn prune_under_concurrent_pushes_loses_nothing_that_was_pushed() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    // Garbage for the prunes to remove: old tags, and many old blobs
    // nothing references (so that the first prune deletes for a while),
    // which the pushers name in their manifests: after a HEAD, as docker
    // does, or blindly, as a client that saw them in an earlier push.
    let mut garbage = Vec::new();
    for i in 0..6 {
        let p = push_image(&client, "org/img", &format!("{i}_old"), b"old base");
        age_tag(&server.storage, "org/img", &p.tag, 9 * DAY);
        garbage.push(p);
    }
    let old_blob = |i: usize| format!("old unreferenced blob {i}").into_bytes();
    const OLD: usize = 400;
    for i in 0..OLD {
        let digest = client.blob("org/img", &old_blob(i));
        let path = server
            .storage
            .join("blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex());
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - DAY).unwrap();
    }
    // Older than the grace period by their change time too.
    std::thread::sleep(Duration::from_secs(3));
    let args = ["--tags", "*_*", "--older-than", "1d", "--grace", "2s"];
    let done = std::sync::atomic::AtomicBool::new(false);
    let (pushed, blind, prunes) = std::thread::scope(|scope| {
        let pruner = scope.spawn(|| {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                succeeds(prune(&server.storage, &args));
                runs += 1;
            }
            runs
        });
        let pushers: Vec<_> = (0..3)
            .map(|t| {
                let server = &server;
                scope.spawn(move || {
                    let client = Client::new(server);
                    let mut pushed = Vec::new();
                    for i in 0..15 {
                        let shared = old_blob(t * 100 + i * 3);
                        pushed.push(push_image(
                            &client,
                            "org/img",
                            &format!("{t}{i}_new"),
                            &shared,
                        ));
                        if i % 4 == 0 {
                            pushed.push(push_index(&client, "org/multi", &format!("{t}{i}_new")));
                        }
                    }
                    pushed
                })
            })
            .collect();
        // Manifests naming old blobs with no HEAD first: either refused
        // (the blob went first) or stored with the blob kept.
        let blind = scope.spawn(|| {
            let client = Client::new(&server);
            let config = client.blob("org/blind", b"{}");
            let mut stored = Vec::new();
            for i in 0..60 {
                let bytes = old_blob(300 + i);
                let doc = image(
                    (&config, 2),
                    &[(&Digest::sha256(&bytes), bytes.len())],
                    None,
                );
                let reply = client
                    .send("PUT", &format!("org/blind/manifests/{i}_blind"))
                    .header("content-type", OCI_MANIFEST)
                    .body(doc.clone())
                    .send()
                    .unwrap();
                match reply.status().as_u16() {
                    201 => stored.push(Pushed {
                        repo: "org/blind".into(),
                        tag: format!("{i}_blind"),
                        manifest: Digest::sha256(&doc),
                        children: vec![],
                        blobs: vec![config.clone(), Digest::sha256(&bytes)],
                    }),
                    400 => {
                        let text = reply.text().unwrap();
                        assert!(text.contains("MANIFEST_BLOB_UNKNOWN"), "{text}");
                    }
                    other => panic!("{other}: {}", reply.text().unwrap()),
                }
            }
            stored
        });
        let pushed: Vec<Pushed> = pushers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        let blind = blind.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (pushed, blind, pruner.join().unwrap())
    });
    assert!(prunes >= 1, "no prune ran during the pushes");
    succeeds(prune(&server.storage, &args));
    for p in pushed.iter().chain(&blind) {
        assert!(p.answers(&client), "lost {p:?}");
    }
    for g in &garbage {
        assert!(
            g.gone(&client, &[Digest::sha256(b"old base")]),
            "kept {g:?}"
        );
    }
    // The old blobs no manifest took are gone.
    let unused = Digest::sha256(&old_blob(299));
    assert_eq!(
        client.status("HEAD", &format!("org/img/blobs/{unused}")),
        404
    );
}

#[test]
fn sigkill_at_any_point_of_a_prune_leaves_every_tag_on_a_complete_manifest() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..10 {
        kept.push(push_image(&client, "org/img", &format!("{i}_new"), b"base"));
        doomed.push(push_image(&client, "org/img", &format!("{i}_old"), b"base"));
        if i % 3 == 0 {
            kept.push(push_index(&client, "org/multi", &format!("{i}_new")));
            doomed.push(push_index(&client, "org/multi", &format!("{i}_old")));
        }
    }
    for d in &doomed {
        age_tag(&server.storage, &d.repo, &d.tag, 9 * DAY);
    }
    let args = ["--tags", "*_*", "--older-than", "7d", "--grace", "0s"];
    let binary = env!("CARGO_BIN_EXE_speculative-images");
    let mut kills = 0;
    for round in 0..25 {
        let mut child = Command::new(binary)
            .arg("prune")
            .arg("--storage")
            .arg(&server.storage)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rand::random_range(0..40_000)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Every tag the server still lists points at a manifest it serves
        // with every manifest and blob that manifest names.
        for repo in ["org/img", "org/multi"] {
            let tags: serde_json::Value = client
                .send("GET", &format!("{repo}/tags/list"))
                .send()
                .unwrap()
                .json()
                .unwrap();
            for tag in tags["tags"].as_array().cloned().unwrap_or_default() {
                let tag = tag.as_str().unwrap();
                let p = kept
                    .iter()
                    .chain(&doomed)
                    .find(|p| p.repo == repo && p.tag == tag)
                    .unwrap();
                assert!(
                    p.answers(&client),
                    "round {round}: {repo}:{tag} is incomplete"
                );
            }
        }
        for p in &kept {
            assert!(p.answers(&client), "round {round}: lost {p:?}");
        }
    }
    assert!(kills > 0, "no prune was killed before it ended");
    succeeds(prune(&server.storage, &args));
    for p in &doomed {
        assert!(p.gone(&client, &[Digest::sha256(b"base")]), "kept {p:?}");
    }
}

#[test]
fn the_server_prunes_on_its_schedule() {
    let mut server = BuildsetServer::start();
    let old = push_image(&Client::new(&server), "org/img", "1_latest", b"base");
    let young = push_image(&Client::new(&server), "org/img", "2_latest", b"base");
    age_tag(&server.storage, "org/img", "1_latest", 8 * DAY);
    // The JSON form of a site's `prune:` section.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&server.config_path).unwrap()).unwrap();
    config["prune"] = serde_json::json!({
        "every": {"secs": 1, "nanos": 0},
        "policy": {
            "tags": ["*_*"],
            "older_than": {"secs": 7 * 86400, "nanos": 0},
            "grace": {"secs": 0, "nanos": 0},
            "dry_run": false,
        },
    });
    std::fs::write(&server.config_path, config.to_string()).unwrap();
    server.restart();
    let client = Client::new(&server);
    crate::support::wait_until("the scheduled prune", Duration::from_secs(30), || {
        // Logged once the prune is over.
        server.log().contains("prune: removed 1 tag")
            && old.gone(&client, &[Digest::sha256(b"base")])
    });
    assert!(young.answers(&client));
    let log = server.log();
    assert!(
        log.contains(&format!(
            "prune: removed tag       org/img:1_latest -> {} (8d old)",
            old.manifest
        )),
        "{log}"
    );
    assert!(
        log.contains("prune: removed 1 tag, 1 manifest, 3 blobs ("),
        "{log}"
    );
}

#[test]
fn prune_with_a_site_config_takes_its_storage_and_policy_and_flags_override_them() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let old = push_image(&client, "org/img", "1_latest", b"base");
    let young = push_image(&client, "org/img", "2_latest", b"base");
    let release = push_image(&client, "org/img", "latest", b"base");
    let elsewhere = push_image(&client, "other/img", "3_latest", b"base");
    for (p, age) in [(&old, 8 * DAY), (&release, 30 * DAY), (&elsewhere, 8 * DAY)] {
        age_tag(&server.storage, &p.repo, &p.tag, age);
    }
    // A site's file beside the storage, naming it relatively (from the
    // file's directory, whatever the working directory).
    let site = server.storage.parent().unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(site.join("htpasswd"), format!("zuul:{hash}\n")).unwrap();
    let config = site.join("registry.yaml");
    std::fs::write(
        &config,
        r#"
listen: ["127.0.0.1:5000"]
storage: storage
htpasswd: htpasswd
users: {zuul: read-write}
token_secret_file: token.secret
prune:
  every: 1h
  older_than: 7d
  tags: ["org/*:*_*"]
  grace: 0s
"#,
    )
    .unwrap();
    let prune = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_speculative-images"))
            .current_dir("/")
            .arg("prune")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let old_tag = format!("tag       org/img:1_latest -> {} (8d old)", old.manifest);

    // --dry-run on top of the file's policy: listed, nothing changed.
    let before = tree(&server.storage);
    let dry = succeeds(prune(&["--dry-run"]));
    assert!(dry.contains(&format!("would remove {old_tag}")), "{dry}");
    assert!(!dry.contains("other/img"), "{dry}");
    assert_eq!(tree(&server.storage), before, "{dry}");

    // The file's policy: its pattern (org/* only), its age, its grace.
    let out = succeeds(prune(&[]));
    assert!(out.contains(&format!("removed {old_tag}")), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("removed 1 tag, 1 manifest, 3 blobs ("),
        "{out}"
    );
    assert!(old.gone(&client, &[Digest::sha256(b"base")]));
    for kept in [&young, &release, &elsewhere] {
        assert!(kept.answers(&client), "{kept:?}");
    }

    // --tags replaces the file's patterns; its age still applies.
    let out = succeeds(prune(&["--tags", "*_*"]));
    assert!(
        out.contains(&format!(
            "removed tag       other/img:3_latest -> {} (8d old)",
            elsewhere.manifest
        )),
        "{out}"
    );
    assert!(elsewhere.gone(&client, &[Digest::sha256(b"base")]));
    for kept in [&young, &release] {
        assert!(kept.answers(&client), "{kept:?}");
    }

    // A file that names no storage the prune can open is refused by name.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("storage: storage", "storage: elsewhere"),
    )
    .unwrap();
    let output = prune(&[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is not a registry's storage",
            site.join("elsewhere").display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_config_of_a_kept_manifest_stays_even_when_it_names_urls() {
    let server = BuildsetServer::start();
    let client = Client::new(&server);
    let config = client.blob("org/img", b"{}");
    let layer = client.blob("org/img", b"a layer");
    // `urls` on a config: the server still asks for the blob (and holds
    // it), so the prune must count it among what the manifest keeps.
    let doc = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config.to_string(), "size": 2,
                   "urls": ["https://example.org/config"]},
        "layers": [{"mediaType": LAYER, "digest": layer.to_string(), "size": 7}],
    }))
    .unwrap();
    let manifest = client.manifest("org/img", "latest", OCI_MANIFEST, &doc);
    let kept = Pushed {
        repo: "org/img".into(),
        tag: "latest".into(),
        manifest,
        children: vec![],
        blobs: vec![config, layer],
    };
    std::thread::sleep(Duration::from_secs(1));
    let out = succeeds(prune(&server.storage, &["--grace", "0s"]));
    assert!(kept.answers(&client), "{out}");
}
