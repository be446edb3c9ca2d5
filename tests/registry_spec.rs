//! The OCI distribution-spec 1.1 against the in-process registry, each
//! answer's status, headers and error code as the spec states them:
//! access checked before any handler runs, cross-repository mounts, blob
//! and manifest deletes (and the switch that turns them off), chunks out
//! of order, the referrers API and `OCI-Subject`.

use speculative_images::oci::Digest;

use crate::registry_inprocess::{InProcess, Reply, OCI_INDEX, OCI_MANIFEST};

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

/// Start an upload to `repo`; its location.
async fn start_upload(registry: &InProcess, repo: &str) -> String {
    let started = registry
        .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
        .await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    started.header("location").unwrap().to_string()
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
    let upload = start_upload(&registry, "org/img").await;
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
    let blob = format!("/v2/org/img/blobs/{layer}");
    let pulled = send_as(&registry, None, "GET", &blob, vec![]).await;
    assert_eq!(pulled.status, 200);
}

#[tokio::test]
async fn a_token_for_pull_only_may_not_push_or_delete() {
    let registry = InProcess::new();
    let layer = registry.push_blob("org/img", b"a layer").await;
    let pull_only = registry.bearer(&[("org/img", &["pull"])]);
    let blob = format!("/v2/org/img/blobs/{layer}");
    let read = send_as(&registry, Some(&pull_only), "HEAD", &blob, vec![]).await;
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
    let other = "/v2/org/other/tags/list";
    let elsewhere = send_as(&registry, Some(&pull_only), "GET", other, vec![]).await;
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

#[tokio::test]
async fn a_mount_without_from_takes_any_stored_blob_the_client_may_read() {
    let registry = InProcess::new();
    let digest = registry.push_blob("org/base", b"shared layer").await;
    let mounted = registry
        .send(
            "POST",
            &format!("/v2/org/app/blobs/uploads/?mount={digest}"),
            &[],
            vec![],
        )
        .await;
    assert_mounted(&mounted, "org/app", &digest);

    let missing = Digest::sha256(b"never pushed");
    for query in [
        format!("mount={missing}"),
        format!("mount={missing}&from=org/base"),
        format!("mount={digest}&from=Not..A..Name"),
    ] {
        let fallback = registry
            .send(
                "POST",
                &format!("/v2/org/app/blobs/uploads/?{query}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(fallback.status, 202, "{query}: {:?}", fallback.body);
        assert!(fallback
            .header("location")
            .is_some_and(|l| l.starts_with("/v2/org/app/blobs/uploads/")));
    }
    let malformed = registry
        .send(
            "POST",
            "/v2/org/app/blobs/uploads/?mount=sha256:nothex",
            &[],
            vec![],
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.error_code(), "DIGEST_INVALID");
}

/// Status and spec error code (if any) of a request as the user.
async fn status_code(registry: &InProcess, method: &str, uri: &str) -> (u16, Option<String>) {
    let reply = registry.send(method, uri, &[], vec![]).await;
    let code = (!reply.body.is_empty() && reply.status.as_u16() >= 400).then(|| reply.error_code());
    (reply.status.as_u16(), code)
}

#[tokio::test]
async fn a_deleted_blob_is_unknown_in_its_repository_until_pushed_again() {
    let registry = InProcess::new();
    let layer = registry.push_blob("org/img", b"a layer").await;
    registry.push_blob("org/other", b"a layer").await;
    let config = registry.push_blob("org/img", b"{}").await;
    let blob = format!("/v2/org/img/blobs/{layer}");
    let unknown = (404, Some("BLOB_UNKNOWN".to_string()));

    assert_eq!(status_code(&registry, "DELETE", &blob).await, (202, None));
    assert_eq!(status_code(&registry, "HEAD", &blob).await.0, 404);
    assert_eq!(status_code(&registry, "GET", &blob).await, unknown);
    assert_eq!(status_code(&registry, "DELETE", &blob).await, unknown);
    // Blobs are shared: the other repository keeps it.
    let other = format!("/v2/org/other/blobs/{layer}");
    assert_eq!(status_code(&registry, "GET", &other).await, (200, None));
    // A manifest may not name it here any more...
    let manifest = crate::registry_inprocess::image_manifest(&config, 2, &layer, b"a layer".len());
    let refused = registry
        .put_manifest("org/img", "v1", OCI_MANIFEST, manifest.clone())
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_code(), "MANIFEST_BLOB_UNKNOWN");
    // ... until it is pushed again, or mounted.
    registry.push_blob("org/img", b"a layer").await;
    assert_eq!(status_code(&registry, "GET", &blob).await, (200, None));
    assert_eq!(status_code(&registry, "DELETE", &blob).await, (202, None));
    let mount = format!("/v2/org/img/blobs/uploads/?mount={layer}&from=org/other");
    assert_eq!(status_code(&registry, "POST", &mount).await.0, 201);
    assert_eq!(status_code(&registry, "HEAD", &blob).await.0, 200);
    let stored = registry
        .put_manifest("org/img", "v1", OCI_MANIFEST, manifest)
        .await;
    assert_eq!(stored.status, 201);

    // A mount from where it was deleted starts an upload instead.
    assert_eq!(status_code(&registry, "DELETE", &other).await, (202, None));
    let from_deleted = format!("/v2/org/third/blobs/uploads/?mount={layer}&from=org/other");
    assert_eq!(status_code(&registry, "POST", &from_deleted).await.0, 202);

    let never = Digest::sha256(b"never pushed");
    let never = format!("/v2/org/img/blobs/{never}");
    assert_eq!(status_code(&registry, "DELETE", &never).await, unknown);
    let malformed = "/v2/org/img/blobs/sha256:xyz";
    assert_eq!(
        status_code(&registry, "DELETE", malformed).await,
        (400, Some("DIGEST_INVALID".to_string()))
    );
    // Deleting blobs does not make a repository appear in the catalog.
    let catalog = registry.send("GET", "/v2/_catalog", &[], vec![]).await;
    assert_eq!(
        catalog.json()["repositories"],
        serde_json::json!(["org/img"])
    );
}

#[tokio::test]
async fn deleting_an_unknown_manifest_or_tag_is_manifest_unknown() {
    let registry = InProcess::new();
    let (digest, _) = registry.push_image("org/img", "v1", "a").await;
    let unknown = (404, Some("MANIFEST_UNKNOWN".to_string()));
    let never = Digest::sha256(b"never pushed");
    for reference in ["nope".to_string(), never.to_string()] {
        let uri = format!("/v2/org/img/manifests/{reference}");
        assert_eq!(
            status_code(&registry, "DELETE", &uri).await,
            unknown,
            "{uri}"
        );
    }
    let by_tag = "/v2/org/img/manifests/v1";
    assert_eq!(status_code(&registry, "DELETE", by_tag).await, (202, None));
    assert_eq!(status_code(&registry, "DELETE", by_tag).await, unknown);
    let by_digest = format!("/v2/org/img/manifests/{digest}");
    assert_eq!(
        status_code(&registry, "DELETE", &by_digest).await,
        (202, None)
    );
    assert_eq!(status_code(&registry, "GET", &by_digest).await, unknown);
    assert_eq!(status_code(&registry, "DELETE", &by_digest).await, unknown);
}

#[tokio::test]
async fn with_deletes_disabled_every_delete_is_405_unsupported() {
    let registry = InProcess::configured(|config| config.delete_enabled = false);
    let (digest, _) = registry.push_image("org/img", "v1", "a").await;
    let layer = registry.push_blob("org/img", b"a layer").await;
    let upload = start_upload(&registry, "org/img").await;
    let before = registry.snapshot();
    let unsupported = (405, Some("UNSUPPORTED".to_string()));
    for uri in [
        "/v2/org/img/manifests/v1".to_string(),
        format!("/v2/org/img/manifests/{digest}"),
        format!("/v2/org/img/blobs/{layer}"),
        format!("/v2/org/img/blobs/{}", Digest::sha256(b"never pushed")),
    ] {
        assert_eq!(
            status_code(&registry, "DELETE", &uri).await,
            unsupported,
            "{uri}"
        );
        // Also without credentials: the operation does not exist here.
        let anonymous = send_as(&registry, None, "DELETE", &uri, vec![]).await;
        assert_eq!(anonymous.status, 405, "{uri}");
    }
    assert_eq!(registry.snapshot(), before);
    // Cancelling an upload deletes nothing stored and still works.
    assert_eq!(status_code(&registry, "DELETE", &upload).await, (204, None));
}

/// Send `chunk` of an upload with its `Content-Range`.
async fn send_chunk(
    registry: &InProcess,
    method: &str,
    uri: &str,
    range: &str,
    chunk: &[u8],
) -> Reply {
    registry
        .send(method, uri, &[("content-range", range)], chunk.to_vec())
        .await
}

#[tokio::test]
async fn a_chunk_out_of_order_is_416_with_the_uploads_range_and_nothing_stored() {
    let registry = InProcess::new();
    let data: Vec<u8> = (0..30u8).collect();
    let digest = Digest::sha256(&data);
    let location = start_upload(&registry, "org/img").await;
    let first = send_chunk(&registry, "PATCH", &location, "0-9", &data[..10]).await;
    assert_eq!(first.status, 202);
    assert_eq!(first.header("range"), Some("0-9"));
    let before = registry.snapshot();

    let closing = format!("{location}?digest={digest}");
    for (method, uri, range, chunk) in [
        ("PATCH", &location, "20-29", &data[20..]),
        ("PATCH", &location, "5-14", &data[5..15]),
        ("PUT", &closing, "11-29", &data[11..]),
        ("PUT", &closing, "0-29", &data[..]),
    ] {
        let reply = send_chunk(&registry, method, uri, range, chunk).await;
        let what = format!("{method} {range}");
        assert_eq!(reply.status, 416, "{what}: {:?}", reply.body);
        assert_eq!(reply.error_code(), "BLOB_UPLOAD_INVALID", "{what}");
        assert_eq!(reply.header("range"), Some("0-9"), "{what}");
        assert_eq!(reply.header("location"), Some(location.as_str()), "{what}");
        assert_eq!(registry.snapshot(), before, "{what} changed the store");
    }
    for (range, status, code) in [
        ("ten-twenty", 400, "BLOB_UPLOAD_INVALID"),
        ("10-", 400, "BLOB_UPLOAD_INVALID"),
        ("+10-19", 400, "BLOB_UPLOAD_INVALID"),
        ("19-10", 416, "BLOB_UPLOAD_INVALID"),
    ] {
        let reply = send_chunk(&registry, "PATCH", &location, range, &data[10..20]).await;
        assert_eq!(reply.status, status, "{range}: {:?}", reply.body);
        assert_eq!(reply.error_code(), code, "{range}");
        assert_eq!(registry.snapshot(), before, "{range} changed the store");
    }
    // A Content-Range whose length is not the Content-Length.
    let reply = registry
        .send(
            "PATCH",
            &location,
            &[("content-range", "10-19"), ("content-length", "5")],
            data[10..15].to_vec(),
        )
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert_eq!(reply.error_code(), "SIZE_INVALID");
    assert_eq!(
        registry.snapshot(),
        before,
        "a wrong size changed the store"
    );
    let status = registry.send("GET", &location, &[], vec![]).await;
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-9"));

    // The right ranges finish it, the last chunk in the closing PUT.
    let second = send_chunk(&registry, "PATCH", &location, "10-19", &data[10..20]).await;
    assert_eq!(second.header("range"), Some("0-19"));
    let done = send_chunk(&registry, "PUT", &closing, "20-29", &data[20..]).await;
    assert_eq!(done.status, 201, "{:?}", done.body);
    assert_eq!(
        done.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    let got = registry
        .send("GET", &format!("/v2/org/img/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(&got.body[..], &data[..]);
}

const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// An OCI image manifest referring to `subject`, pushed by digest to
/// `repo`, with one layer `payload`; returns its digest and size.
async fn push_referrer(
    registry: &InProcess,
    repo: &str,
    subject: &Digest,
    fields: serde_json::Value,
    payload: &str,
) -> (Digest, usize) {
    let config = registry.push_blob(repo, b"{}").await;
    let layer = registry.push_blob(repo, payload.as_bytes()).await;
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer.to_string(), "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 1},
    });
    for (key, value) in fields.as_object().unwrap() {
        manifest[key] = value.clone();
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::sha256(&bytes);
    let reply = registry
        .put_manifest(repo, &digest, OCI_MANIFEST, bytes.clone())
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(
        reply.header("oci-subject"),
        Some(subject.to_string().as_str())
    );
    (digest, bytes.len())
}

/// `GET referrers`: a 200 OCI image index; its `manifests`.
async fn referrers(registry: &InProcess, uri: &str, filtered: bool) -> serde_json::Value {
    let reply = registry.send("GET", uri, &[], vec![]).await;
    assert_eq!(reply.status, 200, "{uri}: {:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX), "{uri}");
    let filters = reply.header("oci-filters-applied");
    assert_eq!(filters, filtered.then_some("artifactType"), "{uri}");
    let index = reply.json();
    assert_eq!(index["schemaVersion"], 2, "{uri}");
    assert_eq!(index["mediaType"], OCI_INDEX, "{uri}");
    index["manifests"].clone()
}

#[tokio::test]
async fn referrers_list_the_manifests_naming_a_subject_across_restarts() {
    let registry = InProcess::new();
    let (subject, _) = registry.push_image("org/img", "v1", "a").await;
    let sbom = push_referrer(
        &registry,
        "org/img",
        &subject,
        serde_json::json!({
            "artifactType": "application/vnd.example.sbom.v1",
            "annotations": {"org.example.format": "json"},
        }),
        "sbom",
    )
    .await;
    // No artifactType: the config's media type stands in.
    let signature =
        push_referrer(&registry, "org/img", &subject, serde_json::json!({}), "sig").await;
    // An index referring to the subject (and tagged, which changes nothing).
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sbom.0.to_string(), "size": sbom.1}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": 1},
        "annotations": {"org.example.kind": "bundle"},
    }))
    .unwrap();
    let put = registry
        .put_manifest("org/img", "bundle", OCI_INDEX, index.clone())
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(
        put.header("oci-subject"),
        Some(subject.to_string().as_str())
    );
    let index = (Digest::sha256(&index), index.len());
    // A subject that does not exist is accepted, and listed under it.
    let absent = Digest::sha256(b"not pushed yet");
    let early = push_referrer(
        &registry,
        "org/img",
        &absent,
        serde_json::json!({}),
        "early",
    )
    .await;
    // The same subject in another repository is another list.
    push_referrer(
        &registry,
        "org/other",
        &subject,
        serde_json::json!({}),
        "other",
    )
    .await;
    // A manifest without a subject gets no OCI-Subject.
    let plain = registry.push_blob("org/img", b"{}").await;
    let plain = crate::registry_inprocess::image_manifest(&plain, 2, &plain, 2);
    let reply = registry
        .put_manifest("org/img", "plain", OCI_MANIFEST, plain)
        .await;
    assert_eq!(reply.header("oci-subject"), None);

    let descriptor = |(digest, size): &(Digest, usize), media_type: &str| serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size});
    let mut sbom_entry = descriptor(&sbom, OCI_MANIFEST);
    sbom_entry["artifactType"] = "application/vnd.example.sbom.v1".into();
    sbom_entry["annotations"] = serde_json::json!({"org.example.format": "json"});
    let mut signature_entry = descriptor(&signature, OCI_MANIFEST);
    signature_entry["artifactType"] = EMPTY_CONFIG.into();
    let mut index_entry = descriptor(&index, OCI_INDEX);
    index_entry["annotations"] = serde_json::json!({"org.example.kind": "bundle"});
    let mut all = vec![sbom_entry.clone(), signature_entry.clone(), index_entry];
    all.sort_by_key(|d| d["digest"].as_str().unwrap().to_string());

    let uri = format!("/v2/org/img/referrers/{subject}");
    let registry = registry.restart();
    assert_eq!(
        referrers(&registry, &uri, false).await,
        serde_json::json!(all)
    );
    let sboms = format!("{uri}?artifactType=application/vnd.example.sbom.v1");
    assert_eq!(
        referrers(&registry, &sboms, true).await,
        serde_json::json!([sbom_entry])
    );
    let nothing = format!("{uri}?artifactType=application/vnd.example.none");
    assert_eq!(
        referrers(&registry, &nothing, true).await,
        serde_json::json!([])
    );
    let early_uri = format!("/v2/org/img/referrers/{absent}");
    assert_eq!(
        referrers(&registry, &early_uri, false).await,
        serde_json::json!([descriptor(&early, OCI_MANIFEST).as_object().map(|d| {
            let mut d = d.clone();
            d.insert("artifactType".into(), EMPTY_CONFIG.into());
            d
        })])
    );
    let unknown = format!("/v2/org/img/referrers/{}", Digest::sha256(b"no one"));
    assert_eq!(
        referrers(&registry, &unknown, false).await,
        serde_json::json!([])
    );
    let no_repo = format!("/v2/org/none/referrers/{subject}");
    assert_eq!(
        referrers(&registry, &no_repo, false).await,
        serde_json::json!([])
    );
    let bad = registry
        .send("GET", "/v2/org/img/referrers/sha256:short", &[], vec![])
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "DIGEST_INVALID");

    // Deleting a tag keeps the manifest, and so its entry; deleting the
    // manifest removes it.
    let tag = registry
        .send("DELETE", "/v2/org/img/manifests/bundle", &[], vec![])
        .await;
    assert_eq!(tag.status, 202);
    assert_eq!(
        referrers(&registry, &uri, false)
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let deleted = registry
        .send(
            "DELETE",
            &format!("/v2/org/img/manifests/{}", sbom.0),
            &[],
            vec![],
        )
        .await;
    assert_eq!(deleted.status, 202);
    let left = referrers(&registry, &uri, false).await;
    let digests: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    let mut expected = vec![signature.0.to_string(), index.0.to_string()];
    expected.sort();
    assert_eq!(digests, expected);

    // Read access is a manifest GET's: a token for another repository is refused.
    let elsewhere = registry.bearer(&[("org/other", &["pull"])]);
    let refused = send_as(&registry, Some(&elsewhere), "GET", &uri, vec![]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "UNAUTHORIZED");
}

