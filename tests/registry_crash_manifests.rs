//! The real server killed with SIGKILL at random moments of a stream of
//! manifest PUTs (new images and indexes, each by tag) and of a tag moved
//! back and forth between two manifests, then restarted on the same
//! storage. After every restart, as a client sees it: every acknowledged
//! PUT is served byte for byte, every tag listed resolves to a manifest
//! whose blobs and child manifests are all served, and the moved tag is
//! on the manifest of its last acknowledged PUT or of the one cut off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use speculative_images::oci::Digest;

use crate::support::buildset::BuildsetServer;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REPO: &str = "crash/img";
/// Kills per test at least; more (up to [`MAX_ROUNDS`]) until
/// [`CUT_WRITES`] of them landed during a manifest or tag write.
const ROUNDS: usize = 15;
const MAX_ROUNDS: usize = 60;
const CUT_WRITES: usize = 3;

/// Whether to kill again: fewer than [`ROUNDS`] kills so far, or fewer
/// than [`CUT_WRITES`] of them during a write.
fn another_round(round: usize, cut_writes: usize) -> bool {
    round < ROUNDS || (cut_writes < CUT_WRITES && round < MAX_ROUNDS)
}

/// A client of the server that outlives its restarts; a request that
/// the kill cuts off is an `Err`, never a panic.
struct Pusher {
    url: String,
    username: String,
    password: String,
    http: reqwest::blocking::Client,
}

type Reply = Result<(u16, Vec<u8>, Option<String>), reqwest::Error>;

impl Pusher {
    fn new(server: &BuildsetServer) -> Pusher {
        Pusher {
            url: server.url(),
            username: server.username.clone(),
            password: server.password.clone(),
            http: server.client(),
        }
    }

    fn send(&self, method: &str, path: &str, content_type: &str, body: Option<&[u8]>) -> Reply {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}/v2/{path}", self.url))
            .basic_auth(&self.username, Some(&self.password))
            .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"));
        if let Some(body) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_vec());
        }
        let reply = request.send()?;
        let status = reply.status().as_u16();
        let digest = reply
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap().to_string());
        Ok((status, reply.bytes()?.to_vec(), digest))
    }

    /// Upload a blob (monolithic POST); `Err` when cut off.
    fn blob(&self, bytes: &[u8]) -> Result<(Digest, usize), reqwest::Error> {
        let digest = Digest::sha256(bytes);
        let path = format!("{REPO}/blobs/uploads/?digest={digest}");
        let (status, body, _) =
            self.send("POST", &path, "application/octet-stream", Some(bytes))?;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        Ok((digest, bytes.len()))
    }

    /// PUT a manifest under `reference`; `Err` when cut off.
    fn manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), reqwest::Error> {
        let path = format!("{REPO}/manifests/{reference}");
        let (status, body, digest) = self.send("PUT", &path, media_type, Some(bytes))?;
        assert_eq!(
            status,
            201,
            "{reference}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(digest, Some(Digest::sha256(bytes).to_string()));
        Ok(())
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>, Option<String>) {
        self.send("GET", path, "", None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

/// A manifest as pushed: its bytes, and the blobs and manifests it names.
#[derive(Debug, Clone)]
struct Pushed {
    bytes: Vec<u8>,
    blobs: Vec<(Digest, usize)>,
    children: Vec<Pushed>,
}

impl Pushed {
    fn digest(&self) -> Digest {
        Digest::sha256(&self.bytes)
    }
}

/// Upload a fresh config and layer, then PUT the image manifest over
/// them under `reference`.
fn push_image(pusher: &Pusher, reference: Option<&str>) -> Result<Pushed, reqwest::Error> {
    let n = rand::random::<u64>();
    let config = pusher.blob(format!("{{\"n\":{n}}}").as_bytes())?;
    let layer = pusher.blob(format!("layer {n}").as_bytes())?;
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config.0.to_string(), "size": config.1},
        "layers": [{"mediaType": LAYER, "digest": layer.0.to_string(), "size": layer.1}],
    }))
    .unwrap();
    let digest = Digest::sha256(&bytes).to_string();
    pusher.manifest(reference.unwrap_or(&digest), OCI_MANIFEST, &bytes)?;
    Ok(Pushed {
        bytes,
        blobs: vec![config, layer],
        children: vec![],
    })
}

