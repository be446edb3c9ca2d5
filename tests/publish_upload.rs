//! `upload_docker_image`: from a buildset registry to a target registry
//! (our server, whose bearer token flow stands in for Docker Hub's) with
//! the copy engine, and from the local daemon when there is no buildset
//! registry.

use std::process::Command;

use chrono::Utc;
use serde_json::{json, Value};

use crate::publish_support::{
    assert_no_credentials_left, digest_of, failure_msg, log_mark, log_since, oci_image, push_to,
    run_module, run_module_in_tmp, succeeded, unique, DockerCleanup,
};
use crate::registry_clients::OciLayout;
use crate::support::buildset::BuildsetServer;
use crate::support::{busybox_context, docker_trust, run};

fn args(target: &BuildsetServer, pattern: &str, images: Value) -> Value {
    json!({
        "docker_images": images,
        "docker_registry": target.authority(),
        "docker_registry_cert": target.ca_pem,
        "docker_credentials": {"username": target.username, "password": target.password,
                               "repository": pattern},
        "zuul": {"change": "42", "pipeline": "gate"},
    })
}

fn buildset(server: &BuildsetServer) -> Value {
    serde_json::to_value(server.as_buildset_registry()).unwrap()
}

#[test]
fn copies_every_tag_under_its_temporary_tag() {
    let source = BuildsetServer::start();
    let target = BuildsetServer::start();
    let layout = OciLayout::new();
    let image = oci_image(&layout, "amd64", &Utc::now().to_rfc3339(), 256 * 1024);
    let digest = push_to(&source, &layout, image.clone(), "org/app:latest");
    push_to(&source, &layout, image, "org/app:v1");
    let home = tempfile::tempdir().unwrap();

    let mut args = args(
        &target,
        "^org/",
        json!([{"repository": "org/app", "tags": ["latest", "v1"]}]),
    );
    args["buildset_registry"] = buildset(&source);
    let tmp = tempfile::tempdir().unwrap();
    let result = succeeded(run_module_in_tmp(
        "upload_docker_image",
        args.clone(),
        home.path(),
        tmp.path(),
    ));
    assert_eq!(result["changed"], true);
    assert_no_credentials_left(home.path(), tmp.path(), &target.username, &target.password);

    for tag in ["change_42_latest", "change_42_v1"] {
        assert_eq!(
            digest_of(&target, "org/app", tag),
            Some(digest.clone()),
            "{tag}"
        );
    }
    for tag in ["latest", "v1"] {
        assert_eq!(digest_of(&target, "org/app", tag), None, "{tag}");
    }
    assert_eq!(
        result["uploaded"][0]["target"],
        format!("{}/org/app:change_42_latest", target.authority())
    );
    let text = result.to_string();
    assert!(!text.contains(&target.password) && !text.contains(&source.password));

    // Again: the target already holds it all.
    let again = succeeded(run_module("upload_docker_image", args, home.path()));
    assert_eq!(again["changed"], false, "{again:#}");
}

/// Upload `images` from one of our servers to another: the module fails
/// with `expected` and neither registry sees a single request.
fn refused_before_any_request(images: Value, expected: &str) {
    let source = BuildsetServer::start();
    let target = BuildsetServer::start();
    let home = tempfile::tempdir().unwrap();
    let (source_mark, target_mark) = (log_mark(&source), log_mark(&target));
    let mut args = args(&target, "^org/", images);
    args["buildset_registry"] = buildset(&source);
    let result = run_module("upload_docker_image", args, home.path());
    assert_eq!(failure_msg(&result), expected);
    assert_eq!(log_since(&target, target_mark), Vec::<String>::new());
    assert_eq!(log_since(&source, source_mark), Vec::<String>::new());
}

#[test]
fn a_repository_outside_the_credentials_is_refused_before_any_request() {
    refused_before_any_request(
        json!([{"repository": "org/app"}, {"repository": "other/app"}]),
        "docker_images[1].repository \"other/app\" is not permitted by \
         docker_credentials.repository \"^org/\"",
    );
}

