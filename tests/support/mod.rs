//! Shared test support: the real services tests talk to, started per test
//! on loopback with fresh credentials and certificates.
#![allow(dead_code)]

pub mod aarch64;
pub mod buildset;
pub mod distribution;
pub mod fault_proxy;
pub mod hub;
pub mod module;
pub mod proxy;
pub mod quay;
pub mod stand_in;
pub mod tls;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A random password of 24 alphanumerics.
pub fn random_password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// Wait until `ready` returns true, polling every 50 ms, or panic naming
/// `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} was not ready within {timeout:?}");
}

/// Run a command, panicking with its output when it fails; returns stdout.
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Make the local Docker daemon trust `cert_pem` for `authority`
/// (`/etc/docker/certs.d/<authority>/ca.crt`; read per connection, no
/// reload needed).
pub fn docker_trust(authority: &str, cert_pem: &str) {
    let dir = std::path::Path::new("/etc/docker/certs.d").join(authority);
    std::fs::create_dir_all(&dir).expect("create certs.d dir");
    std::fs::write(dir.join("ca.crt"), cert_pem).expect("write ca.crt");
}

/// Write a docker build context into `dir`: `FROM scratch`, a `build-id`
/// file unique to this call, a static busybox at `/bin/busybox`, each of
/// `files` (name, content) copied to `/<name>`, then the `tail` lines.
///
/// The unique first layer is there because the tests share one daemon:
/// contexts that began with the same `COPY busybox` shared a build cache
/// chain, and a test removing its image while another built on that chain
/// failed the other's build with "unknown parent image ID".
pub fn busybox_context(dir: &std::path::Path, files: &[(&str, &str)], tail: &str) {
    std::fs::create_dir_all(dir).expect("create the build context");
    std::fs::write(dir.join("build-id"), random_password()).expect("write build-id");
    std::fs::copy("/bin/busybox", dir.join("busybox")).expect("copy busybox (busybox-static)");
    let mut dockerfile =
        String::from("FROM scratch\nCOPY build-id /build-id\nCOPY busybox /bin/busybox\n");
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write a context file");
        dockerfile.push_str(&format!("COPY {name} /{name}\n"));
    }
    dockerfile.push_str(tail);
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write the Dockerfile");
}

/// `request` carrying the headers of a request a test proxy passes on,
/// but the ones that belong to one connection and the length (the client
/// sets those for the body it sends).
pub fn forward_headers(
    mut request: reqwest::RequestBuilder,
    headers: &axum::http::HeaderMap,
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            request = request.header(name, value);
        }
    }
    request
}
