//! Reading a module invocation: the args file, Ansible's internal keys, and
//! typed arguments whose errors name the offending field.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::mask::Secrets;

/// What Ansible tells a module about the run, from the `_ansible_*` keys.
///
/// `_ansible_no_log` is read and deliberately dropped. For a Python module
/// it means "do not log the arguments" (to syslog or the journal) and "do
/// not echo them back" (as `invocation`). Our modules do neither for any
/// task: they log nothing on the node, return no `invocation`, start
/// processes with no secret on their command line (the buildset registry
/// reads its 0600 config file), and mask every secret-named argument in
/// every result whether or not `no_log` is set. Censoring a `no_log` task's
/// result on the controller is Ansible's own job, and it does it for binary
/// modules too.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `--check`: report what would change, change nothing.
    pub check_mode: bool,
    /// `--diff`: return before/after of what changed.
    pub diff: bool,
    /// `-v` count.
    pub verbosity: u64,
    /// The module's FQCN (`speculative.images.run_buildset_registry`).
    pub module_name: String,
    /// A temporary directory Ansible removes after the task, if given.
    pub tmpdir: Option<PathBuf>,
    /// Warnings to return to the user.
    pub warnings: Vec<String>,
    /// Values never to print.
    pub secrets: Secrets,
}

impl Context {
    /// Record a warning, shown by Ansible after the task.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// The module name without its collection prefix.
    pub fn short_name(&self) -> &str {
        self.module_name
            .rsplit('.')
            .next()
            .unwrap_or(&self.module_name)
    }
}

/// One parsed invocation: the context and the user's arguments.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Internal keys, interpreted.
    pub context: Context,
    /// The task's own arguments, internal keys removed.
    pub args: Map<String, Value>,
}

impl Invocation {
    /// Read the args file Ansible passes as `argv[1]`.
    pub fn from_file(path: &Path) -> anyhow::Result<Invocation> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading module arguments from {}", path.display()))?;
        Invocation::from_json(&text)
            .with_context(|| format!("parsing module arguments in {}", path.display()))
    }

    /// Read and parse the arguments from standard input.
    pub fn from_stdin() -> anyhow::Result<Invocation> {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading module arguments from stdin")?;
        Invocation::from_json(&text).context("parsing module arguments from stdin")
    }

    /// Parse the JSON text of an args file.
    pub fn from_json(text: &str) -> anyhow::Result<Invocation> {
        let value: Value =
            serde_json::from_str(text).context("the arguments are not valid JSON")?;
        let Value::Object(all) = value else {
            anyhow::bail!("the arguments are not a JSON object");
        };
        let mut context = Context::default();
        let mut args = Map::new();
        for (key, value) in all {
            match key.as_str() {
                "_ansible_check_mode" => context.check_mode = truthy(&value),
                "_ansible_diff" => context.diff = truthy(&value),
                "_ansible_verbosity" => context.verbosity = value.as_u64().unwrap_or(0),
                "_ansible_module_name" => {
                    context.module_name = value.as_str().unwrap_or_default().to_string()
                }
                "_ansible_tmpdir" => context.tmpdir = value.as_str().map(PathBuf::from),
                k if k.starts_with("_ansible_") => {}
                _ => {
                    args.insert(key, value);
                }
            }
        }
        context.secrets.collect_from_args(&args);
        Ok(Invocation { context, args })
    }

    /// Deserialize the arguments into the module's typed struct. Errors name
    /// the field: `argument port: invalid type: string "x", expected u16`.
    pub fn typed_args<A: DeserializeOwned>(&self) -> anyhow::Result<A> {
        parse_args(Value::Object(self.args.clone()))
    }
}

/// Deserialize `value` into `A`, naming the field at fault on error.
pub fn parse_args<A: DeserializeOwned>(value: Value) -> anyhow::Result<A> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            anyhow::anyhow!("invalid arguments: {}", e.inner())
        } else {
            anyhow::anyhow!("argument {path}: {}", e.inner())
        }
    })
}

/// Ansible passes booleans, but older versions and some callers send
/// strings.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on"),
        Value::Number(n) => n.as_u64() == Some(1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        #[serde(default = "default_port")]
        port: u16,
        #[allow(dead_code)]
        name: String,
    }

    fn default_port() -> u16 {
        5000
    }

    #[test]
    fn splits_internal_keys() {
        let inv = Invocation::from_json(
            r#"{"name":"x","_ansible_check_mode":true,"_ansible_diff":true,
                "_ansible_module_name":"speculative.images.run_buildset_registry",
                "_ansible_no_log":true,"_ansible_remote_tmp":"~/.ansible/tmp"}"#,
        )
        .unwrap();
        assert!(inv.context.check_mode);
        assert!(inv.context.diff);
        assert_eq!(inv.context.short_name(), "run_buildset_registry");
        assert_eq!(inv.args.len(), 1);
        let args: Args = inv.typed_args().unwrap();
        assert_eq!(args.port, 5000);
    }

    #[test]
    fn errors_name_the_field() {
        let inv = Invocation::from_json(r#"{"name":"x","port":"many"}"#).unwrap();
        let err = inv.typed_args::<Args>().unwrap_err().to_string();
        assert!(
            err.starts_with("argument port: invalid type: string \"many\""),
            "{err}"
        );

        let inv = Invocation::from_json(r#"{"name":"x","colour":"red"}"#).unwrap();
        let err = inv.typed_args::<Args>().unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");

        let inv = Invocation::from_json(r#"{}"#).unwrap();
        let err = inv.typed_args::<Args>().unwrap_err().to_string();
        assert!(err.contains("missing field `name`"), "{err}");
    }
}
