//! Manifests and indexes: the document as stored ([`Manifest`]: media
//! type, exact bytes, digest, so a copy or a retag keeps the digest), its
//! parsed forms ([`ImageManifest`], [`ImageIndex`], with the
//! [`Descriptor`]s they hold), and what a document points at
//! ([`Children`]). The field names are the image spec's; Docker's schema 2
//! manifest and manifest list have the same shape.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::media_type::{self, is_index};
use super::Digest;

/// A reference from a manifest to a blob or to another manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// Where a foreign (non-distributable) layer can be fetched instead
    /// of from the registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform an index entry is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of the target, for an artifact manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor of `size` bytes of `media_type` named `digest`.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// Whether this is a foreign (non-distributable) layer: one that names
    /// the URLs it lives at, which registries do not hold and copies do
    /// not carry.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
    }
}

/// The platform of one entry of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Operating system features (Windows images).
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (`v8` of arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI, or Docker schema 2): a config and layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The media type the document declares, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for an artifact manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI), or Docker manifest list: one manifest per
/// platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The media type the document declares, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for an artifact index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests, each with its platform when it has one.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Why a document is not the manifest or index its media type says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The document does not parse as an index.
    #[error("index {digest} is not valid: {reason}")]
    InvalidIndex {
        /// The document's digest.
        digest: Digest,
        /// The field and what is wrong with it.
        reason: String,
    },
    /// The document does not parse as an image manifest.
    #[error("manifest {digest} is not valid: {reason}")]
    InvalidManifest {
        /// The document's digest.
        digest: Digest,
        /// The field and what is wrong with it.
        reason: String,
    },
}

/// A manifest or index as stored: its media type, its exact bytes and
/// their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type it is stored and served with.
    pub media_type: String,
    /// The document, byte for byte.
    pub bytes: Bytes,
    /// The digest of `bytes` (sha256 unless fetched by a sha512 digest).
    pub digest: Digest,
}

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Children {
    /// An index or manifest list: other manifests.
    Manifests(Vec<Descriptor>),
    /// An image manifest: its config and layers (blobs), foreign layers
    /// left out (the registry does not hold them).
    Blobs(Vec<Descriptor>),
}

impl Manifest {
    /// A manifest from its bytes; `media_type` as the registry sent it
    /// (`Content-Type`), or anything not a manifest type (empty,
    /// `application/json`) to take the type the document implies (see
    /// [`media_type::implied_by`]).
    pub fn new(media_type: &str, bytes: Bytes) -> Manifest {
        let media_type = if media_type::is_manifest_type(media_type) {
            media_type.to_string()
        } else {
            sniff_media_type(&bytes)
        };
        let digest = Digest::sha256(&bytes);
        Manifest {
            media_type,
            bytes,
            digest,
        }
    }

    /// Whether this is an index or manifest list.
    pub fn is_index(&self) -> bool {
        is_index(&self.media_type)
    }

    /// The document as an index (call when [`Manifest::is_index`]).
    pub fn index(&self) -> Result<ImageIndex, ManifestError> {
        parse(&self.bytes).map_err(|reason| ManifestError::InvalidIndex {
            digest: self.digest.clone(),
            reason,
        })
    }

    /// The document as an image manifest (call unless
    /// [`Manifest::is_index`]).
    pub fn image(&self) -> Result<ImageManifest, ManifestError> {
        parse(&self.bytes).map_err(|reason| ManifestError::InvalidManifest {
            digest: self.digest.clone(),
            reason,
        })
    }

    /// The manifests (of an index) or blobs (of an image) this names.
    pub fn children(&self) -> Result<Children, ManifestError> {
        if self.is_index() {
            Ok(Children::Manifests(self.index()?.manifests))
        } else {
            let image = self.image()?;
            // Only a layer can be foreign: the config is the registry's
            // to hold even when it names URLs (the server refuses a
            // manifest whose config it lacks, so a prune must keep it).
            let layers = image.layers.into_iter().filter(|d| !d.is_foreign());
            let blobs = std::iter::once(image.config).chain(layers).collect();
            Ok(Children::Blobs(blobs))
        }
    }
}

/// `bytes` as a `T`, or what is wrong prefixed with the field's path
/// (`config.digest: ...`).
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut document = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut document).map_err(|e| match e.path().to_string() {
        path if path == "." => e.into_inner().to_string(),
        path => format!("{path}: {}", e.into_inner()),
    })
}

