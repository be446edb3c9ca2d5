//! The executor's result data file (`zuul.executor.result_data_file`):
//! `{"data": {...}, "secret_data": {...}}`, written by `zuul_return`. Jobs
//! that run after `run_buildset_registry` in the same job find the registry
//! there when it was not passed as a variable.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use super::types::{BuildsetRegistry, ZuulContext};

/// The buildset registry a task talks to: the one it was given, or the one
/// an earlier task of this job (`run_buildset_registry`) left in the result
/// data file; `None` when neither holds one.
pub fn find_buildset_registry(
    given: Option<&BuildsetRegistry>,
    zuul: &ZuulContext,
) -> anyhow::Result<Option<BuildsetRegistry>> {
    if let Some(registry) = given {
        return Ok(Some(registry.clone()));
    }
    match zuul.result_data_file() {
        Some(path) => buildset_registry_from(Path::new(path)),
        None => Ok(None),
    }
}

/// As [`find_buildset_registry`], for a task that cannot go without one:
/// the error says where it looked and how to give one.
pub fn require_buildset_registry(
    given: Option<&BuildsetRegistry>,
    zuul: &ZuulContext,
) -> anyhow::Result<BuildsetRegistry> {
    if let Some(found) = find_buildset_registry(given, zuul)? {
        return Ok(found);
    }
    match zuul.result_data_file() {
        None => anyhow::bail!(
            "buildset_registry is not given and zuul.executor.result_data_file is unknown: \
             pass buildset_registry or run run_buildset_registry first"
        ),
        Some(path) => anyhow::bail!(
            "buildset_registry is not given and the result data file {path} holds none: \
             pass buildset_registry or run run_buildset_registry first"
        ),
    }
}

/// Read the `buildset_registry` that an earlier task returned as
/// `secret_data` (or `data`), if the file exists and holds one.
pub fn buildset_registry_from(path: &Path) -> anyhow::Result<Option<BuildsetRegistry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    for section in ["secret_data", "data"] {
        if let Some(found) = doc.get(section).and_then(|s| s.get("buildset_registry")) {
            let registry = serde_json::from_value(found.clone()).with_context(|| {
                format!(
                    "{section}.buildset_registry in {} is malformed",
                    path.display()
                )
            })?;
            return Ok(Some(registry));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_secret_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        assert_eq!(buildset_registry_from(&path).unwrap(), None);
        std::fs::write(
            &path,
            r#"{"data":{},"secret_data":{"buildset_registry":
                {"host":"::1","port":5000,"username":"zuul","password":"p","cert":"PEM"}}}"#,
        )
        .unwrap();
        let reg = buildset_registry_from(&path).unwrap().unwrap();
        assert_eq!(reg.authority(), "[::1]:5000");
    }
}
