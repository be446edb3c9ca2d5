//! Pull-through: the buildset registry as a live view of the
//! intermediate registry. Real processes: our server in site mode (TLS,
//! htpasswd, delegated tokens) as the intermediate registry, our
//! buildset registry in front of it. The test plays the executor: it
//! asks the site for a pull-only token, records where the layers live
//! (`PUT /v2/<name>/_speculative/sources`), copies the config and the
//! manifest, and then reads the layers from the buildset registry as a
//! consumer would. Upstream fetches are counted in the site's request log.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use speculative_images::oci::{Digest, RepositoryName};
use speculative_images::registry::storage::{PrunePolicy, SourcedBlob, Storage, Upstream};

use crate::registry_site::{Options, Site};
use crate::support::buildset::BuildsetServer;
use crate::support::wait_until;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image's parts: a config, layers, and the manifest naming them.
struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
    digest: Digest,
}

/// `len` bytes that differ for each `seed` (xorshift).
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn image(seed: u64, sizes: &[usize]) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layers: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| content(seed * 100 + i as u64, n))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": LAYER, "digest": Digest::sha256(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        digest: Digest::sha256(&manifest),
        config,
        layers,
        manifest,
    }
}

impl Image {
    fn layer_digests(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| Digest::sha256(l)).collect()
    }
}

/// Push `image` to the site as its read-write user.
fn push_to_site(site: &Site, repo: &str, tag: &str, image: &Image) {
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let digest = Digest::sha256(blob);
        let url = site.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"));
        let reply = site
            .as_writer(site.client.post(url))
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(reply.status(), 201, "{}", site.log());
    }
    let url = site.url(&format!("/v2/{repo}/manifests/{tag}"));
    let reply = site
        .as_writer(site.client.put(url))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", site.log());
}

/// A pull-only token for `repo`, as the executor asks for it.
fn delegated_token(site: &Site, repo: &str) -> String {
    let scope = format!("repository:{repo}:pull");
    let reply = site
        .as_writer(site.token_endpoint(&[("scope", scope.as_str()), ("expires_in", "600")]))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// Where the test's executor says the layers live.
struct Source<'a> {
    url: String,
    repository: &'a str,
    token: String,
    ca_pem: String,
}

impl<'a> Source<'a> {
    fn of(site: &Site, repository: &'a str) -> Source<'a> {
        Source {
            url: site.url(""),
            repository,
            token: delegated_token(site, repository),
            ca_pem: site.ca_pem.clone(),
        }
    }
}

/// `PUT /v2/<repo>/_speculative/sources` on the buildset registry.
fn record(
    buildset: &BuildsetServer,
    repo: &str,
    source: &Source<'_>,
    blobs: &[(Digest, usize)],
) -> reqwest::blocking::Response {
    let blobs: Vec<_> = blobs.iter().map(|(d, n)| (d.clone(), *n, false)).collect();
    record_prefetching(buildset, repo, source, &blobs)
}

/// [`record`], each blob with its `prefetch` flag.
fn record_prefetching(
    buildset: &BuildsetServer,
    repo: &str,
    source: &Source<'_>,
    blobs: &[(Digest, usize, bool)],
) -> reqwest::blocking::Response {
    let body = serde_json::json!({
        "upstream": {"url": source.url, "repository": source.repository,
                     "username": "token", "password": source.token, "ca_pem": source.ca_pem},
        "blobs": blobs.iter().map(|(d, n, prefetch)| serde_json::json!({"digest": d.to_string(), "size": n, "mediaType": LAYER, "prefetch": prefetch})).collect::<Vec<_>>(),
    });
    buildset
        .client()
        .put(format!("{}/v2/{repo}/_speculative/sources", buildset.url()))
        .basic_auth(&buildset.username, Some(&buildset.password))
        .json(&body)
        .send()
        .unwrap()
}

/// `img` pushed to the site as `org/img:1_latest`, then put lazily into
/// the buildset registry as `org/img:latest` with its layers recorded as
/// living at the site; returns that source.
fn pulled_lazily(site: &Site, buildset: &BuildsetServer, img: &Image) -> Source<'static> {
    push_to_site(site, "org/img", "1_latest", img);
    let source = Source::of(site, "org/img");
    put_lazily(buildset, "org/img", "latest", img, &source);
    source
}

/// What `pull_from_intermediate_registry` does lazily: record the layers,
/// copy the config and the manifest.
fn put_lazily(
    buildset: &BuildsetServer,
    repo: &str,
    tag: &str,
    image: &Image,
    source: &Source<'_>,
) {
    let layers: Vec<(Digest, usize)> = image
        .layers
        .iter()
        .map(|l| (Digest::sha256(l), l.len()))
        .collect();
    let reply = record(buildset, repo, source, &layers);
    assert_eq!(reply.status(), 200, "{}", buildset.log());
    let client = buildset.client();
    let digest = Digest::sha256(&image.config);
    let reply = client
        .post(format!(
            "{}/v2/{repo}/blobs/uploads/?digest={digest}",
            buildset.url()
        ))
        .basic_auth(&buildset.username, Some(&buildset.password))
        .body(image.config.clone())
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201);
    let reply = client
        .put(format!("{}/v2/{repo}/manifests/{tag}", buildset.url()))
        .basic_auth(&buildset.username, Some(&buildset.password))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", buildset.log());
}

/// GETs of blob `digest` of `repo` the site answered with 200.
fn upstream_gets(site: &Site, repo: &str, digest: &Digest) -> usize {
    let needle = format!("GET /v2/{repo}/blobs/{digest} 200 ");
    site.log().lines().filter(|l| l.contains(&needle)).count()
}

fn blob_url(buildset: &BuildsetServer, repo: &str, digest: &Digest) -> String {
    format!("{}/v2/{repo}/blobs/{digest}", buildset.url())
}

/// GET a blob from the buildset registry: the digest of what arrived.
fn get_digest(buildset: &BuildsetServer, repo: &str, digest: &Digest) -> Digest {
    let reply = buildset
        .client()
        .get(blob_url(buildset, repo, digest))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", buildset.log());
    Digest::sha256(&reply.bytes().unwrap())
}

