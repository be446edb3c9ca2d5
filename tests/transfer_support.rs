//! Running the transfer modules as Ansible does (the binary, one args file
//! holding `_ansible_module_name`), checking on every run that the module
//! wrote nothing into its home directory (no `~/.docker/config.json`) and
//! left no process behind; and a real image built by docker.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::distribution::Distribution;
use crate::support::run;

/// The registry facts the modules take, for a distribution fixture.
pub fn registry_facts(reg: &Distribution) -> Value {
    json!({
        "host": reg.host,
        "port": reg.port,
        "username": reg.username,
        "password": reg.password,
        "cert": reg.tls.cert_pem,
    })
}

/// Run module `name` with `args` (plus Ansible's internal keys) and return
/// its JSON result. Panics if the module touched its home directory or
/// left a process running.
pub fn run_module(name: &str, mut args: Value, check_mode: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let marker = format!("speculative-test-{}", crate::support::random_password());
    let obj = args.as_object_mut().unwrap();
    obj.insert(
        "_ansible_module_name".into(),
        json!(format!("speculative.images.{name}")),
    );
    obj.insert("_ansible_check_mode".into(), json!(check_mode));
    obj.insert("_ansible_diff".into(), json!(false));
    obj.insert("_ansible_no_log".into(), json!(false));
    obj.insert("_ansible_tmpdir".into(), json!(dir.path()));
    let args_path = dir.path().join("args");
    std::fs::write(&args_path, serde_json::to_vec(&args).unwrap()).unwrap();
    let real_docker_config = docker_config_snapshot();

    let out = Command::new(env!("CARGO_BIN_EXE_speculative-images"))
        .arg(&args_path)
        .env("HOME", &home)
        .env("SPECULATIVE_TEST_MARKER", &marker)
        .output()
        .expect("run the module binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "module output is not one JSON object ({e}):\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
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
        std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("busybox-static");
        std::fs::write(dir.path().join("id"), crate::support::random_password()).unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY id /id\nCMD [\"/bin/busybox\", \"cat\", \"/id\"]\n",
        )
        .unwrap();
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
    pub fn push_to(&self, reg: &Distribution, repository: &str, tag: &str) -> String {
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("ca.crt"), &reg.tls.cert_pem).unwrap();
        let dest = format!("docker://{}/{repository}:{tag}", reg.authority());
        run(Command::new("skopeo")
            .args(["copy", "-q", "--dest-creds"])
            .arg(format!("{}:{}", reg.username, reg.password))
            .arg("--dest-cert-dir")
            .arg(certs.path())
            .arg(format!("docker-daemon:{}", self.name))
            .arg(&dest));
        let out = run(Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}", "--creds"])
            .arg(format!("{}:{}", reg.username, reg.password))
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
    pub fn login(reg: &Distribution) -> DockerClient {
        crate::support::docker_trust(&reg.authority(), &reg.tls.cert_pem);
        let config = tempfile::tempdir().unwrap();
        let mut login = Command::new("docker");
        login
            .arg("--config")
            .arg(config.path())
            .args(["login", "--username", &reg.username, "--password-stdin"])
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
            .write_all(reg.password.as_bytes())
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
