//! Running a module the way Ansible runs a binary module: one args file
//! holding the task's arguments and Ansible's internal keys
//! (`_ansible_module_name` the FQCN, `_ansible_check_mode`,
//! `_ansible_diff`, ...), the binary given its path, one JSON object on
//! stdout. Every test that drives a module goes through [`ModuleRun`].

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// One run of a module, set up field by field.
pub struct ModuleRun {
    name: String,
    args: Value,
    env: Vec<(String, PathBuf)>,
}

/// What a module run printed.
pub struct ModuleOutput {
    /// The JSON object on stdout.
    pub result: Value,
    /// stdout and stderr, as text.
    pub printed: String,
    /// Whether the process exited with 0.
    pub success: bool,
}

impl ModuleRun {
    /// Module `name` (without the collection prefix) with `args`, plus
    /// Ansible's internal keys: not in check mode, without diff.
    pub fn new(name: &str, args: Value) -> ModuleRun {
        let mut run = ModuleRun {
            name: name.to_string(),
            args,
            env: Vec::new(),
        };
        let object = run.args.as_object_mut().expect("module args are an object");
        object.insert(
            "_ansible_module_name".into(),
            json!(format!("speculative.images.{name}")),
        );
        for (key, value) in [
            ("_ansible_check_mode", json!(false)),
            ("_ansible_diff", json!(false)),
            ("_ansible_no_log", json!(false)),
        ] {
            object.entry(key).or_insert(value);
        }
        run
    }

    /// Ansible's internal key `key` set to `value` (`check_mode`, `diff`,
    /// `tmpdir`, ...: without the `_ansible_` prefix).
    pub fn ansible(mut self, key: &str, value: Value) -> ModuleRun {
        self.args[format!("_ansible_{key}")] = value;
        self
    }

    /// An environment variable of the module process.
    pub fn env(mut self, name: &str, value: impl AsRef<Path>) -> ModuleRun {
        self.env
            .push((name.to_string(), value.as_ref().to_path_buf()));
        self
    }

    /// Run it: the args file goes into a directory of its own, removed
    /// afterwards. Panics when stdout is not one JSON object.
    pub fn run(self) -> ModuleOutput {
        let dir = tempfile::tempdir().expect("a directory for the args file");
        let file = dir.path().join("args.json");
        std::fs::write(&file, serde_json::to_vec(&self.args).unwrap()).expect("write args");
        let mut command = Command::new(env!("CARGO_BIN_EXE_speculative-images"));
        command.arg(&file);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let out = command.output().expect("run the module binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{} printed no JSON object ({e}):\nstdout: {stdout}\nstderr: {stderr}",
                self.name
            )
        });
        ModuleOutput {
            result,
            printed: format!("{stdout}{stderr}"),
            success: out.status.success(),
        }
    }
}
