//! `promote_docker_image` against our registry server (bearer tokens, as
//! Docker Hub's registry API does): only manifests move, the digest is
//! kept, temporary and leaked tags are cleaned up.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::publish_support::{
    digest_of, distribution_digest, docker_image, docker_list, failure_msg, log_mark, log_since,
    manifest_of, oci_image, oci_index, push_raw, push_to, push_to_distribution, run_module,
    succeeded, DOCKER_LIST, DOCKER_MANIFEST,
};
use crate::registry_clients::OciLayout;
use crate::support::buildset::BuildsetServer;
use crate::support::distribution::Distribution;

fn args(registry: &BuildsetServer, images: Value) -> Value {
    json!({
        "docker_images": images,
        "docker_registry": registry.authority(),
        "docker_registry_cert": registry.ca_pem,
        "docker_credentials": {"username": registry.username, "password": registry.password,
                               "repository": "^org/"},
        "zuul": {"change": "42", "pipeline": "promote"},
    })
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// A 1 KiB OCI image pushed to `registry` as `repository_tag`, as upload
/// leaves it for promote; returns its digest.
fn uploaded(registry: &BuildsetServer, repository_tag: &str) -> String {
    let layout = OciLayout::new();
    let image = oci_image(&layout, "amd64", &now(), 1024);
    push_to(registry, &layout, image, repository_tag)
}

#[test]
fn promotes_by_manifest_only_and_removes_the_temporary_tags() {
    let registry = BuildsetServer::start();
    let layout = OciLayout::new();
    let image = oci_image(&layout, "amd64", &now(), 64 * 1024);
    let digest = push_to(
        &registry,
        &layout,
        image.clone(),
        "org/app:change_42_latest",
    );
    push_to(&registry, &layout, image, "org/app:change_42_v1");
    let home = tempfile::tempdir().unwrap();

    let mark = log_mark(&registry);
    let result = succeeded(run_module(
        "promote_docker_image",
        args(
            &registry,
            json!([{"repository": "org/app", "tags": ["latest", "v1"]}]),
        ),
        home.path(),
    ));
    let requests = log_since(&registry, mark);

    assert_eq!(
        digest_of(&registry, "org/app", "latest"),
        Some(digest.clone())
    );
    assert_eq!(digest_of(&registry, "org/app", "v1"), Some(digest.clone()));
    assert_eq!(digest_of(&registry, "org/app", "change_42_latest"), None);
    assert_eq!(digest_of(&registry, "org/app", "change_42_v1"), None);
    let blob_requests: Vec<_> = requests.iter().filter(|l| l.contains("/blobs/")).collect();
    assert!(
        blob_requests.is_empty(),
        "blob requests: {blob_requests:#?}"
    );
    assert_eq!(result["promoted"][0]["digest"], digest);
    assert_eq!(result["promoted"][1]["temporary_tag"], "change_42_v1");
    assert_eq!(
        result["deleted"],
        json!(["org/app:change_42_latest", "org/app:change_42_v1"])
    );
    assert!(!result.to_string().contains(&registry.password));
}

#[test]
fn leaked_temporary_tags_older_than_a_day_go_fresh_ones_stay() {
    let registry = BuildsetServer::start();
    let layout = OciLayout::new();
    let current = oci_image(&layout, "amd64", &now(), 1024);
    push_to(&registry, &layout, current, "org/app:change_42_latest");
    let old = (Utc::now() - Duration::hours(49)).to_rfc3339();
    let leaked = oci_image(&layout, "amd64", &old, 1024);
    push_to(&registry, &layout, leaked, "org/app:change_1_latest");
    let fresh = oci_image(&layout, "amd64", &now(), 1024);
    let fresh_digest = push_to(&registry, &layout, fresh, "org/app:change_2_latest");
    let home = tempfile::tempdir().unwrap();

    let result = succeeded(run_module(
        "promote_docker_image",
        args(&registry, json!([{"repository": "org/app"}])),
        home.path(),
    ));
    assert_eq!(digest_of(&registry, "org/app", "change_1_latest"), None);
    assert_eq!(
        digest_of(&registry, "org/app", "change_2_latest"),
        Some(fresh_digest)
    );
    assert_eq!(
        result["deleted"],
        json!(["org/app:change_42_latest", "org/app:change_1_latest"])
    );
    assert_eq!(result.get("warnings"), None, "{result:#}");
}

#[test]
fn a_multi_arch_index_keeps_its_digest() {
    let registry = BuildsetServer::start();
    let layout = OciLayout::new();
    let amd64 = oci_image(&layout, "amd64", &now(), 1024);
    let arm64 = oci_image(&layout, "arm64", &now(), 1024);
    let index = oci_index(&layout, &[amd64, arm64]);
    let digest = push_to(&registry, &layout, index, "org/multi:change_42_latest");
    let home = tempfile::tempdir().unwrap();

    let result = succeeded(run_module(
        "promote_docker_image",
        args(&registry, json!([{"repository": "org/multi"}])),
        home.path(),
    ));
    assert_eq!(digest_of(&registry, "org/multi", "latest"), Some(digest));
    assert_eq!(
        result["promoted"][0]["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
}

#[test]
fn docker_manifests_and_manifest_lists_keep_digest_and_media_type() {
    let registry = BuildsetServer::start();
    let layout = OciLayout::new();
    let single = docker_image(&layout, "amd64", &now(), 4096);
    let single_digest = push_raw(
        &registry,
        &layout,
        &single,
        "org/single",
        "change_42_latest",
    );
    let amd64 = docker_image(&layout, "amd64", &now(), 1024);
    let arm64 = docker_image(&layout, "arm64", &now(), 1024);
    let list = docker_list(&layout, &[amd64, arm64]);
    let list_digest = push_raw(&registry, &layout, &list, "org/list", "change_42_latest");
    // What the upload left is in Docker's media types, as pushed.
    assert_eq!(
        manifest_of(&registry, "org/single", "change_42_latest"),
        Some((single_digest.clone(), DOCKER_MANIFEST.to_string()))
    );
    assert_eq!(
        manifest_of(&registry, "org/list", "change_42_latest"),
        Some((list_digest.clone(), DOCKER_LIST.to_string()))
    );
    let home = tempfile::tempdir().unwrap();

    let mark = log_mark(&registry);
    let result = succeeded(run_module(
        "promote_docker_image",
        args(
            &registry,
            json!([{"repository": "org/single"}, {"repository": "org/list"}]),
        ),
        home.path(),
    ));
    let requests = log_since(&registry, mark);

    assert_eq!(
        manifest_of(&registry, "org/single", "latest"),
        Some((single_digest.clone(), DOCKER_MANIFEST.to_string()))
    );
    assert_eq!(
        manifest_of(&registry, "org/list", "latest"),
        Some((list_digest.clone(), DOCKER_LIST.to_string()))
    );
    assert_eq!(result["promoted"][0]["digest"], single_digest);
    assert_eq!(result["promoted"][0]["media_type"], DOCKER_MANIFEST);
    assert_eq!(result["promoted"][1]["digest"], list_digest);
    assert_eq!(result["promoted"][1]["media_type"], DOCKER_LIST);
    let blob_requests: Vec<_> = requests.iter().filter(|l| l.contains("/blobs/")).collect();
    assert!(
        blob_requests.is_empty(),
        "blob requests: {blob_requests:#?}"
    );
    assert_eq!(
        manifest_of(&registry, "org/single", "change_42_latest"),
        None
    );
    assert_eq!(manifest_of(&registry, "org/list", "change_42_latest"), None);
}

#[test]
fn a_missing_temporary_tag_publishes_nothing() {
    let registry = BuildsetServer::start();
    uploaded(&registry, "org/app:change_42_latest");
    let home = tempfile::tempdir().unwrap();

    let result = run_module(
        "promote_docker_image",
        args(
            &registry,
            json!([{"repository": "org/app"}, {"repository": "org/other"}]),
        ),
        home.path(),
    );
    assert_eq!(
        failure_msg(&result),
        format!(
            "the temporary tag {}/org/other:change_42_latest does not exist (did \
             upload_docker_image run for this change?); nothing was promoted",
            registry.authority()
        )
    );
    assert_eq!(digest_of(&registry, "org/app", "latest"), None);
    assert!(digest_of(&registry, "org/app", "change_42_latest").is_some());
}

#[test]
fn a_repository_outside_the_credentials_is_refused_before_any_request() {
    let registry = BuildsetServer::start();
    let home = tempfile::tempdir().unwrap();
    let mark = log_mark(&registry);
    let result = run_module(
        "promote_docker_image",
        args(&registry, json!([{"repository": "elsewhere/app"}])),
        home.path(),
    );
    assert_eq!(
        failure_msg(&result),
        "docker_images[0].repository \"elsewhere/app\" is not permitted by \
         docker_credentials.repository \"^org/\""
    );
    assert_eq!(log_since(&registry, mark), Vec::<String>::new());
}

/// Check mode, apply, check, apply: the first check predicts the move and
/// writes nothing; after the promote deleted the temporary tag, check mode
/// and the real run fail alike, naming it, and leave the final tag alone.
#[test]
fn check_mode_predicts_each_run_and_writes_nothing() {
    let registry = BuildsetServer::start();
    let digest = uploaded(&registry, "org/app:change_42_latest");
    let home = tempfile::tempdir().unwrap();
    let args = args(&registry, json!([{"repository": "org/app"}]));
    let mut check_args = args.clone();
    check_args["_ansible_check_mode"] = json!(true);

    let check = succeeded(run_module(
        "promote_docker_image",
        check_args.clone(),
        home.path(),
    ));
    assert_eq!(check["changed"], true);
    assert_eq!(check["promoted"][0]["digest"], digest);
    assert_eq!(check["promoted"][0]["changed"], true);
    assert_eq!(check["deleted"], json!([]));
    assert_eq!(digest_of(&registry, "org/app", "latest"), None);
    assert_eq!(
        digest_of(&registry, "org/app", "change_42_latest"),
        Some(digest.clone())
    );

    let apply = succeeded(run_module(
        "promote_docker_image",
        args.clone(),
        home.path(),
    ));
    assert_eq!(apply["changed"], true);
    assert_eq!(apply["promoted"][0]["changed"], true);
    assert_eq!(apply["deleted"], json!(["org/app:change_42_latest"]));
    assert_eq!(
        digest_of(&registry, "org/app", "latest"),
        Some(digest.clone())
    );

    let missing = format!(
        "the temporary tag {}/org/app:change_42_latest does not exist",
        registry.authority()
    );
    for (round, run_args) in [("second check", &check_args), ("second run", &args)] {
        let result = run_module("promote_docker_image", run_args.clone(), home.path());
        assert_eq!(result["failed"], true, "{round}: {result:#}");
        assert!(
            failure_msg(&result).contains(&missing),
            "{round}: {result:#}"
        );
        assert_eq!(
            digest_of(&registry, "org/app", "latest"),
            Some(digest.clone()),
            "{round}"
        );
    }
}

#[test]
fn deletes_the_registry_refuses_are_warnings_not_a_failed_promote() {
    // Debian's docker-registry as the seed configures it, deletes left off:
    // it neither deletes a tag by name nor a manifest by digest.
    let registry = Distribution::start();
    let layout = OciLayout::new();
    let current = oci_image(&layout, "amd64", &now(), 1024);
    let digest = push_to_distribution(&registry, &layout, current, "org/app:change_42_latest");
    let old = (Utc::now() - Duration::hours(49)).to_rfc3339();
    let leaked = oci_image(&layout, "amd64", &old, 1024);
    let leaked_digest = push_to_distribution(&registry, &layout, leaked, "org/app:change_1_latest");
    let home = tempfile::tempdir().unwrap();
    let digest_at = |tag: &str| distribution_digest(&registry, &format!("org/app:{tag}"));

    let promote_args = json!({
        "docker_images": [{"repository": "org/app"}],
        "docker_registry": registry.authority(),
        "docker_registry_cert": registry.tls.cert_pem,
        "docker_credentials": {"username": registry.username,
                               "password": registry.password, "repository": "^org/"},
        "zuul": {"change": "42", "pipeline": "promote"},
    });
    let result = succeeded(run_module(
        "promote_docker_image",
        promote_args.clone(),
        home.path(),
    ));

    assert_eq!(result["changed"], true);
    assert_eq!(digest_at("latest"), Some(digest.clone()));
    assert_eq!(result["promoted"][0]["digest"], digest);
    assert_eq!(result["deleted"], json!([]));
    // Both tags the registry would not delete are still there, and named.
    assert_eq!(digest_at("change_42_latest"), Some(digest.clone()));
    assert_eq!(digest_at("change_1_latest"), Some(leaked_digest.clone()));
    let warnings: Vec<&str> = result["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings: {result:#}"))
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert_eq!(
        warnings[0],
        format!(
            "could not delete tag org/app:change_42_latest: registry {} deletes manifests \
             only by digest, and tag latest names the same manifest; left in place",
            registry.authority()
        )
    );
    assert_eq!(
        warnings[1],
        format!(
            "could not delete tag org/app:change_1_latest: DELETE \
             https://{authority}/v2/org/app/manifests/{leaked_digest}: 405 Method Not Allowed \
             (UNSUPPORTED: The operation is unsupported.): unexpected answer from registry \
             {authority}",
            authority = registry.authority()
        )
    );
    assert!(!result.to_string().contains(&registry.password));

    // Again: the temporary tag is still there (the registry refused its
    // delete) and the final tag already names it: nothing moves.
    let again = succeeded(run_module(
        "promote_docker_image",
        promote_args,
        home.path(),
    ));
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(again["promoted"][0]["changed"], false);
    assert_eq!(digest_at("latest"), Some(digest));
}

#[test]
fn missing_repository_is_named_and_nothing_is_sent() {
    let registry = BuildsetServer::start();
    uploaded(&registry, "org/app:change_42_latest");
    let home = tempfile::tempdir().unwrap();
    let mark = log_mark(&registry);

    let result = run_module(
        "promote_docker_image",
        args(
            &registry,
            json!([{"repository": "org/app"}, {"tags": ["latest"]}]),
        ),
        home.path(),
    );
    assert_eq!(
        failure_msg(&result),
        "argument docker_images[1]: missing field `repository`"
    );
    assert_eq!(log_since(&registry, mark), Vec::<String>::new());
    assert_eq!(digest_of(&registry, "org/app", "latest"), None);
}
