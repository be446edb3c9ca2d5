//! `/etc/docker/daemon.json`: the buildset registry first in
//! `registry-mirrors`, every other key and mirror kept in its order.

use indexmap::IndexMap;
use serde_json::Value;

use super::is_stale_alias;

/// Why daemon.json cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaemonJsonError {
    /// The file does not parse.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// `registry-mirrors` is there but not a list of strings.
    #[error("\"registry-mirrors\" is not a list of strings")]
    Mirrors,
}

/// The `registry-mirrors` entry for a registry: docker wants an https URL
/// without a path and shows it with a trailing slash.
pub fn mirror_url(authority: &str) -> String {
    format!("https://{authority}/")
}

/// daemon.json with `mirror` first in `registry-mirrors`; `old` itself when
/// it is already first.
pub fn with_first_mirror(old: Option<&str>, mirror: &str) -> Result<String, DaemonJsonError> {
    let mut doc: IndexMap<String, Value> = match old {
        Some(text) if !text.trim().is_empty() => {
            serde_json::from_str(text).map_err(|e| match serde_json::from_str::<Value>(text) {
                Ok(_) => DaemonJsonError::NotObject,
                Err(_) => DaemonJsonError::Syntax(e.to_string()),
            })?
        }
        _ => IndexMap::new(),
    };
    let current = mirrors(&doc)?;
    let stale = current.iter().any(|m| is_stale_alias(m, mirror));
    if current.first().map(|m| same_url(m, mirror)) == Some(true) && !stale {
        if let Some(old) = old {
            return Ok(old.to_string());
        }
    }
    let mut list = vec![Value::String(mirror.to_string())];
    list.extend(
        current
            .into_iter()
            .filter(|m| !same_url(m, mirror) && !is_stale_alias(m, mirror))
            .map(Value::String),
    );
    doc.insert("registry-mirrors".into(), Value::Array(list));
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON map serializes");
    text.push('\n');
    Ok(text)
}

/// The mirrors a daemon.json lists.
pub fn mirrors(doc: &IndexMap<String, Value>) -> Result<Vec<String>, DaemonJsonError> {
    match doc.get("registry-mirrors") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or(DaemonJsonError::Mirrors)
            })
            .collect(),
        Some(_) => Err(DaemonJsonError::Mirrors),
    }
}

/// Mirror URLs compare without their trailing slash, as docker does.
pub fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "https://zuul-jobs.buildset-registry:5000/";

    #[test]
    fn creates_the_file() {
        let text = with_first_mirror(None, M).unwrap();
        assert_eq!(
            text,
            "{\n  \"registry-mirrors\": [\n    \"https://zuul-jobs.buildset-registry:5000/\"\n  ]\n}\n"
        );
        assert_eq!(with_first_mirror(Some(&text), M).unwrap(), text);
    }

    #[test]
    fn keeps_other_keys_in_order_and_other_mirrors_after() {
        let old = r#"{"storage-driver": "overlay2", "registry-mirrors": ["https://m.example/", "https://zuul-jobs.buildset-registry:5000"], "debug": true}"#;
        let text = with_first_mirror(Some(old), M).unwrap();
        let doc: IndexMap<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc.keys().collect::<Vec<_>>(),
            ["storage-driver", "registry-mirrors", "debug"]
        );
        assert_eq!(
            mirrors(&doc).unwrap(),
            [M.to_string(), "https://m.example/".to_string()]
        );
        assert_eq!(with_first_mirror(Some(&text), M).unwrap(), text);
    }

    #[test]
    fn drops_the_mirror_of_an_earlier_buildset_registry() {
        let old = r#"{"registry-mirrors": ["https://zuul-jobs.buildset-registry:4000/", "https://m.example/"]}"#;
        let text = with_first_mirror(Some(old), M).unwrap();
        let doc: IndexMap<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            mirrors(&doc).unwrap(),
            [M.to_string(), "https://m.example/".to_string()]
        );
    }

    #[test]
    fn unchanged_text_is_returned_as_is() {
        let old = "{ \"registry-mirrors\" : [ \"https://zuul-jobs.buildset-registry:5000\" ] }";
        assert_eq!(with_first_mirror(Some(old), M).unwrap(), old);
    }

    #[test]
    fn refuses_what_it_cannot_edit() {
        assert_eq!(
            with_first_mirror(Some("{\"debug\": true,"), M).unwrap_err(),
            DaemonJsonError::Syntax("EOF while parsing a value at line 1 column 15".into())
        );
        assert_eq!(
            with_first_mirror(Some("[1]"), M).unwrap_err(),
            DaemonJsonError::NotObject
        );
        assert_eq!(
            with_first_mirror(Some("{\"registry-mirrors\": \"x\"}"), M).unwrap_err(),
            DaemonJsonError::Mirrors
        );
    }
}
