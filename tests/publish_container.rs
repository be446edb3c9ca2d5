//! The container family's publish side through the shared modules:
//! `container_registry_credentials` looked up per image by its `registry`,
//! upload with `promote: false`, promote by tag, and promote from the
//! intermediate registry (the gate build found in `zuul.artifacts` or
//! through Zuul's REST API). Our registry server stands in for the
//! public registry, on port 443 of a loopback address of its own so the
//! image names carry no port, as `quay.io/org/app` does not.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{json, Value};

use crate::publish_support::{
    digest_of, failure_msg, log_mark, log_since, oci_image, oci_index, push_to, run_module,
    succeeded,
};
use crate::registry_clients::OciLayout;
use crate::support::buildset::BuildsetServer;

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// `container_registry_credentials` for `target`, limited to `pattern`.
fn credentials(target: &BuildsetServer, pattern: &str) -> Value {
    json!({ target.authority(): {
        "username": target.username, "password": target.password, "repository": pattern,
    }})
}

/// One image of `target` tagged `tags`.
fn images(target: &BuildsetServer, tags: &[&str]) -> Value {
    json!([{
        "registry": target.authority(),
        "repository": format!("{}/org/app", target.authority()),
        "tags": tags,
    }])
}

fn upload_args(source: &BuildsetServer, target: &BuildsetServer, tags: &[&str]) -> Value {
    json!({
        "container_images": images(target, tags),
        "container_registry_credentials": credentials(target, &format!("^{}/org/", target.authority())),
        "docker_registry_cert": target.ca_pem,
        "buildset_registry": serde_json::to_value(source.as_buildset_registry()).unwrap(),
        "zuul": {"change": "42", "pipeline": "gate"},
    })
}

/// A 64 KiB image in the buildset registry `source` under the name the
/// build gives it (`<registry>/org/app:<tag>`); its digest.
fn built(source: &BuildsetServer, target: &BuildsetServer, tags: &[&str]) -> String {
    let layout = OciLayout::new();
    let image = oci_image(&layout, "amd64", &now(), 64 * 1024);
    let mut digest = String::new();
    for tag in tags {
        digest = push_to(
            source,
            &layout,
            image.clone(),
            &format!("{}/org/app:{tag}", target.authority()),
        );
    }
    digest
}

#[test]
fn an_image_whose_registry_has_no_credentials_or_whose_repository_is_not_permitted_is_refused_before_any_push(
) {
    let source = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    built(&source, &target, &["latest"]);
    let home = tempfile::tempdir().unwrap();
    let target_mark = log_mark(&target);
    let source_mark = log_mark(&source);

    let mut args = upload_args(&source, &target, &["latest"]);
    args["container_registry_credentials"] =
        json!({"quay.io": {"username": "u", "password": "quay-Secret-1"}});
    let msg = failure_msg(&run_module("upload_docker_image", args, home.path()));
    assert_eq!(
        msg,
        format!(
            "container_images[0] ({0}/org/app): registry \"{0}\" has no entry in \
             container_registry_credentials (it has [\"quay.io\"]); nothing was pushed",
            target.authority()
        )
    );

    let mut args = upload_args(&source, &target, &["latest"]);
    args["container_registry_credentials"] = credentials(&target, "^quay.io/mine/");
    let result = run_module("upload_docker_image", args, home.path());
    assert_eq!(
        failure_msg(&result),
        format!(
            "container_images[0].repository \"{0}/org/app\" is not permitted by \
             container_registry_credentials[\"{0}\"].repository \"^quay.io/mine/\"; nothing \
             was pushed",
            target.authority()
        )
    );
    assert!(!result.to_string().contains(&target.password));

    // An image whose registry is not the host its repository names would
    // send that registry's password elsewhere.
    let mut args = upload_args(&source, &target, &["latest"]);
    args["container_images"][0]["registry"] = json!("quay.io");
    args["container_registry_credentials"]["quay.io"] =
        json!({"username": "u", "password": "p-Secret-2"});
    let msg = failure_msg(&run_module("upload_docker_image", args, home.path()));
    assert!(
        msg.starts_with(
            "container_images[0].registry \"quay.io\" is not the registry of its repository"
        ),
        "{msg}"
    );

    assert_eq!(log_since(&target, target_mark), Vec::<String>::new());
    assert_eq!(log_since(&source, source_mark), Vec::<String>::new());
}