#[tokio::test]
async fn catalog_and_tags_pages_follow_n_and_last_with_a_next_link() {
    let registry = InProcess::new();
    for repo in ["org/a", "org/b", "quay.io/org/c"] {
        registry.push_image(repo, "v1", repo).await;
        registry.push_image(repo, "v2", repo).await;
    }
    // (uri, repositories or tags, next link)
    let pages = [
        (
            "/v2/_catalog?n=2",
            vec!["org/a", "org/b"],
            Some("</v2/_catalog?n=2&last=org%2Fb>; rel=\"next\""),
        ),
        ("/v2/_catalog?n=2&last=org%2Fb", vec!["quay.io/org/c"], None),
        (
            "/v2/_catalog?last=org/a",
            vec!["org/b", "quay.io/org/c"],
            None,
        ),
        (
            "/v2/_catalog?n=3",
            vec!["org/a", "org/b", "quay.io/org/c"],
            None,
        ),
        ("/v2/_catalog?n=0", vec![], None),
        (
            "/v2/org/a/tags/list?n=1",
            vec!["v1"],
            Some("</v2/org/a/tags/list?n=1&last=v1>; rel=\"next\""),
        ),
        ("/v2/org/a/tags/list?n=1&last=v1", vec!["v2"], None),
        ("/v2/org/a/tags/list?n=0", vec![], None),
        ("/v2/org/a/tags/list?last=v2", vec![], None),
    ];
    for (uri, items, link) in pages {
        let reply = registry.send("GET", uri, &[], vec![]).await;
        assert_eq!(reply.status, 200, "{uri}");
        let json = reply.json();
        let listed = if uri.starts_with("/v2/_catalog") {
            &json["repositories"]
        } else {
            &json["tags"]
        };
        assert_eq!(listed, &serde_json::json!(items), "{uri}");
        assert_eq!(reply.header("link"), link, "{uri}");
    }
}