fn stored(buildset: &BuildsetServer, digest: &Digest) -> bool {
    let hex = digest.hex();
    buildset
        .storage
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .is_file()
}

/// A GET of `digest` from `repo` answers 404 `BLOB_UNKNOWN`.
fn assert_blob_unknown(buildset: &BuildsetServer, repo: &str, digest: &Digest) {
    let reply = buildset
        .client()
        .get(blob_url(buildset, repo, digest))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 404, "{}", buildset.log());
    assert_eq!(error_code(reply), "BLOB_UNKNOWN");
}

fn error_code(reply: reqwest::blocking::Response) -> String {
    let body: serde_json::Value = reply.json().unwrap();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn registry_lazy_pull_through_serves_every_layer_once_with_its_digest() {
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let img = image(1, &[3 << 20, 1 << 20, 10]);
    push_to_site(&site, "org/img", "1_latest", &img);

    // Without a record, the manifest names unknown blobs.
    let refused = buildset
        .client()
        .put(format!("{}/v2/org/img/manifests/latest", buildset.url()))
        .basic_auth(&buildset.username, Some(&buildset.password))
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused), "MANIFEST_BLOB_UNKNOWN");

    let source = Source::of(&site, "org/img");
    put_lazily(&buildset, "org/img", "latest", &img, &source);
    let manifest = buildset
        .client()
        .get(format!("{}/v2/org/img/manifests/latest", buildset.url()))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    assert_eq!(
        manifest.headers()["docker-content-digest"],
        img.digest.to_string().as_str()
    );
    for digest in img.layer_digests() {
        assert_eq!(
            upstream_gets(&site, "org/img", &digest),
            0,
            "fetched before asked"
        );
        assert_eq!(get_digest(&buildset, "org/img", &digest), digest);
        assert!(stored(&buildset, &digest));
    }
    // A second GET is served from storage: nothing more upstream.
    for digest in img.layer_digests() {
        assert_eq!(get_digest(&buildset, "org/img", &digest), digest);
        assert_eq!(
            upstream_gets(&site, "org/img", &digest),
            1,
            "{}",
            site.log()
        );
    }
    assert!(
        buildset.log().contains(&format!(
            "through from {}, repository org/img in",
            site.url("")
        )),
        "{}",
        buildset.log()
    );
    assert!(
        !buildset.log().contains(&source.token),
        "the token was logged"
    );
    assert!(!site.log().contains(&source.token), "the token was logged");
}

#[test]
fn registry_lazy_head_answers_from_the_record_without_fetching() {
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let img = image(2, &[1 << 20]);
    pulled_lazily(&site, &buildset, &img);
    let digest = &img.layer_digests()[0];
    let head = buildset
        .client()
        .head(blob_url(&buildset, "org/img", digest))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        (1u64 << 20).to_string().as_str()
    );
    assert_eq!(
        head.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    assert!(!stored(&buildset, digest));
    assert!(
        !site.log().contains(&format!("/blobs/{digest}")),
        "{}",
        site.log()
    );
    // Another repository of the buildset registry has no such record.
    let other = buildset
        .client()
        .head(blob_url(&buildset, "org/other", digest))
        .send()
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[test]
fn registry_lazy_concurrent_gets_share_one_upstream_fetch() {
    let site = Site::start(Options::default());
    let buildset = Arc::new(BuildsetServer::start());
    let img = image(3, &[16 << 20]);
    pulled_lazily(&site, &buildset, &img);
    let digest = img.layer_digests()[0].clone();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (buildset, digest) = (buildset.clone(), digest.clone());
            std::thread::spawn(move || get_digest(&buildset, "org/img", &digest))
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), digest);
    }
    assert_eq!(
        upstream_gets(&site, "org/img", &digest),
        1,
        "{}",
        site.log()
    );
}

/// A GET of `digest` fails: 502 when the fetch failed before the
/// answer, else a body cut short of `size` bytes.
fn assert_transfer_fails(buildset: &BuildsetServer, digest: &Digest, size: usize) {
    let reply = buildset
        .client()
        .get(blob_url(buildset, "org/img", digest))
        .send()
        .unwrap();
    match reply.status().as_u16() {
        200 => {
            let body = reply.bytes();
            assert!(
                body.as_ref().map_or(true, |b| b.len() < size),
                "the whole corrupt body arrived"
            );
        }
        502 => assert_eq!(error_code(reply), "UNKNOWN"),
        other => panic!("{other}: {}", buildset.log()),
    }
}

#[test]
fn registry_lazy_a_corrupt_upstream_blob_fails_the_transfer_and_is_not_stored() {
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let img = image(4, &[2 << 20]);
    push_to_site(&site, "org/img", "1_latest", &img);
    let digest = img.layer_digests()[0].clone();
    // The same size, other bytes, behind the site's back.
    let hex = digest.hex();
    let on_disk = site
        .dir
        .path()
        .join("data/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    std::fs::write(&on_disk, content(99, 2 << 20)).unwrap();
    put_lazily(
        &buildset,
        "org/img",
        "latest",
        &img,
        &Source::of(&site, "org/img"),
    );

    assert_transfer_fails(&buildset, &digest, 2 << 20);
    wait_until(
        "the failed fetch to be cleaned up",
        Duration::from_secs(10),
        || {
            buildset
                .log()
                .contains(&format!("pulling blob {digest} through from"))
        },
    );
    assert!(!stored(&buildset, &digest));
    let leftovers = std::fs::read_dir(buildset.storage.join("tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a partial file stayed");
    let log = buildset.log();
    assert!(
        log.contains("nothing stored: content has digest sha256:"),
        "{log}"
    );
    // The next GET tries again (and fails again the same way).
    assert_transfer_fails(&buildset, &digest, 2 << 20);
    assert_eq!(upstream_gets(&site, "org/img", &digest), 2);
}

#[test]
fn registry_lazy_a_missing_or_unreachable_upstream_is_a_spec_error_in_bounded_time() {
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let img = image(5, &[1 << 20]);
    let source = pulled_lazily(&site, &buildset, &img);

    // A recorded blob the upstream does not hold: 404 BLOB_UNKNOWN.
    let ghost = Digest::sha256(b"never pushed");
    assert_eq!(
        record(&buildset, "org/img", &source, &[(ghost.clone(), 12)]).status(),
        200
    );
    assert_blob_unknown(&buildset, "org/img", &ghost);

    // The upstream gone: 503 UNAVAILABLE, within seconds.
    let upstream = site.url("");
    drop(site);
    let digest = &img.layer_digests()[0];
    let started = Instant::now();
    let reply = buildset
        .client()
        .get(blob_url(&buildset, "org/img", digest))
        .send()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status(), 503);
    assert_eq!(error_code(reply), "UNAVAILABLE");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!stored(&buildset, digest));
    let log = buildset.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "pulling blob {digest} through from {upstream}, repository org/img failed"
            ))
        })
        .unwrap_or_else(|| panic!("no line naming the upstream:\n{log}"));
    assert!(line.contains("cannot connect"), "{line}");
    assert!(!log.contains(&source.token), "the token was logged");
}