#[test]
fn uploads_under_temporary_tags_then_promotes_by_tag_with_the_registrys_own_credentials() {
    let source = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    let digest = built(&source, &target, &["latest"]);
    let home = tempfile::tempdir().unwrap();

    let result = succeeded(run_module(
        "upload_docker_image",
        upload_args(&source, &target, &["latest"]),
        home.path(),
    ));
    assert_eq!(result["changed"], true);
    assert!(!result.to_string().contains(&target.password));
    assert_eq!(
        digest_of(&target, "org/app", "change_42_latest"),
        Some(digest.clone())
    );
    assert_eq!(digest_of(&target, "org/app", "latest"), None);

    let promoted = succeeded(run_module(
        "promote_docker_image",
        json!({
            "container_images": images(&target, &["latest"]),
            "container_registry_credentials": credentials(&target, "/org/"),
            "docker_registry_cert": target.ca_pem,
            "zuul": {"change": "42", "pipeline": "promote"},
        }),
        home.path(),
    ));
    assert_eq!(
        digest_of(&target, "org/app", "latest"),
        Some(digest.clone())
    );
    assert_eq!(digest_of(&target, "org/app", "change_42_latest"), None);
    assert_eq!(promoted["promoted"][0]["digest"], digest);
    assert_eq!(promoted["deleted"], json!(["org/app:change_42_latest"]));
}

#[test]
fn upload_with_promote_false_publishes_the_final_tags_directly() {
    let source = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    let digest = built(&source, &target, &["latest", "1.0"]);
    let home = tempfile::tempdir().unwrap();
    let mut args = upload_args(&source, &target, &["latest", "1.0"]);
    args["promote"] = json!(false);

    let result = succeeded(run_module("upload_docker_image", args.clone(), home.path()));
    assert_eq!(result["changed"], true);
    assert_eq!(
        result["targets"],
        json!([
            format!("{}/org/app:latest", target.authority()),
            format!("{}/org/app:1.0", target.authority())
        ])
    );
    for tag in ["latest", "1.0"] {
        assert_eq!(
            digest_of(&target, "org/app", tag),
            Some(digest.clone()),
            "{tag}"
        );
    }
    for tag in ["change_42_latest", "change_42_1.0"] {
        assert_eq!(digest_of(&target, "org/app", tag), None, "{tag}");
    }
    let again = succeeded(run_module("upload_docker_image", args, home.path()));
    assert_eq!(again["changed"], false, "{again:#}");
}

/// A two-platform image the gate build left in `intermediate` as
/// `<registry>/org/app:<build>_<tag>`, with the artifact records
/// `push_to_intermediate_registry` returns; the index digest.
fn gate_build(
    intermediate: &BuildsetServer,
    target: &BuildsetServer,
    build: &str,
    tags: &[&str],
) -> (String, Vec<Value>) {
    let layout = OciLayout::new();
    let index = two_platforms(&layout);
    gate_build_of(intermediate, target, &layout, &index, build, tags)
}

/// An index of two 256 KiB images (amd64, arm64) in `layout`.
fn two_platforms(layout: &OciLayout) -> Value {
    let amd64 = oci_image(layout, "amd64", &now(), 256 * 1024);
    let arm64 = oci_image(layout, "arm64", &now(), 256 * 1024);
    oci_index(layout, &[amd64, arm64])
}

/// [`gate_build`] of the image `index` of `layout`.
fn gate_build_of(
    intermediate: &BuildsetServer,
    target: &BuildsetServer,
    layout: &OciLayout,
    index: &Value,
    build: &str,
    tags: &[&str],
) -> (String, Vec<Value>) {
    let repository = format!("{}/org/app", target.authority());
    let mut digest = String::new();
    let mut artifacts = Vec::new();
    for tag in tags {
        let at = format!("{repository}:{build}_{tag}");
        digest = push_to(intermediate, layout, index.clone(), &at);
        artifacts.push(json!({
            "name": format!("{repository}:{tag}"),
            "url": format!("docker://{}/{at}", intermediate.authority()),
            "metadata": {"type": "container_image", "repository": repository, "tag": tag},
            "project": "org/app", "job": "build-image",
        }));
    }
    (digest, artifacts)
}

