//! Image references: `[docker://]host[:port]/path[:tag][@digest]`, with IPv6
//! literal hosts (`[fd00::5]:5000/org/img:tag`) and Docker Hub defaults
//! (`alpine` is `docker.io/library/alpine:latest`); and the reference to a
//! manifest within a repository, a tag or a digest ([`ManifestReference`],
//! the `<reference>` of `/v2/<name>/manifests/<reference>`).

use std::fmt;
use std::str::FromStr;

use super::{Digest, DigestError, NameError, RepositoryName, Tag};

/// The registry name Docker Hub images are known by.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API answers on.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageReferenceError {
    /// Empty, or a transport other than `docker://`.
    #[error("image reference {reference:?} is invalid: {reason}")]
    Invalid {
        /// The input.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The repository part is not a valid name.
    #[error("image reference {reference:?}: {source}")]
    Name {
        /// The input.
        reference: String,
        /// The name problem.
        source: NameError,
    },
    /// The digest part is not a valid digest.
    #[error("image reference {reference:?}: {source}")]
    Digest {
        /// The input.
        reference: String,
        /// The digest problem.
        source: DigestError,
    },
}

/// A manifest within a repository, named by tag or by digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ManifestReference {
    /// By tag (`latest`).
    Tag(Tag),
    /// By digest (`sha256:...`).
    Digest(Digest),
}

/// Why a string is neither a tag nor a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestReferenceError {
    /// Has a `:`, so it is meant as a digest, and is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Not a valid tag.
    #[error(transparent)]
    Tag(#[from] NameError),
}

impl ManifestReference {
    /// The digest, when named by one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            ManifestReference::Digest(d) => Some(d),
            ManifestReference::Tag(_) => None,
        }
    }

    /// The tag, when named by one.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            ManifestReference::Tag(t) => Some(t),
            ManifestReference::Digest(_) => None,
        }
    }
}

impl FromStr for ManifestReference {
    type Err = ManifestReferenceError;

    /// A digest if it holds a `:` (tags cannot), else a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(ManifestReference::Digest(s.parse()?))
        } else {
            Ok(ManifestReference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for ManifestReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestReference::Tag(t) => t.fmt(f),
            ManifestReference::Digest(d) => d.fmt(f),
        }
    }
}

impl From<Tag> for ManifestReference {
    fn from(tag: Tag) -> Self {
        ManifestReference::Tag(tag)
    }
}

impl From<&Tag> for ManifestReference {
    fn from(tag: &Tag) -> Self {
        ManifestReference::Tag(tag.clone())
    }
}

impl From<Digest> for ManifestReference {
    fn from(digest: Digest) -> Self {
        ManifestReference::Digest(digest)
    }
}

impl From<&Digest> for ManifestReference {
    fn from(digest: &Digest) -> Self {
        ManifestReference::Digest(digest.clone())
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry as written: `host`, `host:port`, `[v6]:port`; `docker.io`
    /// when the reference named none.
    pub registry: String,
    /// Repository path within the registry (`library/alpine`).
    pub repository: RepositoryName,
    /// The tag, if any (`latest` is not implied when a digest is given).
    pub tag: Option<Tag>,
    /// The digest, if any.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Build a reference from its parts.
    pub fn new(registry: impl Into<String>, repository: RepositoryName, tag: Option<Tag>) -> Self {
        Reference {
            registry: registry.into(),
            repository,
            tag,
            digest: None,
        }
    }

    /// Whether the registry is Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        is_docker_hub(&self.registry)
    }

    /// `host:port` to connect to for the registry API (Docker Hub's API
    /// host for `docker.io`).
    pub fn api_authority(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest if any, else the tag, else
    /// `latest`.
    pub fn manifest_reference(&self) -> ManifestReference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => ManifestReference::Digest(d.clone()),
            (None, Some(t)) => ManifestReference::Tag(t.clone()),
            (None, None) => ManifestReference::Tag(Tag::latest()),
        }
    }

    /// [`Reference::manifest_reference`] as a string.
    pub fn target(&self) -> String {
        self.manifest_reference().to_string()
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: Tag) -> Reference {
        Reference {
            tag: Some(tag),
            digest: None,
            ..self.clone()
        }
    }
}

/// Whether `registry` names Docker Hub.
pub fn is_docker_hub(registry: &str) -> bool {
    matches!(registry, DOCKER_HUB | "index.docker.io" | DOCKER_HUB_API)
}

/// Whether the first path component of a reference is a registry host
/// rather than a Docker Hub namespace: docker's rule (a `.` or `:`, or
/// `localhost`), plus IPv6 literals.
fn looks_like_host(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component.starts_with('[')
        || component == "localhost"
}

impl FromStr for Reference {
    type Err = ImageReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ImageReferenceError::Invalid {
            reference: input.to_string(),
            reason: reason.to_string(),
        };
        let mut rest = input.strip_prefix("docker://").unwrap_or(input);
        if rest.contains("://") {
            return Err(invalid("only docker:// references are supported"));
        }
        if rest.is_empty() {
            return Err(invalid("it is empty"));
        }

