//! docker logs in to our registry over TLS, pushes an image built locally
//! (FROM scratch, busybox) and pulls it back by digest.

use std::path::Path;
use std::process::Command;

use crate::support::buildset::BuildsetServer;
use crate::support::{busybox_context, docker_trust, random_password, run};

/// A docker CLI with its own config dir, so `docker login` never touches
/// the user's `~/.docker/config.json`.
pub struct Docker {
    config: tempfile::TempDir,
}

impl Docker {
    pub fn new() -> Docker {
        Docker {
            config: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.config.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> String {
        run(self.cmd().args(args))
    }
}

/// Build a tiny image FROM scratch holding a static busybox, tagged `tag`.
pub fn build_busybox_image(docker: &Docker, tag: &str, marker: &str) {
    let ctx = tempfile::tempdir().expect("tempdir");
    busybox_context(
        ctx.path(),
        &[("marker", marker)],
        "CMD [\"/bin/busybox\", \"cat\", \"/marker\"]\n",
    );
    docker.run(&["build", "-q", "-t", tag, path_str(ctx.path())]);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn docker_logs_in_pushes_and_pulls_over_tls() {
    let registry = BuildsetServer::start();
    docker_trust(&registry.authority(), &registry.ca_pem);
    let docker = Docker::new();
    let suffix = random_password().to_lowercase();
    let image = format!("{}/test/busybox-{suffix}:latest", registry.authority());
    build_busybox_image(&docker, &image, &suffix);

    let login = docker
        .cmd()
        .args([
            "login",
            "--username",
            &registry.username,
            "--password-stdin",
        ])
        .arg(registry.authority())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(registry.password.as_bytes())?;
            child.wait_with_output()
        })
        .expect("docker login");
    assert!(
        login.status.success(),
        "docker login failed: {}\n{}",
        String::from_utf8_lossy(&login.stderr),
        registry.log()
    );

    let pushed = docker.cmd().args(["push", &image]).output().unwrap();
    assert!(
        pushed.status.success(),
        "docker push failed: {}\n{}",
        String::from_utf8_lossy(&pushed.stderr),
        registry.log()
    );
    let local_id = docker.run(&["image", "inspect", "--format", "{{.Id}}", &image]);
    let repo_digest = docker.run(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &image,
    ]);
    docker.run(&["rmi", &image]);

    let pulled = docker.cmd().args(["pull", &image]).output().unwrap();
    assert!(
        pulled.status.success(),
        "docker pull failed: {}\n{}",
        String::from_utf8_lossy(&pulled.stderr),
        registry.log()
    );
    let pulled_id = docker.run(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(
        pulled_id, local_id,
        "the image that came back is the one pushed"
    );
    let pulled_digest = docker.run(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &image,
    ]);
    assert_eq!(pulled_digest, repo_digest);
    let _ = docker.cmd().args(["rmi", "-f", &image]).output();
}
