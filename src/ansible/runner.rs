//! Running a module: parse, act, and print exactly one masked JSON result,
//! whatever happens (an error, a panic, an unreadable args file).

use std::ffi::OsString;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::invocation::{Context, Invocation};
use super::mask;
use super::outcome::Outcome;

/// One Ansible module: typed arguments in, an [`Outcome`] out.
pub trait Module {
    /// The validated arguments (use `#[serde(deny_unknown_fields)]`).
    type Args: DeserializeOwned;
    /// Do the work. Honour `ctx.check_mode`; register generated secrets
    /// with `ctx.secrets`.
    fn run(args: Self::Args, ctx: &mut Context) -> anyhow::Result<Outcome>;
}

/// Run module `M` on an already parsed invocation and return the JSON
/// result and whether it failed.
pub fn run_module<M: Module>(invocation: Invocation) -> (Value, bool) {
    let Invocation { mut context, args } = invocation;
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let typed = super::invocation::parse_args::<M::Args>(Value::Object(args))?;
        M::run(typed, &mut context)
    }));
    let (mut out, secret_values, failed) = match result {
        Ok(Ok(outcome)) => {
            let secret_values = outcome.secret_values.clone();
            (success_json(outcome, &context), secret_values, false)
        }
        Ok(Err(err)) => (failure_json(format!("{err:#}"), &context), Map::new(), true),
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            let msg = format!("internal error in {}: {text}", context.short_name());
            (failure_json(msg, &context), Map::new(), true)
        }
    };
    context.secrets.mask_value(&mut out);
    if let Value::Object(map) = &mut out {
        map.extend(secret_values);
    }
    (out, failed)
}

/// Print a module result (the only stdout a module writes) and return the
/// process exit code.
pub fn emit(result: &Value, failed: bool) -> i32 {
    println!("{result}");
    i32::from(failed)
}

/// A failure before any module could run (unreadable args file, unknown
/// module name), masked with whatever secrets are known.
pub fn early_failure(msg: &str) -> Value {
    json!({"failed": true, "changed": false, "msg": mask::mask_global(msg)})
}

/// Silence the default panic printer: a panic message may hold a secret and
/// the result JSON is the only place it should appear, masked.
pub fn install_quiet_panic_hook() {
    panic::set_hook(Box::new(|_| {}));
}

/// The args file when the binary is called as Ansible calls a module:
/// exactly one argument that names a file, or looks like a path (so a
/// missing or unreadable args file still gets a JSON failure instead of a
/// usage message), or any single argument when the binary runs as
/// `AnsiballZ_<module>`. No subcommand of the command line is a lone
/// argument with a `/` in it. [`ARGS_ON_STDIN`] reads them from stdin.
pub fn module_args_path(args: &[OsString]) -> Option<&Path> {
    let [argv0, arg] = args else {
        return None;
    };
    let path = Path::new(arg);
    let as_ansiballz = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("AnsiballZ_"));
    let looks_like_path = arg
        .to_str()
        .is_some_and(|a| a.contains('/') || a == ARGS_ON_STDIN);
    (path.is_file() || looks_like_path || as_ansiballz).then_some(path)
}

/// The lone argument that makes the module read its arguments from stdin,
/// as the collection's action plugin sends them (no args file to write).
pub const ARGS_ON_STDIN: &str = "-";

/// Parse the args file at `path` (stdin for [`ARGS_ON_STDIN`]), or the
/// failure to print.
pub fn load_invocation(path: &Path) -> Result<Invocation, Value> {
    let invocation = if path == Path::new(ARGS_ON_STDIN) {
        Invocation::from_stdin()
    } else {
        Invocation::from_file(path)
    };
    invocation.map_err(|e| early_failure(&format!("{e:#}")))
}

fn success_json(outcome: Outcome, ctx: &Context) -> Value {
    let mut map = outcome.values;
    map.insert("changed".into(), Value::Bool(outcome.changed));
    map.insert("failed".into(), Value::Bool(false));
    if let Some(msg) = outcome.msg {
        map.insert("msg".into(), Value::String(msg));
    }
    if ctx.diff && !outcome.diffs.is_empty() {
        map.insert(
            "diff".into(),
            serde_json::to_value(&outcome.diffs).unwrap_or_default(),
        );
    }
    if !ctx.warnings.is_empty() {
        map.insert("warnings".into(), json!(ctx.warnings));
    }
    Value::Object(map)
}

fn failure_json(msg: String, ctx: &Context) -> Value {
    let mut out = json!({"failed": true, "changed": false, "msg": msg});
    if !ctx.warnings.is_empty() {
        out["warnings"] = json!(ctx.warnings);
    }
    out
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    };
    mask::mask_global(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EchoArgs {
        password: String,
        mode: String,
    }

    struct Echo;
    impl Module for Echo {
        type Args = EchoArgs;
        fn run(args: EchoArgs, ctx: &mut Context) -> anyhow::Result<Outcome> {
            match args.mode.as_str() {
                "ok" => Ok(Outcome::new(!ctx.check_mode).msg(format!("used {}", args.password))),
                "err" => anyhow::bail!("login with {} refused", args.password),
                _ => panic!("boom with {}", args.password),
            }
        }
    }

    fn run(json: &str) -> (Value, bool) {
        run_module::<Echo>(Invocation::from_json(json).unwrap())
    }

    #[test]
    fn success_is_masked() {
        let (out, failed) = run(r#"{"password":"pw-123456","mode":"ok"}"#);
        assert!(!failed);
        assert_eq!(out["msg"], "used ********");
        assert_eq!(out["changed"], true);
        let (out, _) = run(r#"{"password":"pw-123456","mode":"ok","_ansible_check_mode":true}"#);
        assert_eq!(out["changed"], false);
    }

    #[test]
    fn errors_and_panics_fail_masked() {
        let (out, failed) = run(r#"{"password":"pw-123456","mode":"err"}"#);
        assert!(failed);
        assert_eq!(out["msg"], "login with ******** refused");
        install_quiet_panic_hook();
        let (out, failed) = run(r#"{"password":"pw-123456","mode":"panic"}"#);
        assert!(failed);
        let msg = out["msg"].as_str().unwrap();
        assert!(msg.contains("boom with ********"), "{msg}");
        assert!(!out.to_string().contains("pw-123456"));
    }

    #[test]
    fn argv_is_a_module_call_when_it_names_a_path() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let path = |a: &[&str]| module_args_path(&argv(a)).map(Path::to_path_buf);
        let file = tempfile::NamedTempFile::new().unwrap();
        let file = file.path().to_str().unwrap();
        assert_eq!(path(&["speculative-images", file]), Some(file.into()));
        assert_eq!(
            path(&["speculative-images", "/no/such/args"]),
            Some("/no/such/args".into())
        );
        assert_eq!(path(&["/tmp/x/AnsiballZ_m", "args"]), Some("args".into()));
        assert_eq!(path(&["speculative-images", "-"]), Some("-".into()));
        assert_eq!(path(&["speculative-images", "--help"]), None);
        assert_eq!(path(&["speculative-images", "copy"]), None);
        assert_eq!(path(&["speculative-images", "copy", file]), None);
        assert_eq!(path(&["speculative-images"]), None);
    }

    #[test]
    fn unknown_argument_is_named() {
        let (out, failed) = run(r#"{"password":"x1","mode":"ok","colour":"red"}"#);
        assert!(failed);
        assert!(out["msg"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"));
    }
}
