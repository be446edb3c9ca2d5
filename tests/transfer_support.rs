//! Running the transfer modules as Ansible does (the binary, one args file
//! holding `_ansible_module_name`), checking on every run that the module
//! wrote nothing into its home directory (no `~/.docker/config.json`) and
//! left no process behind; and a real image built by docker.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use speculative_images::client::{Endpoint, RemoteRegistry};

use crate::support::buildset::BuildsetServer;
use crate::support::distribution::Distribution;
use crate::support::module::ModuleRun;
use crate::support::run;

/// A registry a test started: Debian's docker-registry (the intermediate
/// registry) or our buildset registry server.
pub trait TestRegistry {
    /// Host clients use.
    fn host(&self) -> &str;
    /// Port.
    fn port(&self) -> u16;
    /// `host:port`, IPv6 in brackets.
    fn authority(&self) -> String;
    /// The user.
    fn username(&self) -> &str;
    /// Its password.
    fn password(&self) -> &str;
    /// The PEM certificate clients trust.
    fn ca_pem(&self) -> &str;
    /// The request log so far (one line per request).
    fn requests(&self) -> Vec<String>;
}

impl TestRegistry for Distribution {
    fn host(&self) -> &str {
        &self.host
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn authority(&self) -> String {
        Distribution::authority(self)
    }
    fn username(&self) -> &str {
        &self.username
    }
    fn password(&self) -> &str {
        &self.password
    }
    fn ca_pem(&self) -> &str {
        &self.tls.cert_pem
    }
    fn requests(&self) -> Vec<String> {
        self.access_log()
    }
}

impl TestRegistry for BuildsetServer {
    fn host(&self) -> &str {
        &self.host
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn authority(&self) -> String {
        BuildsetServer::authority(self)
    }
    fn username(&self) -> &str {
        &self.username
    }
    fn password(&self) -> &str {
        &self.password
    }
    fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    fn requests(&self) -> Vec<String> {
        self.log().lines().map(str::to_string).collect()
    }
}

/// The registry facts the modules take (`buildset_registry`,
/// `intermediate_registry`).
pub fn registry_facts(reg: &impl TestRegistry) -> Value {
    json!({
        "host": reg.host(),
        "port": reg.port(),
        "username": reg.username(),
        "password": reg.password(),
        "cert": reg.ca_pem(),
    })
}

/// A client of `reg` with its credentials and certificate.
pub fn client_for(reg: &impl TestRegistry) -> std::sync::Arc<RemoteRegistry> {
    RemoteRegistry::new(
        Endpoint::new(reg.authority())
            .with_credentials(reg.username(), reg.password())
            .with_ca_pem(reg.ca_pem()),
    )
    .expect("client")
}

/// Run module `name` with `args` (plus Ansible's internal keys) and return
/// its JSON result. Panics if the module touched its home directory or
/// left a process running.
pub fn run_module(name: &str, args: Value, check_mode: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let marker = format!("speculative-test-{}", crate::support::random_password());
    let real_docker_config = docker_config_snapshot();

    let out = ModuleRun::new(name, args)
        .ansible("check_mode", json!(check_mode))
        .ansible("tmpdir", json!(dir.path()))
        .env("HOME", &home)
        .env("SPECULATIVE_TEST_MARKER", &marker)
        .run();
    let result = out.result;
    assert_eq!(
        out.success,
        result["failed"] == json!(false),
        "exit status and `failed` disagree: {result}"
    );

    let left: Vec<_> = std::fs::read_dir(&home).unwrap().collect();
    assert!(left.is_empty(), "the module wrote into its home: {left:?}");
    assert_eq!(
        docker_config_snapshot(),
        real_docker_config,
        "~/.docker/config.json changed"
    );
    assert_eq!(
        processes_with(&marker),
        Vec::<u32>::new(),
        "processes left behind"
    );
    result
}

fn docker_config_snapshot() -> Option<Vec<u8>> {
    let home = std::env::var_os("HOME")?;
    std::fs::read(Path::new(&home).join(".docker/config.json")).ok()
}

/// Processes whose environment holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            if String::from_utf8_lossy(&env).contains(marker) {
                found.push(pid);
            }
        }
    }
    found
}

