//! Media types of manifests, indexes and the blobs they name, and the
//! rules on them that client and server share: which type is a manifest,
//! which an index, and which type a document without one has. (Which
//! layer is foreign is the descriptor's to say:
//! [`Descriptor::is_foreign`](super::manifest::Descriptor::is_foreign).)

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-arch).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Every manifest media type the project reads and writes, in the order
/// sent in an `Accept` header.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// Whether `media_type` names an index or manifest list (a document whose
/// descriptors point at other manifests rather than at layers).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is one of the manifest types in [`MANIFEST_TYPES`].
pub fn is_manifest_type(media_type: &str) -> bool {
    MANIFEST_TYPES.contains(&media_type)
}

/// The `Accept` header value listing every manifest type.
pub fn accept_header() -> String {
    MANIFEST_TYPES.join(", ")
}

/// The media type a manifest document has when no `Content-Type` names
/// it: the one it declares (`mediaType`), else an OCI index if it has a
/// `manifests` array, else an OCI image manifest.
pub fn implied_by(declared: Option<&str>, has_manifests: bool) -> &str {
    match declared {
        Some(declared) => declared,
        None if has_manifests => OCI_INDEX,
        None => OCI_MANIFEST,
    }
}

/// A `Content-Type` value without its parameters (`; charset=...`).
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_and_manifest_types() {
        assert!(is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(OCI_MANIFEST) && !is_index(DOCKER_MANIFEST));
        for t in MANIFEST_TYPES {
            assert!(is_manifest_type(t), "{t}");
        }
        assert!(!is_manifest_type(OCI_CONFIG));
        assert!(!is_manifest_type("application/json"));
        assert_eq!(
            accept_header(),
            "application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json"
        );
    }

    #[test]
    fn a_document_without_a_type_gets_the_one_its_shape_implies() {
        assert_eq!(implied_by(Some(DOCKER_MANIFEST), true), DOCKER_MANIFEST);
        assert_eq!(implied_by(None, true), OCI_INDEX);
        assert_eq!(implied_by(None, false), OCI_MANIFEST);
        assert_eq!(
            essence("application/json; charset=utf-8"),
            "application/json"
        );
        assert_eq!(essence(" x "), "x");
    }
}
