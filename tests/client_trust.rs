//! The client's trust boundaries, against our registry server behind a
//! misbehaving front (`support/proxy.rs`): credentials go only to the
//! registry's own origin, token realms over plain HTTP or on another host
//! are refused, and what a registry sends is read within bounds. Each test
//! asserts what a user sees: the error, what reached the other origin, the
//! digest that arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use speculative_images::client::{
    copy_reference, CopyOptions, CopyReport, Endpoint, Error, ErrorKind, Registry, RemoteRegistry,
    RetryPolicy,
};
use speculative_images::oci::Reference;

use crate::client_fixtures::{manifest_ref, push_image, random_image, repo, Flavor, TestImage};
use crate::support::buildset::BuildsetServer;
use crate::support::proxy::{Front, Misbehaviour, RealmAt};
use crate::transfer_support::client_for;

/// A registry with one image at `org/img:1`.
async fn registry_with_image() -> (BuildsetServer, TestImage) {
    let reg = BuildsetServer::start();
    let image = random_image(Flavor::Oci, "amd64", &[30_000, 50_000]);
    push_image(&client_for(&reg), "org/img", Some("1"), &image).await;
    (reg, image)
}

/// A front over `reg` misbehaving as told.
async fn front_of(reg: &BuildsetServer, misbehaviour: Misbehaviour) -> Front {
    Front::start(
        &reg.authority(),
        &reg.ca_pem,
        &reg.username,
        &reg.password,
        misbehaviour,
    )
    .await
}

/// A client of `front` with `reg`'s credentials, as `adjust` makes it.
fn client_via(
    front: &Front,
    reg: &BuildsetServer,
    adjust: impl FnOnce(Endpoint) -> Endpoint,
) -> Arc<RemoteRegistry> {
    let endpoint = Endpoint::new(&front.authority)
        .with_credentials(&reg.username, &reg.password)
        .with_ca_pem(&front.ca_pem);
    RemoteRegistry::with_retry(
        adjust(endpoint),
        RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        },
    )
    .unwrap()
}

fn at(authority: &str, path: &str) -> Reference {
    format!("{authority}/{path}").parse().unwrap()
}

/// `org/img:1` on `dst` is `image`.
async fn assert_arrived(dst: &BuildsetServer, image: &TestImage) {
    let arrived = client_for(dst)
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap();
    assert_eq!(arrived.digest, image.manifest.digest);
}

/// The other origin saw one `method` request on a `path_part` path per
/// blob of `image`, and none of them carried credentials.
fn assert_each_blob_went_elsewhere_without_credentials(
    front: &Front,
    image: &TestImage,
    method: &str,
    path_part: &str,
) {
    let seen = front.seen_elsewhere();
    assert_eq!(seen.len(), image.blobs.len(), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.method == method && s.path.contains(path_part)),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
}

