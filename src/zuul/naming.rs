//! Naming rules every part must agree on (see DESIGN.md).

/// The name `use_buildset_registry` maps to the buildset registry's address
/// in `/etc/hosts` (Zuul's own roles use it): docker, podman and skopeo
/// cannot parse IPv6 literals in image names, so builders address the
/// registry through it, and its certificate covers it.
pub const BUILDSET_REGISTRY_ALIAS: &str = "zuul-jobs.buildset-registry";

/// `host:port` for a connection, with an IPv6 literal host in brackets.
pub fn authority(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

/// Where an image lives in the buildset registry: docker.io images without
/// the `docker.io/` prefix (so docker's `registry-mirrors` finds
/// `library/alpine`), every other registry's under its host.
pub fn buildset_repository(repository: &str) -> &str {
    repository.strip_prefix("docker.io/").unwrap_or(repository)
}

/// The repository as built and published: `<docker_registry>/<repository>`
/// (`docker_registry` of Zuul's container roles), or `repository` alone.
pub fn full_repository(repository: &str, docker_registry: Option<&str>) -> String {
    match docker_registry {
        Some(registry) if !registry.is_empty() => {
            format!("{}/{repository}", registry.trim_end_matches('/'))
        }
        _ => repository.to_string(),
    }
}

/// The tag an image gets in the intermediate registry: `<build>_<tag>`.
pub fn intermediate_tag(build: &str, tag: &str) -> String {
    format!("{build}_{tag}")
}

/// The temporary tag of an upload: `change_<change>_<tag>`, or
/// `<pipeline>_<tag>` when there is no change (a periodic pipeline).
pub fn temporary_tag(change: Option<&str>, pipeline: &str, tag: &str) -> String {
    match change {
        Some(change) => format!("change_{change}_{tag}"),
        None => format!("{pipeline}_{tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(authority("reg.example.org", 5000), "reg.example.org:5000");
        assert_eq!(authority("::1", 5000), "[::1]:5000");
        assert_eq!(authority("[fd00::5]", 443), "[fd00::5]:443");
        assert_eq!(authority("127.0.0.1", 5000), "127.0.0.1:5000");
    }

    #[test]
    fn tags_and_repositories() {
        assert_eq!(
            buildset_repository("docker.io/library/alpine"),
            "library/alpine"
        );
        assert_eq!(buildset_repository("quay.io/org/img"), "quay.io/org/img");
        assert_eq!(buildset_repository("org/img"), "org/img");
        assert_eq!(intermediate_tag("abc123", "latest"), "abc123_latest");
        assert_eq!(temporary_tag(Some("42"), "gate", "v1"), "change_42_v1");
        assert_eq!(temporary_tag(None, "periodic", "v1"), "periodic_v1");
    }
}
