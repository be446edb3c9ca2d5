//! Masking of secrets in everything a module prints.
//!
//! ansible-core does not mask anything for binary modules, so the module
//! itself replaces every known secret value in its output. Secrets are the
//! values of arguments whose names say they are secret, plus any value a
//! module registers (a generated password). The list is also kept in a
//! process-wide copy so a panic message can be masked.

use std::sync::Mutex;

use serde_json::{Map, Value};

/// What replaces a secret in output.
pub const MASK: &str = "********";

/// Secrets shorter than this are masked only where they stand alone (a
/// whole word), not inside other words: masking every `p` of a one-letter
/// password would make every message unreadable and tell its letter.
const SHORTEST_MASKED_INSIDE_WORDS: usize = 4;

/// Process-wide copy of the secrets, for the panic path.
static GLOBAL: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Argument names whose values are secret, matched as substrings of the
/// lower-cased key.
const SECRET_KEY_PARTS: [&str; 5] = ["password", "passwd", "token", "secret", "private_key"];

/// A set of values never to print.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// Register a secret value (empty values are ignored).
    pub fn add(&mut self, value: impl Into<String>) {
        let value = value.into();
        if value.is_empty() || self.values.contains(&value) {
            return;
        }
        if let Ok(mut global) = GLOBAL.lock() {
            global.push(value.clone());
        }
        self.values.push(value);
        // Longest first, so a secret containing another is masked whole.
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Register every string under a key that names a secret, at any depth.
    pub fn collect_from_args(&mut self, args: &Map<String, Value>) {
        for (key, value) in args {
            let lower = key.to_ascii_lowercase();
            if SECRET_KEY_PARTS.iter().any(|part| lower.contains(part)) {
                self.add_all_strings(value);
            } else {
                match value {
                    Value::Object(map) => self.collect_from_args(map),
                    Value::Array(items) => {
                        for item in items {
                            if let Value::Object(map) = item {
                                self.collect_from_args(map);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn add_all_strings(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.add(s.clone()),
            Value::Number(n) => self.add(n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| self.add_all_strings(v)),
            Value::Object(map) => map.values().for_each(|v| self.add_all_strings(v)),
            _ => {}
        }
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask_str(&self, text: &str) -> String {
        mask_with(&self.values, text)
    }

    /// Mask every string (keys included) in a JSON value, in place.
    pub fn mask_value(&self, value: &mut Value) {
        match value {
            Value::String(s) if self.values.iter().any(|secret| s.contains(secret.as_str())) => {
                *s = self.mask_str(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (k, mut v) in old {
                    self.mask_value(&mut v);
                    map.insert(self.mask_str(&k), v);
                }
            }
            _ => {}
        }
    }
}

/// Mask `text` with the process-wide secret list (for panic messages).
pub fn mask_global(text: &str) -> String {
    match GLOBAL.lock() {
        Ok(global) => {
            let mut values = global.clone();
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
            mask_with(&values, text)
        }
        Err(_) => text.to_string(),
    }
}

fn mask_with(values: &[String], text: &str) -> String {
    values.iter().fold(text.to_string(), |acc, secret| {
        if secret.chars().count() >= SHORTEST_MASKED_INSIDE_WORDS {
            acc.replace(secret.as_str(), MASK)
        } else {
            mask_whole_words(&acc, secret)
        }
    })
}

/// `text` with each occurrence of `secret` that no letter, digit or `_`
/// touches on either side replaced by [`MASK`].
fn mask_whole_words(text: &str, secret: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(secret) {
        let (head, tail) = rest.split_at(at);
        let after = tail[secret.len()..].chars().next();
        let prev = head.chars().next_back().or(before);
        out.push_str(head);
        if prev.is_some_and(is_word) || after.is_some_and(is_word) {
            // Inside a word: keep its first character, look on after it.
            let first = tail.chars().next().expect("the match is not empty");
            out.push(first);
            before = Some(first);
            rest = &tail[first.len_utf8()..];
        } else {
            out.push_str(MASK);
            before = secret.chars().next_back();
            rest = &tail[secret.len()..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_secrets_by_key_at_any_depth() {
        let args = json!({
            "intermediate_registry": {"host": "h", "password": "hunter22"},
            "docker_credentials": {"username": "u", "password": "s3cret!"},
            "list": [{"api_token": "tok123"}],
            "port": 5000
        });
        let mut s = Secrets::default();
        s.collect_from_args(args.as_object().unwrap());
        assert_eq!(
            s.mask_str("login hunter22 with s3cret! and tok123 on h:5000"),
            "login ******** with ******** and ******** on h:5000"
        );
    }

    #[test]
    fn masks_json_values_and_keys() {
        let mut s = Secrets::default();
        s.add("pw-value");
        let mut v = json!({"msg": "failed with pw-value", "auths": {"pw-value": 1}, "n": 3});
        s.mask_value(&mut v);
        assert_eq!(
            v,
            json!({"msg": "failed with ********", "auths": {"********": 1}, "n": 3})
        );
    }

    #[test]
    fn a_short_secret_is_masked_where_it_stands_alone_only() {
        let mut s = Secrets::default();
        s.add("p");
        assert_eq!(
            s.mask_str("upload_docker_image: login as zuul:p failed (password p)"),
            "upload_docker_image: login as zuul:******** failed (password ********)"
        );
        let mut v = json!({"password": "p", "msg": "pushed app"});
        s.mask_value(&mut v);
        assert_eq!(v, json!({"password": "********", "msg": "pushed app"}));
        s.add("ab1");
        assert_eq!(s.mask_str("ab1ab1 ab1"), "ab1ab1 ********");
    }

    #[test]
    fn longest_secret_wins() {
        let mut s = Secrets::default();
        s.add("abc");
        s.add("abcdef");
        assert_eq!(s.mask_str("xabcdefx"), "x********x");
    }
}