#[test]
fn without_a_buildset_registry_the_daemon_pushes() {
    let target = BuildsetServer::start();
    docker_trust(&target.authority(), &target.ca_pem);
    let prefix = unique("pubupload");
    let _cleanup = DockerCleanup {
        prefix: prefix.clone(),
        certs_d: None,
    };
    // Built by build_docker_image with docker_registry set, as a job would.
    let home = tempfile::tempdir().unwrap();
    let work = home.path().join("src/project");
    busybox_context(&work, &[], "");
    let images = json!([{"repository": format!("{prefix}/app")}]);
    succeeded(run_module(
        "build_docker_image",
        json!({"docker_images": images, "docker_registry": target.authority(),
               "zuul_work_dir": work, "zuul": {"change": "42", "pipeline": "gate"}}),
        home.path(),
    ));

    let tmp = tempfile::tempdir().unwrap();
    let result = succeeded(run_module_in_tmp(
        "upload_docker_image",
        args(&target, &format!("^{prefix}/"), images),
        home.path(),
        tmp.path(),
    ));
    // The push logged in through a temporary DOCKER_CONFIG, now gone.
    assert_no_credentials_left(home.path(), tmp.path(), &target.username, &target.password);
    // The build's own tags are still there.
    run(Command::new("docker").args([
        "image",
        "inspect",
        &format!("{}/{prefix}/app:change_42_latest", target.authority()),
    ]));
    assert!(
        digest_of(&target, &format!("{prefix}/app"), "change_42_latest").is_some(),
        "{result:#}\n{}",
        target.log()
    );
    assert_eq!(digest_of(&target, &format!("{prefix}/app"), "latest"), None);
    assert!(!result.to_string().contains(&target.password));
}

/// Check mode, apply, check, apply: each check predicts the run after it
/// (asking both registries with HEADs only), and writes nothing.
#[test]
fn check_mode_predicts_each_run_and_writes_nothing() {
    let source = BuildsetServer::start();
    let target = BuildsetServer::start();
    let layout = OciLayout::new();
    let image = oci_image(&layout, "amd64", &Utc::now().to_rfc3339(), 64 * 1024);
    let digest = push_to(&source, &layout, image, "org/app:latest");
    let home = tempfile::tempdir().unwrap();
    let mut args = args(&target, "^org/", json!([{"repository": "org/app"}]));
    args["buildset_registry"] = buildset(&source);
    let mut check_args = args.clone();
    check_args["_ansible_check_mode"] = json!(true);
    let target_ref = format!("{}/org/app:change_42_latest", target.authority());

    let check = |round: &str, expect_changed: bool| {
        let (source_mark, target_mark) = (log_mark(&source), log_mark(&target));
        let before = digest_of(&target, "org/app", "change_42_latest");
        let result = succeeded(run_module(
            "upload_docker_image",
            check_args.clone(),
            home.path(),
        ));
        assert_eq!(result["changed"], expect_changed, "{round}: {result:#}");
        assert_eq!(result["targets"], json!([target_ref]), "{round}");
        assert_eq!(result["uploaded"][0]["digest"], digest, "{round}");
        assert_eq!(result["uploaded"][0]["changed"], expect_changed, "{round}");
        for line in log_since(&target, target_mark)
            .iter()
            .chain(&log_since(&source, source_mark))
        {
            let words: Vec<&str> = line.split(|c: char| !c.is_ascii_alphabetic()).collect();
            assert!(
                !["PUT", "POST", "PATCH", "DELETE"]
                    .iter()
                    .any(|write| words.contains(write)),
                "{round}: check mode wrote: {line}"
            );
        }
        let after = digest_of(&target, "org/app", "change_42_latest");
        assert_eq!(after, before, "{round}: check mode changed the target");
    };
    let apply = |round: &str, expect_changed: bool| {
        let result = succeeded(run_module("upload_docker_image", args.clone(), home.path()));
        assert_eq!(result["changed"], expect_changed, "{round}: {result:#}");
        assert_eq!(result["targets"], json!([target_ref]), "{round}");
        assert_eq!(
            digest_of(&target, "org/app", "change_42_latest"),
            Some(digest.clone()),
            "{round}"
        );
    };
    check("first check", true);
    apply("first run", true);
    check("second check", false);
    apply("second run", false);
}

#[test]
fn missing_repository_is_named_and_nothing_is_sent() {
    refused_before_any_request(
        json!([{"repository": "org/app"}, {"tags": ["latest"]}]),
        "argument docker_images[1]: missing field `repository`",
    );
}
