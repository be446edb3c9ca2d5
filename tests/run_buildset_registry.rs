//! `run_buildset_registry` as Ansible runs it: the module binary with an
//! args file, starting the real server, read back over TLS with the
//! certificate it returned.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{free_port, wait_until};

const MODULE: &str = env!("CARGO_BIN_EXE_speculative-images");

/// The files the module writes; a no-change run must leave them alone.
const OWN_FILES: [&str; 8] = [
    "instance.json",
    "config.json",
    "password",
    "tls/ca.crt",
    "tls/server.crt",
    "tls/server.key",
    "bin/buildset-registry",
    "registry.pid",
];

/// One module run: its parsed result and its raw stdout.
struct Run {
    result: Value,
    stdout: String,
}

impl Run {
    fn changed(&self) -> bool {
        self.result["changed"] == true
    }
    fn failed(&self) -> bool {
        self.result["failed"] == true
    }
    fn msg(&self) -> &str {
        self.result["msg"].as_str().unwrap_or_default()
    }
    fn facts(&self) -> &Value {
        &self.result["buildset_registry"]
    }
}

/// A registry root in a temporary directory; its registry is removed on
/// drop, whatever the test did.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("buildset_registry")
    }

    /// Run the module on this root with `args` (plus `root`).
    fn run(&self, args: Value) -> Run {
        let mut all = args.as_object().cloned().unwrap_or_default();
        all.insert("root".into(), json!(self.path()));
        all.insert(
            "_ansible_module_name".into(),
            json!("speculative.images.run_buildset_registry"),
        );
        let args_file = self.dir.path().join("args.json");
        std::fs::write(&args_file, Value::Object(all).to_string()).expect("write args");
        let out = Command::new(MODULE)
            .arg(&args_file)
            .output()
            .expect("run the module");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.stderr.is_empty(),
            "a module writes nothing on stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let result: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("module printed no single JSON object ({e}): {stdout}"));
        Run { result, stdout }
    }

    fn present(&self, port: u16) -> Run {
        self.run(json!({"port": port, "host": "127.0.0.1"}))
    }

    fn check(&self, port: u16) -> Run {
        self.run(json!({"port": port, "host": "127.0.0.1", "_ansible_check_mode": true}))
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.path().join("registry.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    /// (mtime, inode) of each of the module's own files.
    fn snapshot(&self) -> BTreeMap<&'static str, (i64, u64)> {
        OWN_FILES
            .iter()
            .map(|f| {
                let meta = std::fs::metadata(self.path().join(f)).expect(f);
                (
                    *f,
                    (meta.mtime_nsec() + meta.mtime() * 1_000_000_000, meta.ino()),
                )
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.path().exists() {
            let _ = self.run(json!({"state": "absent"}));
        }
    }
}

/// `GET https://<authority>/v2/` trusting only `ca_pem`; the status.
fn v2_status(authority: &str, ca_pem: &str, login: Option<(&str, &str)>) -> u16 {
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA")])
        .no_proxy()
        .build()
        .expect("client");
    let mut request = client.get(format!("https://{authority}/v2/"));
    if let Some((user, password)) = login {
        request = request.basic_auth(user, Some(password));
    }
    request
        .send()
        .unwrap_or_else(|e| panic!("GET https://{authority}/v2/: {e:?}"))
        .status()
        .as_u16()
}

fn port_closed(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn kill(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

#[test]
fn check_apply_check_apply_restart_and_remove() {
    let root = Root::new();
    let port = free_port();
    let root_path = root.path().display().to_string();

    let check1 = root.check(port);
    assert!(!check1.failed(), "{}", check1.stdout);
    assert!(check1.changed());
    assert_eq!(
        check1.msg(),
        format!("would create and start a registry under {root_path} on port {port}")
    );
    assert!(check1.facts().is_null());
    assert!(!root.path().exists(), "check mode created the root");

    let apply1 = root.present(port);
    assert!(!apply1.failed(), "{}\n{}", apply1.stdout, root.log());
    assert!(apply1.changed());
    assert!(
        apply1.msg().starts_with(&format!(
            "created and started the registry under {root_path} on port {port} (pid "
        )),
        "{}",
        apply1.msg()
    );
    let facts = apply1.facts().clone();
    assert_eq!(facts["host"], "127.0.0.1");
    assert_eq!(facts["port"], port);
    assert_eq!(facts["username"], "zuul");
    let password = facts["password"].as_str().expect("password").to_string();
    let cert = facts["cert"].as_str().expect("cert").to_string();
    assert_eq!(password.len(), 32);
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert_eq!(
        apply1.stdout.matches(&password).count(),
        1,
        "the password appears only as buildset_registry.password"
    );
    let mode = |f: &str| std::fs::metadata(root.path().join(f)).unwrap().mode() & 0o777;
    assert_eq!(
        [
            mode("config.json"),
            mode("password"),
            mode("tls/server.key")
        ],
        [0o600; 3]
    );

    let before = root.snapshot();
    let check2 = root.check(port);
    let apply2 = root.present(port);
    for run in [&check2, &apply2] {
        assert!(!run.failed(), "{}", run.stdout);
        assert!(!run.changed(), "{}", run.stdout);
        assert_eq!(run.facts(), &facts);
        assert_eq!(
            run.msg(),
            format!("serving under {root_path} on port {port}")
        );
    }
    assert_eq!(root.snapshot(), before, "a no-change run rewrote a file");

    // The server answers, by every name its certificate covers, with the
    // certificate the module returned.
    for authority in [
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        format!("localhost:{port}"),
    ] {
        assert_eq!(v2_status(&authority, &cert, None), 401, "{authority}");
    }
    let authority = format!("127.0.0.1:{port}");
    assert_eq!(v2_status(&authority, &cert, Some(("zuul", &password))), 200);
    assert_eq!(v2_status(&authority, &cert, Some(("zuul", "wrong"))), 401);

    // Killed: check mode sees it, apply restarts it on the same data.
    kill(root.pid());
    wait_until(
        "the killed server's port to close",
        Duration::from_secs(10),
        || port_closed(port),
    );
    let check3 = root.check(port);
    assert!(check3.changed());
    assert_eq!(
        check3.msg(),
        format!("would restart the registry under {root_path} on port {port}")
    );
    assert!(port_closed(port), "check mode started the server");
    let apply3 = root.present(port);
    assert!(!apply3.failed(), "{}\n{}", apply3.stdout, root.log());
    assert!(apply3.changed());
    assert!(
        apply3.msg().starts_with("restarted the registry under "),
        "{}",
        apply3.msg()
    );
    assert_eq!(apply3.facts(), &facts);
    assert_eq!(v2_status(&authority, &cert, Some(("zuul", &password))), 200);

    assert!(
        !root.log().contains(&password),
        "the server logged the password"
    );

    // Removed, once.
    let absent_check = root.run(json!({"state": "absent", "_ansible_check_mode": true}));
    assert!(absent_check.changed());
    assert!(!port_closed(port), "check mode stopped the server");
    let absent = root.run(json!({"state": "absent"}));
    assert!(absent.changed(), "{}", absent.stdout);
    assert_eq!(
        absent.msg(),
        format!("stopped the registry under {root_path} and removed its files")
    );
    assert!(port_closed(port));
    assert!(!root.path().exists());
    let again = root.run(json!({"state": "absent"}));
    assert!(!again.changed());
    assert_eq!(again.msg(), format!("no registry under {root_path}"));
}

/// A server that stopped answering (here: SIGSTOP) is replaced on its own
/// port, every time: the module waits until the old process has exited and
/// released the port, not only until its command line is gone.
#[test]
fn a_hung_server_is_replaced_on_its_own_port() {
    let root = Root::new();
    let port = free_port();
    let first = root.present(port);
    assert!(!first.failed(), "{}\n{}", first.stdout, root.log());
    let password = first.facts()["password"].as_str().unwrap().to_string();
    let cert = first.facts()["cert"].as_str().unwrap().to_string();
    let authority = format!("127.0.0.1:{port}");
    for round in 1..=2 {
        let hung = root.pid();
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(
            unsafe { libc::kill(hung, libc::SIGSTOP) },
            0,
            "SIGSTOP {hung}"
        );
        let run = root.present(port);
        assert!(
            !run.failed(),
            "round {round}: {}\n{}",
            run.stdout,
            root.log()
        );
        assert!(run.changed(), "round {round}: {}", run.stdout);
        assert!(
            run.msg().starts_with("restarted the registry under "),
            "round {round}: {}",
            run.msg()
        );
        assert_ne!(root.pid(), hung, "round {round}: the same pid serves");
        let stat = std::fs::read_to_string(format!("/proc/{hung}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest.trim_start());
        assert!(
            stat.is_empty() || state.starts_with(['Z', 'X']),
            "round {round}: the hung server {hung} still runs: {stat}"
        );
        assert_eq!(
            v2_status(&authority, &cert, Some(("zuul", &password))),
            200,
            "round {round}"
        );
    }
}

#[test]
fn a_new_port_keeps_password_and_certificate() {
    let root = Root::new();
    let (first_port, second_port) = (free_port(), free_port());
    let first = root.present(first_port);
    assert!(!first.failed(), "{}\n{}", first.stdout, root.log());
    let moved = root.present(second_port);
    assert!(!moved.failed(), "{}\n{}", moved.stdout, root.log());
    assert!(moved.changed());
    assert!(
        moved
            .msg()
            .starts_with("reconfigured and restarted the registry under "),
        "{}",
        moved.msg()
    );
    assert_eq!(moved.facts()["password"], first.facts()["password"]);
    assert_eq!(moved.facts()["cert"], first.facts()["cert"]);
    assert_eq!(moved.facts()["port"], second_port);
    assert!(port_closed(first_port));
    let cert = moved.facts()["cert"].as_str().unwrap();
    assert_eq!(
        v2_status(&format!("127.0.0.1:{second_port}"), cert, None),
        401
    );
}

#[test]
fn a_server_that_cannot_start_is_reported_with_its_log() {
    let root = Root::new();
    let port = free_port();
    let first = root.present(port);
    assert!(!first.failed(), "{}\n{}", first.stdout, root.log());
    let password = first.facts()["password"].as_str().unwrap().to_string();
    kill(root.pid());
    wait_until(
        "the killed server's port to close",
        Duration::from_secs(10),
        || port_closed(port),
    );
    std::fs::write(root.path().join("tls/server.key"), "not a key\n").unwrap();

    let failed = root.present(port);
    assert!(failed.failed(), "{}", failed.stdout);
    let msg = failed.msg();
    let expected = format!(
        "the buildset registry server exited (exit status: 1) before answering; \
         the end of its log {}:\n",
        root.path().join("registry.log").display()
    );
    assert!(msg.starts_with(&expected), "{msg}");
    assert!(msg.len() > expected.len(), "the log tail is empty: {msg}");
    assert!(!failed.stdout.contains(&password), "{}", failed.stdout);
}

#[test]
fn an_unknown_argument_changes_nothing() {
    let root = Root::new();
    let run = root.run(json!({"colour": "red"}));
    assert!(run.failed());
    assert_eq!(
        run.msg(),
        "argument colour: unknown field `colour`, expected one of `root`, `port`, `host`, `state`, `listen`"
    );
    assert!(!root.path().exists());
}

#[test]
fn a_listen_address_binds_that_address_only() {
    let root = Root::new();
    let port = free_port();
    // All of 127/8 is on loopback: an address of this node that is not
    // the one a server on every address would answer first.
    let bound = root.run(json!({"port": port, "listen": "127.0.0.2"}));
    assert!(!bound.failed(), "{}\n{}", bound.stdout, root.log());
    assert_eq!(
        bound.msg(),
        format!(
            "created and started the registry under {} on 127.0.0.2:{port} (pid {})",
            root.path().display(),
            root.pid()
        )
    );
    assert_eq!(
        bound.facts()["host"],
        "127.0.0.2",
        "clients reach it where it listens"
    );
    let cert = bound.facts()["cert"].as_str().unwrap().to_string();
    assert_eq!(v2_status(&format!("127.0.0.2:{port}"), &cert, None), 401);
    assert!(port_closed(port), "nothing answers on 127.0.0.1:{port}");

    let again = root.run(json!({"port": port, "listen": "127.0.0.2"}));
    assert!(!again.changed(), "{}", again.stdout);

    // Without `listen`, every address again.
    let everywhere = root.run(json!({"port": port, "host": "127.0.0.1"}));
    assert!(everywhere.changed(), "{}", everywhere.stdout);
    let cert = everywhere.facts()["cert"].as_str().unwrap().to_string();
    assert_eq!(v2_status(&format!("127.0.0.1:{port}"), &cert, None), 401);
}

#[test]
fn a_listen_address_not_on_this_node_changes_nothing() {
    let root = Root::new();
    let run = root.run(json!({"port": free_port(), "listen": "192.0.2.1"}));
    assert!(run.failed());
    assert!(
        run.msg()
            .starts_with("argument listen: 192.0.2.1 is not an address of this node ("),
        "{}",
        run.msg()
    );
    assert!(!root.path().exists());
}
