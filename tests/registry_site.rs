//! The registry as a site's intermediate registry: the real
//! `speculative-images serve --config FILE` with a YAML or TOML site
//! configuration, TLS from a test CA, an htpasswd file in the format
//! `htpasswd -B` writes, a read-write and a read-only user. Roles,
//! anonymous pulls (refused by default), delegated pull-only tokens, the
//! token realm under a hostile `Host`, cheap and uniform password
//! refusals, and configuration errors that name the key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
use speculative_images::client::{Endpoint, Registry as _, RemoteRegistry};
use speculative_images::oci::Digest;

use crate::registry_auth::{challenge, error_code};
use crate::support::buildset::BuildsetServer;
use crate::support::tls::server_pki;
use crate::support::{free_port, random_password, wait_until};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// How a test wants its site configured.
pub(crate) struct Options {
    pub(crate) toml: bool,
    pub(crate) anonymous_pull: bool,
    pub(crate) max_token_lifetime: &'static str,
    /// bcrypt cost of the htpasswd entries (`htpasswd -B` uses 5).
    pub(crate) cost: u32,
    /// The port `public_url` names, when clients reach the site through
    /// another port than the one it listens on (a relay in front).
    pub(crate) public_port: Option<u16>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            toml: false,
            anonymous_pull: false,
            max_token_lifetime: "1h",
            cost: 5,
            public_port: None,
        }
    }
}

/// A running site registry: user `zuul` is read-write, `reader` read-only.
pub(crate) struct Site {
    pub(crate) port: u16,
    pub(crate) writer_password: String,
    pub(crate) reader_password: String,
    pub(crate) ca_pem: String,
    pub(crate) client: Client,
    child: Child,
    pub(crate) dir: tempfile::TempDir,
}

/// An htpasswd line as `htpasswd -B` writes it (`$2y$`).
fn htpasswd_line(user: &str, password: &str, cost: u32) -> String {
    let hash = bcrypt::hash_with_result(password, cost)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}\n")
}

