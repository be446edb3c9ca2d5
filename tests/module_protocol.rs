//! The module binary as ansible-core runs it: one argument, the path of a
//! JSON args file holding the task's arguments and the `_ansible_*` keys.
//! Whatever goes wrong before or while a module runs, stdout is exactly one
//! JSON object with `failed: true` and a message saying what to fix, and a
//! password given in the arguments appears nowhere.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::client_fixtures::{client_of, push_image, random_image, Flavor};
use crate::support::buildset::BuildsetServer;
use crate::support::distribution::Distribution;
use crate::transfer_support::registry_facts;

const BINARY: &str = env!("CARGO_BIN_EXE_speculative-images");

/// What one run of the binary printed.
struct Run {
    result: Value,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

impl Run {
    fn msg(&self) -> &str {
        self.result["msg"]
            .as_str()
            .unwrap_or_else(|| panic!("no msg in {}", self.result))
    }

    /// Assert the run failed the way Ansible understands: exit code 1 and
    /// `failed: true`, `changed: false`.
    fn assert_failed(&self) -> &Self {
        assert_eq!(self.result["failed"], json!(true), "{}", self.stdout);
        assert_eq!(self.result["changed"], json!(false), "{}", self.stdout);
        assert_eq!(self.code, Some(1), "{}", self.stdout);
        self
    }

    /// Assert `secret` is in neither stdout nor stderr.
    fn assert_hides(&self, secret: &str) -> &Self {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "{secret:?} leaked:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run the binary with `args_path` as its only argument, as Ansible does.
fn run_with(args_path: &Path) -> Run {
    run_binary(args_path.as_os_str(), &[])
}

/// Run the binary with the lone argument `arg` and `stdin` as its input.
fn run_binary(arg: &std::ffi::OsStr, stdin: &[u8]) -> Run {
    let mut child = Command::new(BINARY)
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the module binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin)
        .expect("write stdin");
    let out = child
        .wait_with_output()
        .expect("wait for the module binary");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Exactly one JSON value, and it is an object.
    let mut values = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let result = match values.next() {
        Some(Ok(value)) => value,
        other => panic!("stdout is not JSON ({other:?}):\n{stdout}\nstderr: {stderr}"),
    };
    assert!(
        values.next().is_none(),
        "more than one JSON value on stdout:\n{stdout}"
    );
    assert!(result.is_object(), "not an object: {stdout}");
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    Run {
        result,
        stdout,
        stderr,
        code: out.status.code(),
    }
}

/// `args` (a JSON object) with Ansible's internal keys for `module` added.
fn module_args(dir: &Path, module: &str, mut args: Value) -> Value {
    let obj = args.as_object_mut().expect("args are an object");
    obj.insert(
        "_ansible_module_name".into(),
        json!(format!("speculative.images.{module}")),
    );
    obj.insert("_ansible_check_mode".into(), json!(false));
    obj.insert("_ansible_diff".into(), json!(false));
    obj.insert("_ansible_no_log".into(), json!(false));
    obj.insert("_ansible_verbosity".into(), json!(0));
    obj.insert("_ansible_version".into(), json!("2.17.0"));
    obj.insert("_ansible_tmpdir".into(), json!(dir.join("tmp")));
    args
}

/// Write `args` (Ansible's internal keys added) to an args file in `dir`
/// and run module `module` on it.
fn run_module(dir: &Path, module: &str, args: Value) -> Run {
    let path = dir.join("args");
    let args = module_args(dir, module, args);
    std::fs::write(&path, serde_json::to_vec(&args).unwrap()).unwrap();
    run_with(&path)
}

#[test]
fn arguments_on_stdin_work_as_an_args_file_does() {
    // What the collection's action plugin sends: `-` and the JSON on stdin.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let mut args = module_args(dir.path(), "run_buildset_registry", json!({"root": root}));
    args["_ansible_check_mode"] = json!(true);
    let run = run_binary("-".as_ref(), &serde_json::to_vec(&args).unwrap());
    assert_eq!(run.result["failed"], json!(false), "{}", run.stdout);
    assert_eq!(run.result["changed"], json!(true), "{}", run.stdout);
    assert_eq!(run.code, Some(0));
    assert!(!root.exists(), "check mode created nothing");

    let run = run_binary("-".as_ref(), b"{\"root\": ");
    run.assert_failed();
    assert!(
        run.msg()
            .starts_with("parsing module arguments from stdin: the arguments are not valid JSON"),
        "{}",
        run.msg()
    );
}

#[test]
fn a_missing_args_file_is_a_json_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("args");
    let run = run_with(&missing);
    run.assert_failed();
    assert!(
        run.msg().starts_with(&format!(
            "reading module arguments from {}",
            missing.display()
        )),
        "{}",
        run.msg()
    );
    assert!(run.msg().contains("No such file"), "{}", run.msg());
    assert_eq!(run.stderr, "", "no usage text");
}

#[test]
fn an_args_file_that_is_not_a_json_object_is_a_json_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("args");
    for (content, says) in [
        (
            "port=5000 state=present",
            "the arguments are not valid JSON",
        ),
        ("{\"port\": 5000", "the arguments are not valid JSON"),
        ("", "the arguments are not valid JSON"),
        ("[\"port\", 5000]", "the arguments are not a JSON object"),
    ] {
        std::fs::write(&path, content).unwrap();
        let run = run_with(&path);
        run.assert_failed();
        let expected = format!("parsing module arguments in {}: {says}", path.display());
        assert!(
            run.msg().starts_with(&expected),
            "{content:?}: {}",
            run.msg()
        );
        assert_eq!(run.stderr, "", "{content:?}");
    }
}