#[test]
fn registry_lazy_records_survive_a_restart() {
    let site = Site::start(Options::default());
    let mut buildset = BuildsetServer::start();
    let img = image(6, &[1 << 20, 4096]);
    pulled_lazily(&site, &buildset, &img);
    buildset.restart();
    for digest in img.layer_digests() {
        let head = buildset
            .client()
            .head(blob_url(&buildset, "org/img", &digest))
            .send()
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(get_digest(&buildset, "org/img", &digest), digest);
    }
    let listed: serde_json::Value = buildset
        .client()
        .get(format!(
            "{}/v2/org/img/_speculative/sources",
            buildset.url()
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let blobs = listed["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), 2);
    assert!(blobs.iter().all(|b| b["stored"] == true), "{listed}");
    assert!(!listed.to_string().contains("password"), "{listed}");
}

/// A TCP relay to a port set later, sending the target's answers on at
/// most `rate` bytes a second (0: as fast as they come).
struct Relay {
    port: u16,
    target: Arc<AtomicU16>,
    rate: Arc<AtomicU64>,
}

impl Relay {
    fn start(rate: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(0));
        let rate = Arc::new(AtomicU64::new(rate));
        let (to, limit) = (target.clone(), rate.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to.load(Ordering::SeqCst)))
                else {
                    continue;
                };
                let (mut client_in, mut server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_in, &mut server_out);
                    let _ = server_out.shutdown(Shutdown::Write);
                });
                let (mut server_in, mut client_out, limit) = (server, client, limit.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = match server_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if client_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let rate = limit.load(Ordering::SeqCst);
                        if rate > 0 {
                            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                        }
                    }
                    let _ = client_out.shutdown(Shutdown::Write);
                });
            }
        });
        Relay { port, target, rate }
    }
}

/// A site whose public address is `relay`'s (its token realm too); the
/// relay is pointed at it by the caller.
fn site_behind(relay: &Relay) -> Site {
    Site::start(Options {
        public_port: Some(relay.port),
        ..Options::default()
    })
}

/// `repo` of `site` as the buildset registry reaches it: through `relay`.
fn source_through<'a>(site: &Site, relay: &Relay, repo: &'a str) -> Source<'a> {
    let mut source = Source::of(site, repo);
    source.url = format!("https://127.0.0.1:{}", relay.port);
    source
}

/// A site behind a relay of `rate` bytes a second, and a buildset
/// registry holding `img` lazily as `org/img:latest`, its layers recorded
/// as living at the site through the relay.
fn lazily_behind_relay(rate: u64, img: &Image) -> (Relay, Site, BuildsetServer, Source<'static>) {
    let relay = Relay::start(rate);
    let site = site_behind(&relay);
    relay.target.store(site.port, Ordering::SeqCst);
    let buildset = BuildsetServer::start();
    push_to_site(&site, "org/img", "1_latest", img);
    let source = source_through(&site, &relay, "org/img");
    put_lazily(&buildset, "org/img", "latest", img, &source);
    (relay, site, buildset, source)
}

#[test]
fn registry_lazy_a_fetch_killed_midway_is_fetched_again_whole_after_restart() {
    let img = image(7, &[32 << 20]);
    let (relay, site, mut buildset, _) = lazily_behind_relay(4 << 20, &img);
    let digest = img.layer_digests()[0].clone();

    let reader = {
        let (client, url) = (buildset.client(), blob_url(&buildset, "org/img", &digest));
        std::thread::spawn(move || {
            client
                .get(url)
                .send()
                .and_then(|r| r.bytes())
                .map(|b| b.len())
        })
    };
    let tmp = buildset.storage.join("tmp");
    wait_until("the fetch to be under way", Duration::from_secs(30), || {
        std::fs::read_dir(&tmp)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
            })
            .unwrap_or(false)
    });
    buildset.kill();
    assert!(!stored(&buildset, &digest), "stored although cut short");
    let received = reader.join().unwrap();
    assert!(
        received.as_ref().map_or(true, |n| *n < 32 << 20),
        "{received:?}"
    );

    relay.rate.store(0, Ordering::SeqCst);
    buildset.restart();
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the partial file stayed"
    );
    assert_eq!(get_digest(&buildset, "org/img", &digest), digest);
    assert!(stored(&buildset, &digest));
    assert_eq!(
        upstream_gets(&site, "org/img", &digest),
        2,
        "{}",
        site.log()
    );
}

