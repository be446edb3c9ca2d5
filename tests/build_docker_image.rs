//! `build_docker_image` with the real docker CLI and daemon, pushing to
//! our buildset registry server (TLS, bearer tokens).

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::publish_support::{
    failure_msg, run_module, skopeo_inspect, succeeded, unique, DockerCleanup,
};
use crate::support::buildset::BuildsetServer;
use crate::support::{docker_trust, run};

/// A project with two images: `app` (multi-stage, built to its `tools`
/// stage, with a build arg and a sibling) and `tool` (its own Dockerfile
/// name).
fn write_project(home: &Path) -> std::path::PathBuf {
    let work = home.join("src/example.org/org/project");
    let app = work.join("app");
    let tool = work.join("tool");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&tool).unwrap();
    std::fs::copy("/bin/busybox", app.join("busybox")).unwrap();
    std::fs::copy("/bin/busybox", tool.join("busybox")).unwrap();
    // Concurrent tests building the same Dockerfile on the shared daemon
    // would share (and race on) build cache chains; this file keeps each
    // test's images its own.
    let build_id = home.display().to_string();
    std::fs::write(app.join("build-id"), &build_id).unwrap();
    std::fs::write(tool.join("build-id"), &build_id).unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        "FROM scratch AS base\n\
         COPY build-id /build-id\n\
         COPY busybox /bin/busybox\n\
         FROM base AS tools\n\
         ARG FLAVOUR\n\
         ARG ZUUL_SIBLINGS\n\
         COPY .zuul-siblings/ /siblings/\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $FLAVOUR > /flavour && echo $ZUUL_SIBLINGS > /sibling-names\"]\n\
         FROM tools AS broken\n\
         RUN [\"/bin/busybox\", \"false\"]\n",
    )
    .unwrap();
    std::fs::write(
        tool.join("Containerfile"),
        "FROM scratch\nCOPY build-id /build-id\nCOPY busybox /bin/busybox\n",
    )
    .unwrap();
    let lib = home.join("src/example.org/org/lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("lib.txt"), "sibling content\n").unwrap();
    work
}

fn images(prefix: &str) -> Value {
    json!([
        {"context": "app", "repository": format!("{prefix}/app"), "tags": ["latest", "v1"],
         "target": "tools", "build_args": ["FLAVOUR=mint"],
         "siblings": ["example.org/org/lib"], "labels": {"team": "infra"}},
        {"context": "tool", "dockerfile": "Containerfile",
         "repository": format!("{prefix}/tool"), "tags": ["latest", "v2"]},
    ])
}

fn buildset(reg: &BuildsetServer) -> Value {
    json!({"host": reg.host, "port": reg.port, "username": reg.username,
           "password": reg.password, "cert": reg.ca_pem})
}

fn zuul(home: &Path) -> Value {
    json!({"change": "42", "pipeline": "check", "build": "b1",
           "project": {"src_dir": "src/example.org/org/project"},
           "executor": {"result_data_file": home.join("results.json")}})
}

fn in_image(image: &str, cmd: &str) -> String {
    run(Command::new("docker").args(["run", "--rm", image, "/bin/busybox", "sh", "-c", cmd]))
}

#[test]
fn builds_tags_labels_and_pushes_every_tag() {
    let home = tempfile::tempdir().unwrap();
    let work = write_project(home.path());
    let reg = BuildsetServer::start();
    docker_trust(&reg.authority(), &reg.ca_pem);
    let prefix = unique("pubbuild");
    let _cleanup = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: Some(reg.authority()),
    };
    // The registry comes from the result data file, as zuul_return left it.
    std::fs::write(
        home.path().join("results.json"),
        json!({"data": {}, "secret_data": {"buildset_registry": buildset(&reg)}}).to_string(),
    )
    .unwrap();

    let result = succeeded(run_module(
        "build_docker_image",
        json!({"docker_images": images(&prefix), "zuul": zuul(home.path())}),
        home.path(),
    ));
    assert_eq!(result["changed"], true);
    assert!(
        !result.to_string().contains(&reg.password),
        "password in output"
    );

    for (image, tags) in [("app", ["latest", "v1"]), ("tool", ["latest", "v2"])] {
        for tag in tags {
            let remote = format!("{}/{prefix}/{image}:{tag}", reg.authority());
            let found = skopeo_inspect(&remote, &reg.ca_pem, &reg.username, &reg.password)
                .unwrap_or_else(|| panic!("{remote} not in the buildset registry"));
            assert_eq!(found["Labels"]["org.zuul-ci.change"], "42", "{remote}");
            if image == "app" {
                assert_eq!(found["Labels"]["team"], "infra", "{remote}");
            }
            let local = run(Command::new("docker").args([
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                &format!("{prefix}/{image}:change_42_{tag}"),
            ]));
            assert_eq!(
                local.trim(),
                run(Command::new("docker").args([
                    "image",
                    "inspect",
                    "--format",
                    "{{.Id}}",
                    &format!("{prefix}/{image}:{tag}")
                ]))
                .trim()
            );
        }
    }
    let app = format!("{prefix}/app:latest");
    let labels: Value = serde_json::from_str(&run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &app,
    ])))
    .unwrap();
    assert_eq!(
        labels,
        json!({"org.zuul-ci.change": "42", "team": "infra"}),
        "{app}"
    );
    assert_eq!(in_image(&app, "cat /flavour"), "mint\n");
    assert_eq!(
        in_image(&app, "cat /sibling-names"),
        "example.org/org/lib\n"
    );
    assert_eq!(
        in_image(&app, "cat /siblings/example.org/org/lib/lib.txt"),
        "sibling content\n"
    );
    assert_eq!(
        result["images"][0]["buildset_registry_tags"],
        json!([
            format!("{}/{prefix}/app:latest", reg.authority()),
            format!("{}/{prefix}/app:v1", reg.authority())
        ])
    );
    assert!(!work.join("app/.zuul-siblings").exists());
    let log = std::fs::read_to_string(
        home.path()
            .join("zuul-output/logs/container-builds")
            .join(format!("{prefix}_app.log")),
    )
    .unwrap();
    assert!(log.contains("$ docker build"), "{log}");
    assert!(log.contains("Step 1/"), "{log}");

    // The same sources again: every tag stays where it is.
    let again = succeeded(run_module(
        "build_docker_image",
        json!({"docker_images": images(&prefix), "zuul": zuul(home.path())}),
        home.path(),
    ));
    assert_eq!(
        again["changed"], false,
        "first: {result:#}\nagain: {again:#}"
    );
    assert_eq!(
        again["images"][0]["image_id"],
        result["images"][0]["image_id"]
    );
}