/// A docker image built `FROM scratch` holding a static busybox and a file
/// unique to this test; removed from the daemon on drop.
pub struct DockerImage {
    /// `speculative-test/<name>:<tag>`.
    pub name: String,
}

impl DockerImage {
    /// Build one.
    pub fn build(label: &str) -> DockerImage {
        let dir = tempfile::tempdir().unwrap();
        crate::support::busybox_context(
            dir.path(),
            &[("id", &crate::support::random_password())],
            "CMD [\"/bin/busybox\", \"cat\", \"/id\"]\n",
        );
        let name = format!(
            "speculative-test/{label}:{}",
            crate::support::random_password().to_lowercase()
        );
        run(Command::new("docker")
            .args(["build", "-q", "-t", &name])
            .arg(dir.path())
            .env("DOCKER_BUILDKIT", "0"));
        DockerImage { name }
    }

    /// Push it to `reg` as `repository:tag` with skopeo (the credentials on
    /// the command line, the registry's CA in a directory); returns the
    /// manifest digest there.
    pub fn push_to(&self, reg: &impl TestRegistry, repository: &str, tag: &str) -> String {
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("ca.crt"), reg.ca_pem()).unwrap();
        let dest = format!("docker://{}/{repository}:{tag}", reg.authority());
        run(Command::new("skopeo")
            .args(["copy", "-q", "--dest-creds"])
            .arg(format!("{}:{}", reg.username(), reg.password()))
            .arg("--dest-cert-dir")
            .arg(certs.path())
            .arg(format!("docker-daemon:{}", self.name))
            .arg(&dest));
        let out = run(Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}", "--creds"])
            .arg(format!("{}:{}", reg.username(), reg.password()))
            .arg("--cert-dir")
            .arg(certs.path())
            .arg(&dest));
        out.trim().to_string()
    }
}

impl Drop for DockerImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.name])
            .output();
    }
}

/// A docker client configuration of its own (never `~/.docker`), logged in
/// to `reg`, trusting its CA; cleaned up on drop.
pub struct DockerClient {
    config: tempfile::TempDir,
    certs_dir: std::path::PathBuf,
    pulled: Vec<String>,
}

impl DockerClient {
    /// Log in to `reg` (its CA written to `/etc/docker/certs.d/<authority>`).
    pub fn login(reg: &impl TestRegistry) -> DockerClient {
        crate::support::docker_trust(&reg.authority(), reg.ca_pem());
        let config = tempfile::tempdir().unwrap();
        let mut login = Command::new("docker");
        login
            .arg("--config")
            .arg(config.path())
            .args(["login", "--username", reg.username(), "--password-stdin"])
            .arg(reg.authority())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = login.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(reg.password().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DockerClient {
            config,
            certs_dir: Path::new("/etc/docker/certs.d").join(reg.authority()),
            pulled: Vec::new(),
        }
    }

    /// `docker pull reference`; returns the digest docker recorded.
    pub fn pull(&mut self, reference: &str) -> String {
        run(Command::new("docker")
            .arg("--config")
            .arg(self.config.path())
            .args(["pull", "-q", reference]));
        self.pulled.push(reference.to_string());
        let out = run(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{range .RepoDigests}}{{println .}}{{end}}",
            reference,
        ]));
        let repo = reference
            .rsplit_once(':')
            .map(|(r, _)| r)
            .unwrap_or(reference);
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{repo}@")))
            .unwrap_or_else(|| panic!("no digest for {reference} in {out}"))
            .to_string()
    }

    /// Run `reference` and return its output.
    pub fn run_image(&self, reference: &str) -> String {
        run(Command::new("docker").args(["run", "--rm", reference]))
    }
}

impl Drop for DockerClient {
    fn drop(&mut self) {
        for reference in &self.pulled {
            let _ = Command::new("docker")
                .args(["rmi", "-f", reference])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.certs_dir);
    }
}

/// A loopback TCP listener that accepts every connection and never sends a
/// byte (a hung registry: for a TLS client, a handshake that never
/// completes). Connections are held open until the test process ends.
pub struct SilentListener {
    /// Its port on 127.0.0.1.
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentListener {
    /// Listen on 127.0.0.1, on a free port.
    pub fn start() -> SilentListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        SilentListener { port, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