fn intermediate_args(
    intermediate: &BuildsetServer,
    target: &BuildsetServer,
    tags: &[&str],
    artifacts: &[Value],
) -> Value {
    json!({
        "container_images": images(target, tags),
        "container_registry_credentials": credentials(target, "/org/"),
        "docker_registry_cert": target.ca_pem,
        "method": "intermediate-registry",
        "intermediate_registry": {
            "host": intermediate.host, "port": intermediate.port,
            "username": intermediate.username, "password": intermediate.password,
            "cert": intermediate.ca_pem,
        },
        "zuul": {"change": "42", "patchset": "3", "pipeline": "promote", "artifacts": artifacts},
    })
}

/// The blob requests in `lines` (uploads, mounts and checks).
fn blob_writes(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("/blobs/uploads") || (l.contains("PUT") && l.contains("/blobs/")))
        .collect()
}

#[test]
fn promotes_from_the_intermediate_registry_the_digest_the_gate_tested_sending_only_what_the_target_lacks(
) {
    let intermediate = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    let layout = OciLayout::new();
    let index = two_platforms(&layout);
    let (gate_digest, artifacts) =
        gate_build_of(&intermediate, &target, &layout, &index, "b1", &["latest"]);
    let home = tempfile::tempdir().unwrap();
    let args = intermediate_args(&intermediate, &target, &["latest"], &artifacts);

    let result = succeeded(run_module(
        "promote_docker_image",
        args.clone(),
        home.path(),
    ));
    assert_eq!(result["changed"], true);
    assert_eq!(
        digest_of(&target, "org/app", "latest"),
        Some(gate_digest.clone())
    );
    let promoted = &result["promoted"][0];
    assert_eq!(promoted["gate_digest"], gate_digest);
    assert_eq!(promoted["digest"], gate_digest);
    assert_eq!(promoted["same_as_gate"], true);
    // The index and both platforms' manifests, configs and layers.
    assert_eq!(promoted["manifests_written"], 3, "{result:#}");
    assert_eq!(promoted["blobs_copied"], 4, "{result:#}");
    assert!(
        result["msg"]
            .as_str()
            .unwrap()
            .ends_with("every final tag names the digest the gate tested"),
        "{result:#}"
    );
    let text = result.to_string();
    assert!(!text.contains(&target.password) && !text.contains(&intermediate.password));
    // No temporary tag was ever published.
    let tags = target
        .client()
        .get(format!("{}/v2/org/app/tags/list", target.url()))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    assert_eq!(tags["tags"], json!(["latest"]));

    // The same image under another tag: the target has every layer, so
    // only the manifests are sent.
    let (_, more) = gate_build_of(&intermediate, &target, &layout, &index, "b2", &["1.0"]);
    let mark = log_mark(&target);
    let second = succeeded(run_module(
        "promote_docker_image",
        intermediate_args(&intermediate, &target, &["1.0"], &more),
        home.path(),
    ));
    let requests = log_since(&target, mark);
    assert_eq!(blob_writes(&requests), Vec::<&String>::new());
    assert_eq!(second["promoted"][0]["blobs_copied"], 0);
    assert_eq!(second["promoted"][0]["bytes_copied"], 0);
    assert_eq!(
        digest_of(&target, "org/app", "1.0"),
        Some(gate_digest.clone())
    );
    let manifest_puts = requests
        .iter()
        .filter(|l| l.contains("PUT") && l.contains("/manifests/"))
        .count();
    assert_eq!(manifest_puts, 3, "{requests:#?}");

    // Again: the final tag is in place; nothing changes.
    let again = succeeded(run_module("promote_docker_image", args, home.path()));
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(again["promoted"][0]["same_as_gate"], true);
}