#[test]
fn check_mode_builds_nothing() {
    let home = tempfile::tempdir().unwrap();
    write_project(home.path());
    let prefix = unique("pubcheck");
    let _cleanup = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: None,
    };
    let result = succeeded(run_module(
        "build_docker_image",
        json!({"docker_images": images(&prefix), "zuul": zuul(home.path()),
               "_ansible_check_mode": true}),
        home.path(),
    ));
    assert_eq!(result["changed"], true);
    assert_eq!(
        result["images"][1]["tags"],
        json!([
            format!("{prefix}/tool:latest"),
            format!("{prefix}/tool:change_42_latest"),
            format!("{prefix}/tool:v2"),
            format!("{prefix}/tool:change_42_v2")
        ])
    );
    let listed = run(Command::new("docker").args(["images", "-q", &format!("{prefix}/tool")]));
    assert_eq!(listed, "");
    assert!(!home.path().join("zuul-output").exists());
}

#[test]
fn a_build_path_below_the_context_and_the_default_dockerfile() {
    let home = tempfile::tempdir().unwrap();
    let work = write_project(home.path());
    // `docker build -f Build.docker files` run in <context>: the
    // Dockerfile is in the context directory, what it copies in `files/`.
    let files = work.join("tool/files");
    std::fs::create_dir(&files).unwrap();
    std::fs::copy("/bin/busybox", files.join("busybox")).unwrap();
    std::fs::write(files.join("where"), "from files/\n").unwrap();
    std::fs::write(files.join("build-id"), home.path().display().to_string()).unwrap();
    std::fs::write(
        work.join("tool/Build.docker"),
        "FROM scratch\nCOPY build-id /build-id\nCOPY busybox /bin/busybox\nCOPY where /where\n",
    )
    .unwrap();
    let prefix = unique("pubpath");
    let _cleanup = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: None,
    };

    succeeded(run_module(
        "build_docker_image",
        json!({"docker_images": [{"context": "tool", "path": "files",
                                  "repository": format!("{prefix}/tool")}],
               "docker_dockerfile": "Build.docker", "zuul": zuul(home.path())}),
        home.path(),
    ));
    assert_eq!(
        in_image(&format!("{prefix}/tool:change_42_latest"), "cat /where"),
        "from files/\n"
    );
}

#[test]
fn missing_repository_is_named() {
    let home = tempfile::tempdir().unwrap();
    write_project(home.path());
    let result = run_module(
        "build_docker_image",
        json!({"docker_images": [{"context": "app"}], "zuul": zuul(home.path())}),
        home.path(),
    );
    assert_eq!(
        failure_msg(&result),
        "argument docker_images[0]: missing field `repository`"
    );
}

#[test]
fn missing_context_is_named() {
    let home = tempfile::tempdir().unwrap();
    let work = write_project(home.path());
    let result = run_module(
        "build_docker_image",
        json!({"docker_images": [{"context": "nowhere", "repository": "org/x"}],
               "zuul": zuul(home.path())}),
        home.path(),
    );
    assert_eq!(
        failure_msg(&result),
        format!(
            "docker_images[0].context: {} does not exist",
            work.join("nowhere").display()
        )
    );
}