/// Copy `org/img:1` from one client to another, each given with the
/// authority its references name.
async fn copy_img(
    (src, src_at): (Arc<RemoteRegistry>, &str),
    (dst, dst_at): (Arc<RemoteRegistry>, &str),
) -> Result<CopyReport, Error> {
    copy_reference(
        &src,
        &at(src_at, "org/img:1"),
        &dst,
        &at(dst_at, "org/img:1"),
        &CopyOptions::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_realm_over_plain_http_is_sent_no_password() {
    let (reg, _) = registry_with_image().await;
    let front = front_of(
        &reg,
        Misbehaviour {
            realm: Some(RealmAt::PlainHttp),
            ..Default::default()
        },
    )
    .await;
    let client = client_via(&front, &reg, |e| e);
    let err = client
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Refused(_)), "{err}");
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "authenticating: refused: registry {} names the token realm \
             http://{}/auth/token, over plain http; the credentials of user \"zuul\" \
             would travel unencrypted, so none is sent",
            front.authority, front.other_plain
        )
    );
    assert!(!text.contains(&reg.password));
    assert!(
        front.seen_elsewhere().is_empty(),
        "{:?}",
        front.seen_elsewhere()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_realm_on_another_host_is_refused_unless_allowed() {
    let (reg, image) = registry_with_image().await;
    let front = front_of(
        &reg,
        Misbehaviour {
            realm: Some(RealmAt::OtherHost),
            ..Default::default()
        },
    )
    .await;
    let port = front.other.rsplit(':').next().unwrap();
    let realm = format!("https://localhost:{port}/auth/token");

    let err = client_via(&front, &reg, |e| e)
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Refused(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("names the token realm {realm}, on another host"))
            && text.contains("the credentials of user \"zuul\" are not sent there"),
        "{text}"
    );
    assert!(!text.contains(&reg.password));
    assert!(front.seen_elsewhere().is_empty());

    // Anonymous, nothing secret is sent: the other host serves the token.
    let anonymous =
        RemoteRegistry::new(Endpoint::new(&front.authority).with_ca_pem(&front.ca_pem)).unwrap();
    let manifest = anonymous
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap();
    assert_eq!(manifest.digest, image.manifest.digest);
    let seen = front.seen_elsewhere();
    assert!(
        seen.iter().all(|s| s.path.starts_with("/auth/token")),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");

    // Allowed as the registry's token host, it gets the credentials.
    let (src, copied) = registry_with_image().await;
    let allowed = client_via(&front, &reg, |e| e.allow_token_host("localhost"));
    copy_reference(
        &client_for(&src),
        &at(&src.authority(), "org/img:1"),
        &allowed,
        &at(&front.authority, "org/copied:1"),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    let arrived = client_for(&reg)
        .manifest_get(&repo("org/copied"), &manifest_ref("1"))
        .await
        .unwrap();
    assert_eq!(arrived.digest, copied.manifest.digest);
    let sent_basic = front
        .seen_elsewhere()
        .iter()
        .filter(|s| {
            s.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic "))
        })
        .count();
    assert!(sent_basic >= 1, "{:?}", front.seen_elsewhere());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_redirect_to_another_origin_is_followed_without_credentials() {
    let (src, image) = registry_with_image().await;
    let dst = BuildsetServer::start();
    let front = front_of(
        &src,
        Misbehaviour {
            redirect_blobs: Some(false),
            ..Default::default()
        },
    )
    .await;
    copy_img(
        (client_via(&front, &src, |e| e), &front.authority),
        (client_for(&dst), &dst.authority()),
    )
    .await
    .unwrap();
    assert_arrived(&dst, &image).await;
    assert_each_blob_went_elsewhere_without_credentials(&front, &image, "GET", "/blobs/sha256:");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_from_https_to_plain_http_is_refused() {
    let (src, _) = registry_with_image().await;
    let dst = BuildsetServer::start();
    let front = front_of(
        &src,
        Misbehaviour {
            redirect_blobs: Some(true),
            ..Default::default()
        },
    )
    .await;
    let err = copy_img(
        (client_via(&front, &src, |e| e), &front.authority),
        (client_for(&dst), &dst.authority()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Refused(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "refused: a redirect from https to http://{}/v2/org/img/blobs/sha256:",
            front.other_plain
        )) && text.contains("a URL over plain http"),
        "{text}"
    );
    assert!(front.seen_elsewhere().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_location_on_another_origin_gets_the_blob_without_credentials() {
    let (src, image) = registry_with_image().await;
    let dst = BuildsetServer::start();
    let front = front_of(
        &dst,
        Misbehaviour {
            uploads_elsewhere: Some(false),
            ..Default::default()
        },
    )
    .await;
    copy_img(
        (client_for(&src), &src.authority()),
        (client_via(&front, &dst, |e| e), &front.authority),
    )
    .await
    .unwrap();
    assert_arrived(&dst, &image).await;
    assert_each_blob_went_elsewhere_without_credentials(&front, &image, "PUT", "/blobs/uploads/");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_to_another_origin_is_followed_without_credentials() {
    let (reg, _) = registry_with_image().await;
    let front = front_of(
        &reg,
        Misbehaviour {
            links_elsewhere: true,
            ..Default::default()
        },
    )
    .await;
    let tags = client_via(&front, &reg, |e| e)
        .tags_list(&repo("org/img"))
        .await
        .unwrap();
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, ["1"]);
    let seen = front.seen_elsewhere();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0]
        .path
        .starts_with("/v2/org/img/tags/list?n=1000&last=zzzz"));
    assert!(seen[0].authorization.is_none(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_error_body_and_an_endless_manifest_are_read_within_bounds() {
    let (reg, _) = registry_with_image().await;
    let front = front_of(
        &reg,
        Misbehaviour {
            endless_error: true,
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let err = client_via(&front, &reg, |e| e)
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Status, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "GET https://{0}/v2/org/img/manifests/1: 500 Internal Server Error: \
             unexpected answer from registry {0}",
            front.authority
        )
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // 64 KiB kept; what else was sent sits in socket buffers.
    assert!(front.endless_sent() < 16 << 20, "{}", front.endless_sent());

    let front = front_of(
        &reg,
        Misbehaviour {
            endless_manifest: true,
            ..Default::default()
        },
    )
    .await;
    let err = client_via(&front, &reg, |e| e)
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TooLarge {
            what: "a manifest".into(),
            limit: "4 MiB".into()
        },
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "GET https://{0}/v2/org/img/manifests/1: registry {0} sent a manifest \
             larger than the limit of 4 MiB",
            front.authority
        )
    );
    assert!(!err.is_retryable());
    assert!(front.endless_sent() < 16 << 20, "{}", front.endless_sent());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_location_over_plain_http_is_refused() {
    let (src, _) = registry_with_image().await;
    let dst = BuildsetServer::start();
    let front = front_of(
        &dst,
        Misbehaviour {
            uploads_elsewhere: Some(true),
            ..Default::default()
        },
    )
    .await;
    let err = copy_img(
        (client_for(&src), &src.authority()),
        (client_via(&front, &dst, |e| e), &front.authority),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Refused(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "refused: registry {} handed out http://{}/v2/org/img/blobs/uploads/",
            front.authority, front.other_plain
        )) && text.contains("a URL over plain http, and is itself reached over https"),
        "{text}"
    );
    assert!(!text.contains(&dst.password));
    assert!(front.seen_elsewhere().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_tag_list_stops_after_10000_pages() {
    let (reg, _) = registry_with_image().await;
    let front = front_of(
        &reg,
        Misbehaviour {
            endless_pages: true,
            ..Default::default()
        },
    )
    .await;
    let err = client_via(&front, &reg, |e| e)
        .tags_list(&repo("org/img"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::TooLarge {
            what: "a tag list".into(),
            limit: "10000 pages".into()
        },
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "GET https://{0}/v2/org/img/tags/list: registry {0} sent a tag list \
             larger than the limit of 10000 pages",
            front.authority
        )
    );
    assert_eq!(front.pages_sent(), 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_token_fetch_does_not_hold_up_requests_with_a_cached_token() {
    let (reg, image) = registry_with_image().await;
    let front = front_of(
        &reg,
        Misbehaviour {
            slow_tokens: Some("org%2Fslow"),
            ..Default::default()
        },
    )
    .await;
    let client = client_via(&front, &reg, |e| e);
    client
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .manifest_get(&repo("org/slow"), &manifest_ref("1"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let manifest = client
        .manifest_get(&repo("org/img"), &manifest_ref("1"))
        .await
        .unwrap();
    assert_eq!(manifest.digest, image.manifest.digest);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} for another scope's token",
        started.elapsed()
    );
    let err = slow.await.unwrap().unwrap_err();
    assert!(err.is_not_found(), "{err}");
}
