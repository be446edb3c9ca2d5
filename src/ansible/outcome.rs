//! A module's result, and its rendering as the one JSON object Ansible reads.

use serde::Serialize;
use serde_json::{Map, Value};

/// The before/after of one file, as Ansible's `--diff` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// Header of the old side, usually the path.
    pub before_header: String,
    /// Header of the new side.
    pub after_header: String,
    /// Old content (empty for a new file).
    pub before: String,
    /// New content (empty for a removed file).
    pub after: String,
}

impl FileDiff {
    /// A diff of `path` from `before` to `after`.
    pub fn new(
        path: impl Into<String>,
        before: impl Into<String>,
        after: impl Into<String>,
    ) -> Self {
        let path = path.into();
        FileDiff {
            before_header: path.clone(),
            after_header: path,
            before: before.into(),
            after: after.into(),
        }
    }
}

/// What a module reports when it succeeds.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Whether the host was (or in check mode, would be) changed.
    pub changed: bool,
    /// A human summary.
    pub msg: Option<String>,
    /// Per-file diffs, returned when `--diff` is on.
    pub diffs: Vec<FileDiff>,
    /// Return values.
    pub values: Map<String, Value>,
    /// Return values that are secret by contract (a generated password the
    /// caller must receive). They are added after masking; the role that
    /// calls the module marks the task `no_log`.
    pub secret_values: Map<String, Value>,
}

impl Outcome {
    /// An outcome with `changed` set.
    pub fn new(changed: bool) -> Self {
        Outcome {
            changed,
            ..Default::default()
        }
    }

    /// Set the message.
    pub fn msg(mut self, msg: impl Into<String>) -> Self {
        self.msg = Some(msg.into());
        self
    }

    /// Add a return value.
    pub fn value(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.values.insert(key.to_string(), value);
        self
    }

    /// Add a return value that carries a secret by contract.
    pub fn secret_value(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.secret_values.insert(key.to_string(), value);
        self
    }

    /// Add file diffs.
    pub fn diffs(mut self, diffs: impl IntoIterator<Item = FileDiff>) -> Self {
        self.diffs.extend(diffs);
        self
    }
}
