//! `/etc/containers/registries.conf` (v2) for podman, skopeo and buildah:
//! one `[[registry]]` per namespace whose first `[[registry.mirror]]` is
//! the buildset registry, upstream after it, and
//! `unqualified-search-registries`. Edited with toml_edit, so comments,
//! layout and every other registry stay as they were.

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use super::is_stale_alias;

/// Why registries.conf cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistriesConfError {
    /// The file does not parse as TOML.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// The file uses the v1 format, which cannot express mirrors.
    #[error(
        "is in the v1 format ([registries.search] etc.), which has no mirrors; convert it to the v2 format ([[registry]] tables)"
    )]
    V1,
    /// A key we must edit has an unexpected shape.
    #[error("{0}")]
    Shape(String),
}

/// One namespace to mirror: a registry name and where it really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The name images carry (`docker.io`, `quay.io`).
    pub registry: String,
    /// Upstream location, `host[:port][/path]` (`registry-1.docker.io`).
    pub upstream: String,
}

/// The buildset registry's location for a namespace: its own root for
/// docker.io (images stored without the `docker.io/` prefix), the
/// namespace as first path element for every other registry.
pub fn buildset_mirror(buildset_authority: &str, registry: &str) -> String {
    if registry == crate::oci::reference::DOCKER_HUB {
        buildset_authority.to_string()
    } else {
        format!("{buildset_authority}/{registry}")
    }
}

/// registries.conf pointing every namespace at the buildset registry
/// first; `old` itself when it already does.
pub fn with_buildset_mirrors(
    old: Option<&str>,
    buildset_authority: &str,
    namespaces: &[Namespace],
    unqualified: &[String],
) -> Result<String, RegistriesConfError> {
    let old_text = old.unwrap_or("");
    let mut doc: DocumentMut = old_text
        .parse()
        .map_err(|e: toml_edit::TomlError| RegistriesConfError::Syntax(one_line(&e.to_string())))?;
    if doc.contains_key("registries") {
        return Err(RegistriesConfError::V1);
    }
    // A file of comments only (as distributions ship it) keeps them on top
    // rather than after what we add.
    let header = if doc.is_empty() {
        let text = doc.trailing().as_str().unwrap_or_default().to_string();
        doc.set_trailing("");
        text
    } else {
        String::new()
    };
    let mut modified = set_unqualified(&mut doc, unqualified)?;
    let registries = match doc
        .entry("registry")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
    {
        Item::ArrayOfTables(aot) => aot,
        _ => {
            return Err(RegistriesConfError::Shape(
                "\"registry\" is not an array of tables ([[registry]])".into(),
            ))
        }
    };
    for ns in namespaces {
        let mirror = buildset_mirror(buildset_authority, &ns.registry);
        let found = registries.iter().position(|t| {
            str_key(t, "prefix") == Some(&ns.registry)
                || (str_key(t, "prefix").is_none() && str_key(t, "location") == Some(&ns.registry))
        });
        match found {
            Some(i) => {
                let table = registries.get_mut(i).expect("index from position");
                modified |= fix_entry(table, ns, &mirror)?;
            }
            None => {
                registries.push(new_entry(ns, &mirror));
                modified = true;
            }
        }
    }
    if !modified {
        return Ok(old_text.to_string());
    }
    if header.trim().is_empty() {
        return Ok(doc.to_string());
    }
    Ok(format!("{}\n\n{doc}", header.trim_end()))
}

/// Set `unqualified-search-registries`; whether it changed.
fn set_unqualified(doc: &mut DocumentMut, wanted: &[String]) -> Result<bool, RegistriesConfError> {
    let key = "unqualified-search-registries";
    if let Some(item) = doc.get(key) {
        let current: Option<Vec<&str>> = item
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| RegistriesConfError::Shape(format!("\"{key}\" is not a list")))?;
        if current.as_deref() == Some(&wanted.iter().map(String::as_str).collect::<Vec<_>>()[..]) {
            return Ok(false);
        }
        if let Some(array) = doc.get_mut(key).and_then(Item::as_array_mut) {
            // Keep the key where it is, with its comments; swap the values.
            let decor = array.decor().clone();
            *array = wanted.iter().map(String::as_str).collect::<Array>();
            *array.decor_mut() = decor;
            return Ok(true);
        }
    }
    doc.insert(
        key,
        value(wanted.iter().map(String::as_str).collect::<Array>()),
    );
    Ok(true)
}

fn new_entry(ns: &Namespace, mirror: &str) -> Table {
    let mut table = Table::new();
    table.insert("prefix", value(ns.registry.as_str()));
    table.insert("location", value(ns.upstream.as_str()));
    let mut mirrors = ArrayOfTables::new();
    mirrors.push(mirror_table(mirror));
    mirrors.push(mirror_table(&ns.upstream));
    table.insert("mirror", Item::ArrayOfTables(mirrors));
    table
}

fn mirror_table(location: &str) -> Table {
    let mut table = Table::new();
    table.insert("location", value(location));
    table
}

