//! `/etc/buildkit/buildkitd.toml` for BuildKit: each namespace's
//! `[registry."<ns>"]` gets the buildset registry first in `mirrors`, and
//! the buildset registry's own section names its CA. Comments and other
//! settings kept (toml_edit).

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use super::is_stale_alias;
use super::registries_conf::{buildset_mirror, Namespace};

/// Why buildkitd.toml cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildkitdTomlError {
    /// The file does not parse as TOML.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A key we must edit has an unexpected shape.
    #[error("{0}")]
    Shape(String),
}

/// buildkitd.toml with the buildset registry first among each namespace's
/// mirrors and its CA at `ca_path`; `old` itself when nothing changes.
pub fn with_buildset_mirrors(
    old: Option<&str>,
    buildset_authority: &str,
    ca_path: &str,
    namespaces: &[Namespace],
) -> Result<String, BuildkitdTomlError> {
    let old_text = old.unwrap_or("");
    let mut doc: DocumentMut = old_text.parse().map_err(|e: toml_edit::TomlError| {
        BuildkitdTomlError::Syntax(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    })?;
    let registry = table(doc.as_table_mut(), "registry")?;
    registry.set_implicit(true);
    let mut modified = false;
    for ns in namespaces {
        let mirror = buildset_mirror(buildset_authority, &ns.registry);
        let section = table(registry, &ns.registry)?;
        modified |= put_first(section, "mirrors", &mirror, &ns.registry)?;
    }
    let own = table(registry, buildset_authority)?;
    modified |= put_first(own, "ca", ca_path, buildset_authority)?;
    if !modified {
        return Ok(old_text.to_string());
    }
    Ok(doc.to_string())
}

/// The sub-table `key` of `parent`, created when missing.
fn table<'t>(parent: &'t mut Table, key: &str) -> Result<&'t mut Table, BuildkitdTomlError> {
    parent
        .entry(key)
        .or_insert(Item::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| BuildkitdTomlError::Shape(format!("\"{key}\" is not a table")))
}

/// Put `entry` first in the string list `key`, keeping the others;
/// whether it changed.
fn put_first(
    section: &mut Table,
    key: &str,
    entry: &str,
    section_name: &str,
) -> Result<bool, BuildkitdTomlError> {
    let shape = || {
        BuildkitdTomlError::Shape(format!(
            "registry.\"{section_name}\".{key} is not a list of strings"
        ))
    };
    let current: Vec<String> = match section.get(key) {
        None => Vec::new(),
        Some(item) => item
            .as_array()
            .ok_or_else(shape)?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(shape)?,
    };
    let stale = |c: &str| key == "mirrors" && is_stale_alias(c, entry);
    if current.first().map(String::as_str) == Some(entry)
        && current.iter().filter(|c| *c == entry).count() == 1
        && !current.iter().any(|c| stale(c))
    {
        return Ok(false);
    }
    let mut list: Array = std::iter::once(entry.to_string())
        .chain(current.into_iter().filter(|c| c != entry && !stale(c)))
        .map(Value::from)
        .collect();
    if let Some(old) = section.get(key).and_then(Item::as_array) {
        *list.decor_mut() = old.decor().clone();
    }
    section.insert(key, Item::Value(Value::Array(list)));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "zuul-jobs.buildset-registry:5000";
    const CA: &str = "/etc/docker/certs.d/zuul-jobs.buildset-registry:5000/ca.crt";

    fn namespaces() -> Vec<Namespace> {
        vec![
            Namespace {
                registry: "docker.io".into(),
                upstream: "registry-1.docker.io".into(),
            },
            Namespace {
                registry: "quay.io".into(),
                upstream: "quay.io".into(),
            },
        ]
    }

    #[test]
    fn writes_a_new_file() {
        let text = with_buildset_mirrors(None, B, CA, &namespaces()).unwrap();
        assert_eq!(
            text,
            r#"[registry."docker.io"]
mirrors = ["zuul-jobs.buildset-registry:5000"]

[registry."quay.io"]
mirrors = ["zuul-jobs.buildset-registry:5000/quay.io"]

[registry."zuul-jobs.buildset-registry:5000"]
ca = ["/etc/docker/certs.d/zuul-jobs.buildset-registry:5000/ca.crt"]
"#
        );
        assert_eq!(
            with_buildset_mirrors(Some(&text), B, CA, &namespaces()).unwrap(),
            text
        );
    }

    #[test]
    fn replaces_the_mirror_of_an_earlier_buildset_registry() {
        let old = "[registry.\"docker.io\"]\nmirrors = [\"zuul-jobs.buildset-registry:4000\", \"m.example\"]\n";
        let text = with_buildset_mirrors(Some(old), B, CA, &namespaces()).unwrap();
        assert!(
            text.contains(r#"mirrors = ["zuul-jobs.buildset-registry:5000", "m.example"]"#),
            "{text}"
        );
    }

    #[test]
    fn keeps_settings_and_other_mirrors() {
        let old = "# buildkit settings\ndebug = true\n\n[registry.\"docker.io\"]\n  mirrors = [\"mirror.example.org\"]\n";
        let text = with_buildset_mirrors(Some(old), B, CA, &namespaces()).unwrap();
        assert!(
            text.starts_with("# buildkit settings\ndebug = true\n"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"mirrors = ["zuul-jobs.buildset-registry:5000", "mirror.example.org"]"#
            ),
            "{text}"
        );
        assert_eq!(
            with_buildset_mirrors(Some(&text), B, CA, &namespaces()).unwrap(),
            text
        );
        let err = with_buildset_mirrors(Some("registry = 3\n"), B, CA, &namespaces()).unwrap_err();
        assert_eq!(err.to_string(), "\"registry\" is not a table");
    }
}