fn client_trusting(ca_pem: &str) -> Client {
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Site {
    pub(crate) fn start(options: Options) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let tls = server_pki(dir.path(), &["localhost", "127.0.0.1"]);
        let (writer_password, reader_password) = (random_password(), random_password());
        let htpasswd = htpasswd_line("zuul", &writer_password, options.cost)
            + &htpasswd_line("reader", &reader_password, options.cost);
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        let port = free_port();
        let Options {
            anonymous_pull,
            max_token_lifetime,
            public_port,
            ..
        } = options;
        let public = public_port.unwrap_or(port);
        let (name, text) = if options.toml {
            (
                "registry.toml",
                format!(
                    r#"listen = ["127.0.0.1:{port}"]
public_url = "https://127.0.0.1:{public}"
storage = "data"
htpasswd = "htpasswd"
anonymous_pull = {anonymous_pull}
token_secret_file = "token.secret"
max_token_lifetime = "{max_token_lifetime}"

[tls]
cert = "domain.crt"
key = "domain.key"

[users]
zuul = "read-write"
reader = "read-only"
"#
                ),
            )
        } else {
            (
                "registry.yaml",
                format!(
                    r#"listen: ["127.0.0.1:{port}"]
public_url: https://127.0.0.1:{public}
tls:
  cert: domain.crt
  key: domain.key
storage: data
htpasswd: htpasswd
users:
  zuul: read-write
  reader: read-only
anonymous_pull: {anonymous_pull}
token_secret_file: token.secret
max_token_lifetime: {max_token_lifetime}
"#
                ),
            )
        };
        let config = dir.path().join(name);
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_speculative-images"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut site = Site {
            port,
            writer_password,
            reader_password,
            client: client_trusting(&tls.cert_pem),
            ca_pem: tls.cert_pem,
            child,
            dir,
        };
        wait_until("the site registry", Duration::from_secs(20), || {
            if let Ok(Some(status)) = site.child.try_wait() {
                panic!("the registry exited ({status}):\n{}", site.log());
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        site
    }

    pub(crate) fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority())
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub(crate) fn as_writer(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth("zuul", Some(&self.writer_password))
    }

    pub(crate) fn as_reader(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth("reader", Some(&self.reader_password))
    }

    /// Push a one-layer image as the read-write user; its manifest digest.
    pub(crate) fn push_image(&self, repo: &str, tag: &str) -> Digest {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer = format!("layer of {repo}:{tag}").into_bytes();
        for blob in [&config, &layer] {
            let digest = Digest::sha256(blob);
            let url = self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"));
            let reply = self
                .as_writer(self.client.post(url))
                .body(blob.clone())
                .send()
                .unwrap();
            assert_eq!(reply.status(), 201, "{}", self.log());
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256(&layer).to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let reply = self
            .as_writer(self.client.put(url))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .unwrap();
        assert_eq!(reply.status(), 201, "{}", self.log());
        Digest::sha256(&manifest)
    }

    pub(crate) fn get_manifest(&self, repo: &str, reference: &str) -> RequestBuilder {
        self.client
            .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
    }

    pub(crate) fn start_upload(&self, repo: &str) -> RequestBuilder {
        self.client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
    }

    pub(crate) fn delete_manifest(&self, repo: &str, digest: &Digest) -> RequestBuilder {
        self.client
            .delete(self.url(&format!("/v2/{repo}/manifests/{digest}")))
    }

    /// `GET /auth/token` with `query` (besides `service`).
    pub(crate) fn token_endpoint(&self, query: &[(&str, &str)]) -> RequestBuilder {
        let authority = self.authority();
        self.client
            .get(self.url("/auth/token"))
            .query(&[("service", authority.as_str())])
            .query(query)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_yaml_site_enforces_roles_and_refuses_anonymous_pulls() {
    let site = Site::start(Options::default());
    let authority = site.authority();
    let digest = site.push_image("org/img", "1");

    // Anonymous: refused, told where to log in (`anonymous_pull` is off).
    let anonymous = site.get_manifest("org/img", "1").send().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        challenge(&anonymous),
        format!(
            "Bearer realm=\"https://{authority}/auth/token\",service=\"{authority}\",scope=\"repository:org/img:pull\""
        )
    );
    assert_eq!(error_code(anonymous), "UNAUTHORIZED");
    let no_token = site
        .token_endpoint(&[("scope", "repository:org/img:pull")])
        .send()
        .unwrap();
    assert_eq!(no_token.status(), 401);

    // Read-only: pulls; push and delete are denied (403: its role, not
    // its credentials, stands in the way).
    let pulled = site
        .as_reader(site.get_manifest("org/img", "1"))
        .send()
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        pulled.headers()["docker-content-digest"].to_str().unwrap(),
        digest.to_string()
    );
    let push = site.as_reader(site.start_upload("org/img")).send().unwrap();
    assert_eq!(push.status(), 403);
    assert_eq!(error_code(push), "DENIED");
    let delete = site
        .as_reader(site.delete_manifest("org/img", &digest))
        .send()
        .unwrap();
    assert_eq!(delete.status(), 403);
    assert_eq!(error_code(delete), "DENIED");
    // Through the token flow, its token holds pull only.
    let token: serde_json::Value = site
        .as_reader(site.token_endpoint(&[("scope", "repository:org/img:pull,push")]))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let push = site
        .start_upload("org/img")
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(push.status(), 401);
    assert!(challenge(&push).ends_with(",error=\"insufficient_scope\""));
    assert_eq!(error_code(push), "UNAUTHORIZED");

    // Read-write: pushes (above) and deletes.
    let delete = site
        .as_writer(site.delete_manifest("org/img", &digest))
        .send()
        .unwrap();
    assert_eq!(delete.status(), 202);
    let gone = site
        .as_reader(site.get_manifest("org/img", "1"))
        .send()
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[test]
fn a_toml_site_with_anonymous_pull_serves_anonymous_clients() {
    let site = Site::start(Options {
        toml: true,
        anonymous_pull: true,
        ..Options::default()
    });
    let digest = site.push_image("org/img", "1");
    let anonymous = site.get_manifest("org/img", "1").send().unwrap();
    assert_eq!(anonymous.status(), 200);
    assert_eq!(
        anonymous.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        digest.to_string()
    );
    let push = site.start_upload("org/img").send().unwrap();
    assert_eq!(push.status(), 401);
    assert_eq!(error_code(push), "UNAUTHORIZED");
    let reader_push = site.as_reader(site.start_upload("org/img")).send().unwrap();
    assert_eq!(reader_push.status(), 403);
}

#[test]
fn a_delegated_token_pulls_the_named_repository_only_until_it_expires() {
    let site = Site::start(Options::default());
    let digest = site.push_image("org/img", "1");
    site.push_image("org/other", "1");

    // Asking for more than `max_token_lifetime` (1h here) is refused.
    let too_long = site
        .as_writer(
            site.token_endpoint(&[("scope", "repository:org/img:pull"), ("expires_in", "3601")]),
        )
        .send()
        .unwrap();
    assert_eq!(too_long.status(), 400);
    let body: serde_json::Value = too_long.json().unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "expires_in=3601 is not between 1 and max_token_lifetime (3600 s)"
    );

    let reply = site
        .as_writer(site.token_endpoint(&[
            ("scope", "repository:org/img:pull,push"),
            ("expires_in", "3"),
        ]))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().unwrap();
    assert_eq!(body["expires_in"], 3);
    let token = body["token"].as_str().unwrap().to_string();
    let issued = Instant::now();

    // As a bearer token: pulls org/img, nothing else.
    let pull = site
        .get_manifest("org/img", "1")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(pull.status(), 200);
    let refused = [
        ("another repository", site.get_manifest("org/other", "1")),
        ("a push", site.start_upload("org/img")),
        ("a delete", site.delete_manifest("org/img", &digest)),
    ];
    for (what, request) in refused {
        let reply = request.bearer_auth(&token).send().unwrap();
        assert_eq!(reply.status(), 401, "{what}");
        assert!(
            challenge(&reply).ends_with(",error=\"insufficient_scope\""),
            "{what}: {}",
            challenge(&reply)
        );
        assert_eq!(error_code(reply), "UNAUTHORIZED", "{what}");
    }

    // Our own client, holding the token as its only secret (as a Basic
    // password: what docker, podman and skopeo take), through the
    // challenge and the token endpoint.
    let endpoint = Endpoint::new(site.authority())
        .with_credentials("token", &token)
        .with_ca_pem(site.ca_pem.clone());
    let (manifest, push) = speculative_images::client::runtime::block_on(async {
        let registry = RemoteRegistry::new(endpoint).unwrap();
        let repo = "org/img".parse().unwrap();
        let tag = "1".parse().unwrap();
        let manifest = registry.manifest_get(&repo, &tag).await.unwrap();
        let other = "org/copy".parse().unwrap();
        let push = registry.manifest_put(&other, &tag, &manifest).await;
        (manifest, push)
    })
    .unwrap();
    assert_eq!(manifest.digest, digest);
    let push = push.expect_err("a delegated token does not push");
    assert!(push.to_string().contains("401"), "{push}");

    // Expired: refused as a bearer token and as a password.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(issued.elapsed()));
    let expired = site
        .get_manifest("org/img", "1")
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(expired.status(), 401);
    assert!(challenge(&expired).ends_with(",error=\"invalid_token\""));
    assert_eq!(error_code(expired), "UNAUTHORIZED");
    let as_password = site
        .get_manifest("org/img", "1")
        .basic_auth("token", Some(&token))
        .send()
        .unwrap();
    assert_eq!(as_password.status(), 401);
    assert!(!site.log().contains(&token), "the token was logged");
}

/// A client over HTTP/1.1 (where the `Host` header is the client's word).
fn http1_client(ca_pem: &str) -> Client {
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap()
}

const EVIL_HOST: &str = "x\",realm=\"http://evil.example/steal";

#[test]
fn a_hostile_host_header_does_not_reach_the_token_realm() {
    // The buildset registry's JSON config has no public_url: the realm
    // comes from Host when it is a plain host[:port], else the listen address.
    let buildset = BuildsetServer::start();
    let authority = buildset.authority();
    let client = http1_client(&buildset.ca_pem);
    let push = |host: &str| {
        client
            .post(format!("{}/v2/org/img/blobs/uploads/", buildset.url()))
            .header("host", host)
            .send()
            .unwrap()
    };
    let reply = push(EVIL_HOST);
    assert_eq!(reply.status(), 401);
    assert_eq!(
        challenge(&reply),
        format!(
            "Bearer realm=\"https://{authority}/auth/token\",service=\"{authority}\",scope=\"repository:org/img:pull,push\""
        )
    );
    let reply = push("registry.example.org:5000");
    assert!(
        challenge(&reply)
            .starts_with("Bearer realm=\"https://registry.example.org:5000/auth/token\","),
        "{}",
        challenge(&reply)
    );

    // A site's realm is its public_url, whatever the Host.
    let site = Site::start(Options::default());
    let reply = http1_client(&site.ca_pem)
        .get(site.url("/v2/"))
        .header("host", EVIL_HOST)
        .send()
        .unwrap();
    assert_eq!(reply.status(), 401);
    let authority = site.authority();
    assert_eq!(
        challenge(&reply),
        format!("Bearer realm=\"https://{authority}/auth/token\",service=\"{authority}\"")
    );
}

/// Median time of `request` over `n` runs, each with a fresh password.
fn median_refusal(site: &Site, user: &str, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let reply = site
                .client
                .get(site.url("/v2/"))
                .basic_auth(user, Some(random_password()))
                .send()
                .unwrap();
            assert_eq!(reply.status(), 401);
            started.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn wrong_passwords_are_refused_uniformly_and_a_flood_is_cheap() {
    // Cost 10: one bcrypt run takes tens of milliseconds, well above the
    // noise of a request on loopback.
    let site = Site::start(Options {
        cost: 10,
        ..Options::default()
    });
    // Warm the connection up.
    let _ = site.client.get(site.url("/v2/")).send().unwrap();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        known.push(median_refusal(&site, "zuul", 3));
        unknown.push(median_refusal(&site, "nobody", 3));
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[1], unknown[1]);
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "a known user's refusal takes {known:?}, an unknown user's {unknown:?}"
    );

    // The same wrong password, again and again: one bcrypt run, then cached.
    const FLOOD: u32 = 200;
    let started = Instant::now();
    for user in ["zuul", "nobody"] {
        for _ in 0..FLOOD / 2 {
            let reply = site
                .client
                .get(site.url("/v2/"))
                .basic_auth(user, Some("the same wrong password"))
                .send()
                .unwrap();
            assert_eq!(reply.status(), 401);
        }
    }
    let flood = started.elapsed();
    // Without the cache it would cost FLOOD bcrypt runs; allow a quarter.
    assert!(
        flood < known * FLOOD / 4,
        "{FLOOD} refusals took {flood:?}; one bcrypt run takes about {known:?}"
    );
    // The right password still works.
    let ok = site
        .as_writer(site.client.get(site.url("/v2/")))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// Start the server on `config_text` (written as `name`); it must exit
/// with an error: its stderr.
fn refused_config(dir: &Path, name: &str, config_text: &str) -> String {
    let config: PathBuf = dir.join(name);
    std::fs::write(&config, config_text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_speculative-images"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(
        "the server to refuse its config",
        Duration::from_secs(20),
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(!status.unwrap().success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

#[test]
fn config_errors_name_the_key_and_never_show_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let md5 = "$apr1$Jb3vF5wq$7Yc2n0tjZgS6kq9Ry5Rqv1";
    let htpasswd = htpasswd_line("zuul", "pw", 4) + &format!("old:{md5}\n");
    std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
    std::fs::write(
        dir.path().join("good-htpasswd"),
        htpasswd_line("zuul", "pw", 4),
    )
    .unwrap();
    let base = "listen: [\"127.0.0.1:1\"]\nstorage: data\nhtpasswd: good-htpasswd\n\
                token_secret_file: token.secret\nusers: {zuul: read-write}\n";
    let cases = [
        (
            "registry.yaml",
            format!("{base}anonymous_pul: true\n"),
            "unknown field `anonymous_pul`",
        ),
        (
            "registry.yaml",
            base.replace("read-write", "admin"),
            "users.zuul: unknown variant `admin`, expected `read-only` or `read-write`",
        ),
        (
            "registry.yaml",
            base.replace("good-htpasswd", "htpasswd"),
            "htpasswd: htpasswd file",
        ),
        (
            "registry.yaml",
            format!("{base}public_url: https://r.example.org/registry\n"),
            "public_url: https://r.example.org/registry: must be scheme://host[:port] only",
        ),
        (
            "registry.toml",
            "listen = [\"127.0.0.1:1\"]\nstorage = \"data\"\nhtpasswd = \"good-htpasswd\"\n\
             token_secret_file = \"token.secret\"\nmax_token_lifetime = \"a while\"\n\
             [users]\nzuul = \"read-write\"\n"
                .to_string(),
            // TOML's errors quote the line between the key and the reason.
            "max_token_lifetime: TOML parse error at line 5",
        ),
    ];
    for (name, text, expected) in cases {
        let stderr = refused_config(dir.path(), name, &text);
        assert!(stderr.contains(expected), "{expected}:\n{stderr}");
        if name.ends_with(".toml") {
            assert!(
                stderr.contains("\"a while\" is not a duration like 12h or 90m"),
                "{stderr}"
            );
        }
        assert!(!stderr.contains(md5), "{stderr}");
    }
    // The htpasswd error names the line and the kind of hash.
    let stderr = refused_config(
        dir.path(),
        "registry.yaml",
        &base.replace("good-htpasswd", "htpasswd"),
    );
    assert!(
        stderr.contains("line 2: the password of user \"old\" is an MD5 ($apr1$) hash, not bcrypt"),
        "{stderr}"
    );
}
