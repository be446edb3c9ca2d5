//! `build_docker_image` with docker finds a speculative image of another
//! registry than Docker Hub that only the buildset registry holds: docker's
//! `registry-mirrors` cover docker.io alone, and in the producers-only
//! layout the images of the changes ahead reach the buildset registry
//! after `use_buildset_registry` preloaded docker's store.

use std::process::Command;

use serde_json::json;

use crate::publish_support::{run_module, succeeded, unique, DockerCleanup};
use crate::support::buildset::BuildsetServer;
use crate::support::{busybox_context, docker_trust, random_password, run};

#[test]
fn a_from_of_another_registrys_image_is_served_by_the_buildset_registry() {
    let home = tempfile::tempdir().unwrap();
    let reg = BuildsetServer::start();
    docker_trust(&reg.authority(), &reg.ca_pem);
    let prefix = unique("preload");
    let _cleanup = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: Some(reg.authority()),
    };

    // The change ahead's image: quay.io/<prefix>/base, in the buildset
    // registry only (quay.io cannot be reached here, and docker's store
    // does not have it).
    let marker = random_password();
    let base_dir = home.path().join("base");
    busybox_context(&base_dir, &[("marker", &marker)], "");
    let local_base = format!("{prefix}-base:src");
    run(Command::new("docker")
        .args(["build", "-q", "-t", &local_base])
        .arg(&base_dir));
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("ca.crt"), &reg.ca_pem).unwrap();
    let upstream = format!("quay.io/{prefix}/base:latest");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-cert-dir"])
        .arg(certs.path())
        .arg("--dest-creds")
        .arg(format!("{}:{}", reg.username, reg.password))
        .arg(format!("docker-daemon:{local_base}"))
        .arg(format!("docker://{}/{upstream}", reg.authority())));
    run(Command::new("docker").args(["rmi", &local_base]));

    // This change's image builds on it.
    let work = home.path().join("src/example.org/org/consumer");
    std::fs::create_dir_all(work.join("app")).unwrap();
    std::fs::write(
        work.join("app/Dockerfile"),
        format!("FROM {upstream}\nRUN [\"/bin/busybox\", \"cp\", \"/marker\", \"/seen\"]\n"),
    )
    .unwrap();
    let args = json!({
        "docker_images": [{"context": "app", "repository": format!("{prefix}/app")}],
        "zuul": {"change": "7", "pipeline": "gate",
                 "project": {"src_dir": "src/example.org/org/consumer"}},
        "buildset_registry": {"host": reg.host, "port": reg.port, "username": reg.username,
                              "password": reg.password, "cert": reg.ca_pem},
    });
    let result = succeeded(run_module("build_docker_image", args.clone(), home.path()));
    assert_eq!(result["preloaded"], json!([upstream]), "{result:#}");
    let seen = run(Command::new("docker").args([
        "run",
        "--rm",
        &format!("{prefix}/app:latest"),
        "/bin/busybox",
        "cat",
        "/seen",
    ]));
    assert_eq!(
        seen, marker,
        "the build used another base than the speculative one"
    );

    // The base is in docker's store now, from the same digest: nothing
    // more to preload.
    let again = succeeded(run_module("build_docker_image", args, home.path()));
    assert_eq!(again["preloaded"], json!([]), "{again:#}");
    assert_eq!(again["changed"], false, "{again:#}");
}
