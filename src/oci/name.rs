//! Repository names and tags, validated by the distribution spec's grammar.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex_lite::Regex;

/// The spec's path-component grammar, one or more components joined by `/`.
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$",
    )
    .expect("valid regex")
});

/// The spec's tag grammar.
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("valid regex"));

/// The longest repository name the spec allows.
pub const MAX_NAME_LEN: usize = 255;

/// Why a string is not a repository name or a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not matching the repository name grammar.
    #[error("repository name {0:?} is invalid: use lower-case letters, digits and separators (. _ __ -) in components joined by /")]
    InvalidName(String),
    /// Longer than [`MAX_NAME_LEN`].
    #[error("repository name {0:?} is longer than 255 characters")]
    TooLong(String),
    /// Not matching the tag grammar.
    #[error(
        "tag {0:?} is invalid: use at most 128 of a-z A-Z 0-9 _ . -, not starting with . or -"
    )]
    InvalidTag(String),
}

/// A repository name such as `library/alpine` or `quay.io/org/img`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's `/`-separated components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RepositoryName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(s.to_string()));
        }
        if !NAME.is_match(s) {
            return Err(NameError::InvalidName(s.to_string()));
        }
        Ok(RepositoryName(s.to_string()))
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag such as `latest` or `change_42_latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// `latest`, the tag a reference without one means.
    pub fn latest() -> Tag {
        Tag("latest".to_string())
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !TAG.is_match(s) {
            return Err(NameError::InvalidTag(s.to_string()));
        }
        Ok(Tag(s.to_string()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(RepositoryName);
serde_via_str!(Tag);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_deep_names_and_hosts_as_components() {
        for ok in [
            "alpine",
            "library/alpine",
            "quay.io/org/img",
            "a/b/c/d",
            "my-org/my__img",
            "a.b-c_d",
        ] {
            assert!(ok.parse::<RepositoryName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_empty_parts_and_upper_case() {
        for bad in [
            "../etc", "a/../b", "a//b", "/a", "a/", "Alpine", "", "a:5000/b", "-a",
        ] {
            assert_eq!(
                bad.parse::<RepositoryName>(),
                Err(NameError::InvalidName(bad.to_string())),
                "{bad}"
            );
        }
        let long = "a".repeat(256);
        assert!(matches!(
            long.parse::<RepositoryName>(),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert!("latest".parse::<Tag>().is_ok());
        assert!("change_42_v1.0-rc".parse::<Tag>().is_ok());
        assert!(".hidden".parse::<Tag>().is_err());
        assert!("a/b".parse::<Tag>().is_err());
        assert!("x".repeat(129).parse::<Tag>().is_err());
    }
}