/// Two images by digest, then the index over them under `tag`.
fn push_index(pusher: &Pusher, tag: &str) -> Result<Pushed, reqwest::Error> {
    let children = vec![push_image(pusher, None)?, push_image(pusher, None)?];
    let entries: Vec<Value> = children
        .iter()
        .zip(["amd64", "arm64"])
        .map(|(child, arch)| {
            json!({"mediaType": OCI_MANIFEST, "digest": child.digest().to_string(),
                   "size": child.bytes.len(),
                   "platform": {"architecture": arch, "os": "linux"}})
        })
        .collect();
    let bytes = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    pusher.manifest(tag, OCI_INDEX, &bytes)?;
    Ok(Pushed {
        bytes,
        blobs: vec![],
        children,
    })
}

/// That `pushed` is served whole: by digest byte for byte, each blob with
/// its size, each child the same way.
fn assert_served(pusher: &Pusher, pushed: &Pushed, what: &str) {
    let digest = pushed.digest();
    let (status, body, _) = pusher.get(&format!("{REPO}/manifests/{digest}"));
    assert_eq!(status, 200, "{what}: manifest {digest}");
    assert_eq!(body, pushed.bytes, "{what}: manifest {digest}");
    for (blob, size) in &pushed.blobs {
        let (status, body, _) = pusher.get(&format!("{REPO}/blobs/{blob}"));
        assert_eq!((status, body.len()), (200, *size), "{what}: blob {blob}");
    }
    for child in &pushed.children {
        assert_served(pusher, child, what);
    }
}

/// That the manifest `digest` is served and everything it names is too,
/// read from the manifest itself (for tags whose PUT was cut off, which
/// no record of ours holds).
fn assert_complete(pusher: &Pusher, digest: &str, what: &str) {
    let (status, body, served) = pusher.get(&format!("{REPO}/manifests/{digest}"));
    assert_eq!(status, 200, "{what}: manifest {digest}");
    assert_eq!(served.as_deref(), Some(digest), "{what}");
    assert_eq!(
        Digest::sha256(&body).to_string(),
        digest,
        "{what}: its bytes"
    );
    let doc: Value = serde_json::from_slice(&body).unwrap();
    for child in doc["manifests"].as_array().into_iter().flatten() {
        assert_complete(pusher, child["digest"].as_str().unwrap(), what);
    }
    let blobs =
        std::iter::once(&doc["config"]).chain(doc["layers"].as_array().into_iter().flatten());
    for blob in blobs.filter(|b| !b.is_null()) {
        let digest = blob["digest"].as_str().unwrap();
        let (status, body, _) = pusher.get(&format!("{REPO}/blobs/{digest}"));
        assert_eq!(status, 200, "{what}: blob {digest}");
        assert_eq!(
            body.len() as u64,
            blob["size"].as_u64().unwrap(),
            "{what}: blob {digest}"
        );
    }
}

/// Every tag the server lists, with the digest it resolves to; each
/// checked complete.
fn assert_every_tag_complete(pusher: &Pusher, round: usize) -> Vec<(String, String)> {
    let (status, body, _) = pusher.get(&format!("{REPO}/tags/list"));
    assert_eq!(status, 200, "round {round}: tags/list");
    let list: Value = serde_json::from_slice(&body).unwrap();
    let mut tags = Vec::new();
    for tag in list["tags"].as_array().into_iter().flatten() {
        let tag = tag.as_str().unwrap().to_string();
        let (status, _, digest) = pusher.get(&format!("{REPO}/manifests/{tag}"));
        assert_eq!(
            status, 200,
            "round {round}: tag {tag} is listed but not served"
        );
        let digest = digest.expect("a digest header");
        assert_complete(pusher, &digest, &format!("round {round}: tag {tag}"));
        tags.push((tag, digest));
    }
    tags
}

/// Kill the server after a random 100-600 ms; whether the kill cut a
/// manifest, revision or tag write (storage's `tmp/` then holds its file).
fn kill_at_random(server: &mut BuildsetServer) -> bool {
    std::thread::sleep(Duration::from_millis(rand::random_range(100..600)));
    server.kill();
    let tmp = server.storage.join("tmp");
    std::fs::read_dir(tmp).is_ok_and(|mut entries| entries.next().is_some())
}