#[test]
fn an_unknown_module_name_lists_the_modules() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_module(dir.path(), "run_buildset_registy", json!({}));
    run.assert_failed();
    let msg = run.msg();
    assert!(
        msg.starts_with("unknown module \"run_buildset_registy\": this binary provides "),
        "{msg}"
    );
    for module in [
        "run_buildset_registry",
        "use_buildset_registry",
        "pull_from_intermediate_registry",
        "push_to_intermediate_registry",
    ] {
        assert!(msg.contains(module), "{module} missing from {msg}");
    }
    // Nothing was started or written: the module never ran.
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the args file"
    );
}

#[test]
fn an_unknown_argument_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let run = run_module(
        dir.path(),
        "run_buildset_registry",
        json!({"root": root, "prot": 5000}),
    );
    run.assert_failed();
    assert!(
        run.msg()
            .starts_with("argument prot: unknown field `prot`, expected one of `root`, `port`"),
        "{}",
        run.msg()
    );
    assert!(!root.exists(), "nothing was created");

    // Nested: a key inside a dict argument is named with its path.
    let run = run_module(
        dir.path(),
        "pull_from_intermediate_registry",
        json!({"intermediate_registry": {"host": "h", "port": 5000, "username": "u", "password": "p", "colour": "red"}}),
    );
    run.assert_failed();
    assert!(
        run.msg()
            .starts_with("argument intermediate_registry.colour: unknown field `colour`"),
        "{}",
        run.msg()
    );
}

#[test]
fn a_missing_required_argument_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_module(dir.path(), "pull_from_intermediate_registry", json!({}));
    run.assert_failed();
    assert_eq!(
        run.msg(),
        "invalid arguments: missing field `intermediate_registry`"
    );

    let run = run_module(
        dir.path(),
        "push_to_intermediate_registry",
        json!({"intermediate_registry": {"host": "h", "port": 5000, "username": "u", "password": "p"}}),
    );
    run.assert_failed();
    assert_eq!(run.msg(), "invalid arguments: missing field `zuul`");

    // Nested: the dict is named.
    let run = run_module(
        dir.path(),
        "pull_from_intermediate_registry",
        json!({"intermediate_registry": {"port": 5000, "username": "u", "password": "p"}}),
    );
    run.assert_failed();
    assert!(
        run.msg()
            .starts_with("argument intermediate_registry: missing field `host`"),
        "{}",
        run.msg()
    );
}

