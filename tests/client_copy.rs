//! The copy engine and client against real registries (Debian's
//! docker-registry with TLS and htpasswd on both ends): what arrives, what
//! is skipped, mounted or refused, and the exact errors.

use std::time::{Duration, Instant};

use speculative_images::client::{
    copy_reference, CopyOptions, Endpoint, ErrorKind, Registry, RemoteRegistry,
};
use speculative_images::oci::Reference;

use crate::client_fixtures::{
    client_of, index_of, push_image, push_index, random_image, repo, Flavor,
};
use crate::support::distribution::{Distribution, Options};

fn reference(reg: &Distribution, path: &str) -> Reference {
    format!("{}/{path}", reg.authority()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_an_image_then_finds_it_already_there() {
    let (a, b) = (Distribution::start(), Distribution::start());
    let (src, dst) = (client_of(&a), client_of(&b));
    let image = random_image(Flavor::Docker, "amd64", &[300_000, 2_000_000, 10]);
    push_image(&src, "org/img", Some("1234_latest"), &image).await;

    let from = reference(&a, "org/img:1234_latest");
    let to = reference(&b, "org/img:latest");
    let report = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&image.manifest.digest));
    assert!(report.changed);
    assert_eq!(report.blobs_copied, 4);
    assert_eq!(
        report.bytes_copied,
        image.blobs.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    let arrived = dst.manifest_get(&repo("org/img"), "latest").await.unwrap();
    assert_eq!(arrived.bytes, image.manifest.bytes);
    assert_eq!(arrived.media_type, image.manifest.media_type);

    // Again: nothing to do, two requests to the destination.
    let before = b.access_log().len();
    let again = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!((again.blobs_copied, again.bytes_copied), (0, 0));
    let requests: Vec<String> = b.access_log()[before..].to_vec();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(
        requests[0].contains("HEAD /v2/org/img/manifests/latest"),
        "{requests:#?}"
    );

    // Under another tag: every blob is found by HEAD, only the manifest is written.
    let retag = reference(&b, "org/img:other");
    let report = copy_reference(&src, &from, &dst, &retag, &CopyOptions::default())
        .await
        .unwrap();
    assert!(report.changed);
    assert_eq!((report.blobs_skipped, report.blobs_copied), (4, 0));
    assert_eq!(dst.tags_list(&repo("org/img")).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_indexes_keep_their_digest() {
    let (a, b) = (Distribution::start(), Distribution::start());
    let (src, dst) = (client_of(&a), client_of(&b));
    for flavor in [Flavor::Oci, Flavor::Docker] {
        let amd = random_image(flavor, "amd64", &[100_000, 20]);
        let arm = random_image(flavor, "arm64", &[120_000, 30]);
        let index = index_of(flavor, &[&amd, &arm]);
        push_index(&src, "multi/img", "1_latest", &[&amd, &arm], &index).await;

        let report = copy_reference(
            &src,
            &reference(&a, "multi/img:1_latest"),
            &dst,
            &reference(&b, "multi/img:latest"),
            &CopyOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.digest.as_ref(), Some(&index.digest), "{flavor:?}");
        assert_eq!(report.manifests_written, 3);
        let arrived = dst
            .manifest_get(&repo("multi/img"), "latest")
            .await
            .unwrap();
        assert_eq!(
            arrived.bytes, index.bytes,
            "{flavor:?}: index bytes changed"
        );
        assert_eq!(arrived.media_type, index.media_type);
        for image in [&amd, &arm] {
            let digest = image.manifest.digest.to_string();
            let child = dst.manifest_get(&repo("multi/img"), &digest).await.unwrap();
            assert_eq!(child.bytes, image.manifest.bytes);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn within_one_registry_blobs_are_mounted() {
    let a = Distribution::start();
    let reg = client_of(&a);
    let image = random_image(Flavor::Oci, "amd64", &[50_000, 60_000]);
    push_image(&reg, "org/img", Some("9_latest"), &image).await;
    let report = copy_reference(
        &reg,
        &reference(&a, "org/img:9_latest"),
        &reg,
        &reference(&a, "other/img:latest"),
        &CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            report.blobs_mounted,
            report.blobs_copied,
            report.bytes_copied
        ),
        (3, 0, 0)
    );
    let got = reg
        .manifest_head(&repo("other/img"), "latest")
        .await
        .unwrap();
    assert_eq!(got, Some(image.manifest.digest.clone()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_ca_served_as_the_leaf_is_accepted_when_given() {
    let a = Distribution::start_with(Options {
        ca_as_leaf: true,
        ..Options::default()
    });
    let reg = client_of(&a);
    let image = random_image(Flavor::Docker, "amd64", &[1000]);
    push_image(&reg, "org/img", Some("latest"), &image).await;
    let head = reg.manifest_head(&repo("org/img"), "latest").await.unwrap();
    assert_eq!(head, Some(image.manifest.digest.clone()));

    // Another certificate: refused, naming the registry and the reason.
    let other = Distribution::start();
    let wrong = RemoteRegistry::new(
        Endpoint::new(a.authority())
            .with_credentials(&a.username, &a.password)
            .with_ca_pem(&other.tls.cert_pem),
    )
    .unwrap();
    let err = wrong
        .manifest_head(&repo("org/img"), "latest")
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Tls(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "GET https://{0}/v2/: TLS handshake with registry {0} failed: \
             it presents a CA certificate as its own, and not the certificate given \
             for it (invalid peer certificate: Other(OtherError(CaUsedAsEndEntity)))",
            a.authority()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_unknown_tag_and_unreachable_registry_are_named() {
    let a = Distribution::start();
    let b = Distribution::start();
    let dst = client_of(&b);
    let bad_password = "not-the-password-4711";
    let src = RemoteRegistry::new(
        Endpoint::new(a.authority())
            .with_credentials(&a.username, bad_password)
            .with_ca_pem(&a.tls.cert_pem),
    )
    .unwrap();
    let from = reference(&a, "org/img:latest");
    let to = reference(&b, "org/img:latest");
    let err = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(
        err.to_string(),
        format!(
            "copying {from} to {to}: GET https://{0}/v2/org/img/manifests/latest: \
             401 Unauthorized (UNAUTHORIZED: authentication required): \
             registry {0} refused the credentials of user \"zuul\"",
            a.authority()
        )
    );
    assert!(!err.to_string().contains(bad_password));

    let src = client_of(&a);
    let err = copy_reference(&src, &from, &dst, &to, &CopyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.has_code("MANIFEST_UNKNOWN"), "{err}");
    assert!(
        err.to_string().ends_with(&format!(
            "404 Not Found (MANIFEST_UNKNOWN: manifest unknown): not found on registry {}",
            a.authority()
        )),
        "{err}"
    );

    // Nothing listens on the port: refused, retried, then named.
    let port = crate::support::free_port();
    let gone = RemoteRegistry::new(Endpoint::new(format!("127.0.0.1:{port}"))).unwrap();
    let started = Instant::now();
    let err = gone
        .manifest_get(&repo("org/img"), "latest")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err.kind, ErrorKind::Connect(_)), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "GET https://127.0.0.1:{port}/v2/: cannot connect to registry 127.0.0.1:{port}: "
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_corrupted_at_the_source_is_refused_and_not_stored() {
    let (a, b) = (Distribution::start(), Distribution::start());
    let (src, dst) = (client_of(&a), client_of(&b));
    let image = random_image(Flavor::Docker, "amd64", &[4096, 8192]);
    push_image(&src, "org/img", Some("latest"), &image).await;
    // Flip bytes of one layer in the source's storage: the registry serves
    // it as is, with the right length and the wrong content.
    let (digest, content) = &image.blobs[2];
    let path = a.data.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &digest.hex()[..2],
        digest.hex()
    ));
    let mut bad = content.to_vec();
    bad[100] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();

    let options = CopyOptions::default();
    let err = copy_reference(
        &src,
        &reference(&a, "org/img:latest"),
        &dst,
        &reference(&b, "org/img:latest"),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::DigestMismatch {
            expected: digest.clone(),
            actual: speculative_images::oci::Digest::sha256(&bad),
        },
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("copying blob {digest}")),
        "{err}"
    );
    assert_eq!(dst.blob_head(&repo("org/img"), digest).await.unwrap(), None);
    assert_eq!(
        dst.manifest_head(&repo("org/img"), "latest").await.unwrap(),
        None
    );

    // Truncated: a size mismatch.
    std::fs::write(&path, &content[..1000]).unwrap();
    let err = copy_reference(
        &src,
        &reference(&a, "org/img:latest"),
        &dst,
        &reference(&b, "org/img:latest"),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::SizeMismatch {
            expected: content.len() as u64,
            actual: 1000
        },
        "{err}"
    );
}