/// The media type a document declares, or the one its shape implies.
fn sniff_media_type(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(shape) => media_type::implied_by(shape.media_type.as_deref(), shape.manifests.is_some())
            .to_string(),
        Err(_) => media_type::OCI_MANIFEST.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image_bytes(config: &Digest, layer: &Digest) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST,
            "config": {"mediaType": media_type::DOCKER_CONFIG, "digest": config, "size": 6},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                 "digest": layer, "size": 5},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                 "digest": Digest::sha256(b"windows"), "size": 9,
                 "urls": ["https://mcr.microsoft.com/b"]},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn reads_children_of_indexes_and_images() {
        let layer = Digest::sha256(b"layer");
        let config = Digest::sha256(b"config");
        let m = Manifest::new("", Bytes::from(image_bytes(&config, &layer)));
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
        let Children::Blobs(blobs) = m.children().unwrap() else {
            panic!("an image has blobs")
        };
        // The foreign layer is not a blob of the registry's.
        assert_eq!(
            blobs
                .iter()
                .map(|d| (&d.digest, d.size))
                .collect::<Vec<_>>(),
            [(&config, 6), (&layer, 5)]
        );

        let index = json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": media_type::OCI_MANIFEST, "digest": m.digest,
                           "size": m.bytes.len(),
                           "platform": {"architecture": "riscv64", "os": "linux"}}],
        });
        let i = Manifest::new("application/json", Bytes::from(index.to_string()));
        assert_eq!(i.media_type, media_type::OCI_INDEX);
        let Children::Manifests(ms) = i.children().unwrap() else {
            panic!("an index has manifests")
        };
        assert_eq!(ms[0].digest, m.digest);
        assert_eq!(ms[0].platform.as_ref().unwrap().architecture, "riscv64");
    }

    #[test]
    fn a_config_naming_urls_is_still_a_blob_of_the_registry() {
        let config = Digest::sha256(b"{}");
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config, "size": 2,
                       "urls": ["https://example.org/config"]},
            "layers": [],
        });
        let m = Manifest::new("", Bytes::from(doc.to_string()));
        let Children::Blobs(blobs) = m.children().unwrap() else {
            panic!("an image has blobs")
        };
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[0].digest, config);
    }

    #[test]
    fn parses_every_field_a_server_needs() {
        let subject = Digest::sha256(b"subject");
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                       "digest": Digest::sha256(b"{}"), "size": 2},
            "layers": [],
            "subject": {"mediaType": media_type::OCI_MANIFEST, "digest": subject, "size": 7},
            "annotations": {"org.opencontainers.image.created": "2026-12-01T00:00:00Z"},
        });
        let m = Manifest::new(media_type::OCI_MANIFEST, Bytes::from(doc.to_string()));
        let image = m.image().unwrap();
        assert_eq!(
            image.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(image.subject.unwrap().digest, subject);
        assert_eq!(
            image.annotations["org.opencontainers.image.created"],
            "2026-12-01T00:00:00Z"
        );

        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST_LIST,
            "manifests": [{"mediaType": media_type::DOCKER_MANIFEST,
                           "digest": subject, "size": 7,
                           "platform": {"architecture": "arm64", "os": "linux",
                                        "variant": "v8", "os.features": ["x"]}}],
        });
        let parsed: ImageIndex = serde_json::from_value(index.clone()).unwrap();
        let platform = parsed.manifests[0].platform.as_ref().unwrap();
        assert_eq!(platform.variant.as_deref(), Some("v8"));
        assert_eq!(platform.os_features, ["x"]);
        // What is written back is what was read.
        assert_eq!(serde_json::to_value(&parsed).unwrap(), index);
    }

    #[test]
    fn invalid_documents_name_the_field_and_the_digest() {
        let bad = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": "sha256:zz", "size": 2},
            "layers": [],
        });
        let m = Manifest::new("", Bytes::from(bad.to_string()));
        let err = m.children().unwrap_err();
        assert!(matches!(err, ManifestError::InvalidManifest { .. }));
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("manifest {} is not valid: ", m.digest)),
            "{shown}"
        );
        assert!(
            shown.contains("config.digest: digest \"sha256:zz\""),
            "{shown}"
        );

        let negative = json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": media_type::OCI_MANIFEST,
                           "digest": Digest::sha256(b"x"), "size": -1}],
        });
        let i = Manifest::new("", Bytes::from(negative.to_string()));
        let err = i.children().unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "index {} is not valid: manifests[0].size: invalid value: integer `-1`",
                i.digest
            )),
            "{err}"
        );
    }
}