#[test]
fn a_password_in_the_arguments_never_appears_in_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}", crate::support::random_password());
    let other = format!("bs-{}", crate::support::random_password());
    let auth = |user: &str, pw: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    };
    let intermediate =
        json!({"host": "127.0.0.1", "port": 5000, "username": "zuul", "password": password});
    let buildset = json!({"host": "127.0.0.1", "port": 5000, "username": "zuul", "password": other, "cert": "x"});

    let mut runs = vec![
        // Unknown argument next to the password.
        run_module(
            dir.path(),
            "pull_from_intermediate_registry",
            json!({"intermediate_registry": intermediate, "buildset_registry": buildset, "colour": "red"}),
        ),
        // The password is the value a type error quotes.
        run_module(
            dir.path(),
            "pull_from_intermediate_registry",
            json!({"intermediate_registry": {"host": "h", "port": password, "username": "zuul", "password": password}}),
        ),
        // A secret in a nested list of a module that takes credentials.
        run_module(
            dir.path(),
            "upload_docker_image",
            json!({"docker_images": [{"repository": "org/img"}], "docker_credentials": {"username": "u", "password": password, "repository": 42}}),
        ),
    ];

    // Failures while working: an image in the intermediate registry
    // (Debian's, htpasswd), copied to ours; first the intermediate refuses
    // the password, then (with the right one) ours refuses the other.
    let intermediate = Distribution::start();
    let server = BuildsetServer::start();
    let image = random_image(Flavor::Oci, "amd64", &[1000]);
    tokio::runtime::Runtime::new().unwrap().block_on(push_image(
        &client_of(&intermediate),
        "org/img",
        Some("0123_latest"),
        &image,
    ));
    let artifact = json!({
        "name": "org/img:latest",
        "url": format!("docker://{}/org/img:0123_latest", intermediate.authority()),
        "metadata": {"type": "container_image", "repository": "org/img", "tag": "latest"},
    });
    let mut buildset_facts = registry_facts(&server);
    buildset_facts["password"] = json!(other);
    for intermediate_password in [password.as_str(), intermediate.password.as_str()] {
        let mut intermediate_facts = registry_facts(&intermediate);
        intermediate_facts["password"] = json!(intermediate_password);
        runs.push(run_module(
            dir.path(),
            "pull_from_intermediate_registry",
            json!({
                "intermediate_registry": intermediate_facts,
                "buildset_registry": buildset_facts,
                "zuul_artifacts": [artifact],
            }),
        ));
    }

    for run in &runs {
        run.assert_failed()
            .assert_hides(&password)
            .assert_hides(&other)
            .assert_hides(&auth("zuul", &password))
            .assert_hides(&auth("zuul", &other))
            .assert_hides(&auth("u", &password))
            .assert_hides(&auth("zuul", &intermediate.password))
            .assert_hides(&auth("zuul", &server.password));
    }
    // The failures said what was wrong, with the secret masked where a
    // message quoted it.
    assert!(
        runs[0].msg().contains("unknown field `colour`"),
        "{}",
        runs[0].msg()
    );
    assert!(
        runs[1]
            .msg()
            .starts_with("argument intermediate_registry.port: invalid type: string \"********\""),
        "{}",
        runs[1].msg()
    );
    assert!(
        runs[2].msg().contains("docker_credentials"),
        "{}",
        runs[2].msg()
    );
    for (run, refused_by) in [
        (&runs[3], &intermediate.authority()),
        (&runs[4], &server.authority()),
    ] {
        assert!(
            run.msg().contains(refused_by) && run.msg().contains("401"),
            "the registry that refused is named: {}",
            run.msg()
        );
    }
}

#[test]
fn no_log_changes_nothing_because_arguments_are_never_echoed_or_logged() {
    // A Python module logs its arguments to the journal and returns them as
    // `invocation` unless the task is `no_log`; ours does neither for any
    // task, so `_ansible_no_log` has nothing left to switch off.
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}", crate::support::random_password());
    let args = json!({
        "intermediate_registry": {"host": "127.0.0.1", "port": 1, "username": "zuul", "password": password},
        "buildset_registry": {"host": "127.0.0.1", "port": 1, "username": "zuul", "password": password, "cert": "x"},
        "zuul_artifacts": [{"name": "docs", "url": "https://logs/docs", "metadata": {"type": "docs"}}],
    });
    let mut results = Vec::new();
    for no_log in [false, true] {
        let mut args = args.clone();
        let run = {
            let obj = args.as_object_mut().unwrap();
            obj.insert("_ansible_no_log".into(), json!(no_log));
            run_module(dir.path(), "pull_from_intermediate_registry", args)
        };
        assert_eq!(run.result["failed"], json!(false), "{}", run.stdout);
        assert!(run.result.get("invocation").is_none(), "{}", run.stdout);
        run.assert_hides(&password);
        assert_eq!(run.stderr, "");
        results.push(run.result);
    }
    assert_eq!(results[0], results[1]);
}