#[test]
fn sigkill_during_manifest_puts_loses_no_acknowledged_one_and_serves_none_incomplete() {
    let mut server = BuildsetServer::start();
    let mut acknowledged: Vec<(String, Pushed)> = Vec::new();
    let (mut round, mut cut_writes) = (0, 0);
    while another_round(round, cut_writes) {
        let pusher = Pusher::new(&server);
        let acked = Mutex::new(Vec::new());
        let cut = std::thread::scope(|scope| {
            for thread in 0..2 {
                let (pusher, acked) = (&pusher, &acked);
                scope.spawn(move || {
                    for i in 0.. {
                        let tag = format!("r{round}-t{thread}-{i}");
                        let pushed = if i % 3 == 2 {
                            push_index(pusher, &tag)
                        } else {
                            push_image(pusher, Some(&tag))
                        };
                        match pushed {
                            Ok(pushed) => acked.lock().unwrap().push((tag, pushed)),
                            Err(_) => return, // the server was killed
                        }
                    }
                });
            }
            kill_at_random(&mut server)
        });
        cut_writes += usize::from(cut);
        acknowledged.extend(acked.into_inner().unwrap());
        server.restart();
        let pusher = Pusher::new(&server);
        for (tag, pushed) in &acknowledged {
            let (status, body, _) = pusher.get(&format!("{REPO}/manifests/{tag}"));
            assert_eq!(status, 200, "round {round}: acknowledged tag {tag} is lost");
            assert_eq!(body, pushed.bytes, "round {round}: tag {tag}");
            assert_served(&pusher, pushed, &format!("round {round}: {tag}"));
        }
        let listed = assert_every_tag_complete(&pusher, round);
        // Listed: every acknowledged tag, and at most the cut-off PUT of
        // each pusher besides.
        assert!(listed.len() >= acknowledged.len(), "round {round}");
        assert!(
            listed.len() <= acknowledged.len() + 2 * (round + 1),
            "round {round}"
        );
        round += 1;
    }
    assert!(
        acknowledged.len() >= round,
        "only {} manifests acknowledged",
        acknowledged.len()
    );
    assert!(cut_writes >= CUT_WRITES, "{cut_writes} kills cut a write");
    eprintln!(
        "{round} kills, {cut_writes} during a write, {} acknowledged manifests all served",
        acknowledged.len()
    );
}

#[test]
fn sigkill_during_tag_overwrites_leaves_the_tag_on_a_complete_manifest() {
    let mut server = BuildsetServer::start();
    let pusher = Pusher::new(&server);
    let images = [
        push_image(&pusher, None).unwrap(),
        push_index(&pusher, "index").unwrap(),
    ];
    pusher
        .manifest("moving", OCI_MANIFEST, &images[0].bytes)
        .unwrap();
    let mut last_acked = 0;
    let (mut round, mut cut_writes, mut landed_unacknowledged) = (0, 0, 0);
    while another_round(round, cut_writes) {
        let pusher = Pusher::new(&server);
        let in_flight = Mutex::new(None);
        let acked = Mutex::new(last_acked);
        let stopped = AtomicBool::new(false);
        let cut = std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut next = 1 - last_acked;
                loop {
                    *in_flight.lock().unwrap() = Some(next);
                    let media_type = [OCI_MANIFEST, OCI_INDEX][next];
                    if pusher
                        .manifest("moving", media_type, &images[next].bytes)
                        .is_err()
                    {
                        stopped.store(true, Ordering::SeqCst);
                        return;
                    }
                    *acked.lock().unwrap() = next;
                    *in_flight.lock().unwrap() = None;
                    next = 1 - next;
                }
            });
            kill_at_random(&mut server)
        });
        assert!(stopped.load(Ordering::SeqCst), "round {round}");
        cut_writes += usize::from(cut);
        last_acked = acked.into_inner().unwrap();
        let cut_off = in_flight.into_inner().unwrap();
        server.restart();
        let pusher = Pusher::new(&server);
        let listed = assert_every_tag_complete(&pusher, round);
        let (_, digest) = listed
            .iter()
            .find(|(tag, _)| tag == "moving")
            .unwrap_or_else(|| panic!("round {round}: the tag is gone: {listed:?}"));
        let expected = images[last_acked].digest().to_string();
        let allowed = cut_off.map(|i| images[i].digest().to_string());
        assert!(
            *digest == expected || Some(digest) == allowed.as_ref(),
            "round {round}: moving is on {digest}, not on the acknowledged {expected} \
             nor the cut-off {allowed:?}"
        );
        if *digest != expected {
            landed_unacknowledged += 1;
            last_acked = 1 - last_acked;
        }
        for image in &images {
            assert_served(&pusher, image, &format!("round {round}"));
        }
        round += 1;
    }
    assert!(cut_writes >= CUT_WRITES, "{cut_writes} kills cut a write");
    eprintln!(
        "{round} kills, {cut_writes} during a write, {landed_unacknowledged} \
         unacknowledged overwrites that landed"
    );
}
