//! The copy engine and client against real registries (Debian's
//! docker-registry with TLS and htpasswd on both ends): what arrives, what
//! is skipped, mounted or refused, and the exact errors.

use std::time::{Duration, Instant};

use speculative_images::client::{
    copy_reference, CopyOptions, Endpoint, ErrorKind, Registry, RemoteRegistry, RetryPolicy,
};
use speculative_images::oci::Reference;

use crate::client_fixtures::{
    client_of, index_of, manifest_ref, push_image, push_index, random_image, repo, Flavor,
};
use crate::support::distribution::{Distribution, Options};
use crate::support::fault_proxy::{fault, Failure, FlakyProxy};

fn reference(reg: &Distribution, path: &str) -> Reference {
    format!("{}/{path}", reg.authority()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_an_image_then_finds_it_already_there() {
    let (a, b) = (Distribution::start(), Distribution::start());
    let (src, dst) = (client_of(&a), client_of(&b));
    let image = random_image(Flavor::Docker, "amd64", &[300_000, 2_000_000, 10]);
    push_image(&src, "org/img", Some("1234_latest"), &image).await;

    let from = reference(&a, "org/img:1234_latest");
    let to = reference(&b, "org/img:latest");
    let report = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&image.manifest.digest));
    assert!(report.changed);
    assert_eq!(report.blobs_copied, 4);
    assert_eq!(
        report.bytes_copied,
        image.blobs.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    let arrived = dst
        .manifest_get(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap();
    assert_eq!(arrived.bytes, image.manifest.bytes);
    assert_eq!(arrived.media_type, image.manifest.media_type);

    // Again: nothing to do, two requests to the destination.
    let before = b.access_log().len();
    let again = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!((again.blobs_copied, again.bytes_copied), (0, 0));
    let requests: Vec<String> = b.access_log()[before..].to_vec();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(
        requests[0].contains("HEAD /v2/org/img/manifests/latest"),
        "{requests:#?}"
    );

    // Under another tag: every blob is found by HEAD, only the manifest is written.
    let retag = reference(&b, "org/img:other");
    let report = copy_reference(&src, &from, &dst, &retag, &CopyOptions::default())
        .await
        .unwrap();
    assert!(report.changed);
    assert_eq!((report.blobs_skipped, report.blobs_copied), (4, 0));
    assert_eq!(dst.tags_list(&repo("org/img")).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_indexes_keep_their_digest() {
    let (a, b) = (Distribution::start(), Distribution::start());
    let (src, dst) = (client_of(&a), client_of(&b));
    for flavor in [Flavor::Oci, Flavor::Docker] {
        let amd = random_image(flavor, "amd64", &[100_000, 20]);
        let arm = random_image(flavor, "arm64", &[120_000, 30]);
        let index = index_of(flavor, &[&amd, &arm]);
        push_index(&src, "multi/img", "1_latest", &[&amd, &arm], &index).await;

        let report = copy_reference(
            &src,
            &reference(&a, "multi/img:1_latest"),
            &dst,
            &reference(&b, "multi/img:latest"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.digest.as_ref(), Some(&index.digest), "{flavor:?}");
        assert_eq!(report.manifests_written, 3);
        let arrived = dst
            .manifest_get(&repo("multi/img"), &manifest_ref("latest"))
            .await
            .unwrap();
        assert_eq!(
            arrived.bytes, index.bytes,
            "{flavor:?}: index bytes changed"
        );
        assert_eq!(arrived.media_type, index.media_type);
        for image in [&amd, &arm] {
            let digest = image.manifest.digest.to_string();
            let child = dst
                .manifest_get(&repo("multi/img"), &manifest_ref(&digest))
                .await
                .unwrap();
            assert_eq!(child.bytes, image.manifest.bytes);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn within_one_registry_blobs_are_mounted() {
    let a = Distribution::start();
    let reg = client_of(&a);
    let image = random_image(Flavor::Oci, "amd64", &[50_000, 60_000]);
    push_image(&reg, "org/img", Some("9_latest"), &image).await;
    let report = copy_reference(
        &reg,
        &reference(&a, "org/img:9_latest"),
        &reg,
        &reference(&a, "other/img:latest"),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            report.blobs_mounted,
            report.blobs_copied,
            report.bytes_copied
        ),
        (3, 0, 0)
    );
    let got = reg
        .manifest_head(&repo("other/img"), &manifest_ref("latest"))
        .await
        .unwrap();
    assert_eq!(got, Some(image.manifest.digest.clone()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_ca_served_as_the_leaf_is_accepted_when_given() {
    let a = Distribution::start_with(Options {
        ca_as_leaf: true,
        ..Options::default()
    });
    let reg = client_of(&a);
    let image = random_image(Flavor::Docker, "amd64", &[1000]);
    push_image(&reg, "org/img", Some("latest"), &image).await;
    let head = reg
        .manifest_head(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap();
    assert_eq!(head, Some(image.manifest.digest.clone()));

    // Another certificate: refused, naming the registry and the reason.
    let other = Distribution::start();
    let wrong = RemoteRegistry::new(
        Endpoint::new(a.authority())
            .with_credentials(&a.username, &a.password)
            .with_ca_pem(&other.tls.cert_pem),
    )
    .unwrap();
    let err = wrong
        .manifest_head(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Tls(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "GET https://{0}/v2/: TLS handshake with registry {0} failed: \
             it presents a CA certificate as its own, and not the certificate given \
             for it (invalid peer certificate: Other(OtherError(CaUsedAsEndEntity)))",
            a.authority()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_unknown_tag_and_unreachable_registry_are_named() {
    let a = Distribution::start();
    let b = Distribution::start();
    let dst = client_of(&b);
    let bad_password = "not-the-password-4711";
    let src = RemoteRegistry::new(
        Endpoint::new(a.authority())
            .with_credentials(&a.username, bad_password)
            .with_ca_pem(&a.tls.cert_pem),
    )
    .unwrap();
    let from = reference(&a, "org/img:latest");
    let to = reference(&b, "org/img:latest");
    let err = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.to_string(),
        format!(
            "copying {from} to {to}: GET https://{0}/v2/org/img/manifests/latest: \
             401 Unauthorized (UNAUTHORIZED: authentication required): \
             registry {0} refused the credentials of user \"zuul\"",
            a.authority()
        )
    );
    assert!(!err.to_string().contains(bad_password));

    let src = client_of(&a);
    let err = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.has_code("MANIFEST_UNKNOWN"), "{err}");
    assert!(
        err.to_string().ends_with(&format!(
            "404 Not Found (MANIFEST_UNKNOWN: manifest unknown): not found on registry {}",
            a.authority()
        )),
        "{err}"
    );

    // Nothing listens on the port: refused, retried, then named.
    let port = crate::support::free_port();
    let gone = RemoteRegistry::new(Endpoint::new(format!("127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    let err = gone
        .manifest_get(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err.kind, ErrorKind::Connect(_)), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "GET https://127.0.0.1:{port}/v2/: cannot connect to registry 127.0.0.1:{port}: "
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_corrupted_at_the_source_is_refused_and_not_stored() {
    let (a, b) = (Distribution::start(), Distribution::start());
    let (src, dst) = (client_of(&a), client_of(&b));
    let image = random_image(Flavor::Docker, "amd64", &[4096, 8192]);
    push_image(&src, "org/img", Some("latest"), &image).await;
    // Flip bytes of one layer in the source's storage: the registry serves
    // it as is, with the right length and the wrong content.
    let (digest, content) = &image.blobs[2];
    let path = a.data.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &digest.hex()[..2],
        digest.hex()
    ));
    let mut bad = content.to_vec();
    bad[100] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();

    let options = CopyOptions::default();
    let err = copy_reference(
        &src,
        &reference(&a, "org/img:latest"),
        &dst,
        &reference(&b, "org/img:latest"),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::DigestMismatch {
            expected: digest.clone(),
            actual: speculative_images::oci::Digest::sha256(&bad),
        },
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("copying blob {digest}")),
        "{err}"
    );
    assert_eq!(dst.blob_head(&repo("org/img"), digest).await.unwrap(), None);
    assert_eq!(
        dst.manifest_head(&repo("org/img"), &manifest_ref("latest"))
            .await
            .unwrap(),
        None
    );

    // Truncated: a size mismatch.
    std::fs::write(&path, &content[..1000]).unwrap();
    let err = copy_reference(
        &src,
        &reference(&a, "org/img:latest"),
        &dst,
        &reference(&b, "org/img:latest"),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::SizeMismatch {
            expected: content.len() as u64,
            actual: 1000
        },
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_fetched_once_per_scope_and_refusals_are_named() {
    let a = Distribution::start();
    let ours = crate::support::buildset::BuildsetServer::start();
    let src = client_of(&a);
    let image = random_image(Flavor::Docker, "amd64", &[10_000, 20_000, 30_000, 40_000]);
    push_image(&src, "org/img", Some("1_latest"), &image).await;
    let dst = crate::transfer_support::client_for(&ours);
    let to: Reference = format!("{}/org/img:latest", ours.authority())
        .parse()
        .unwrap();
    let report = copy_reference(
        &src,
        &reference(&a, "org/img:1_latest"),
        &dst,
        &to,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_copied, 5);
    let log = ours.log();
    let tokens = log.lines().filter(|l| l.contains("/auth/token")).count();
    // pull (HEADs) and pull,push (uploads, manifest): at most one token each.
    assert!((1..=2).contains(&tokens), "{tokens} token requests:\n{log}");

    let wrong = RemoteRegistry::new(
        Endpoint::new(ours.authority())
            .with_credentials(&ours.username, "not-the-password-77")
            .with_ca_pem(&ours.ca_pem),
    )
    .unwrap();
    let err = copy_reference(
        &src,
        &reference(&a, "org/img:1_latest"),
        &wrong,
        &format!("{}/org/other:latest", ours.authority())
            .parse()
            .unwrap(),
        &CopyOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "registry {} refused the credentials of user \"zuul\"",
            ours.authority()
        )),
        "{text}"
    );
    assert!(!text.contains("not-the-password-77"));
}

/// Our registry server (the real binary) over plain HTTP, as a site might
/// run one it marks insecure; stopped on drop.
struct PlainServer {
    authority: String,
    username: String,
    password: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl PlainServer {
    fn start() -> PlainServer {
        use speculative_images::registry::config::{
            Role, ServerConfig, User, DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        };
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let password = crate::support::random_password();
        let config = ServerConfig {
            listen: vec![format!("127.0.0.1:{port}").parse().unwrap()],
            tls: None,
            storage: dir.path().join("storage"),
            users: vec![User {
                username: "zuul".into(),
                password_bcrypt: bcrypt::hash(&password, 4).unwrap(),
                role: Role::ReadWrite,
            }],
            public_url: None,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            token_secret: crate::support::random_password(),
            anonymous_pull: true,
            delete_enabled: true,
            prune: None,
            limits: Default::default(),
        };
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_buildset-registry"))
            .arg("--config")
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start buildset-registry");
        crate::support::wait_until("plain buildset-registry", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        PlainServer {
            authority: format!("127.0.0.1:{port}"),
            username: "zuul".into(),
            password,
            child,
            _dir: dir,
        }
    }

    /// A client of this server marked insecure (plain HTTP).
    fn client(&self) -> std::sync::Arc<RemoteRegistry> {
        self.client_at(&self.authority, RetryPolicy::default())
    }

    /// A client reaching this server (its credentials) at `authority`.
    fn client_at(&self, authority: &str, retry: RetryPolicy) -> std::sync::Arc<RemoteRegistry> {
        RemoteRegistry::with_retry(
            Endpoint::new(authority)
                .with_credentials(&self.username, &self.password)
                .insecure(true),
            retry,
        )
        .unwrap()
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_and_the_copy_completes() {
    let (a, b) = (PlainServer::start(), PlainServer::start());
    let image = random_image(Flavor::Oci, "amd64", &[40_000, 50_000]);
    let (config, _) = &image.blobs[0];
    let (layer1, _) = &image.blobs[1];
    let (layer2, _) = &image.blobs[2];
    push_image(&a.client(), "org/img", Some("1_latest"), &image).await;

    use Failure::{Reset, Status};
    let src_proxy = FlakyProxy::start(
        &a.authority,
        vec![
            // 0: the source manifest: the connection reset, then unavailable.
            fault(
                "GET",
                "/v2/org/img/manifests/1_latest",
                &[Reset, Status(503)],
            ),
            // 1: one layer's download, a server error once.
            fault("GET", format!("/blobs/{layer1}"), &[Status(500)]),
            // 2: the other layer's download, counted only.
            fault("GET", format!("/blobs/{layer2}"), &[]),
        ],
    )
    .await;
    let dst_proxy = FlakyProxy::start(
        &b.authority,
        vec![
            // 0: is the config there? Rate limited once (Retry-After: 1).
            fault("HEAD", format!("/blobs/{config}"), &[Status(429)]),
            // 1: the second layer's upload (`?digest=sha256%3A<hex>`),
            // refused once when its body has arrived: the whole transfer,
            // download included, starts again.
            fault("PUT", layer2.hex(), &[Status(503)]),
            // 2: the manifest write, a bad gateway once.
            fault("PUT", "/v2/org/img/manifests/latest", &[Status(502)]),
            // 3: the first layer's upload, counted only.
            fault("PUT", layer1.hex(), &[]),
        ],
    )
    .await;

    let src = a.client_at(&src_proxy.authority, RetryPolicy::default());
    let dst = b.client_at(&dst_proxy.authority, RetryPolicy::default());
    let from: Reference = format!("{}/org/img:1_latest", src_proxy.authority)
        .parse()
        .unwrap();
    let to: Reference = format!("{}/org/img:latest", dst_proxy.authority)
        .parse()
        .unwrap();
    let started = Instant::now();
    let report = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&image.manifest.digest));
    assert_eq!(report.blobs_copied, 3);
    // The 429's Retry-After was waited for.
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Each failed request was sent again until it went through.
    eprintln!(
        "SEEN src {:?} dst {:?}",
        (0..3).map(|i| src_proxy.seen(i)).collect::<Vec<_>>(),
        (0..4).map(|i| dst_proxy.seen(i)).collect::<Vec<_>>()
    );
    assert_eq!(src_proxy.seen(0), 3, "source manifest GETs");
    assert_eq!(src_proxy.seen(1), 2, "first layer downloads");
    assert_eq!(src_proxy.seen(2), 2, "second layer downloads (restarted)");
    assert_eq!(dst_proxy.seen(0), 2, "config HEADs");
    assert_eq!(dst_proxy.seen(1), 2, "second layer uploads");
    assert_eq!(dst_proxy.seen(2), 2, "manifest PUTs");
    assert_eq!(dst_proxy.seen(3), 1, "first layer uploads");

    // What arrived, read from the destination directly.
    let direct = b.client();
    let arrived = direct
        .manifest_get(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap();
    assert_eq!(arrived.bytes, image.manifest.bytes);
    for (digest, content) in &image.blobs {
        assert_eq!(
            direct.blob_head(&repo("org/img"), digest).await.unwrap(),
            Some(content.len() as u64)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_keeps_failing_is_given_up_on_after_the_retries() {
    let a = PlainServer::start();
    let proxy = FlakyProxy::start(
        &a.authority,
        vec![fault(
            "GET",
            "/manifests/latest",
            &[Failure::Status(503); 100],
        )],
    )
    .await;
    let retry = RetryPolicy {
        retries: 3,
        backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(1),
    };
    let client = a.client_at(&proxy.authority, retry);
    let err = client
        .manifest_get(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap_err();
    assert_eq!(proxy.seen(0), 4, "the first attempt and 3 retries");
    assert_eq!(err.kind, ErrorKind::Status, "{err}");
    assert_eq!(err.status.map(|s| s.as_u16()), Some(503));
    assert!(
        err.to_string().starts_with(&format!(
            "GET http://{}/v2/org/img/manifests/latest: 503 Service Unavailable",
            proxy.authority
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_marked_insecure_is_copied_to_and_from_over_plain_http() {
    let tls = Distribution::start();
    let plain = PlainServer::start();
    let (secure, insecure) = (client_of(&tls), plain.client());
    let amd = random_image(Flavor::Docker, "amd64", &[30_000, 10]);
    let arm = random_image(Flavor::Docker, "arm64", &[35_000, 20]);
    let index = index_of(Flavor::Docker, &[&amd, &arm]);
    push_index(&secure, "org/img", "1_latest", &[&amd, &arm], &index).await;

    // TLS registry -> plain one.
    let plain_ref: Reference = format!("{}/org/img:latest", plain.authority)
        .parse()
        .unwrap();
    let report = copy_reference(
        &secure,
        &reference(&tls, "org/img:1_latest"),
        &insecure,
        &plain_ref,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&index.digest));
    assert_eq!(report.blobs_copied, 6);
    let arrived = insecure
        .manifest_get(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap();
    assert_eq!(arrived.bytes, index.bytes);
    assert_eq!(arrived.media_type, index.media_type);

    // Plain one -> TLS registry, another repository: the same digest.
    let back = reference(&tls, "back/img:latest");
    let report = copy_reference(
        &insecure,
        &plain_ref,
        &secure,
        &back,
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&index.digest));
    assert_eq!(
        secure
            .manifest_head(&repo("back/img"), &manifest_ref("latest"))
            .await
            .unwrap(),
        Some(index.digest.clone())
    );

    // Not marked insecure, the same server is not spoken to in clear.
    let strict = RemoteRegistry::new(
        Endpoint::new(&plain.authority).with_credentials(&plain.username, &plain.password),
    )
    .unwrap();
    let err = strict
        .manifest_head(&repo("org/img"), &manifest_ref("latest"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("GET https://{}/v2/: ", plain.authority)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_accepts_connections_and_never_answers_fails_within_seconds_named() {
    // Over TLS, "never answers" is a handshake that never completes: the
    // connect timeout (5 s), tried twice (a timeout is retried once).
    let silent = crate::transfer_support::SilentListener::start();
    let b = Distribution::start();
    let authority = format!("127.0.0.1:{}", silent.port);
    let src = RemoteRegistry::new(Endpoint::new(&authority)).unwrap();
    let from: Reference = format!("{authority}/org/img:latest").parse().unwrap();
    let to = reference(&b, "org/img:latest");
    let started = Instant::now();
    let err = copy_reference(&src, &from, &client_of(&b), &to, &CopyOptions::default())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(15),
        "{elapsed:?}: {err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "copying {from} to {to}: GET https://{authority}/v2/: \
             cannot connect to registry {authority}: operation timed out"
        )
    );
    assert_eq!(silent.accepted(), 2, "the first attempt and one retry");
}

/// Run `command` to completion and return its stdout and its peak resident
/// set in KiB: the largest `VmHWM` of /proc/<pid>/status, polled every 2 ms
/// until it exits (the high-water mark only grows, so the last reading is
/// its peak but for the last 2 ms). Not `ru_maxrss` from wait4: Linux folds
/// into it the memory of the process that spawned it (this test, holding
/// the image), recorded at exec.
fn run_measuring_peak_rss(mut command: std::process::Command) -> (u64, String) {
    use std::io::Read as _;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kib) = hwm {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "{status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(peak_kib > 0, "no VmHWM read from {status_file}");
    (peak_kib, stdout)
}

#[test]
fn the_cli_streams_a_200_mib_layer_without_holding_it_or_writing_it() {
    use crate::support::buildset::BuildsetServer;
    use crate::transfer_support::{client_for, TestRegistry};
    use speculative_images::client::Registry as _;

    const LAYER: usize = 200 << 20;
    let (a, b) = (BuildsetServer::start(), BuildsetServer::start());
    let image = random_image(Flavor::Oci, "amd64", &[LAYER, 1000]);
    speculative_images::client::runtime::block_on(push_image(
        &client_for(&a),
        "org/big",
        Some("latest"),
        &image,
    ))
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (ca_a, ca_b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    std::fs::write(&ca_a, a.ca_pem()).unwrap();
    std::fs::write(&ca_b, b.ca_pem()).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_speculative-images"));
    command
        .arg("copy")
        .arg(format!("docker://{}/org/big:latest", a.authority()))
        .arg(format!("docker://{}/org/big:copied", b.authority()))
        .arg("--src-cert")
        .arg(&ca_a)
        .arg("--dest-cert")
        .arg(&ca_b)
        .env(
            "SPECULATIVE_IMAGES_SRC_CREDS",
            format!("{}:{}", a.username(), a.password()),
        )
        .env(
            "SPECULATIVE_IMAGES_DEST_CREDS",
            format!("{}:{}", b.username(), b.password()),
        )
        .env("TMPDIR", &tmp);
    let (peak_kib, stdout) = run_measuring_peak_rss(command);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["digest"], image.manifest.digest.to_string());
    assert_eq!(report["blobs_copied"], 3, "{report}");
    let peak_mib = peak_kib / 1024;
    eprintln!(
        "peak RSS of the copy: {peak_mib} MiB for a {} MiB layer",
        LAYER >> 20
    );
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB: the {} MiB layer was held in memory",
        LAYER >> 20
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "temporary files written: {left:?}");

    // What arrived: the layer, whole, under its digest; the same manifest.
    let dst = client_for(&b);
    let (layer, _) = &image.blobs[1];
    let (size, manifest) = speculative_images::client::runtime::block_on(async {
        (
            dst.blob_head(&repo("org/big"), layer).await.unwrap(),
            dst.manifest_get(&repo("org/big"), &manifest_ref("copied"))
                .await
                .unwrap(),
        )
    })
    .unwrap();
    assert_eq!(size, Some(LAYER as u64));
    assert_eq!(manifest.bytes, image.manifest.bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_more_blobs_are_in_flight_than_the_parallelism() {
    let (a, b) = (PlainServer::start(), PlainServer::start());
    for parallelism in [2, 3] {
        // A new image each time: our server finds a blob it has in any
        // repository.
        let image = random_image(Flavor::Oci, "amd64", &[30_000; 6]);
        push_image(&a.client(), "org/img", Some("1_latest"), &image).await;
        // Each upload held 300 ms: with 7 blobs, transfers overlap as far
        // as the engine lets them.
        let proxy =
            FlakyProxy::start_with_upload_delay(&b.authority, vec![], Duration::from_millis(300))
                .await;
        let dst = b.client_at(&proxy.authority, RetryPolicy::default());
        let from: Reference = format!("{}/org/img:1_latest", a.authority).parse().unwrap();
        let to: Reference = format!("{}/org/p{parallelism}:latest", proxy.authority)
            .parse()
            .unwrap();
        let options = CopyOptions {
            parallelism,
            ..CopyOptions::default()
        };
        let report = copy_reference(&a.client(), &from, &dst, &to, &options)
            .await
            .unwrap();
        assert_eq!(report.blobs_copied, 7, "{report:?}");
        assert_eq!(
            proxy.uploads_peak(),
            parallelism,
            "blob uploads at once with parallelism {parallelism}"
        );
    }
}