        let mut digest = None;
        if let Some((before, d)) = rest.split_once('@') {
            digest = Some(
                d.parse::<Digest>()
                    .map_err(|source| ImageReferenceError::Digest {
                        reference: input.to_string(),
                        source,
                    })?,
            );
            rest = before;
        }

        // Split off the registry: an IPv6 literal runs up to its `]`.
        let (registry, path) = if rest.starts_with('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| invalid("unclosed [ in IPv6 host"))?;
            let slash = rest[close..]
                .find('/')
                .map(|i| i + close)
                .ok_or_else(|| invalid("no repository after the registry host"))?;
            (rest[..slash].to_string(), &rest[slash + 1..])
        } else {
            match rest.split_once('/') {
                Some((first, path)) if looks_like_host(first) => (first.to_string(), path),
                _ => (DOCKER_HUB.to_string(), rest),
            }
        };
        if registry.is_empty() {
            return Err(invalid("the registry host is empty"));
        }

        // The tag follows the last `:` of the path (the host part, with its
        // port, is already removed).
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) => (
                p,
                Some(
                    t.parse::<Tag>()
                        .map_err(|source| ImageReferenceError::Name {
                            reference: input.to_string(),
                            source,
                        })?,
                ),
            ),
            None => (path, None),
        };
        let path = if is_docker_hub(&registry) && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let repository =
            path.parse::<RepositoryName>()
                .map_err(|source| ImageReferenceError::Name {
                    reference: input.to_string(),
                    source,
                })?;
        Ok(Reference {
            registry: if is_docker_hub(&registry) {
                DOCKER_HUB.to_string()
            } else {
                registry
            },
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_defaults() {
        let r = parse("alpine");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository.as_str(), "library/alpine");
        assert_eq!(r.tag, None);
        assert_eq!(r.target(), "latest");
        assert_eq!(r.api_authority(), DOCKER_HUB_API);
        assert_eq!(parse("org/img:1").repository.as_str(), "org/img");
        assert_eq!(
            parse("docker.io/alpine:3").to_string(),
            "docker.io/library/alpine:3"
        );
    }

    #[test]
    fn hosts_ports_and_transport_prefix() {
        let r = parse("docker://inter.example.org:5000/org/img:123_latest");
        assert_eq!(r.registry, "inter.example.org:5000");
        assert_eq!(r.repository.as_str(), "org/img");
        assert_eq!(r.tag.unwrap().as_str(), "123_latest");
        let r = parse("localhost/img");
        assert_eq!(r.registry, "localhost");
        let r = parse("quay.io/org/img");
        assert_eq!(r.registry, "quay.io");
    }

    #[test]
    fn ipv6_literals() {
        let r = parse("[fd00::5]:5000/org/img:tag");
        assert_eq!(r.registry, "[fd00::5]:5000");
        assert_eq!(r.repository.as_str(), "org/img");
        assert_eq!(r.tag.unwrap().as_str(), "tag");
        assert_eq!(parse("[::1]:5000/a").to_string(), "[::1]:5000/a");
    }

    #[test]
    fn digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = parse(&format!("reg:5000/a/b@{d}"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert_eq!(r.target(), d);
    }

    #[test]
    fn manifest_references_are_tags_or_digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let by_digest: ManifestReference = d.parse().unwrap();
        assert_eq!(by_digest.digest().unwrap().to_string(), d);
        assert_eq!(by_digest.to_string(), d);
        let by_tag: ManifestReference = "v1.2_rc".parse().unwrap();
        assert_eq!(by_tag.tag().unwrap().as_str(), "v1.2_rc");
        assert_eq!(by_tag.digest(), None);
        assert!(matches!(
            "sha256:zz".parse::<ManifestReference>(),
            Err(ManifestReferenceError::Digest(DigestError::InvalidHex(_)))
        ));
        assert!(matches!(
            "-bad".parse::<ManifestReference>(),
            Err(ManifestReferenceError::Tag(_))
        ));
        assert_eq!(
            parse(&format!("reg:5000/a:1@{d}")).manifest_reference(),
            by_digest
        );
        assert_eq!(
            parse("reg:5000/a").manifest_reference(),
            ManifestReference::Tag("latest".parse().unwrap())
        );
    }

    #[test]
    fn bad_references_say_why() {
        assert!(matches!(
            "".parse::<Reference>(),
            Err(ImageReferenceError::Invalid { .. })
        ));
        assert!(matches!(
            "oci://x/y".parse::<Reference>(),
            Err(ImageReferenceError::Invalid { .. })
        ));
        assert!(matches!(
            "reg:5000/UPPER".parse::<Reference>(),
            Err(ImageReferenceError::Name { .. })
        ));
        assert!(matches!(
            "reg:5000/a@sha256:zz".parse::<Reference>(),
            Err(ImageReferenceError::Digest { .. })
        ));
        assert!(matches!(
            "[::1:5000/a".parse::<Reference>(),
            Err(ImageReferenceError::Invalid { .. })
        ));
    }
}