#[test]
fn failed_build_shows_its_last_lines_and_publishes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let work = write_project(home.path());
    // The failing image has a sibling too: it is in the context while the
    // build runs (the build prints it) and gone once it failed.
    std::fs::write(
        work.join("tool/Containerfile"),
        "FROM scratch\nCOPY build-id /build-id\nCOPY busybox /bin/busybox\n\
         COPY .zuul-siblings/ /siblings/\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \
              \"cat /siblings/example.org/org/lib/lib.txt; echo the compiler said no; exit 7\"]\n",
    )
    .unwrap();
    let reg = BuildsetServer::start();
    docker_trust(&reg.authority(), &reg.ca_pem);
    let prefix = unique("pubfail");
    let _cleanup = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: Some(reg.authority()),
    };

    let mut images = images(&prefix);
    images[1]["siblings"] = json!(["example.org/org/lib"]);

    let result = run_module(
        "build_docker_image",
        json!({"docker_images": images, "zuul": zuul(home.path()),
               "buildset_registry": buildset(&reg)}),
        home.path(),
    );
    let msg = failure_msg(&result);
    let log = home.path().join(format!(
        "zuul-output/logs/container-builds/{prefix}_tool.log"
    ));
    assert!(
        msg.starts_with(&format!(
            "building docker_images[1] ({prefix}/tool), log in {}: `docker build` failed (exit status: 7); last lines of its output:\n",
            log.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("sibling content\nthe compiler said no"),
        "{msg}"
    );
    assert!(!msg.contains(&reg.password));
    // The first image built fine, but nothing reached the registry.
    let app = format!("{}/{prefix}/app:latest", reg.authority());
    assert_eq!(
        skopeo_inspect(&app, &reg.ca_pem, &reg.username, &reg.password),
        None
    );
    assert!(!work.join("tool/.zuul-siblings").exists());
    assert!(!work.join("app/.zuul-siblings").exists());
}

#[test]
fn podman_and_buildah_build_and_push_with_their_own_ca() {
    let home = tempfile::tempdir().unwrap();
    write_project(home.path());
    let reg = BuildsetServer::start();
    for command in ["podman", "buildah"] {
        let prefix = unique(&format!("pub{command}"));
        let result = succeeded(run_module(
            "build_docker_image",
            json!({"docker_images": [{"context": "tool", "dockerfile": "Containerfile",
                                      "repository": format!("{prefix}/tool")}],
                   "zuul": zuul(home.path()), "container_command": command,
                   "buildset_registry": buildset(&reg)}),
            home.path(),
        ));
        let remote = format!("{}/{prefix}/tool:latest", reg.authority());
        let found = skopeo_inspect(&remote, &reg.ca_pem, &reg.username, &reg.password)
            .unwrap_or_else(|| panic!("{remote} not pushed by {command}"));
        assert_eq!(found["Labels"]["org.zuul-ci.change"], "42");
        let id = result["images"][0]["image_id"]
            .as_str()
            .unwrap()
            .to_string();
        let _ = Command::new(command).args(["rmi", "-f", &id]).output();
    }
}

#[test]
fn the_container_family_builds_the_containerfile_with_podman_and_its_extra_env() {
    let home = tempfile::tempdir().unwrap();
    let work = write_project(home.path());
    // Beside the Containerfile, a Dockerfile that cannot be built.
    std::fs::write(
        work.join("tool/Dockerfile"),
        "FROM scratch\nCOPY not-in-the-context /x\n",
    )
    .unwrap();
    let reg = BuildsetServer::start();
    let prefix = unique("pubfamily");
    let mut zuul = zuul(home.path());
    zuul["change_url"] = json!("https://review.example.org/c/org/project/+/42");
    let result = succeeded(run_module(
        "build_docker_image",
        json!({"family": "container",
               "container_images": [{"context": "tool", "repository": format!("{prefix}/tool"),
                                     "labels": ["team=infra"]}],
               // podman writes Docker's image format when its environment says so.
               "container_build_extra_env": {"BUILDAH_FORMAT": "docker"},
               "zuul": zuul, "buildset_registry": buildset(&reg)}),
        home.path(),
    ));
    assert!(
        result["msg"].as_str().unwrap().contains("with podman"),
        "{result:#}"
    );
    let remote = format!("{}/{prefix}/tool:latest", reg.authority());
    let found = skopeo_inspect(&remote, &reg.ca_pem, &reg.username, &reg.password)
        .unwrap_or_else(|| panic!("{remote} not pushed"));
    let labels = &found["Labels"];
    assert_eq!(labels["org.zuul-ci.change"], "42");
    assert_eq!(
        labels["org.zuul-ci.change_url"],
        "https://review.example.org/c/org/project/+/42"
    );
    assert_eq!(labels["team"], "infra");
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("ca.crt"), &reg.ca_pem).unwrap();
    let raw: Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(certs.path())
        .arg("--creds")
        .arg(format!("{}:{}", reg.username, reg.password))
        .arg(format!("docker://{remote}"))))
    .unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let id = result["images"][0]["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = Command::new("podman").args(["rmi", "-f", &id]).output();
}