#[tokio::test]
async fn manifest_fields_outside_the_spec_are_manifest_invalid_naming_the_field() {
    let registry = InProcess::new();
    let config = registry.push_blob("org/img", b"{}").await;
    let layer = registry.push_blob("org/img", b"a layer").await;
    let before = registry.snapshot();
    let good = |field: &str| {
        let (digest, size) = if field == "config" {
            (&config, 2)
        } else {
            (&layer, 7)
        };
        serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.to_string(), "size": size})
    };
    let manifest = |config: serde_json::Value, layer: serde_json::Value| serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
    let with = |mut d: serde_json::Value, key: &str, value: serde_json::Value| {
        if value.is_null() {
            d.as_object_mut().unwrap().remove(key);
        } else {
            d[key] = value;
        }
        d
    };
    let null = serde_json::Value::Null;
    let mut subjectless = manifest(good("config"), good("layer"));
    subjectless["subject"] =
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": config.to_string()});
    let mut numeric_type = manifest(good("config"), good("layer"));
    numeric_type["mediaType"] = serde_json::json!(5);
    for (doc, says) in [
        (
            manifest(
                with(good("config"), "mediaType", null.clone()),
                good("layer"),
            ),
            "config: mediaType is missing",
        ),
        (
            manifest(
                good("config"),
                with(good("layer"), "mediaType", "tar".into()),
            ),
            "layers[0]: mediaType \"tar\" is not type/subtype",
        ),
        (
            manifest(good("config"), with(good("layer"), "size", (-1).into())),
            "layers[0]: size must be a non-negative integer",
        ),
        (
            manifest(good("config"), with(good("layer"), "size", "7".into())),
            "layers[0]: size must be",
        ),
        (
            manifest(good("config"), with(good("layer"), "size", 7.5.into())),
            "layers[0]: size must be",
        ),
        (
            manifest(good("config"), with(good("layer"), "size", null.clone())),
            "layers[0]: size must be",
        ),
        (
            manifest(good("config"), with(good("layer"), "digest", null.clone())),
            "layers[0]: digest is missing",
        ),
        (
            manifest(good("config"), "layer".into()),
            "layers[0]: must be a descriptor object",
        ),
        (subjectless, "subject: size must be"),
        (numeric_type, "mediaType must be a string"),
    ] {
        let reply = registry
            .send(
                "PUT",
                "/v2/org/img/manifests/v1",
                &[],
                serde_json::to_vec(&doc).unwrap(),
            )
            .await;
        assert_eq!(reply.status, 400, "{says}: {:?}", reply.body);
        assert_eq!(reply.error_code(), "MANIFEST_INVALID", "{says}");
        let detail = reply.json()["errors"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(detail.contains(says), "{says}: {detail}");
    }
    assert_eq!(registry.snapshot(), before);
    // Content-Type parameters are ignored; the good manifest goes in.
    let doc = manifest(good("config"), good("layer"));
    let stored = registry
        .send(
            "PUT",
            "/v2/org/img/manifests/v1",
            &[("content-type", &format!("{OCI_MANIFEST}; charset=utf-8"))],
            serde_json::to_vec(&doc).unwrap(),
        )
        .await;
    assert_eq!(stored.status, 201, "{:?}", stored.body);
}