#[test]
fn registry_lazy_the_delegated_token_pulls_its_repository_only() {
    let site = Site::start(Options::default());
    let img = image(8, &[1024]);
    push_to_site(&site, "org/img", "1_latest", &img);
    push_to_site(&site, "org/other", "1_latest", &img);
    let token = delegated_token(&site, "org/img");
    let pull = site
        .get_manifest("org/img", "1_latest")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(pull.status(), 200);
    // As a bearer token and as the password the buildset registry uses.
    for (what, request) in [
        (
            "read org/other",
            site.get_manifest("org/other", "1_latest")
                .bearer_auth(&token),
        ),
        (
            "push org/img",
            site.start_upload("org/img").bearer_auth(&token),
        ),
        (
            "read org/other",
            site.get_manifest("org/other", "1_latest")
                .basic_auth("token", Some(&token)),
        ),
        (
            "push org/img",
            site.start_upload("org/img")
                .basic_auth("token", Some(&token)),
        ),
        (
            "delete org/img",
            site.delete_manifest("org/img", &img.digest)
                .basic_auth("token", Some(&token)),
        ),
    ] {
        let reply = request.send().unwrap();
        assert_eq!(reply.status(), 401, "{what}");
        assert_eq!(error_code(reply), "UNAUTHORIZED", "{what}");
    }
    // Asking the token for push gets none for a delegated token.
    let widened = site
        .token_endpoint(&[("scope", "repository:org/img:pull,push")])
        .basic_auth("token", Some(&token))
        .send()
        .unwrap();
    let widened: serde_json::Value = widened.json().unwrap();
    let push = site
        .start_upload("org/img")
        .bearer_auth(widened["token"].as_str().unwrap_or_default())
        .send()
        .unwrap();
    assert_eq!(push.status(), 401);
}

