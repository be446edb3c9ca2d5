//! The OCI distribution-spec 1.1 against the in-process registry, each
//! answer's status, headers and error code as the spec states them:
//! access checked before any handler runs, cross-repository mounts.

use speculative_images::oci::Digest;

use crate::registry_inprocess::{InProcess, Reply};

/// Send without credentials, or with exactly this `Authorization`.
async fn send_as(
    registry: &InProcess,
    authorization: Option<&str>,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> Reply {
    let headers: Vec<(&str, String)> = authorization
        .map(|a| ("authorization", a.to_string()))
        .into_iter()
        .collect();
    registry.send_raw(method, uri, &headers, body.into()).await
}

/// A 401 with the spec's code and a bearer challenge for `scope`.
fn assert_refused(reply: &Reply, scope: &str, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {:?}", reply.body);
    assert_eq!(reply.error_code(), "UNAUTHORIZED", "{what}");
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| {
        panic!("{what}: no WWW-Authenticate challenge");
    });
    assert!(
        challenge.starts_with("Bearer realm=\"http://registry.test:5000/auth/token\""),
        "{what}: {challenge}"
    );
    assert!(
        challenge.contains(&format!("scope=\"{scope}\"")),
        "{what}: {challenge}"
    );
}

#[tokio::test]
async fn anonymous_writes_and_deletes_are_refused_before_any_handler_runs() {
    let registry = InProcess::new();
    let (manifest, _) = registry.push_image("org/img", "v1", "a").await;
    let layer = registry.push_blob("org/img", b"a layer").await;
    let started = registry
        .send("POST", "/v2/org/img/blobs/uploads/", &[], vec![])
        .await;
    let upload = started.header("location").unwrap().to_string();
    let before = registry.snapshot();

    let push = "repository:org/img:pull,push";
    let delete = "repository:org/img:delete";
    for (method, uri, scope) in [
        ("POST", "/v2/org/img/blobs/uploads/".to_string(), push),
        (
            "POST",
            format!("/v2/org/img/blobs/uploads/?digest={layer}"),
            push,
        ),
        ("GET", upload.clone(), push),
        ("PATCH", upload.clone(), push),
        ("PUT", format!("{upload}?digest={layer}"), push),
        ("DELETE", upload.clone(), push),
        ("PUT", "/v2/org/img/manifests/v2".to_string(), push),
        ("DELETE", "/v2/org/img/manifests/v1".to_string(), delete),
        (
            "DELETE",
            format!("/v2/org/img/manifests/{manifest}"),
            delete,
        ),
        ("DELETE", format!("/v2/org/img/blobs/{layer}"), delete),
    ] {
        let reply = send_as(&registry, None, method, &uri, b"bytes".to_vec()).await;
        assert_refused(&reply, scope, &format!("{method} {uri}"));
    }
    assert_eq!(
        registry.snapshot(),
        before,
        "a refused request changed the store"
    );

    // Anonymous pulls stay open (the in-process registry allows them).
    let pulled = send_as(
        &registry,
        None,
        "GET",
        &format!("/v2/org/img/blobs/{layer}"),
        vec![],
    )
    .await;
    assert_eq!(pulled.status, 200);
}

#[tokio::test]
async fn a_token_for_pull_only_may_not_push_or_delete() {
    let registry = InProcess::new();
    let layer = registry.push_blob("org/img", b"a layer").await;
    let pull_only = registry.bearer(&[("org/img", &["pull"])]);
    let read = send_as(
        &registry,
        Some(&pull_only),
        "HEAD",
        &format!("/v2/org/img/blobs/{layer}"),
        vec![],
    )
    .await;
    assert_eq!(read.status, 200);
    for (method, uri) in [
        ("POST", "/v2/org/img/blobs/uploads/".to_string()),
        ("DELETE", format!("/v2/org/img/blobs/{layer}")),
    ] {
        let reply = send_as(&registry, Some(&pull_only), method, &uri, vec![]).await;
        assert_eq!(reply.status, 401, "{method} {uri}");
        assert_eq!(reply.error_code(), "UNAUTHORIZED");
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
            "{method} {uri}: {:?}",
            reply.header("www-authenticate")
        );
    }
    // Another repository is not granted at all.
    let elsewhere = send_as(
        &registry,
        Some(&pull_only),
        "GET",
        "/v2/org/other/tags/list",
        vec![],
    )
    .await;
    assert_eq!(elsewhere.status, 401);
}

#[tokio::test]
async fn a_mount_needs_pull_on_from_else_it_starts_an_upload() {
    let registry = InProcess::new();
    let digest = registry.push_blob("org/base", b"shared layer").await;
    let mount = format!("/v2/org/app/blobs/uploads/?mount={digest}&from=org/base");

    let push_only = registry.bearer(&[("org/app", &["pull", "push"])]);
    let fallback = send_as(&registry, Some(&push_only), "POST", &mount, vec![]).await;
    assert_eq!(fallback.status, 202, "{:?}", fallback.body);
    let location = fallback.header("location").unwrap();
    assert!(
        location.starts_with("/v2/org/app/blobs/uploads/"),
        "{location}"
    );
    assert_eq!(fallback.header("docker-content-digest"), None);

    let both = registry.bearer(&[("org/app", &["pull", "push"]), ("org/base", &["pull"])]);
    let mounted = send_as(&registry, Some(&both), "POST", &mount, vec![]).await;
    assert_mounted(&mounted, "org/app", &digest);
}

/// A 201 mount answer: the blob's location in `repo` and its digest.
fn assert_mounted(reply: &Reply, repo: &str, digest: &Digest) {
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(
        reply.header("location"),
        Some(format!("/v2/{repo}/blobs/{digest}").as_str())
    );
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
}