#[test]
fn promote_from_the_intermediate_registry_asks_zuuls_api_for_the_gate_build() {
    let intermediate = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    let (gate_digest, artifacts) = gate_build(&intermediate, &target, "b1", &["latest"]);
    let (_, failed_artifacts) = gate_build(&intermediate, &target, "b0", &["latest"]);
    // Zuul's answer, newest first: a failed later build, then the gate's.
    let answer = json!([
        {"uuid": "b0", "job_name": "build-image", "result": "FAILURE", "artifacts": failed_artifacts},
        {"uuid": "b1", "job_name": "build-image", "result": "SUCCESS", "artifacts": artifacts},
    ]);
    let queries: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = queries.clone();
    let app = axum::Router::new().route(
        "/api/tenant/example/builds",
        axum::routing::get(move |uri: axum::http::Uri| {
            let answer = answer.clone();
            seen.lock()
                .unwrap()
                .push(uri.query().unwrap_or_default().to_string());
            async move { axum::Json(answer) }
        }),
    );
    let zuul = crate::support::stand_in::serve(app);
    let home = tempfile::tempdir().unwrap();
    let mut args = intermediate_args(&intermediate, &target, &["latest"], &[]);
    args["api"] = json!(format!("{zuul}/api/tenant/example"));
    args["api_pipeline"] = json!("gate");
    args["api_job"] = json!("build-image");

    let result = succeeded(run_module(
        "promote_docker_image",
        args.clone(),
        home.path(),
    ));
    assert_eq!(
        *queries.lock().unwrap(),
        ["change=42&patchset=3&pipeline=gate&job_name=build-image"]
    );
    assert_eq!(
        digest_of(&target, "org/app", "latest"),
        Some(gate_digest.clone())
    );
    assert_eq!(result["promoted"][0]["gate_digest"], gate_digest);
    assert_eq!(
        result["promoted"][0]["source"],
        format!(
            "{}/{}/org/app:b1_latest",
            intermediate.authority(),
            target.authority()
        )
    );
    assert!(result["msg"]
        .as_str()
        .unwrap()
        .contains("gate build found in Zuul's API"));

    // Without the API and without artifacts there is no gate build to find.
    args.as_object_mut().unwrap().remove("api");
    let msg = failure_msg(&run_module("promote_docker_image", args, home.path()));
    assert_eq!(
        msg,
        "zuul.artifacts holds no container_image artifact and promote_container_image_api is \
         not set, so the gate build cannot be found"
    );
}

#[test]
fn check_mode_predicts_a_promote_from_the_intermediate_registry_and_writes_nothing() {
    let intermediate = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    let (gate_digest, artifacts) = gate_build(&intermediate, &target, "b1", &["latest"]);
    let home = tempfile::tempdir().unwrap();
    let mut args = intermediate_args(&intermediate, &target, &["latest"], &artifacts);
    args["_ansible_check_mode"] = json!(true);
    let mark = log_mark(&target);

    let result = succeeded(run_module("promote_docker_image", args, home.path()));
    assert_eq!(result["changed"], true);
    assert_eq!(result["promoted"][0]["gate_digest"], gate_digest);
    assert!(result["msg"]
        .as_str()
        .unwrap()
        .starts_with("would promote 1 tag(s)"));
    assert_eq!(digest_of(&target, "org/app", "latest"), None);
    let writes: Vec<String> = log_since(&target, mark)
        .into_iter()
        .filter(|l| l.contains("PUT") || l.contains("POST") || l.contains("PATCH"))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
}

#[test]
fn promote_by_tag_on_a_quay_registry_removes_the_temporary_and_leaked_tags_through_its_api() {
    use crate::support::quay::QuayStandIn;
    let source = BuildsetServer::start();
    let target = BuildsetServer::start_without_port();
    let digest = built(&source, &target, &["latest"]);
    let home = tempfile::tempdir().unwrap();
    succeeded(run_module(
        "upload_docker_image",
        upload_args(&source, &target, &["latest"]),
        home.path(),
    ));
    // quay.io's tag API sees the tags the upload left, and one leaked two
    // days ago.
    let token = "quay-Token-abcdef0123";
    let quay = QuayStandIn::start(
        token,
        &[
            ("org/app", "change_42_latest", Utc::now()),
            (
                "org/app",
                "change_7_latest",
                Utc::now() - chrono::Duration::days(2),
            ),
            (
                "org/app",
                "change_9_latest",
                Utc::now() - chrono::Duration::hours(1),
            ),
        ],
    );
    let mut credentials = credentials(&target, "/org/");
    credentials[target.authority()]["type"] = json!("quay");
    credentials[target.authority()]["api_token"] = json!(token);

    let result = succeeded(run_module(
        "promote_docker_image",
        json!({
            "container_images": images(&target, &["latest"]),
            "container_registry_credentials": credentials,
            "docker_registry_cert": target.ca_pem,
            "quay_api": quay.api,
            "zuul": {"change": "42", "pipeline": "promote"},
        }),
        home.path(),
    ));
    assert_eq!(digest_of(&target, "org/app", "latest"), Some(digest));
    assert_eq!(
        quay.deleted(),
        ["org/app:change_42_latest", "org/app:change_7_latest"]
    );
    assert_eq!(quay.tags("org/app"), ["change_9_latest"]);
    assert_eq!(
        result["deleted"],
        json!(["org/app:change_42_latest", "org/app:change_7_latest"])
    );
    assert!(!result.to_string().contains(token));
}