#[test]
fn registry_lazy_recording_needs_push_access_and_a_valid_record() {
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let source = Source::of(&site, "org/img");
    let blob = [(Digest::sha256(b"x"), 1)];
    let body = serde_json::json!({"upstream": {"url": source.url, "repository": "org/img"},
                                  "blobs": [{"digest": blob[0].0.to_string(), "size": 1}]});
    let url = format!("{}/v2/org/img/_speculative/sources", buildset.url());
    let anonymous = buildset.client().put(&url).json(&body).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    let cases = [
        (
            serde_json::json!({"upstream": {"url": "ftp://x", "repository": "org/img"}, "blobs": body["blobs"]}),
            "upstream.url: ftp://x/: must start with https://",
        ),
        (
            serde_json::json!({"upstream": {"url": "https://u:p@x:5000", "repository": "org/img"}, "blobs": body["blobs"]}),
            "upstream.url: must not hold credentials",
        ),
        (
            serde_json::json!({"upstream": {"url": source.url, "repository": "Org/Img"}, "blobs": body["blobs"]}),
            "upstream.repository: ",
        ),
        (
            serde_json::json!({"upstream": {"url": source.url, "repository": "org/img", "password": "s3cret-pw"}, "blobs": body["blobs"]}),
            "upstream: give username and password together",
        ),
        (
            serde_json::json!({"upstream": {"url": source.url, "repository": "org/img", "username": "u", "password": 12345}, "blobs": body["blobs"]}),
            "upstream.password: must be a string",
        ),
        (
            serde_json::json!({"upstream": {"url": source.url, "repository": "org/img", "ca_pem": "junk"}, "blobs": body["blobs"]}),
            "upstream.ca_pem: ",
        ),
        (
            serde_json::json!({"upstream": {"url": source.url, "repository": "org/img"}, "blobs": []}),
            "blobs: name at least one blob",
        ),
        (
            serde_json::json!({"upstream": {"url": source.url, "repository": "org/img"}, "blobs": [{"digest": "sha256:zz", "size": 1}]}),
            "blobs[0].digest: ",
        ),
    ];
    for (bad, says) in cases {
        let reply = buildset
            .client()
            .put(&url)
            .basic_auth(&buildset.username, Some(&buildset.password))
            .json(&bad)
            .send()
            .unwrap();
        assert_eq!(reply.status(), 400, "{says}");
        let error: serde_json::Value = reply.json().unwrap();
        assert_eq!(error["errors"][0]["code"], "SOURCES_INVALID", "{error}");
        let detail = error["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.starts_with(says), "{says}: {detail}");
        assert!(
            !detail.contains("s3cret-pw") && !detail.contains("12345"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn registry_lazy_prune_drops_the_records_of_pruned_manifests_only() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let upstream = Upstream {
        url: "https://inter.example.org:5000".parse().unwrap(),
        repository: "org/img".into(),
        username: None,
        password: None,
        ca_pem: None,
    };
    let mut manifests = Vec::new();
    for (repo, seed) in [("org/gone", 20), ("org/kept", 21)] {
        let img = image(seed, &[100]);
        let name: RepositoryName = repo.parse().unwrap();
        let blobs: Vec<SourcedBlob> = std::iter::once(&img.config)
            .chain(&img.layers)
            .map(|b| SourcedBlob {
                digest: Digest::sha256(b),
                size: b.len() as u64,
                media_type: None,
                prefetch: false,
            })
            .collect();
        storage
            .sources()
            .record(&name, upstream.clone(), &blobs)
            .unwrap();
        storage
            .put_manifest(
                &name,
                &"1_latest".parse().unwrap(),
                Some(OCI_MANIFEST),
                img.manifest.clone().into(),
            )
            .await
            .unwrap();
        manifests.push((name, img));
    }
    std::thread::sleep(Duration::from_millis(20));
    let report = storage
        .prune(&PrunePolicy {
            tags: vec!["org/gone:*".parse().unwrap()],
            older_than: Duration::ZERO,
            grace: Duration::ZERO,
            dry_run: false,
        })
        .await
        .unwrap();
    assert!(
        report.summary().starts_with("removed 1 tag, 1 manifest"),
        "{}",
        report.summary()
    );
    let (gone, kept) = (&manifests[0], &manifests[1]);
    assert!(storage.sources().of(&gone.0).is_empty());
    assert_eq!(storage.sources().of(&kept.0).len(), 2);
    // What is on disk says the same after a restart.
    drop(storage);
    let storage = Storage::open(dir.path()).unwrap();
    assert!(storage.sources().of(&gone.0).is_empty());
    assert_eq!(storage.sources().of(&kept.0).len(), 2);
    assert_eq!(
        std::fs::read_dir(dir.path().join("sources"))
            .unwrap()
            .count(),
        1
    );
    let _ = &kept.1;
}

/// The `intermediate_registry` facts of `site`, as its read-write user.
fn site_facts(site: &Site) -> serde_json::Value {
    serde_json::json!({"host": "127.0.0.1", "port": site.port, "username": "zuul",
                       "password": site.writer_password, "cert": site.ca_pem})
}

fn pull_args(site: &Site, buildset: &BuildsetServer, lazy: &str) -> serde_json::Value {
    serde_json::json!({
        "buildset_registry": crate::transfer_support::registry_facts(buildset),
        "intermediate_registry": site_facts(site),
        "zuul_artifacts": [{"name": "org/img:latest",
            "url": format!("docker://{}/org/img:1_latest", site.authority()),
            "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"}}],
        "lazy": lazy,
        "lazy_prefetch": false,
        "lazy_token_lifetime": 1800,
    })
}

#[test]
fn registry_lazy_the_module_copies_manifests_and_hands_over_a_pull_only_token() {
    use crate::transfer_support::run_module;
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let img = image(9, &[2 << 20, 1 << 20, 300]);
    push_to_site(&site, "org/img", "1_latest", &img);

    let check = run_module(
        "pull_from_intermediate_registry",
        pull_args(&site, &buildset, "auto"),
        true,
    );
    assert_eq!(check["changed"], true, "{check}");
    assert_eq!(check["images"][0]["mode"], "check", "{check}");

    let result = run_module(
        "pull_from_intermediate_registry",
        pull_args(&site, &buildset, "auto"),
        false,
    );
    assert_eq!(result["failed"], false, "{result}");
    assert_eq!(result["lazy"], true, "{result}");
    let pulled = &result["images"][0];
    assert_eq!(pulled["mode"], "lazy");
    assert_eq!(pulled["digest"], img.digest.to_string().as_str());
    assert_eq!(pulled["blobs_recorded"], 3);
    assert_eq!(pulled["manifests_copied"], 1);
    assert_eq!(pulled["bytes_copied"], img.config.len());
    assert!(!result.to_string().contains(&site.writer_password));
    for digest in img.layer_digests() {
        assert_eq!(upstream_gets(&site, "org/img", &digest), 0, "a layer moved");
        assert!(!stored(&buildset, &digest));
    }

    // What the node holds pulls org/img and nothing else.
    let records: Vec<String> = std::fs::read_dir(buildset.storage.join("sources"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    let record: serde_json::Value = serde_json::from_str(&records[0]).unwrap();
    let token = record["upstream"]["password"].as_str().unwrap();
    assert!(
        !records[0].contains(&site.writer_password),
        "the read-write password reached the node"
    );
    assert!(!result.to_string().contains(token), "the token was shown");
    let push = site
        .start_upload("org/img")
        .basic_auth("token", Some(token))
        .send()
        .unwrap();
    assert_eq!(push.status(), 401);
    site.push_image("org/secret", "1");
    let other = site
        .get_manifest("org/secret", "1")
        .basic_auth("token", Some(token))
        .send()
        .unwrap();
    assert_eq!(other.status(), 401);

    // A consumer pulls through the buildset registry.
    for digest in img.layer_digests() {
        assert_eq!(get_digest(&buildset, "org/img", &digest), digest);
        assert_eq!(upstream_gets(&site, "org/img", &digest), 1);
    }
    let again = run_module(
        "pull_from_intermediate_registry",
        pull_args(&site, &buildset, "auto"),
        false,
    );
    assert_eq!(again["changed"], false, "{again}");

    // Forced off: every byte, as before.
    let other_buildset = BuildsetServer::start();
    let full = run_module(
        "pull_from_intermediate_registry",
        pull_args(&site, &other_buildset, "off"),
        false,
    );
    assert_eq!(full["lazy"], false, "{full}");
    assert_eq!(full["lazy_reason"], "lazy: off");
    assert_eq!(full["images"][0]["mode"], "copy");
    assert_eq!(full["images"][0]["blobs_copied"], 4);
}

#[test]
fn registry_lazy_without_a_pull_only_credential_the_module_copies_and_says_why() {
    use crate::transfer_support::{registry_facts, run_module};
    let inter = crate::support::distribution::Distribution::start();
    let buildset = BuildsetServer::start();
    let image = crate::client_fixtures::random_image(
        crate::client_fixtures::Flavor::Oci,
        "amd64",
        &[1000, 2000],
    );
    speculative_images::client::runtime::block_on(crate::client_fixtures::push_image(
        &crate::transfer_support::client_for(&inter),
        "org/app",
        Some("1_latest"),
        &image,
    ))
    .unwrap();
    let args = |lazy: &str| {
        serde_json::json!({
            "buildset_registry": registry_facts(&buildset),
            "intermediate_registry": registry_facts(&inter),
            "zuul_artifacts": [{"url": format!("docker://{}/org/app:1_latest", inter.authority()),
                "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}}],
            "lazy": lazy,
        })
    };
    let refused = run_module("pull_from_intermediate_registry", args("on"), false);
    assert_eq!(refused["failed"], true);
    let msg = refused["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("lazy: on, but the intermediate registry issues no tokens, and intermediate_registry has no read_only_username"),
        "{msg}"
    );
    let result = run_module("pull_from_intermediate_registry", args("auto"), false);
    assert_eq!(result["failed"], false, "{result}");
    assert_eq!(result["lazy"], false);
    assert!(result["lazy_reason"]
        .as_str()
        .unwrap()
        .starts_with("the intermediate registry issues no tokens"));
    assert_eq!(result["images"][0]["mode"], "copy");
    assert_eq!(result["images"][0]["blobs_copied"], 3);
}

/// A two-platform index of `amd64` and `arm64` (one layer each, plus a
/// shared one) pushed to the site as `org/multi:1_latest`; the layers of
/// each platform.
fn push_two_platforms(site: &Site) -> (Digest, Vec<Digest>, Vec<Digest>) {
    let shared = content(500, 100_000);
    let mut entries = Vec::new();
    let mut per_arch = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let mut img = image(600 + i as u64, &[1 << 20]);
        // The config names its architecture; the shared layer goes first.
        img.config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes();
        img.layers.insert(0, shared.clone());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::sha256(&img.config).to_string(), "size": img.config.len()},
            "layers": img.layers.iter().map(|l| serde_json::json!({
                "mediaType": LAYER, "digest": Digest::sha256(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        img.digest = Digest::sha256(&manifest);
        img.manifest = manifest;
        push_to_site(site, "org/multi", &img.digest.to_string(), &img);
        entries.push(
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": img.digest.to_string(),
            "size": img.manifest.len(), "platform": {"architecture": arch, "os": "linux"}}),
        );
        per_arch.push(img.layer_digests());
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}))
    .unwrap();
    let reply = site
        .as_writer(
            site.client
                .put(site.url("/v2/org/multi/manifests/1_latest")),
        )
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(index.clone())
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", site.log());
    let arm64 = per_arch.pop().unwrap();
    let amd64 = per_arch.pop().unwrap();
    (Digest::sha256(&index), amd64, arm64)
}

#[test]
fn registry_lazy_prefetch_fetches_the_chosen_platform_only_before_anyone_asks() {
    use crate::transfer_support::{registry_facts, run_module};
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let (index, amd64, arm64) = push_two_platforms(&site);
    let args = serde_json::json!({
        "buildset_registry": registry_facts(&buildset),
        "intermediate_registry": site_facts(&site),
        "zuul_artifacts": [{"url": format!("docker://{}/org/multi:1_latest", site.authority()),
            "metadata": {"type": "container_image", "repository": "org/multi", "tag": "latest"}}],
        "lazy_prefetch_platforms": ["linux/amd64"],
        "lazy_token_lifetime": 1800,
    });
    let result = run_module("pull_from_intermediate_registry", args, false);
    assert_eq!(result["failed"], false, "{result}");
    let pulled = &result["images"][0];
    assert_eq!(pulled["mode"], "lazy", "{result}");
    assert_eq!(pulled["digest"], index.to_string().as_str());
    assert_eq!(pulled["manifests_copied"], 3);
    assert_eq!(pulled["blobs_recorded"], 3, "{result}");
    wait_until(
        "the amd64 layers to be prefetched",
        Duration::from_secs(30),
        || amd64.iter().all(|d| stored(&buildset, d)),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !stored(&buildset, &arm64[1]),
        "an arm64 layer was prefetched"
    );
    assert_eq!(upstream_gets(&site, "org/multi", &arm64[1]), 0);
    // A consumer of amd64 finds every layer there: nothing more upstream.
    for digest in &amd64 {
        assert_eq!(get_digest(&buildset, "org/multi", digest), *digest);
        assert_eq!(
            upstream_gets(&site, "org/multi", digest),
            1,
            "{}",
            site.log()
        );
    }
}

#[test]
fn registry_lazy_push_sends_none_of_the_layers_it_pulled_lazily() {
    use crate::transfer_support::{registry_facts, run_module};
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let base = image(30, &[2 << 20]);
    push_to_site(&site, "org/base", "1_latest", &base);
    let mut pull = pull_args(&site, &buildset, "on");
    pull["zuul_artifacts"] = serde_json::json!([{
        "url": format!("docker://{}/org/base:1_latest", site.authority()),
        "metadata": {"type": "container_image", "repository": "org/base", "tag": "latest"}}]);
    let pulled = run_module("pull_from_intermediate_registry", pull, false);
    assert_eq!(pulled["images"][0]["mode"], "lazy", "{pulled}");

    // A build on top of it pushes org/app: the base layer by a mount from
    // org/base (as docker does), its own layer and config by upload.
    let base_layer = base.layer_digests()[0].clone();
    let mut app = image(31, &[4096]);
    app.layers.insert(0, base.layers[0].clone());
    app.manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&app.config).to_string(), "size": app.config.len()},
        "layers": app.layers.iter().map(|l| serde_json::json!({
            "mediaType": LAYER, "digest": Digest::sha256(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let client = buildset.client();
    let auth = |r: reqwest::blocking::RequestBuilder| {
        r.basic_auth(&buildset.username, Some(&buildset.password))
    };
    let mounted = auth(client.post(format!(
        "{}/v2/org/app/blobs/uploads/?mount={base_layer}&from=org/base",
        buildset.url()
    )))
    .send()
    .unwrap();
    assert_eq!(mounted.status(), 201, "{}", buildset.log());
    for blob in [&app.config, &app.layers[1]] {
        let digest = Digest::sha256(blob);
        let reply = auth(client.post(format!(
            "{}/v2/org/app/blobs/uploads/?digest={digest}",
            buildset.url()
        )))
        .body(blob.clone())
        .send()
        .unwrap();
        assert_eq!(reply.status(), 201);
    }
    let reply = auth(client.put(format!("{}/v2/org/app/manifests/latest", buildset.url())))
        .header("content-type", OCI_MANIFEST)
        .body(app.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", buildset.log());

    let push = serde_json::json!({
        "buildset_registry": registry_facts(&buildset),
        "intermediate_registry": site_facts(&site),
        "docker_images": [{"repository": "org/app", "tags": ["latest"]}],
        "zuul": {"build": "b2", "change": "2", "pipeline": "gate"},
        "change_records": false,
    });
    let pushed = run_module("push_to_intermediate_registry", push, false);
    assert_eq!(pushed["failed"], false, "{pushed}");
    let sent = (app.config.len() + app.layers[1].len()) as u64;
    assert_eq!(pushed["images"][0]["bytes_copied"], sent, "{pushed}");
    // The base layer was neither fetched through the buildset registry
    // nor sent again: our site holds it (its HEAD in org/app finds the
    // shared blob; a registry that answers 404 there gets a mount from
    // org/base).
    assert!(!stored(&buildset, &base_layer));
    assert_eq!(upstream_gets(&site, "org/base", &base_layer), 0);
    let log = site.log();
    let hex = base_layer.hex();
    let sent_again = log
        .lines()
        .filter(|l| l.contains("PUT /v2/org/app/blobs/uploads/") && l.contains(hex))
        .count();
    assert_eq!(sent_again, 0, "{log}");
    let manifest = site
        .as_writer(site.get_manifest("org/app", "b2_latest"))
        .send()
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.headers()["docker-content-digest"],
        Digest::sha256(&app.manifest).to_string().as_str()
    );
}

/// The site as the transfer tests' registries are seen (its read-write user).
impl crate::transfer_support::TestRegistry for Site {
    fn host(&self) -> &str {
        "127.0.0.1"
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn authority(&self) -> String {
        Site::authority(self)
    }
    fn username(&self) -> &str {
        "zuul"
    }
    fn password(&self) -> &str {
        &self.writer_password
    }
    fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    fn requests(&self) -> Vec<String> {
        self.log().lines().map(str::to_string).collect()
    }
}

#[test]
fn registry_lazy_docker_pulls_and_runs_a_lazily_pulled_image_each_layer_fetched_once() {
    use crate::transfer_support::{registry_facts, run_module, DockerClient, DockerImage};
    let site = Site::start(Options::default());
    let buildset = BuildsetServer::start();
    let image = DockerImage::build("lazy");
    let digest = image.push_to(&site, "org/app", "1_latest");
    // Docker must not find the layers at home.
    drop(image);
    let args = serde_json::json!({
        "buildset_registry": registry_facts(&buildset),
        "intermediate_registry": site_facts(&site),
        "zuul_artifacts": [{"url": format!("docker://{}/org/app:1_latest", site.authority()),
            "metadata": {"type": "container_image", "repository": "org/app", "tag": "latest"}}],
        "lazy": "on",
        "lazy_prefetch": false,
        "lazy_token_lifetime": 1800,
    });
    let result = run_module("pull_from_intermediate_registry", args, false);
    assert_eq!(result["images"][0]["mode"], "lazy", "{result}");
    // The blob GETs the site answered since the pull step.
    let start = site.log().lines().count();
    let layer_gets = || -> Vec<String> {
        site.log()
            .lines()
            .skip(start)
            .filter(|l| l.contains("GET /v2/org/app/blobs/sha256:") && l.contains(" 200 "))
            .map(|l| {
                l.split_whitespace()
                    .find(|w| w.contains("/blobs/"))
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let recorded = result["images"][0]["blobs_recorded"].as_u64().unwrap() as usize;
    assert!(recorded >= 2, "{result}");
    assert!(layer_gets().is_empty());

    let mut docker = DockerClient::login(&buildset);
    let reference = format!("{}/org/app:latest", buildset.authority());
    assert_eq!(docker.pull(&reference), digest);
    // Each layer docker lacked fetched once (a layer another test's image
    // shares may be in the daemon already: docker does not ask for it).
    let fetched = layer_gets();
    let unique: std::collections::BTreeSet<&String> = fetched.iter().collect();
    assert_eq!(unique.len(), fetched.len(), "{fetched:?}");
    assert!((1..=recorded).contains(&fetched.len()), "{fetched:?}");
    let output = docker.run_image(&reference);
    assert!(!output.trim().is_empty(), "the image printed nothing");
    // Every layer GET from now on is served from storage.
    let blobs = buildset.client();
    for path in &fetched {
        let reply = blobs
            .get(format!("{}{path}", buildset.url()))
            .send()
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    assert_eq!(layer_gets(), fetched);
}

#[test]
fn registry_lazy_deleting_a_blob_only_recorded_drops_its_record_alone() {
    let site = Site::start(Options::default());
    let mut buildset = BuildsetServer::start();
    let img = image(11, &[1 << 16, 1 << 16]);
    pulled_lazily(&site, &buildset, &img);
    let (gone, kept) = (&img.layer_digests()[0], &img.layer_digests()[1]);
    let delete = |buildset: &BuildsetServer, digest: &Digest| {
        buildset
            .client()
            .delete(blob_url(buildset, "org/img", digest))
            .basic_auth(&buildset.username, Some(&buildset.password))
            .send()
            .unwrap()
    };
    let reply = delete(&buildset, gone);
    assert_eq!(reply.status(), 202, "{}", buildset.log());
    let head = buildset
        .client()
        .head(blob_url(&buildset, "org/img", gone))
        .send()
        .unwrap();
    assert_eq!(head.status(), 404);
    let get = buildset
        .client()
        .get(blob_url(&buildset, "org/img", gone))
        .send()
        .unwrap();
    assert_eq!(get.status(), 404);
    assert_eq!(error_code(get), "BLOB_UNKNOWN");
    assert_eq!(upstream_gets(&site, "org/img", gone), 0, "{}", site.log());

    // The other layer's record stays, on disk too.
    buildset.restart();
    assert_eq!(get_digest(&buildset, "org/img", kept), *kept);
    let again = delete(&buildset, gone);
    assert_eq!(again.status(), 404);
    assert_eq!(error_code(again), "BLOB_UNKNOWN");
}

#[test]
fn registry_lazy_a_range_is_served_while_the_blob_is_still_being_fetched() {
    // 16 MiB at 2 MiB/s: about 8 s to fetch whole.
    let img = image(13, &[16 << 20]);
    let (_relay, site, buildset, _) = lazily_behind_relay(2 << 20, &img);
    let digest = img.layer_digests()[0].clone();

    let whole = {
        let (client, url) = (buildset.client(), blob_url(&buildset, "org/img", &digest));
        std::thread::spawn(move || client.get(url).send().and_then(|r| r.bytes()))
    };
    let started = Instant::now();
    let range = buildset
        .client()
        .get(blob_url(&buildset, "org/img", &digest))
        .header("range", "bytes=1000-1999999")
        .send()
        .unwrap();
    assert_eq!(range.status(), 206, "{}", buildset.log());
    assert_eq!(
        range.headers()["content-range"],
        format!("bytes 1000-1999999/{}", 16 << 20).as_str()
    );
    let bytes = range.bytes().unwrap();
    let took = started.elapsed();
    assert_eq!(&bytes[..], &img.layers[0][1000..2_000_000]);
    assert!(
        took < Duration::from_secs(5),
        "the range waited for the whole blob: {took:?}"
    );
    let whole = whole.join().unwrap().unwrap();
    assert_eq!(Digest::sha256(&whole), digest);
    assert_eq!(
        upstream_gets(&site, "org/img", &digest),
        1,
        "{}",
        site.log()
    );
}

#[test]
fn registry_lazy_a_prefetch_is_tried_again_while_the_upstream_is_unavailable() {
    // The relay has nowhere to go at first: every connection is dropped.
    let relay = Relay::start(0);
    let site = site_behind(&relay);
    let buildset = BuildsetServer::start();
    let img = image(17, &[1 << 20]);
    push_to_site(&site, "org/img", "1_latest", &img);
    let source = source_through(&site, &relay, "org/img");
    let digest = img.layer_digests()[0].clone();
    let body = serde_json::json!({
        "upstream": {"url": source.url, "repository": source.repository,
                     "username": "token", "password": source.token, "ca_pem": source.ca_pem},
        "blobs": [{"digest": digest.to_string(), "size": 1 << 20, "mediaType": LAYER,
                   "prefetch": true}],
    });
    let reply = buildset
        .client()
        .put(format!(
            "{}/v2/org/img/_speculative/sources",
            buildset.url()
        ))
        .basic_auth(&buildset.username, Some(&buildset.password))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200, "{}", buildset.log());

    wait_until(
        "the first prefetch to fail",
        Duration::from_secs(20),
        || buildset.log().contains("attempt 1 of 3 failed"),
    );
    assert!(!stored(&buildset, &digest));
    // The intermediate registry is back before the second attempt.
    relay.target.store(site.port, Ordering::SeqCst);
    wait_until(
        "the blob to be prefetched on a later attempt",
        Duration::from_secs(20),
        || stored(&buildset, &digest),
    );
    assert_eq!(
        upstream_gets(&site, "org/img", &digest),
        1,
        "{}",
        site.log()
    );
    assert_eq!(get_digest(&buildset, "org/img", &digest), digest);
}

#[test]
fn registry_lazy_fetches_take_turns_in_the_order_asked_and_a_missing_blob_is_told_at_once() {
    // Two 24 MiB layers at 8 MiB/s each: about 3 s apiece, streamed one
    // after the other (docker unpacks in order), not side by side. (The
    // second's first MiBs wait in the socket buffers meanwhile.)
    let img = image(19, &[24 << 20, 24 << 20]);
    let (_relay, site, buildset, source) = lazily_behind_relay(8 << 20, &img);
    let ghost = Digest::sha256(b"never pushed either");
    assert_eq!(
        record(&buildset, "org/img", &source, &[(ghost.clone(), 19)]).status(),
        200
    );

    let started = Instant::now();
    let get = |digest: &Digest| {
        let (client, url) = (buildset.client(), blob_url(&buildset, "org/img", digest));
        std::thread::spawn(move || {
            let reply = client.get(url).send().unwrap();
            let head = started.elapsed();
            let bytes = reply.bytes().unwrap();
            (head, started.elapsed(), Digest::sha256(&bytes))
        })
    };
    let [first, second] = [0, 1].map(|i| img.layer_digests()[i].clone());
    let first_get = get(&first);
    std::thread::sleep(Duration::from_millis(300));
    let second_get = get(&second);
    std::thread::sleep(Duration::from_millis(300));

    // Whatever streams, a blob the upstream lacks is told at once.
    let asked = Instant::now();
    assert_blob_unknown(&buildset, "org/img", &ghost);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );

    let (_, first_done, first_digest) = first_get.join().unwrap();
    let (second_head, second_done, second_digest) = second_get.join().unwrap();
    assert_eq!(
        (first_digest, second_digest),
        (first.clone(), second.clone())
    );
    // The second's head came at once, its bytes after the first's.
    assert!(second_head < Duration::from_secs(1), "{second_head:?}");
    assert!(
        second_done > first_done + Duration::from_millis(1500),
        "the second blob streamed beside the first: done at {second_done:?} and {first_done:?}"
    );
    assert!(first_done < Duration::from_secs(5), "{first_done:?}");
    for digest in [&first, &second] {
        assert_eq!(upstream_gets(&site, "org/img", digest), 1);
    }
}

#[test]
fn registry_lazy_a_client_never_waits_behind_a_prefetch_nobody_waits_for() {
    // A 48 MiB layer prefetched at 8 MiB/s (about 6 s) while a client asks
    // for an 8 MiB one (about 1 s): the client's streams beside it.
    let img = image(23, &[48 << 20, 8 << 20]);
    let (_relay, site, buildset, source) = lazily_behind_relay(8 << 20, &img);
    let [big, small] = [0, 1].map(|i| img.layer_digests()[i].clone());
    let reply = record_prefetching(
        &buildset,
        "org/img",
        &source,
        &[(big.clone(), 48 << 20, true)],
    );
    assert_eq!(reply.status(), 200, "{}", buildset.log());
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !stored(&buildset, &big),
        "the prefetch was done too soon to be in the way"
    );

    let asked = Instant::now();
    assert_eq!(get_digest(&buildset, "org/img", &small), small);
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the client waited behind the prefetch: {took:?}"
    );
    assert!(
        !stored(&buildset, &big),
        "the prefetch ended before the client's blob"
    );
    wait_until("the prefetch to finish", Duration::from_secs(20), || {
        stored(&buildset, &big)
    });
    for digest in [&big, &small] {
        assert_eq!(upstream_gets(&site, "org/img", digest), 1, "{}", site.log());
    }
}
