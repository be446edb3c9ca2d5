//! Tag removal on every kind of registry: `remove_registry_tag` (and the
//! cleanup after a promote, the same stores) against quay.io's and Docker
//! Hub's tag APIs (stand-ins: neither can be reached here), our registry
//! server and Debian's docker-registry. Ages count in whole seconds of the
//! total age: a tag two days and a minute old is removed, which
//! zuul-jobs' `timedelta.seconds` (60 there) would keep.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use speculative_images::client::{Endpoint, ErrorKind, HubApi, RemoteRegistry, TagDeleted};
use speculative_images::oci::{RepositoryName, Tag};
use speculative_images::publish::cleanup::{after_promote, Cleanup, TagApi};
use speculative_images::publish::credentials::RegistryCredentials;
use speculative_images::publish::promote::TagPromotion;

use crate::publish_support::{
    digest_of, distribution_digest, failure_msg, oci_image, push_to, push_to_distribution,
    run_module, succeeded,
};
use crate::registry_clients::OciLayout;
use crate::support::buildset::BuildsetServer;
use crate::support::distribution::{Distribution, Options};
use crate::support::hub::HubStandIn;
use crate::support::quay::QuayStandIn;

const HUB_PASSWORD: &str = "hub-Secret-9";
const QUAY_TOKEN: &str = "quay-Token-0123456789";

/// Two days and a minute: old in total seconds, a minute old in the part
/// below a day zuul-jobs compares.
fn two_days_ago() -> chrono::DateTime<Utc> {
    Utc::now() - Duration::days(2) - Duration::minutes(1)
}