/// Make an existing `[[registry]]` use `mirror` first and upstream after;
/// whether it changed.
fn fix_entry(table: &mut Table, ns: &Namespace, mirror: &str) -> Result<bool, RegistriesConfError> {
    let mut modified = false;
    if !table.contains_key("location") {
        table.insert("location", value(ns.upstream.as_str()));
        modified = true;
    }
    let mirrors = match table
        .entry("mirror")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
    {
        Item::ArrayOfTables(aot) => aot,
        _ => {
            return Err(RegistriesConfError::Shape(format!(
                "the [[registry]] for {:?} has a \"mirror\" that is not an array of tables ([[registry.mirror]])",
                ns.registry
            )))
        }
    };
    let locations: Vec<Option<&str>> = mirrors.iter().map(|m| str_key(m, "location")).collect();
    let first_is_ours = locations.first() == Some(&Some(mirror));
    let ours_elsewhere = locations.iter().skip(1).any(|l| *l == Some(mirror));
    let has_upstream = locations.contains(&Some(ns.upstream.as_str()));
    let stale = |l: Option<&str>| l.is_some_and(|l| is_stale_alias(l, mirror));
    let has_stale = locations.iter().any(|l| stale(*l));
    if first_is_ours && !ours_elsewhere && has_upstream && !has_stale {
        return Ok(modified);
    }
    let old: Vec<Table> = mirrors.iter().cloned().collect();
    let ours = old
        .iter()
        .find(|m| str_key(m, "location") == Some(mirror))
        .cloned()
        .unwrap_or_else(|| mirror_table(mirror));
    mirrors.clear();
    mirrors.push(ours);
    for m in old.into_iter().filter(|m| {
        let location = str_key(m, "location");
        location != Some(mirror) && !stale(location)
    }) {
        mirrors.push(m);
    }
    if !has_upstream {
        mirrors.push(mirror_table(&ns.upstream));
    }
    Ok(true)
}

fn str_key<'t>(table: &'t Table, key: &str) -> Option<&'t str> {
    table.get(key).and_then(Item::as_str)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "zuul-jobs.buildset-registry:5000";

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

    fn unq() -> Vec<String> {
        vec!["docker.io".into()]
    }

    #[test]
    fn writes_a_new_file() {
        let text = with_buildset_mirrors(None, B, &namespaces(), &unq()).unwrap();
        assert_eq!(
            text,
            r#"unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"

[[registry.mirror]]
location = "zuul-jobs.buildset-registry:5000"

[[registry.mirror]]
location = "registry-1.docker.io"

[[registry]]
prefix = "quay.io"
location = "quay.io"

[[registry.mirror]]
location = "zuul-jobs.buildset-registry:5000/quay.io"

[[registry.mirror]]
location = "quay.io"
"#
        );
        assert_eq!(
            with_buildset_mirrors(Some(&text), B, &namespaces(), &unq()).unwrap(),
            text
        );
    }

    #[test]
    fn keeps_comments_and_other_registries() {
        let old = r#"# Site settings, keep me.
unqualified-search-registries = ["quay.io"] # why

[[registry]]
# our internal mirror
prefix = "example.org"
location = "example.org"

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.example.org"
"#;
        let text = with_buildset_mirrors(Some(old), B, &namespaces(), &unq()).unwrap();
        assert!(text.starts_with("# Site settings, keep me.\n"), "{text}");
        assert!(
            text.contains("unqualified-search-registries = [\"docker.io\"] # why"),
            "{text}"
        );
        assert!(
            text.contains("# our internal mirror\nprefix = \"example.org\""),
            "{text}"
        );
        let doc: DocumentMut = text.parse().unwrap();
        let regs = doc["registry"].as_array_of_tables().unwrap();
        assert_eq!(regs.len(), 3);
        let docker = regs.get(1).unwrap();
        assert_eq!(str_key(docker, "location"), Some("docker.io"));
        let mirrors: Vec<_> = docker["mirror"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|m| str_key(m, "location").unwrap().to_string())
            .collect();
        assert_eq!(mirrors, [B, "mirror.example.org", "registry-1.docker.io"]);
        assert_eq!(
            with_buildset_mirrors(Some(&text), B, &namespaces(), &unq()).unwrap(),
            text
        );
    }

    #[test]
    fn a_comments_only_file_keeps_them_on_top() {
        let old =
            "# Shipped by the distribution.\n# unqualified-search-registries = [\"example.com\"]\n";
        let text = with_buildset_mirrors(Some(old), B, &namespaces(), &unq()).unwrap();
        assert!(
            text.starts_with("# Shipped by the distribution.\n# unqualified-search-registries = [\"example.com\"]\n\nunqualified-search-registries = [\"docker.io\"]\n"),
            "{text}"
        );
        assert_eq!(
            with_buildset_mirrors(Some(&text), B, &namespaces(), &unq()).unwrap(),
            text
        );
    }

    #[test]
    fn replaces_the_mirror_of_an_earlier_buildset_registry() {
        let old = with_buildset_mirrors(
            None,
            "zuul-jobs.buildset-registry:4000",
            &namespaces(),
            &unq(),
        )
        .unwrap();
        let text = with_buildset_mirrors(Some(&old), B, &namespaces(), &unq()).unwrap();
        assert!(!text.contains(":4000"), "{text}");
        assert_eq!(
            text,
            with_buildset_mirrors(None, B, &namespaces(), &unq()).unwrap()
        );
    }

    #[test]
    fn refuses_v1_and_bad_toml() {
        let v1 = "[registries.search]\nregistries = ['docker.io']\n";
        assert_eq!(
            with_buildset_mirrors(Some(v1), B, &namespaces(), &unq()).unwrap_err(),
            RegistriesConfError::V1
        );
        let err =
            with_buildset_mirrors(Some("[[registry]\n"), B, &namespaces(), &unq()).unwrap_err();
        assert!(matches!(err, RegistriesConfError::Syntax(_)), "{err}");
        let err =
            with_buildset_mirrors(Some("registry = 1\n"), B, &namespaces(), &unq()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"registry\" is not an array of tables ([[registry]])"
        );
    }
}
