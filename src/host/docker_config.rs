//! Registry credentials in the docker CLI's `~/.docker/config.json`, and
//! in containers' `auth.json` (same `auths` shape): the buildset registry's
//! entry set, every other key and entry kept in its order.

use base64::Engine as _;
use indexmap::IndexMap;
use serde_json::{json, Value};

/// Why a credentials file cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerConfigError {
    /// The file does not parse.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// Valid JSON but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// `auths` is there but not an object.
    #[error("\"auths\" is not an object")]
    Auths,
}

/// The `auth` value of an entry: base64 of `user:password` (a secret).
pub fn auth_token(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

/// The file with `auths[registry] = {"auth": token}`; `old` itself when the
/// entry already holds that token.
pub fn with_auth(
    old: Option<&str>,
    registry: &str,
    token: &str,
) -> Result<String, DockerConfigError> {
    let mut doc: IndexMap<String, Value> = match old {
        Some(text) if !text.trim().is_empty() => {
            serde_json::from_str(text).map_err(|e| match serde_json::from_str::<Value>(text) {
                Ok(_) => DockerConfigError::NotObject,
                Err(_) => DockerConfigError::Syntax(e.to_string()),
            })?
        }
        _ => IndexMap::new(),
    };
    let mut auths: IndexMap<String, Value> = match doc.get("auths") {
        None | Some(Value::Null) => IndexMap::new(),
        Some(v @ Value::Object(_)) => {
            serde_json::from_value(v.clone()).map_err(|_| DockerConfigError::Auths)?
        }
        Some(_) => return Err(DockerConfigError::Auths),
    };
    let current = auths.get(registry).and_then(|e| e.get("auth"));
    if current.and_then(Value::as_str) == Some(token) {
        if let Some(old) = old {
            return Ok(old.to_string());
        }
    }
    auths.insert(registry.to_string(), json!({ "auth": token }));
    doc.insert(
        "auths".into(),
        serde_json::to_value(auths).expect("a JSON map serializes"),
    );
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON map serializes");
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_base64_of_user_and_password() {
        assert_eq!(auth_token("zuul", "pw"), "enV1bDpwdw==");
    }

    #[test]
    fn adds_the_entry_and_keeps_others() {
        let old =
            r#"{"auths": {"other.example:443": {"auth": "b3RoZXI6eA=="}}, "credHelpers": {}}"#;
        let text = with_auth(Some(old), "zuul-jobs.buildset-registry:5000", "dG9rZW4=").unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["auths"]["other.example:443"]["auth"], "b3RoZXI6eA==");
        assert_eq!(
            doc["auths"]["zuul-jobs.buildset-registry:5000"]["auth"],
            "dG9rZW4="
        );
        assert_eq!(doc["credHelpers"], json!({}));
        assert_eq!(
            with_auth(Some(&text), "zuul-jobs.buildset-registry:5000", "dG9rZW4=").unwrap(),
            text
        );
        let changed = with_auth(Some(&text), "zuul-jobs.buildset-registry:5000", "bmV3").unwrap();
        assert!(changed.contains("bmV3") && !changed.contains("dG9rZW4="));
    }

    #[test]
    fn creates_and_refuses() {
        assert_eq!(
            with_auth(None, "r:1", "dA==").unwrap(),
            "{\n  \"auths\": {\n    \"r:1\": {\n      \"auth\": \"dA==\"\n    }\n  }\n}\n"
        );
        assert_eq!(
            with_auth(Some("{\"auths\": []}"), "r:1", "dA==").unwrap_err(),
            DockerConfigError::Auths
        );
        assert!(matches!(
            with_auth(Some("{"), "r:1", "dA==").unwrap_err(),
            DockerConfigError::Syntax(_)
        ));
    }
}