#[tokio::test]
async fn a_manifest_over_4_mib_is_413_and_not_stored() {
    let registry = InProcess::new();
    let before = registry.snapshot();
    let padding = "x".repeat(4 << 20);
    let huge = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"pad": padding}})).unwrap();
    let length = huge.len().to_string();
    for headers in [vec![], vec![("content-length", length.as_str())]] {
        let mut all = vec![("content-type", OCI_MANIFEST)];
        all.extend(headers.iter().copied());
        let reply = registry
            .send("PUT", "/v2/org/img/manifests/v1", &all, huge.clone())
            .await;
        assert_eq!(reply.status, 413, "{headers:?}: {:?}", reply.body);
        assert_eq!(reply.error_code(), "MANIFEST_INVALID");
    }
    assert_eq!(registry.snapshot(), before);
}

#[tokio::test]
async fn a_range_with_a_sign_or_junk_is_416_with_the_blobs_size() {
    let registry = InProcess::new();
    let digest = registry.push_blob("org/img", b"0123456789").await;
    let uri = format!("/v2/org/img/blobs/{digest}");
    for range in [
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=-+5",
        "bytes=a-b",
        "bytes=-0",
        "bytes=10-",
    ] {
        let reply = registry
            .send("GET", &uri, &[("range", range)], vec![])
            .await;
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(reply.header("content-range"), Some("bytes */10"), "{range}");
    }
    let suffix = registry
        .send("GET", &uri, &[("range", "bytes=-3")], vec![])
        .await;
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.header("content-range"), Some("bytes 7-9/10"));
    assert_eq!(&suffix.body[..], b"789");
}
