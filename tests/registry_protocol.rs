//! The distribution API in-process: uploads (monolithic, chunked, resumed
//! after a restart, cancelled, mounted), blob reads with ranges, manifests
//! by tag and digest with their media type, tags and catalog pagination,
//! and bad input answered with the spec's error while the store stays as
//! it was.

use speculative_images::oci::Digest;

use crate::registry_inprocess::{
    image_manifest, InProcess, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

#[tokio::test]
async fn chunked_upload_keeps_its_hash_across_requests_and_a_restart() {
    let registry = InProcess::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256(&data);

    let started = registry
        .send("POST", "/v2/org/img/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(started.status, 202);
    let location = started.header("location").unwrap().to_string();
    assert!(
        location.starts_with("/v2/org/img/blobs/uploads/"),
        "{location}"
    );
    assert_eq!(started.header("range"), Some("0-0"));

    let first = registry
        .send(
            "PATCH",
            &location,
            &[("content-range", "0-999999")],
            data[..1_000_000].to_vec(),
        )
        .await;
    assert_eq!(first.status, 202);
    assert_eq!(first.header("range"), Some("0-999999"));

    // A chunk that does not start where the upload ends is refused.
    let gap = registry
        .send(
            "PATCH",
            &location,
            &[("content-range", "1500000-1999999")],
            data[1_500_000..2_000_000].to_vec(),
        )
        .await;
    assert_eq!(gap.status, 416);
    assert_eq!(gap.error_code(), "BLOB_UPLOAD_INVALID");

    // The server restarts: the partial upload is hashed again from disk.
    let registry = registry.restart();
    let status = registry.send("GET", &location, &[], vec![]).await;
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-999999"));
    let second = registry
        .send("PATCH", &location, &[], data[1_000_000..2_000_000].to_vec())
        .await;
    assert_eq!(second.header("range"), Some("0-1999999"));
    let done = registry
        .send(
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            data[2_000_000..].to_vec(),
        )
        .await;
    assert_eq!(done.status, 201, "{:?}", done.body);
    assert_eq!(
        done.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(
        done.header("location"),
        Some(format!("/v2/org/img/blobs/{digest}").as_str())
    );

    let head = registry
        .send("HEAD", &format!("/v2/org/img/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3000000"));
    assert!(head.body.is_empty());
    let got = registry
        .send("GET", &format!("/v2/org/img/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(Digest::sha256(&got.body), digest);
    let range = registry
        .send(
            "GET",
            &format!("/v2/org/img/blobs/{digest}"),
            &[("range", "bytes=10-19")],
            vec![],
        )
        .await;
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-range"), Some("bytes 10-19/3000000"));
    assert_eq!(&range.body[..], &data[10..20]);
    let past = registry
        .send(
            "GET",
            &format!("/v2/org/img/blobs/{digest}"),
            &[("range", "bytes=3000000-")],
            vec![],
        )
        .await;
    assert_eq!(past.status, 416);

    // The finished upload is gone.
    let gone = registry.send("GET", &location, &[], vec![]).await;
    assert_eq!(gone.error_code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        std::fs::read_dir(registry.storage.join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn cancelled_upload_leaves_nothing_and_is_then_unknown() {
    let registry = InProcess::new();
    let before = registry.snapshot();
    let started = registry
        .send("POST", "/v2/org/img/blobs/uploads/", &[], vec![])
        .await;
    let location = started.header("location").unwrap().to_string();
    registry
        .send("PATCH", &location, &[], b"partial".to_vec())
        .await;
    let cancelled = registry.send("DELETE", &location, &[], vec![]).await;
    assert_eq!(cancelled.status, 204);
    assert_eq!(registry.snapshot(), before);
    let again = registry
        .send("PATCH", &location, &[], b"more".to_vec())
        .await;
    assert_eq!(again.status, 404);
    assert_eq!(again.error_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn unknown_upload_ids_are_blob_upload_unknown() {
    let registry = InProcess::new();
    let before = registry.snapshot();
    for (method, id) in [
        ("PATCH", "0123456789abcdef0123456789abcdef"),
        ("PUT", "0123456789abcdef0123456789abcdef?digest=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("GET", "not-an-id"),
        ("DELETE", "..%2F..%2Fblobs"),
    ] {
        let reply = registry
            .send(method, &format!("/v2/org/img/blobs/uploads/{id}"), &[], b"x".to_vec())
            .await;
        assert_eq!(reply.status, 404, "{method} {id}");
        assert_eq!(reply.error_code(), "BLOB_UPLOAD_UNKNOWN", "{method} {id}");
    }
    // An upload started for one repository is unknown in another.
    let started = registry
        .send("POST", "/v2/org/img/blobs/uploads/", &[], vec![])
        .await;
    let id = started.header("docker-upload-uuid").unwrap().to_string();
    let elsewhere = registry
        .send(
            "PATCH",
            &format!("/v2/org/other/blobs/uploads/{id}"),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(elsewhere.error_code(), "BLOB_UPLOAD_UNKNOWN");
    registry
        .send(
            "DELETE",
            &format!("/v2/org/img/blobs/uploads/{id}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(registry.snapshot(), before);
}

#[tokio::test]
async fn blob_with_wrong_digest_is_digest_invalid_and_nothing_is_stored() {
    let registry = InProcess::new();
    let before = registry.snapshot();
    let claimed = Digest::sha256(b"what the client claims");
    let monolithic = registry
        .send(
            "POST",
            &format!("/v2/org/img/blobs/uploads/?digest={claimed}"),
            &[],
            b"other bytes".to_vec(),
        )
        .await;
    assert_eq!(monolithic.status, 400);
    assert_eq!(monolithic.error_code(), "DIGEST_INVALID");

    let started = registry
        .send("POST", "/v2/org/img/blobs/uploads/", &[], vec![])
        .await;
    let location = started.header("location").unwrap().to_string();
    registry
        .send("PATCH", &location, &[], b"other bytes".to_vec())
        .await;
    let put = registry
        .send("PUT", &format!("{location}?digest={claimed}"), &[], vec![])
        .await;
    assert_eq!(put.status, 400);
    assert_eq!(put.error_code(), "DIGEST_INVALID");
    let malformed = registry
        .send(
            "POST",
            "/v2/org/img/blobs/uploads/?digest=sha256:nothex",
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(malformed.error_code(), "DIGEST_INVALID");

    assert_eq!(
        registry.snapshot(),
        before,
        "nothing kept after a digest mismatch"
    );
    let head = registry
        .send("HEAD", &format!("/v2/org/img/blobs/{claimed}"), &[], vec![])
        .await;
    assert_eq!(head.status, 404);
}

#[tokio::test]
async fn invalid_names_are_name_invalid() {
    let registry = InProcess::new();
    let before = registry.snapshot();
    for path in [
        "/v2/../etc/blobs/uploads/",
        "/v2/org/../etc/manifests/latest",
        "/v2/org//img/tags/list",
        "/v2/Org/Img/manifests/latest",
        "/v2/org/img:5000/blobs/uploads/",
    ] {
        let reply = registry.send("POST", path, &[], b"{}".to_vec()).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.error_code(), "NAME_INVALID", "{path}");
    }
    assert_eq!(registry.snapshot(), before);
}

#[tokio::test]
async fn manifests_keep_bytes_type_and_digest_by_tag_and_by_digest() {
    let registry = InProcess::new();
    let repo = "quay.io/org/img";
    let (digest, bytes) = registry.push_image(repo, "v1", "a").await;

    for reference in ["v1".to_string(), digest.to_string()] {
        let got = registry
            .send(
                "GET",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("accept", OCI_MANIFEST)],
                vec![],
            )
            .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            got.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        assert_eq!(&got.body[..], &bytes[..]);
        let head = registry
            .send(
                "HEAD",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(bytes.len().to_string().as_str())
        );
        assert_eq!(
            head.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
    }

    // Docker schema 2, pushed by digest, kept as such.
    let config = registry.push_blob(repo, b"{}").await;
    let layer = registry.push_blob(repo, b"docker layer").await;
    let docker = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.to_string(), "size": 12}],
    }))
    .unwrap();
    let docker_digest = Digest::sha256(&docker);
    let put = registry
        .put_manifest(repo, &docker_digest, DOCKER_MANIFEST, docker.clone())
        .await;
    assert_eq!(put.status, 201);
    let got = registry
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{docker_digest}"),
            &[("accept", DOCKER_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(got.header("content-type"), Some(DOCKER_MANIFEST));

    // An index of both, then Accept: a client that only takes Docker
    // manifests does not get an OCI index.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": bytes.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": docker_digest.to_string(), "size": docker.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let put = registry
        .put_manifest(repo, "multi", OCI_INDEX, index.clone())
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let refused = registry
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/multi"),
            &[("accept", DOCKER_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(refused.status, 404);
    assert_eq!(refused.error_code(), "MANIFEST_UNKNOWN");
    let accepted = registry
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/multi"),
            &[("accept", &format!("{DOCKER_MANIFEST}, {OCI_INDEX}"))],
            vec![],
        )
        .await;
    assert_eq!(accepted.status, 200);
    assert_eq!(&accepted.body[..], &index[..]);

    // Deleting the tag leaves the manifest reachable by digest.
    let deleted = registry
        .send("DELETE", &format!("/v2/{repo}/manifests/v1"), &[], vec![])
        .await;
    assert_eq!(deleted.status, 202);
    let by_tag = registry
        .send("GET", &format!("/v2/{repo}/manifests/v1"), &[], vec![])
        .await;
    assert_eq!(by_tag.error_code(), "MANIFEST_UNKNOWN");
    let by_digest = registry
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(by_digest.status, 200);
    // Deleting by digest removes it and the tags pointing at it.
    registry
        .put_manifest(repo, "again", OCI_MANIFEST, bytes.clone())
        .await;
    let deleted = registry
        .send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(deleted.status, 202);
    let again = registry
        .send("GET", &format!("/v2/{repo}/manifests/again"), &[], vec![])
        .await;
    assert_eq!(again.error_code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_naming_a_missing_blob_is_refused_and_nothing_changes() {
    let registry = InProcess::new();
    registry.push_image("org/img", "v1", "a").await;
    let before = registry.snapshot();
    let config = registry.push_blob("org/img", b"{}").await;
    let before_with_config = registry.snapshot();
    let missing = Digest::sha256(b"never pushed");
    let manifest = image_manifest(&config, 2, &missing, 12);
    let reply = registry
        .send(
            "PUT",
            "/v2/org/img/manifests/v2",
            &[("content-type", OCI_MANIFEST)],
            manifest,
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "MANIFEST_BLOB_UNKNOWN");
    assert!(reply.json()["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains(&missing.to_string()));
    assert_eq!(registry.snapshot(), before_with_config);

    // An index naming a manifest the repository does not have.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 1}],
    }))
    .unwrap();
    let reply = registry
        .send(
            "PUT",
            "/v2/org/img/manifests/v2",
            &[("content-type", OCI_INDEX)],
            index,
        )
        .await;
    assert_eq!(reply.error_code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(registry.snapshot(), before_with_config);
    assert_ne!(before, before_with_config);
}

#[tokio::test]
async fn malformed_manifests_are_manifest_invalid_and_nothing_changes() {
    let registry = InProcess::new();
    registry.push_image("org/img", "v1", "a").await;
    let before = registry.snapshot();
    for (content_type, body) in [
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_MANIFEST, b"[1,2]".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion": 1}"#.to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion": 2, "layers": []}"#.to_vec()),
        (OCI_INDEX, br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "manifests": []}"#.to_vec()),
        ("text/plain", br#"{"schemaVersion": 2, "manifests": []}"#.to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion": 2, "config": {"digest": "md5:00"}, "layers": []}"#.to_vec()),
    ] {
        let reply = registry
            .send("PUT", "/v2/org/img/manifests/v1", &[("content-type", content_type)], body.clone())
            .await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&body));
        assert_eq!(reply.error_code(), "MANIFEST_INVALID", "{}", String::from_utf8_lossy(&body));
    }
    // The digest in the URL must be the content's.
    let (_, bytes) = registry.push_image("org/img", "v1", "a").await;
    let wrong = Digest::sha256(b"another");
    let reply = registry
        .send(
            "PUT",
            &format!("/v2/org/img/manifests/{wrong}"),
            &[("content-type", OCI_MANIFEST)],
            bytes,
        )
        .await;
    assert_eq!(reply.error_code(), "DIGEST_INVALID");
    let reply = registry
        .send(
            "PUT",
            "/v2/org/img/manifests/.bad",
            &[("content-type", OCI_MANIFEST)],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(reply.error_code(), "TAG_INVALID");
    assert_eq!(registry.snapshot(), before);
}

#[tokio::test]
async fn cross_repository_mount_links_without_upload() {
    let registry = InProcess::new();
    let digest = registry.push_blob("org/base", b"shared layer").await;
    let mounted = registry
        .send(
            "POST",
            &format!("/v2/org/app/blobs/uploads/?mount={digest}&from=org/base"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(mounted.status, 201);
    assert_eq!(
        mounted.header("location"),
        Some(format!("/v2/org/app/blobs/{digest}").as_str())
    );
    // A blob that does not exist: the server starts a normal upload.
    let missing = Digest::sha256(b"nope");
    let fallback = registry
        .send(
            "POST",
            &format!("/v2/org/app/blobs/uploads/?mount={missing}&from=org/base"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(fallback.status, 202);
    assert!(fallback
        .header("location")
        .unwrap()
        .contains("/blobs/uploads/"));
}

#[tokio::test]
async fn tags_and_catalog_paginate() {
    let registry = InProcess::new();
    for tag in ["a", "b", "c", "d"] {
        registry.push_image("org/img", tag, tag).await;
    }
    registry.push_image("quay.io/org/img", "latest", "q").await;
    let all = registry
        .send("GET", "/v2/org/img/tags/list", &[], vec![])
        .await;
    assert_eq!(
        all.json(),
        serde_json::json!({"name": "org/img", "tags": ["a", "b", "c", "d"]})
    );
    let page = registry
        .send("GET", "/v2/org/img/tags/list?n=2", &[], vec![])
        .await;
    assert_eq!(page.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        page.header("link"),
        Some("</v2/org/img/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let next = registry
        .send("GET", "/v2/org/img/tags/list?n=2&last=b", &[], vec![])
        .await;
    assert_eq!(next.json()["tags"], serde_json::json!(["c", "d"]));
    assert_eq!(next.header("link"), None);
    let unknown = registry
        .send("GET", "/v2/org/nothing/tags/list", &[], vec![])
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "NAME_UNKNOWN");

    let catalog = registry.send("GET", "/v2/_catalog", &[], vec![]).await;
    assert_eq!(
        catalog.json(),
        serde_json::json!({"repositories": ["org/img", "quay.io/org/img"]})
    );
    let first = registry.send("GET", "/v2/_catalog?n=1", &[], vec![]).await;
    assert_eq!(
        first.json(),
        serde_json::json!({"repositories": ["org/img"]})
    );
    assert_eq!(
        first.header("link"),
        Some("</v2/_catalog?n=1&last=org%2Fimg>; rel=\"next\"")
    );
}

#[tokio::test]
async fn every_response_names_the_api_version() {
    let registry = InProcess::new();
    let reply = registry.send("GET", "/v2/", &[], vec![]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[tokio::test]
async fn concurrent_uploads_of_the_same_blob_both_succeed() {
    let registry = InProcess::new();
    let data = vec![7u8; 2_000_000];
    let digest = Digest::sha256(&data);
    let push = |repo: &'static str| {
        let (registry, data, digest) = (&registry, data.clone(), digest.clone());
        async move {
            let started = registry
                .send("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], vec![])
                .await;
            let location = started.header("location").unwrap().to_string();
            registry.send("PATCH", &location, &[], data).await;
            registry
                .send("PUT", &format!("{location}?digest={digest}"), &[], vec![])
                .await
                .status
        }
    };
    let (a, b) = tokio::join!(push("org/a"), push("org/b"));
    assert_eq!((a.as_u16(), b.as_u16()), (201, 201));
    let got = registry
        .send("GET", &format!("/v2/org/b/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(Digest::sha256(&got.body), digest);
    assert_eq!(
        std::fs::read_dir(registry.storage.join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_manifest_pushed_without_content_type_keeps_its_declared_media_type() {
    let registry = InProcess::new();
    let config = registry.push_blob("org/img", b"{}").await;
    let layer = registry.push_blob("org/img", b"layer").await;
    let manifest = image_manifest(&config, 2, &layer, 5);
    let put = registry
        .send(
            "PUT",
            "/v2/org/img/manifests/v1",
            &[("content-type", "application/json")],
            manifest,
        )
        .await;
    assert_eq!(put.status, 201);
    let got = registry
        .send("HEAD", "/v2/org/img/manifests/v1", &[], vec![])
        .await;
    assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));
}

const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Push a Docker schema 2 image manifest (config and one layer) by digest.
async fn push_docker_image(registry: &InProcess, repo: &str, arch: &str) -> (Digest, usize) {
    let config_bytes = format!("{{\"architecture\":\"{arch}\",\"os\":\"linux\"}}");
    let config = registry.push_blob(repo, config_bytes.as_bytes()).await;
    let layer_bytes = format!("docker layer for {arch}");
    let layer = registry.push_blob(repo, layer_bytes.as_bytes()).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.to_string(), "size": layer_bytes.len()}],
    }))
    .unwrap();
    let digest = Digest::sha256(&manifest);
    let put = registry
        .put_manifest(repo, &digest, DOCKER_MANIFEST, manifest.clone())
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    (digest, manifest.len())
}

#[tokio::test]
async fn docker_manifest_lists_keep_bytes_type_and_digest_by_tag_and_by_digest() {
    let registry = InProcess::new();
    let repo = "docker.io/library/multi";
    let (amd64, amd64_size) = push_docker_image(&registry, repo, "amd64").await;
    let (arm64, arm64_size) = push_docker_image(&registry, repo, "arm64").await;
    // Pretty-printed with a trailing newline: the bytes (and so the
    // digest) must survive as pushed, not re-serialised.
    let mut list = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": amd64.to_string(), "size": amd64_size, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "digest": arm64.to_string(), "size": arm64_size, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    list.push(b'\n');
    let digest = Digest::sha256(&list);

    // By tag.
    let put = registry
        .put_manifest(repo, "latest", DOCKER_MANIFEST_LIST, list.clone())
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(
        put.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/{repo}/manifests/{digest}").as_str())
    );
    // By digest, in a second repository (the children are pushed there too).
    let other = "org/multi";
    assert_eq!(push_docker_image(&registry, other, "amd64").await.0, amd64);
    assert_eq!(push_docker_image(&registry, other, "arm64").await.0, arm64);
    let put = registry
        .put_manifest(other, &digest, DOCKER_MANIFEST_LIST, list.clone())
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(
        put.header("docker-content-digest"),
        Some(digest.to_string().as_str())
    );

    // What docker sends: both Docker types; what skopeo and podman send:
    // every type; and no Accept at all.
    let docker_accept = format!("{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}");
    let every_type =
        format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}");
    for (repo, reference) in [
        (repo, "latest".to_string()),
        (repo, digest.to_string()),
        (other, digest.to_string()),
    ] {
        let uri = format!("/v2/{repo}/manifests/{reference}");
        for accept in [
            vec![("accept", docker_accept.as_str())],
            vec![("accept", every_type.as_str())],
            vec![
                ("accept", DOCKER_MANIFEST),
                ("accept", DOCKER_MANIFEST_LIST),
            ],
            vec![],
        ] {
            let got = registry.send("GET", &uri, &accept, vec![]).await;
            assert_eq!(got.status, 200, "{uri} {accept:?}: {:?}", got.body);
            assert_eq!(got.header("content-type"), Some(DOCKER_MANIFEST_LIST));
            assert_eq!(
                got.header("docker-content-digest"),
                Some(digest.to_string().as_str())
            );
            assert_eq!(&got.body[..], &list[..], "{uri}");
            assert_eq!(Digest::sha256(&got.body), digest);
        }
        let head = registry
            .send("HEAD", &uri, &[("accept", docker_accept.as_str())], vec![])
            .await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some(DOCKER_MANIFEST_LIST));
        assert_eq!(
            head.header("content-length"),
            Some(list.len().to_string().as_str())
        );
        assert_eq!(
            head.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        assert!(head.body.is_empty());

        // A client that takes only single-image manifests, or only OCI
        // types, is not handed a Docker manifest list.
        for accept in [DOCKER_MANIFEST, &*format!("{OCI_MANIFEST}, {OCI_INDEX}")] {
            let refused = registry
                .send("GET", &uri, &[("accept", accept)], vec![])
                .await;
            assert_eq!(refused.status, 404, "{uri} {accept}");
            assert_eq!(refused.error_code(), "MANIFEST_UNKNOWN");
        }
    }

    // The children stay reachable with their own type.
    let child = registry
        .send(
            "GET",
            &format!("/v2/{repo}/manifests/{arm64}"),
            &[("accept", docker_accept.as_str())],
            vec![],
        )
        .await;
    assert_eq!(child.header("content-type"), Some(DOCKER_MANIFEST));
    let tags = registry
        .send("GET", &format!("/v2/{repo}/tags/list"), &[], vec![])
        .await;
    assert_eq!(tags.json()["tags"], serde_json::json!(["latest"]));

    // Pushed with a generic content type, the list's declared type is kept.
    let put = registry
        .send(
            "PUT",
            &format!("/v2/{repo}/manifests/generic"),
            &[("content-type", "application/json")],
            list.clone(),
        )
        .await;
    assert_eq!(put.status, 201);
    let got = registry
        .send(
            "HEAD",
            &format!("/v2/{repo}/manifests/generic"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(got.header("content-type"), Some(DOCKER_MANIFEST_LIST));

    // A list naming a manifest the repository does not have is refused,
    // and nothing changes.
    let before = registry.snapshot();
    let missing = Digest::sha256(b"never pushed");
    let dangling = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": missing.to_string(), "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    let reply = registry
        .put_manifest(repo, "dangling", DOCKER_MANIFEST_LIST, dangling)
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(registry.snapshot(), before);

    // Deleting the list by digest removes its tags; the children remain.
    let deleted = registry
        .send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(deleted.status, 202);
    for reference in ["latest", "generic"] {
        let gone = registry
            .send(
                "GET",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(gone.error_code(), "MANIFEST_UNKNOWN", "{reference}");
    }
    let child = registry
        .send(
            "HEAD",
            &format!("/v2/{repo}/manifests/{amd64}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(child.status, 200);
}
