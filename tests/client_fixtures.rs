//! Test images made of random bytes, pushed with the client itself: image
//! manifests (Docker or OCI) and indexes whose exact bytes (odd whitespace
//! included) must survive a copy.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use rand::RngCore;
use speculative_images::client::{Endpoint, Manifest, Registry, RemoteRegistry};
use speculative_images::oci::media_type::{
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use speculative_images::oci::{Digest, ManifestReference, RepositoryName, Tag};

use crate::support::distribution::Distribution;

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Docker schema 2 and manifest lists.
    Docker,
    /// OCI image manifest and index.
    Oci,
}

/// An image: its manifest and every blob it names.
pub struct TestImage {
    /// The manifest.
    pub manifest: Manifest,
    /// Config first, then layers.
    pub blobs: Vec<(Digest, Bytes)>,
    /// The platform's architecture.
    pub arch: String,
}

/// Random bytes.
pub fn random_bytes(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    rand::rng().fill_bytes(&mut v);
    Bytes::from(v)
}

/// An image of `layer_sizes` random layers for `arch`.
pub fn random_image(flavor: Flavor, arch: &str, layer_sizes: &[usize]) -> TestImage {
    let (manifest_type, config_type, layer_type) = match flavor {
        Flavor::Docker => (
            DOCKER_MANIFEST,
            DOCKER_CONFIG,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        Flavor::Oci => (
            OCI_MANIFEST,
            OCI_CONFIG,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
    };
    let layers: Vec<Bytes> = layer_sizes.iter().map(|n| random_bytes(*n)).collect();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}\"", Digest::sha256(l)))
        .collect();
    let config = Bytes::from(format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        diff_ids.join(",")
    ));
    let descriptor = |media: &str, b: &Bytes| {
        format!(
            r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#,
            Digest::sha256(b),
            b.len()
        )
    };
    let layer_descriptors: Vec<String> = layers.iter().map(|l| descriptor(layer_type, l)).collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{},"layers":[{}]}}"#,
        descriptor(config_type, &config),
        layer_descriptors.join(",")
    );
    let mut blobs = vec![(Digest::sha256(&config), config)];
    blobs.extend(layers.into_iter().map(|l| (Digest::sha256(&l), l)));
    TestImage {
        manifest: Manifest::new(manifest_type, Bytes::from(manifest)),
        blobs,
        arch: arch.to_string(),
    }
}

/// An index over `images`, pretty-printed with unusual indentation so a
/// client that re-serialises it would change its digest.
pub fn index_of(flavor: Flavor, images: &[&TestImage]) -> Manifest {
    let media = match flavor {
        Flavor::Docker => DOCKER_MANIFEST_LIST,
        Flavor::Oci => OCI_INDEX,
    };
    let entries: Vec<String> = images
        .iter()
        .map(|i| {
            format!(
                "\n   {{ \"mediaType\" : \"{}\", \"digest\" : \"{}\", \"size\" : {},\n     \"platform\" : {{ \"architecture\" : \"{}\", \"os\" : \"linux\" }} }}",
                i.manifest.media_type,
                i.manifest.digest,
                i.manifest.bytes.len(),
                i.arch
            )
        })
        .collect();
    let text = format!(
        "{{\n \"schemaVersion\" : 2,\n \"mediaType\" : \"{media}\",\n \"manifests\" : [{}\n ]\n}}\n",
        entries.join(",")
    );
    Manifest::new(media, Bytes::from(text))
}

/// The endpoint of a distribution fixture (credentials and its CA).
pub fn endpoint_of(reg: &Distribution) -> Endpoint {
    Endpoint::new(reg.authority())
        .with_credentials(&reg.username, &reg.password)
        .with_ca_pem(&reg.tls.cert_pem)
}

/// A client for a distribution fixture.
pub fn client_of(reg: &Distribution) -> Arc<RemoteRegistry> {
    RemoteRegistry::new(endpoint_of(reg)).expect("client")
}

/// A repository name.
pub fn repo(name: &str) -> RepositoryName {
    name.parse().expect("repository name")
}

/// A tag.
pub fn tag(name: &str) -> Tag {
    name.parse().expect("tag")
}

/// Push `image`'s blobs and manifest (by digest, and by `tag` if given).
pub async fn push_image(
    reg: &RemoteRegistry,
    repository: &str,
    tag: Option<&str>,
    image: &TestImage,
) {
    let repository = repo(repository);
    for (digest, content) in &image.blobs {
        reg.put_blob_bytes(&repository, digest, content.clone())
            .await
            .expect("push blob");
    }
    let reference = tag
        .map(manifest_ref)
        .unwrap_or_else(|| ManifestReference::from(&image.manifest.digest));
    reg.manifest_put(&repository, &reference, &image.manifest)
        .await
        .expect("push manifest");
}

/// A tag or digest, as the client's manifest operations take it.
pub fn manifest_ref(reference: &str) -> ManifestReference {
    reference.parse().unwrap()
}

/// Push every image and then `index` under `tag`.
pub async fn push_index(
    reg: &RemoteRegistry,
    repository: &str,
    tag: &str,
    images: &[&TestImage],
    index: &Manifest,
) {
    for image in images {
        push_image(reg, repository, None, image).await;
    }
    reg.manifest_put(&repo(repository), &manifest_ref(tag), index)
        .await
        .expect("push index");
}
