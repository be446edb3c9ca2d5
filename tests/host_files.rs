//! `use_buildset_registry` on a temporary directory standing in for `/`:
//! every file it writes, what it keeps, check mode, diffs, idempotence
//! (no file rewritten) and refusals that leave the host untouched. The
//! real-daemon checks are in `host_real`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use serde_json::{json, Value};
use speculative_images::ansible::invocation::parse_args;
use speculative_images::ansible::mask::MASK;
use speculative_images::ansible::{Context, Outcome};
use speculative_images::host::HostPaths;
use speculative_images::modules::use_buildset_registry::{run_on, Args};

const ALIAS_AUTHORITY: &str = "zuul-jobs.buildset-registry:5000";

struct Host {
    dir: tempfile::TempDir,
    paths: HostPaths,
    cert: String,
}

impl Host {
    /// A root with users root and zuul (uid 1000, a runtime dir), and a
    /// Debian CA store.
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::under(dir.path());
        fs::create_dir_all(paths.path("/etc")).unwrap();
        fs::write(
            paths.etc_passwd(),
            "root:x:0:0:root:/root:/bin/bash\nzuul:x:1000:1000::/home/zuul:/bin/sh\n",
        )
        .unwrap();
        fs::write(paths.etc_hosts(), "127.0.0.1 localhost\n").unwrap();
        fs::create_dir_all(paths.path("/usr/local/share/ca-certificates")).unwrap();
        fs::create_dir_all(paths.path("/run/user/1000")).unwrap();
        fs::create_dir_all(paths.path("/home/zuul")).unwrap();
        let cert = speculative_images::pki::generate(&["zuul-jobs.buildset-registry".into()])
            .unwrap()
            .ca_pem;
        Host { dir, paths, cert }
    }

    fn file(&self, host_path: &str) -> String {
        fs::read_to_string(self.paths.path(host_path))
            .unwrap_or_else(|e| panic!("reading {host_path}: {e}"))
    }

    fn write(&self, host_path: &str, text: &str) {
        let path = self.paths.path(host_path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn args(&self, host: &str) -> Value {
        json!({
            "buildset_registry": {
                "host": host, "port": 5000, "username": "zuul",
                "password": "pw-Secret-123", "cert": self.cert,
            },
            "docker_user": "zuul",
            "preload": true,
        })
    }

    fn run(&self, args: Value, check_mode: bool) -> (anyhow::Result<Outcome>, Context) {
        let mut ctx = Context {
            check_mode,
            diff: true,
            ..Context::default()
        };
        ctx.secrets.add("pw-Secret-123");
        let args: Args = parse_args(args).expect("valid arguments");
        (run_on(&self.paths, args, &mut ctx), ctx)
    }

    /// Every file under the root with its content and mtime.
    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut |p| {
            let meta = fs::metadata(p).unwrap();
            out.insert(
                p.strip_prefix(self.dir.path())
                    .unwrap()
                    .display()
                    .to_string(),
                (fs::read(p).unwrap(), meta.modified().unwrap()),
            );
        });
        out
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

fn files(outcome: &Outcome) -> Vec<String> {
    serde_json::from_value(outcome.values["files"].clone()).unwrap()
}

#[test]
fn first_run_writes_every_client_file_second_run_rewrites_none() {
    let host = Host::new();
    let (outcome, _) = host.run(host.args("127.0.0.1"), false);
    let outcome = outcome.unwrap();
    assert!(outcome.changed);
    let ca_crt = format!("/etc/docker/certs.d/{ALIAS_AUTHORITY}/ca.crt");
    assert_eq!(
        files(&outcome),
        [
            "/etc/hosts",
            ca_crt.as_str(),
            "/usr/local/share/ca-certificates/speculative-images-buildset-registry.crt",
            "/etc/docker/daemon.json",
            "/home/zuul/.docker/config.json",
            "/run/user/1000/containers/auth.json",
            "/etc/containers/registries.conf",
            "/etc/buildkit/buildkitd.toml",
        ]
    );
    assert_eq!(outcome.values["registry"], ALIAS_AUTHORITY);

    assert_eq!(
        host.file("/etc/hosts"),
        "127.0.0.1 localhost\n127.0.0.1\tzuul-jobs.buildset-registry\n"
    );
    let daemon: Value = serde_json::from_str(&host.file("/etc/docker/daemon.json")).unwrap();
    assert_eq!(
        daemon,
        json!({"registry-mirrors": ["https://zuul-jobs.buildset-registry:5000/"]})
    );
    assert_eq!(host.file(&ca_crt), format!("{}\n", host.cert.trim()));

    let config_path = host.paths.path("/home/zuul/.docker/config.json");
    let config: Value = serde_json::from_str(&host.file("/home/zuul/.docker/config.json")).unwrap();
    assert_eq!(
        config["auths"][ALIAS_AUTHORITY]["auth"],
        "enV1bDpwdy1TZWNyZXQtMTIz" // base64("zuul:pw-Secret-123")
    );
    let meta = fs::metadata(&config_path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let docker_dir = fs::metadata(config_path.parent().unwrap()).unwrap();
    assert_eq!(docker_dir.mode() & 0o777, 0o700);
    assert_eq!(docker_dir.uid(), 1000);
    assert_eq!(
        host.file("/run/user/1000/containers/auth.json"),
        host.file("/home/zuul/.docker/config.json")
    );

    let conf = host.file("/etc/containers/registries.conf");
    assert!(
        conf.starts_with("unqualified-search-registries = [\"docker.io\"]\n"),
        "{conf}"
    );
    assert!(
        conf.contains(
            "prefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry.mirror]]\nlocation = \"zuul-jobs.buildset-registry:5000/quay.io\"\n\n[[registry.mirror]]\nlocation = \"quay.io\"\n"
        ),
        "{conf}"
    );
    assert!(
        conf.contains(
            "prefix = \"docker.io\"\nlocation = \"registry-1.docker.io\"\n\n[[registry.mirror]]\nlocation = \"zuul-jobs.buildset-registry:5000\"\n"
        ),
        "{conf}"
    );
    let buildkit = host.file("/etc/buildkit/buildkitd.toml");
    assert!(
        buildkit.contains(
            "[registry.\"gcr.io\"]\nmirrors = [\"zuul-jobs.buildset-registry:5000/gcr.io\"]\n"
        ),
        "{buildkit}"
    );
    assert!(
        buildkit.contains(&format!("ca = [\"{ca_crt}\"]")),
        "{buildkit}"
    );

    let before = host.snapshot();
    let (again, _) = host.run(host.args("127.0.0.1"), false);
    let again = again.unwrap();
    assert!(!again.changed, "{:?}", again.values);
    assert!(files(&again).is_empty());
    assert_eq!(
        host.snapshot(),
        before,
        "no file rewritten on the second run"
    );
}

#[test]
fn foreign_content_is_kept() {
    let host = Host::new();
    host.write(
        "/etc/docker/daemon.json",
        "{\n  \"log-level\": \"warn\",\n  \"registry-mirrors\": [\"https://mirror.example.org/\"],\n  \"max-concurrent-downloads\": 3\n}\n",
    );
    host.write(
        "/etc/containers/registries.conf",
        "# Site policy: keep this comment.\nunqualified-search-registries = [\"registry.example.org\"]\n\n[[registry]]\n# the site's own registry\nprefix = \"registry.example.org\"\nlocation = \"registry.example.org\"\n",
    );
    host.write(
        "/home/zuul/.docker/config.json",
        "{\"auths\": {\"registry.example.org\": {\"auth\": \"b3RoZXI6c2VjcmV0\"}}, \"psFormat\": \"table\"}",
    );
    host.write(
        "/etc/hosts",
        "127.0.0.1 localhost\n# a comment\n10.1.1.1 build.example.org\n",
    );
    let (outcome, _) = host.run(host.args("::1"), false);
    assert!(outcome.unwrap().changed);

    let daemon = host.file("/etc/docker/daemon.json");
    assert_eq!(
        daemon,
        "{\n  \"log-level\": \"warn\",\n  \"registry-mirrors\": [\n    \"https://zuul-jobs.buildset-registry:5000/\",\n    \"https://mirror.example.org/\"\n  ],\n  \"max-concurrent-downloads\": 3\n}\n"
    );
    let conf = host.file("/etc/containers/registries.conf");
    assert!(
        conf.starts_with(
            "# Site policy: keep this comment.\nunqualified-search-registries = [\"docker.io\"]\n"
        ),
        "{conf}"
    );
    assert!(
        conf.contains("[[registry]]\n# the site's own registry\nprefix = \"registry.example.org\"\nlocation = \"registry.example.org\"\n"),
        "{conf}"
    );
    let config: Value = serde_json::from_str(&host.file("/home/zuul/.docker/config.json")).unwrap();
    assert_eq!(
        config["auths"]["registry.example.org"]["auth"],
        "b3RoZXI6c2VjcmV0"
    );
    assert_eq!(config["psFormat"], "table");
    assert!(config["auths"][ALIAS_AUTHORITY]["auth"].is_string());
    assert_eq!(
        host.file("/etc/hosts"),
        "127.0.0.1 localhost\n# a comment\n10.1.1.1 build.example.org\n::1\tzuul-jobs.buildset-registry\n"
    );

    let before = host.snapshot();
    let (again, _) = host.run(host.args("[::1]"), false);
    assert!(!again.unwrap().changed);
    assert_eq!(host.snapshot(), before);
}

#[test]
fn check_mode_reports_and_writes_nothing() {
    let host = Host::new();
    let before = host.snapshot();
    let (outcome, _) = host.run(host.args("127.0.0.1"), true);
    let outcome = outcome.unwrap();
    assert!(outcome.changed);
    assert_eq!(files(&outcome).len(), 8);
    assert_eq!(outcome.diffs.len(), 8);
    assert_eq!(
        outcome.msg.as_deref(),
        Some("the host would use zuul-jobs.buildset-registry:5000 first")
    );
    assert_eq!(host.snapshot(), before, "check mode wrote something");
}

#[test]
fn diffs_mask_the_credentials() {
    let host = Host::new();
    let (outcome, ctx) = host.run(host.args("registry.example.org"), false);
    let outcome = outcome.unwrap();
    let config = outcome
        .diffs
        .iter()
        .find(|d| d.after_header == "/home/zuul/.docker/config.json")
        .expect("a diff of config.json");
    // base64("zuul:pw-Secret-123"): registered as a secret by the module.
    let token = "enV1bDpwdy1TZWNyZXQtMTIz";
    assert!(config.after.contains(token));
    let shown = ctx.secrets.mask_str(&config.after);
    assert!(!shown.contains(token), "{shown}");
    assert!(shown.contains(&format!("\"auth\": \"{MASK}\"")), "{shown}");
    // A hostname needs no alias: no /etc/hosts edit, the name everywhere.
    assert!(!files(&outcome).contains(&"/etc/hosts".to_string()));
    assert_eq!(outcome.values["registry"], "registry.example.org:5000");
}

#[test]
fn invalid_daemon_json_fails_naming_it_and_nothing_is_written() {
    let host = Host::new();
    host.write("/etc/docker/daemon.json", "{\"debug\": true,,}\n");
    let before = host.snapshot();
    let (outcome, _) = host.run(host.args("127.0.0.1"), false);
    let err = format!("{:#}", outcome.unwrap_err());
    assert_eq!(
        err,
        "/etc/docker/daemon.json: not valid JSON: key must be a string at line 1 column 16; the file was left untouched"
    );
    assert_eq!(host.snapshot(), before);
}

#[test]
fn v1_registries_conf_fails_naming_it_and_nothing_is_written() {
    let host = Host::new();
    host.write(
        "/etc/containers/registries.conf",
        "[registries.search]\nregistries = ['docker.io', 'quay.io']\n",
    );
    let before = host.snapshot();
    let (outcome, _) = host.run(host.args("127.0.0.1"), false);
    assert_eq!(
        format!("{:#}", outcome.unwrap_err()),
        "/etc/containers/registries.conf: is in the v1 format ([registries.search] etc.), which has no mirrors; convert it to the v2 format ([[registry]] tables); the file was left untouched"
    );
    assert_eq!(host.snapshot(), before);
}

#[test]
fn a_missing_or_empty_cert_fails_before_anything_is_written() {
    let host = Host::new();
    let before = host.snapshot();
    let mut args = host.args("127.0.0.1");
    args["buildset_registry"]
        .as_object_mut()
        .unwrap()
        .remove("cert");
    assert_eq!(
        parse_args::<Args>(args).unwrap_err().to_string(),
        "argument buildset_registry: missing field `cert`"
    );
    let mut args = host.args("127.0.0.1");
    args["buildset_registry"]["cert"] = json!("");
    let (outcome, _) = host.run(args, false);
    assert_eq!(
        outcome.unwrap_err().to_string(),
        "argument buildset_registry.cert: empty; the registry's CA certificate (PEM) is required"
    );
    assert_eq!(host.snapshot(), before);
}

#[test]
fn without_a_runtime_dir_no_auth_json_is_made() {
    let host = Host::new();
    // /run/user is there (other users log in), /run/user/1000 is not.
    fs::remove_dir(host.paths.path("/run/user/1000")).unwrap();
    let expected = [
        "/etc/hosts",
        "/etc/docker/certs.d/zuul-jobs.buildset-registry:5000/ca.crt",
        "/usr/local/share/ca-certificates/speculative-images-buildset-registry.crt",
        "/etc/docker/daemon.json",
        "/home/zuul/.docker/config.json",
        "/etc/containers/registries.conf",
        "/etc/buildkit/buildkitd.toml",
    ];

    let (checked, _) = host.run(host.args("127.0.0.1"), true);
    let checked = checked.unwrap();
    assert_eq!(files(&checked), expected);
    assert!(checked
        .diffs
        .iter()
        .all(|d| !d.after_header.contains("auth.json")));

    let (outcome, _) = host.run(host.args("127.0.0.1"), false);
    let outcome = outcome.unwrap();
    assert_eq!(files(&outcome), expected);
    let run_user: Vec<_> = fs::read_dir(host.paths.path("/run/user"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(run_user.is_empty(), "created under /run/user: {run_user:?}");
    // The docker CLI's credentials are written all the same.
    let config: Value = serde_json::from_str(&host.file("/home/zuul/.docker/config.json")).unwrap();
    assert!(config["auths"][ALIAS_AUTHORITY]["auth"].is_string());
}
