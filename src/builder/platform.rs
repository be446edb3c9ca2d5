//! The platforms of a multi-arch build (`arch: [linux/amd64, linux/arm64]`),
//! as every builder's `--platform` flag and an image index's descriptors
//! write them.

use std::fmt;
use std::str::FromStr;

use crate::oci::Platform;

/// One platform an image is built for: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetPlatform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// CPU variant (`v7` of `arm`), when named.
    pub variant: Option<String>,
}

/// Why an entry of `arch` is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a platform of the form os/architecture[/variant] (e.g. linux/arm64)")]
pub struct PlatformError(pub String);

impl FromStr for TargetPlatform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, architecture, rest @ ..] if rest.len() <= 1 && parts.iter().all(|p| valid(p)) => {
                Ok(TargetPlatform {
                    os: os.to_string(),
                    architecture: architecture.to_string(),
                    variant: rest.first().map(|v| v.to_string()),
                })
            }
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

impl fmt::Display for TargetPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl TargetPlatform {
    /// The platform this process runs on (`linux/amd64` on x86_64), in
    /// the names images use.
    pub fn host() -> TargetPlatform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        TargetPlatform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// What a local tag gets appended for this platform's image
    /// (`linux-arm64`, `linux-arm-v7`).
    pub fn tag_suffix(&self) -> String {
        self.to_string().replace('/', "-")
    }

    /// `name` (`org/app:latest`) with this platform's suffix on its tag
    /// (`org/app:latest-linux-arm64`).
    pub fn tagged(&self, name: &str) -> String {
        format!("{name}-{}", self.tag_suffix())
    }

    /// The descriptor platform of an index entry for this platform.
    pub fn descriptor_platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: None,
            os_features: Vec::new(),
            variant: self.variant.clone(),
        }
    }

    /// Whether an image whose config or descriptor says `os`,
    /// `architecture` and `variant` is this platform's (a variant not
    /// asked for is not compared: builders add `v8` to arm64 or not).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

/// The `--platform` value of a build of every one of `platforms`.
pub fn platform_flag(platforms: &[TargetPlatform]) -> String {
    platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_print_as_given() {
        let arm: TargetPlatform = "linux/arm/v7".parse().unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v7"));
        assert_eq!(arm.to_string(), "linux/arm/v7");
        assert_eq!(arm.tagged("org/app:latest"), "org/app:latest-linux-arm-v7");
        let amd: TargetPlatform = "linux/amd64".parse().unwrap();
        assert_eq!(
            platform_flag(&[amd.clone(), arm]),
            "linux/amd64,linux/arm/v7"
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(TargetPlatform::host(), amd);
        }
    }

    #[test]
    fn what_is_not_a_platform_is_named() {
        for bad in [
            "linux",
            "amd64/",
            "Linux/AMD64",
            "linux/arm/v7/x",
            "linux/arm64 ",
        ] {
            let err = bad.parse::<TargetPlatform>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{bad:?} is not a platform of the form os/architecture[/variant] \
                     (e.g. linux/arm64)"
                )
            );
        }
    }

    #[test]
    fn a_variant_is_compared_only_when_asked_for() {
        let arm64: TargetPlatform = "linux/arm64".parse().unwrap();
        assert!(arm64.matches("linux", "arm64", Some("v8")));
        assert!(arm64.matches("linux", "arm64", None));
        assert!(!arm64.matches("linux", "amd64", None));
        let v7: TargetPlatform = "linux/arm/v7".parse().unwrap();
        assert!(!v7.matches("linux", "arm", Some("v6")));
    }
}
