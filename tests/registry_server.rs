//! The server process: HTTP/2 and HTTP/1.1 over TLS, IPv6, a `[::]`
//! listener that also takes IPv4, one log line per request.

use std::process::{Command, Stdio};
use std::time::Duration;

use speculative_images::registry::config::{ServerConfig, DEFAULT_MAX_TOKEN_LIFETIME_SECS};

use crate::support::buildset::BuildsetServer;
use crate::support::{free_port, wait_until};

#[test]
fn serves_http2_by_alpn_and_http1_and_logs_each_request() {
    let registry = BuildsetServer::start();
    let h2 = registry
        .client()
        .get(format!("{}/v2/", registry.url()))
        .basic_auth(&registry.username, Some(&registry.password))
        .send()
        .unwrap();
    assert_eq!(h2.status(), 200);
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let h1 = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(registry.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap()
        .get(format!("{}/v2/org/img/manifests/latest", registry.url()))
        .send()
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 404);
    let log = registry.log();
    assert!(log.contains("GET /v2/ 200 "), "{log}");
    assert!(
        log.contains("GET /v2/org/img/manifests/latest 404 "),
        "{log}"
    );
}

#[test]
fn ipv6_fixture_answers_on_the_ipv6_loopback() {
    let registry = BuildsetServer::start_ipv6();
    assert_eq!(registry.authority(), format!("[::1]:{}", registry.port));
    let reply = registry
        .client()
        .get(format!("https://[::1]:{}/v2/", registry.port))
        .basic_auth(&registry.username, Some(&registry.password))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    let facts = registry.as_buildset_registry();
    assert_eq!(facts.authority(), registry.authority());
    assert_eq!(facts.cert, registry.ca_pem);
}

#[test]
fn an_ipv6_wildcard_listener_takes_ipv4_too() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = ServerConfig {
        listen: vec![format!("[::]:{port}").parse().unwrap()],
        tls: None,
        storage: dir.path().join("storage"),
        users: vec![],
        public_url: None,
        max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        token_secret: "secret".into(),
        anonymous_pull: true,
        delete_enabled: true,
        prune: None,
        limits: Default::default(),
    };
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_speculative-images"))
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answers = |url: String| {
        reqwest::blocking::get(url)
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_until("the server", Duration::from_secs(20), || {
        answers(format!("http://127.0.0.1:{port}/v2/_catalog")) == 200
    });
    assert_eq!(answers(format!("http://[::1]:{port}/v2/_catalog")), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_config_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"listen": ["127.0.0.1:1"], "storage": "/tmp/x", "token_secret": "s", "tls": {"cert": "/nonexistent/cert.pem", "key": "/nonexistent/key.pem"}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_buildset-registry"))
        .arg("--config")
        .arg(&path)
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading certificates /nonexistent/cert.pem"),
        "{stderr}"
    );
}