#[test]
fn on_quay_old_matching_tags_go_through_its_api_with_the_bearer_token() {
    let quay = QuayStandIn::start(
        QUAY_TOKEN,
        &[
            ("org/app", "latest", two_days_ago()),
            ("org/app", "change_1_latest", two_days_ago()),
            (
                "org/app",
                "change_2_latest",
                Utc::now() - Duration::hours(1),
            ),
            ("org/app", "gate_latest", two_days_ago()),
            ("org/app", "promote_v1", two_days_ago()),
            ("org/other", "change_3_latest", two_days_ago()),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let args = json!({
        "repository": "quay.io/org/app",
        "api_url": quay.api,
        "container_registry_credentials": {"quay.io": {"api_token": QUAY_TOKEN}},
        "zuul": {"pipeline": "gate"},
    });

    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    let predicted = succeeded(run_module("remove_registry_tag", check, home.path()));
    assert_eq!(predicted["changed"], true);
    assert_eq!(
        predicted["deleted"],
        json!(["org/app:change_1_latest", "org/app:gate_latest"])
    );
    assert!(quay.deleted().is_empty());

    let result = succeeded(run_module("remove_registry_tag", args.clone(), home.path()));
    assert_eq!(
        result["deleted"],
        json!(["org/app:change_1_latest", "org/app:gate_latest"])
    );
    assert_eq!(
        quay.deleted(),
        ["org/app:change_1_latest", "org/app:gate_latest"]
    );
    assert_eq!(
        quay.tags("org/app"),
        ["latest", "change_2_latest", "promote_v1"]
    );
    assert_eq!(quay.tags("org/other"), ["change_3_latest"]);
    assert!(quay
        .authorizations()
        .iter()
        .all(|a| *a == format!("Bearer {QUAY_TOKEN}")));
    assert!(!result.to_string().contains(QUAY_TOKEN));

    let again = succeeded(run_module("remove_registry_tag", args.clone(), home.path()));
    assert_eq!(again["changed"], false, "{again:#}");

    // One named tag, whatever its age.
    let mut one = args.clone();
    one["tag"] = json!("latest");
    succeeded(run_module("remove_registry_tag", one, home.path()));
    assert_eq!(quay.tags("org/app"), ["change_2_latest", "promote_v1"]);

    // A wrong token is refused by quay.io, and never shown.
    let mut wrong = args;
    wrong["container_registry_credentials"] = json!({"quay.io": {"api_token": "wrong-Token-42"}});
    let msg = failure_msg(&run_module("remove_registry_tag", wrong, home.path()));
    assert!(msg.contains("401"), "{msg}");
    assert!(!msg.contains("wrong-Token-42"), "{msg}");
}

#[test]
fn a_registry_without_credentials_or_a_quay_entry_without_a_token_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let msg = failure_msg(&run_module(
        "remove_registry_tag",
        json!({
            "repository": "quay.io/org/app",
            "container_registry_credentials": {"docker.io": {"username": "u", "password": "pw-Secret-1"}},
        }),
        home.path(),
    ));
    assert_eq!(
        msg,
        "registry \"quay.io\" has no entry in container_registry_credentials"
    );
    let msg = failure_msg(&run_module(
        "remove_registry_tag",
        json!({
            "repository": "quay.io/org/app",
            "container_registry_credentials": {"quay.io": {"username": "u", "password": "pw-Secret-1"}},
        }),
        home.path(),
    ));
    assert_eq!(
        msg,
        "quay.io's API needs the api_token of the credentials for quay.io"
    );
    let msg = failure_msg(&run_module(
        "remove_registry_tag",
        json!({
            "repository": "app",
            "container_registry_credentials": {},
        }),
        home.path(),
    ));
    assert!(
        msg.starts_with("repository \"app\" must be the full repository"),
        "{msg}"
    );
}

#[test]
fn on_docker_hub_old_matching_tags_go_through_its_api() {
    let old = two_days_ago().to_rfc3339();
    let fresh = (Utc::now() - Duration::minutes(30)).to_rfc3339();
    let hub = HubStandIn::start(
        "zuul",
        HUB_PASSWORD,
        &[
            ("org/app", "latest", Some(&old)),
            ("org/app", "change_7_latest", Some(&old)),
            ("org/app", "change_9_latest", Some(&fresh)),
            ("org/app", "change_5_latest", None),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let args = json!({
        "repository": "docker.io/org/app",
        "api_url": hub.base,
        "age": 3600,
        "container_registry_credentials": {"docker.io": {"username": "zuul", "password": HUB_PASSWORD}},
    });
    let result = succeeded(run_module("remove_registry_tag", args.clone(), home.path()));
    assert_eq!(result["deleted"], json!(["org/app:change_7_latest"]));
    assert_eq!(
        result["warnings"],
        json!(["could not tell the age of org/app:change_5_latest; left in place"])
    );
    assert_eq!(
        hub.tags("org/app"),
        ["latest", "change_9_latest", "change_5_latest"]
    );
    assert_eq!(
        hub.logins(),
        [json!({"username": "zuul", "password": HUB_PASSWORD})]
    );
    assert!(!result.to_string().contains(HUB_PASSWORD));
    let again = succeeded(run_module("remove_registry_tag", args, home.path()));
    assert_eq!(again["changed"], false);
}

/// Push 1 KiB images created at the given times under `org/app:<tag>`.
fn dated_tags(push: impl Fn(&OciLayout, Value, &str) -> String, tags: &[(&str, String)]) {
    let layout = OciLayout::new();
    for (tag, created) in tags {
        let image = oci_image(&layout, "amd64", created, 1024);
        push(&layout, image, &format!("org/app:{tag}"));
    }
}

#[test]
fn on_our_registry_old_matching_tags_go_with_the_spec_tag_delete() {
    let registry = BuildsetServer::start_without_port();
    dated_tags(
        |layout, image, at| push_to(&registry, layout, image, at),
        &[
            ("latest", two_days_ago().to_rfc3339()),
            ("change_1_latest", two_days_ago().to_rfc3339()),
            ("change_2_latest", Utc::now().to_rfc3339()),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let args = json!({
        "repository": format!("{}/org/app", registry.authority()),
        "registry_cert": registry.ca_pem,
        "container_registry_credentials": {registry.authority(): {
            "username": registry.username, "password": registry.password}},
    });
    let result = succeeded(run_module("remove_registry_tag", args.clone(), home.path()));
    assert_eq!(result["deleted"], json!(["org/app:change_1_latest"]));
    assert_eq!(digest_of(&registry, "org/app", "change_1_latest"), None);
    assert!(digest_of(&registry, "org/app", "change_2_latest").is_some());
    assert!(digest_of(&registry, "org/app", "latest").is_some());
    assert!(!result.to_string().contains(&registry.password));
    let again = succeeded(run_module("remove_registry_tag", args, home.path()));
    assert_eq!(again["changed"], false);
}

#[test]
fn on_docker_registry_old_matching_tags_go_by_manifest_delete() {
    let registry = Distribution::start_with(Options {
        delete_enabled: true,
        ..Options::default()
    });
    dated_tags(
        |layout, image, at| push_to_distribution(&registry, layout, image, at),
        &[
            ("latest", Utc::now().to_rfc3339()),
            ("change_1_latest", two_days_ago().to_rfc3339()),
            ("change_2_latest", Utc::now().to_rfc3339()),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let digest_at = |tag: &str| distribution_digest(&registry, &format!("org/app:{tag}"));
    let args = json!({
        "repository": format!("{}/org/app", registry.authority()),
        "registry_cert": registry.tls.cert_pem,
        "docker_credentials": {"username": registry.username, "password": registry.password},
    });
    let result = succeeded(run_module("remove_registry_tag", args, home.path()));
    assert_eq!(result["deleted"], json!(["org/app:change_1_latest"]));
    assert_eq!(digest_at("change_1_latest"), None);
    assert!(digest_at("change_2_latest").is_some());
    assert!(digest_at("latest").is_some());
}

// The Docker Hub client and the cleanup after a promote on Hub.

fn hub_credentials(password: &str) -> RegistryCredentials {
    RegistryCredentials {
        username: Some("zuul".into()),
        password: Some(password.into()),
        ..RegistryCredentials::default()
    }
}

fn promotion(temporary: &str, final_tag: &str) -> TagPromotion {
    TagPromotion {
        repository: "org/app".parse().unwrap(),
        temporary: temporary.parse().unwrap(),
        final_tag: final_tag.parse().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_api_login_list_and_delete() {
    let hub = HubStandIn::start(
        "u",
        "pw",
        &[
            ("org/app", "change_1_latest", Some("2026-11-20T10:00:00Z")),
            ("org/app", "latest", Some("2026-11-25T10:00:00.123456Z")),
            ("org/app", "v1", None),
        ],
    );
    let err = HubApi::login(&hub.base, "u", "wrong").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.to_string(),
        format!(
            "POST {}/v2/users/login/: 401 Unauthorized: registry hub.docker.com refused the credentials of user \"u\"",
            hub.base
        )
    );

    let api = HubApi::login(&hub.base, "u", "pw").await.unwrap();
    assert_eq!(
        hub.logins(),
        [
            json!({"username": "u", "password": "wrong"}),
            json!({"username": "u", "password": "pw"}),
        ]
    );
    let repo: RepositoryName = "org/app".parse().unwrap();
    // Two pages: the second reached through `next`.
    let tags = api.tags(&repo).await.unwrap();
    let names: Vec<_> = tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["change_1_latest", "latest", "v1"]);
    assert_eq!(
        tags[0].last_updated.as_deref(),
        Some("2026-11-20T10:00:00Z")
    );
    assert_eq!(tags[2].last_updated, None);

    let tag: Tag = "change_1_latest".parse().unwrap();
    assert_eq!(
        api.delete_tag(&repo, &tag).await.unwrap(),
        TagDeleted::Deleted
    );
    let gone: Tag = "gone".parse().unwrap();
    assert_eq!(
        api.delete_tag(&repo, &gone).await.unwrap(),
        TagDeleted::Absent
    );
    assert_eq!(hub.deleted(), ["org/app:change_1_latest"]);
    assert_eq!(hub.tags("org/app"), ["latest", "v1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_docker_hub_a_promote_deletes_temporary_and_leaked_tags() {
    let now = Utc::now();
    let old = (now - Duration::hours(25)).to_rfc3339();
    let fresh = (now - Duration::hours(23)).to_rfc3339();
    let hub = HubStandIn::start(
        "zuul",
        HUB_PASSWORD,
        &[
            ("org/app", "latest", Some(&old)),
            ("org/app", "change_42_latest", Some(&fresh)),
            ("org/app", "change_7_latest", Some(&old)),
            ("org/app", "change_9_latest", Some(&fresh)),
            ("org/app", "promote_v2", Some(&old)),
            ("org/app", "change_5_latest", None),
            ("org/other", "change_1_latest", Some(&old)),
        ],
    );
    let registry = RemoteRegistry::new(Endpoint::new("docker.io")).unwrap();
    let mut report = Cleanup::default();
    after_promote(
        registry.as_ref(),
        TagApi::Hub,
        &hub.base,
        &hub_credentials(HUB_PASSWORD),
        &[promotion("change_42_latest", "latest")],
        Some("promote"),
        now,
        &mut report,
    )
    .await;

    assert_eq!(
        hub.logins(),
        [json!({"username": "zuul", "password": HUB_PASSWORD})]
    );
    let deleted = [
        "org/app:change_42_latest",
        "org/app:change_7_latest",
        "org/app:promote_v2",
    ];
    assert_eq!(hub.deleted(), deleted);
    assert_eq!(report.deleted, deleted);
    assert_eq!(
        report.warnings,
        ["could not tell the age of org/app:change_5_latest; left in place"]
    );
    // The final tag, the fresh temporary tag and the undated one stay;
    // another repository is not touched.
    assert_eq!(
        hub.tags("org/app"),
        ["latest", "change_9_latest", "change_5_latest"]
    );
    assert_eq!(hub.tags("org/other"), ["change_1_latest"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_docker_hub_login_is_a_warning_without_the_password() {
    let hub = HubStandIn::start(
        "zuul",
        HUB_PASSWORD,
        &[("org/app", "change_42_latest", Some("2026-01-01T00:00:00Z"))],
    );
    let registry = RemoteRegistry::new(Endpoint::new("docker.io")).unwrap();
    let mut report = Cleanup::default();
    let wrong = "wrong-Secret-1";
    after_promote(
        registry.as_ref(),
        TagApi::Hub,
        &hub.base,
        &hub_credentials(wrong),
        &[promotion("change_42_latest", "latest")],
        None,
        Utc::now(),
        &mut report,
    )
    .await;

    assert_eq!(
        hub.logins(),
        [json!({"username": "zuul", "password": wrong})]
    );
    assert_eq!(
        report.warnings,
        [format!(
            "could not log in to Docker Hub's API: POST {}/v2/users/login/: 401 Unauthorized: \
             registry hub.docker.com refused the credentials of user \"zuul\"; temporary tags \
             were not deleted",
            hub.base
        )]
    );
    assert!(!format!("{report:?}").contains(wrong));
    assert!(report.deleted.is_empty());
    assert!(hub.deleted().is_empty());
    assert_eq!(hub.tags("org/app"), ["change_42_latest"]);
}
