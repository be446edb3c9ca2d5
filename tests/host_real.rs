//! `use_buildset_registry` on this machine, with the real dockerd, skopeo,
//! podman and our buildset registry: docker.io images through the daemon's
//! mirror (reloaded by SIGHUP, a running container survives), other
//! registries through registries.conf and the preload, idempotence,
//! refusals, IPv6 through the alias.
//!
//! These tests change machine-global files, so each holds an exclusive
//! lock (serial across test processes) and a [`HostSnapshot`] that puts
//! every file, the CA bundle and the daemon's live mirrors back as they
//! were.

use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{json, Value};
use speculative_images::host::ca_store::CaStore;
use speculative_images::host::{docker_daemon, HostPaths};
use speculative_images::zuul::BUILDSET_REGISTRY_ALIAS as REGISTRY_ALIAS;

use crate::support::buildset::BuildsetServer;
use crate::support::module::ModuleRun;
use crate::support::{busybox_context, random_password, run, wait_until};

/// Serializes the tests of this file across processes (nextest runs each
/// test in its own).
struct HostLock {
    _file: fs::File,
}

impl HostLock {
    fn take() -> HostLock {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/speculative-images-host-tests.lock")
            .expect("open lock file");
        // SAFETY: flock on an open descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        HostLock { _file: file }
    }
}

/// Machine-global state before a test, restored on drop.
struct HostSnapshot {
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
    created_dirs: Vec<PathBuf>,
    ca_anchor: Option<PathBuf>,
    mirrors: Vec<String>,
    _lock: HostLock,
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

impl HostSnapshot {
    fn take() -> HostSnapshot {
        let lock = HostLock::take();
        let paths = HostPaths::system();
        let ca_anchor = CaStore::detect(&paths).map(|s| s.anchor_path(&paths));
        let mut list = vec![
            paths.daemon_json(),
            paths.etc_hosts(),
            paths.registries_conf(),
            paths.buildkitd_toml(),
            home().join(".docker/config.json"),
        ];
        list.extend(ca_anchor.clone());
        let files = list
            .into_iter()
            .map(|p| {
                let content = fs::read(&p).ok();
                (p, content)
            })
            .collect();
        let created_dirs = [home().join(".docker"), PathBuf::from("/etc/buildkit")]
            .into_iter()
            .filter(|d| !d.exists())
            .collect();
        HostSnapshot {
            files,
            created_dirs,
            ca_anchor,
            mirrors: docker_daemon::live_mirrors().expect("dockerd answers"),
            _lock: lock,
        }
    }

    fn original(&self, path: &Path) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, c)| c.as_deref())
    }
}

impl Drop for HostSnapshot {
    fn drop(&mut self) {
        let paths = HostPaths::system();
        // The daemon first: options absent from daemon.json keep their
        // value on reload, so the old mirrors are written out explicitly,
        // reloaded, and only then the original file put back.
        if docker_daemon::live_mirrors().as_ref() != Some(&self.mirrors) {
            let mut doc: serde_json::Map<String, Value> = self
                .original(&paths.daemon_json())
                .and_then(|c| serde_json::from_slice(c).ok())
                .unwrap_or_default();
            doc.insert("registry-mirrors".into(), json!(self.mirrors));
            fs::write(paths.daemon_json(), serde_json::to_vec(&doc).unwrap()).unwrap();
            let pid = docker_daemon::dockerd_pid(&paths).expect("dockerd runs");
            // SAFETY: kill(2) with a live pid.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            wait_until(
                "dockerd's mirrors restored",
                Duration::from_secs(20),
                || docker_daemon::live_mirrors().as_ref() == Some(&self.mirrors),
            );
        }
        let mut ca_changed = false;
        let mut hosts_changed = false;
        for (path, content) in &self.files {
            let now = fs::read(path).ok();
            if &now == content {
                continue;
            }
            ca_changed |= Some(path) == self.ca_anchor.as_ref();
            hosts_changed |= *path == paths.etc_hosts();
            match content {
                Some(bytes) => fs::write(path, bytes).unwrap(),
                None => {
                    let _ = fs::remove_file(path);
                }
            }
        }
        for dir in &self.created_dirs {
            let _ = fs::remove_dir_all(dir);
        }
        if hosts_changed {
            // dockerd's Go resolver re-reads /etc/hosts at most every 5 s:
            // the next test must not meet this test's alias address.
            std::thread::sleep(Duration::from_millis(5500));
        }
        if let Ok(entries) = fs::read_dir(paths.docker_certs_d()) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(REGISTRY_ALIAS)
                {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        if ca_changed {
            if let Some(store) = CaStore::detect(&paths) {
                store.update().expect("rebuild the CA bundle");
            }
        }
    }
}

/// Run the module binary as Ansible does (with `--diff`); its JSON result.
fn run_module(args: Value) -> Value {
    run_module_printing(args).0
}

/// The same, with everything the module printed (stdout and stderr).
fn run_module_printing(args: Value) -> (Value, String) {
    let out = ModuleRun::new("use_buildset_registry", args)
        .ansible("diff", json!(true))
        .run();
    (out.result, out.printed)
}

/// The system CA bundle `update-ca-certificates` rebuilds (Debian).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn modified(path: &str) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// A registries.conf of the site's own: comments and a registry of its
/// own, which the module must keep.
const SITE_REGISTRIES_CONF: &str = r#"# speculative-test: the site's comment at the top
unqualified-search-registries = ["docker.io"]

# speculative-test: the site's own registry and its mirror
[[registry]]
prefix = "registry.example.org/team"
location = "registry.example.org/team"

[[registry.mirror]]
location = "mirror.example.org/team" # speculative-test: inline comment
"#;

/// The `[[registry]]` of registries.conf whose prefix is `prefix`, as
/// (location, mirror locations).
fn registries_conf_entry(conf: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let doc: toml_edit::DocumentMut = conf.parse().expect("registries.conf is TOML");
    let tables = doc.get("registry")?.as_array_of_tables()?;
    let table = tables
        .iter()
        .find(|t| t.get("prefix").and_then(|p| p.as_str()) == Some(prefix))?;
    let location = table.get("location")?.as_str()?.to_string();
    let mirrors = table
        .get("mirror")
        .and_then(|m| m.as_array_of_tables())
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("location")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some((location, mirrors))
}

fn module_args(registry: &BuildsetServer, preload: bool) -> Value {
    json!({
        "buildset_registry": registry.as_buildset_registry(),
        "preload": preload,
    })
}

/// Build a FROM scratch busybox image printing `marker` and copy it into
/// the registry as each of `targets` (`library/x:latest`); returns the
/// manifest digest the registry holds.
fn push_image(
    registry: &BuildsetServer,
    authority: &str,
    marker: &str,
    targets: &[&str],
) -> String {
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(
        ctx.path(),
        &[("marker", marker)],
        "CMD [\"/bin/busybox\", \"cat\", \"/marker\"]\n",
    );
    let local = format!("speculative-host-test/{}:latest", marker.to_lowercase());
    run(Command::new("docker")
        .args(["build", "-q", "-t", &local])
        .arg(ctx.path()));
    let certs = tempfile::tempdir().unwrap();
    fs::write(certs.path().join("ca.crt"), &registry.ca_pem).unwrap();
    let digest_file = certs.path().join("digest");
    for target in targets {
        run(Command::new("skopeo")
            .args(["copy", "-q", "--dest-cert-dir"])
            .arg(certs.path())
            .arg("--dest-creds")
            .arg(format!("{}:{}", registry.username, registry.password))
            .arg("--digestfile")
            .arg(&digest_file)
            .arg(format!("docker-daemon:{local}"))
            .arg(format!("docker://{authority}/{target}")));
    }
    let _ = Command::new("docker").args(["rmi", &local]).output();
    fs::read_to_string(digest_file).unwrap().trim().to_string()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args)).trim().to_string()
}

/// Remove images these tests create, wherever they came from.
fn remove_test_images(port: u16) {
    let alias_quay = format!("{REGISTRY_ALIAS}:{port}/quay.io/org/img:latest");
    for image in [
        "speculative-test:latest",
        "quay.io/org/img:latest",
        &alias_quay,
    ] {
        let _ = Command::new("docker").args(["rmi", "-f", image]).output();
    }
    let _ = Command::new("podman")
        .args(["rmi", "-f", "quay.io/org/img:latest"])
        .output();
}

fn mtimes(files: &[String]) -> Vec<(String, SystemTime)> {
    files
        .iter()
        .map(|f| (f.clone(), fs::metadata(f).unwrap().modified().unwrap()))
        .collect()
}

#[test]
fn every_client_gets_the_speculative_images_and_running_containers_survive() {
    let snapshot = HostSnapshot::take();
    let registry = BuildsetServer::start();
    remove_test_images(registry.port);

    let marker = random_password();
    let digest = push_image(
        &registry,
        &registry.authority(),
        &marker,
        &["library/speculative-test:latest", "quay.io/org/img:latest"],
    );

    // Foreign content the module must keep.
    let paths = HostPaths::system();
    let mut foreign = serde_json::Map::new();
    if let Some(old) = snapshot.original(&paths.daemon_json()) {
        foreign = serde_json::from_slice(old).expect("daemon.json was valid JSON");
    }
    foreign.insert("max-concurrent-downloads".into(), json!(3));
    fs::write(
        paths.daemon_json(),
        serde_json::to_vec_pretty(&foreign).unwrap(),
    )
    .unwrap();
    let config_json = home().join(".docker/config.json");
    fs::create_dir_all(config_json.parent().unwrap()).unwrap();
    fs::write(
        &config_json,
        r#"{"auths": {"other.example.org": {"auth": "b3RoZXI6c2VjcmV0"}}}"#,
    )
    .unwrap();
    fs::write(paths.registries_conf(), SITE_REGISTRIES_CONF).unwrap();
    let bundle_before = modified(CA_BUNDLE);

    // A container running before the role, from an image of our own.
    let sleeper = format!("speculative-host-sleeper-{}", marker.to_lowercase());
    let sleeper_image = format!(
        "speculative-host-test/sleeper-{}:latest",
        marker.to_lowercase()
    );
    let ctx = tempfile::tempdir().unwrap();
    busybox_context(ctx.path(), &[], "");
    run(Command::new("docker")
        .args(["build", "-q", "-t", &sleeper_image])
        .arg(ctx.path()));
    docker(&[
        "run",
        "-d",
        "--name",
        &sleeper,
        &sleeper_image,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &sleeper]);
    let dockerd = docker_daemon::dockerd_pid(&paths).expect("dockerd runs");

    let (result, printed) = run_module_printing(module_args(&registry, true));
    let outcome = std::panic::catch_unwind(|| {
        assert_eq!(result["failed"], false, "{result}");
        assert_eq!(result["changed"], true);
        assert_eq!(result["docker_reload"], "sighup");
        assert_eq!(result["preloaded"], json!(["quay.io/org/img:latest"]));
        // Neither the password nor docker's `auth` (base64 of
        // user:password) is printed, diffs included.
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", registry.username, registry.password));
        for secret in [&registry.password, &auth] {
            assert!(
                !printed.contains(secret.as_str()),
                "{secret} leaked: {printed}"
            );
        }
        // With --diff, a diff per changed file, ~/.docker/config.json's masked.
        let files: Vec<String> = serde_json::from_value(result["files"].clone()).unwrap();
        let diffs = result["diff"].as_array().expect("a diff with --diff");
        let headers: Vec<&str> = diffs
            .iter()
            .map(|d| d["before_header"].as_str().unwrap())
            .collect();
        for file in &files {
            assert!(
                headers.contains(&file.as_str()),
                "no diff of {file}: {headers:?}"
            );
        }
        let config_diff = diffs
            .iter()
            .find(|d| d["before_header"] == json!(config_json.to_str().unwrap()))
            .expect("a diff of ~/.docker/config.json");
        assert!(
            config_diff["after"].as_str().unwrap().contains("********"),
            "{config_diff}"
        );
        // The buildset CA went into the system store: the bundle was rebuilt.
        assert!(
            files
                .iter()
                .any(|f| Some(Path::new(f)) == snapshot.ca_anchor.as_deref()),
            "{files:?}"
        );
        let bundle_after_first = modified(CA_BUNDLE);
        assert_ne!(bundle_after_first, bundle_before, "bundle not rebuilt");

        // Reloaded, not restarted.
        assert_eq!(docker_daemon::dockerd_pid(&paths), Some(dockerd));
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", &sleeper]),
            "true"
        );
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.StartedAt}}", &sleeper]),
            started
        );

        // docker.io through the daemon's mirror.
        docker(&["pull", "-q", "speculative-test"]);
        assert_eq!(
            docker(&[
                "image",
                "inspect",
                "-f",
                "{{index .RepoDigests 0}}",
                "speculative-test"
            ]),
            format!("speculative-test@{digest}")
        );
        assert_eq!(docker(&["run", "--rm", "speculative-test"]), marker);

        // quay.io through registries.conf. --no-tags: listing tags asks
        // the upstream registry, which this machine cannot reach.
        let inspected = run(Command::new("skopeo").args([
            "inspect",
            "--no-tags",
            "--format",
            "{{.Digest}}",
            "docker://quay.io/org/img:latest",
        ]));
        assert_eq!(inspected.trim(), digest);
        run(Command::new("podman").args(["pull", "-q", "quay.io/org/img:latest"]));
        let podman_digest = run(Command::new("podman").args([
            "image",
            "inspect",
            "--format",
            "{{.Digest}}",
            "quay.io/org/img:latest",
        ]));
        assert_eq!(podman_digest.trim(), digest);

        // quay.io in docker through the preload.
        assert_eq!(docker(&["run", "--rm", "quay.io/org/img:latest"]), marker);

        // Foreign content kept.
        let daemon: Value =
            serde_json::from_slice(&fs::read(paths.daemon_json()).unwrap()).unwrap();
        assert_eq!(daemon["max-concurrent-downloads"], 3);
        let config: Value = serde_json::from_slice(&fs::read(&config_json).unwrap()).unwrap();
        assert_eq!(
            config["auths"]["other.example.org"]["auth"],
            "b3RoZXI6c2VjcmV0"
        );
        let conf = fs::read_to_string(paths.registries_conf()).unwrap();
        assert!(
            files.contains(&paths.registries_conf().to_str().unwrap().to_string()),
            "{files:?}"
        );
        for comment in SITE_REGISTRIES_CONF
            .lines()
            .filter_map(|l| l.find("# speculative-test").map(|at| &l[at..]))
        {
            assert!(conf.contains(comment), "comment {comment:?} lost:\n{conf}");
        }
        assert_eq!(
            registries_conf_entry(&conf, "registry.example.org/team"),
            Some((
                "registry.example.org/team".to_string(),
                vec!["mirror.example.org/team".to_string()]
            )),
            "the site's registry lost:\n{conf}"
        );
        let (_, quay_mirrors) = registries_conf_entry(&conf, "quay.io").expect("quay.io added");
        assert_eq!(
            quay_mirrors.first().map(String::as_str),
            Some(format!("{REGISTRY_ALIAS}:{}/quay.io", registry.port).as_str()),
            "{conf}"
        );

        // Idempotence: nothing to do, no file rewritten, the CA bundle
        // not rebuilt again, nothing printed that is secret.
        let before = mtimes(&files);
        let (again, printed) = run_module_printing(module_args(&registry, true));
        assert_eq!(again["failed"], false, "{again}");
        assert_eq!(again["changed"], false, "{again}");
        assert_eq!(again["files"], json!([]));
        assert_eq!(again["preloaded"], json!([]));
        assert!(again.get("diff").is_none(), "{again}");
        assert_eq!(mtimes(&files), before, "a file was rewritten");
        assert_eq!(
            modified(CA_BUNDLE),
            bundle_after_first,
            "update-ca-certificates ran again"
        );
        for secret in [&registry.password, &auth] {
            assert!(
                !printed.contains(secret.as_str()),
                "{secret} leaked: {printed}"
            );
        }
    });
    let _ = Command::new("docker").args(["rm", "-f", &sleeper]).output();
    let _ = Command::new("docker")
        .args(["rmi", "-f", &sleeper_image])
        .output();
    remove_test_images(registry.port);
    drop(snapshot);
    if let Err(panic) = outcome {
        eprintln!("registry log:\n{}", registry.log());
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn bad_host_files_fail_naming_them_and_nothing_is_written() {
    let snapshot = HostSnapshot::take();
    let registry = BuildsetServer::start();
    let paths = HostPaths::system();
    let watched = [
        paths.etc_hosts(),
        paths.daemon_json(),
        paths.registries_conf(),
        paths.buildkitd_toml(),
        home().join(".docker/config.json"),
    ];
    let state = || -> Vec<Option<(Vec<u8>, SystemTime)>> {
        watched
            .iter()
            .map(|p| Some((fs::read(p).ok()?, fs::metadata(p).ok()?.modified().ok()?)))
            .collect()
    };

    fs::write(paths.daemon_json(), "{\"debug\": tru\n").unwrap();
    let before = state();
    let result = run_module(module_args(&registry, false));
    let outcome = std::panic::catch_unwind(|| {
        assert_eq!(result["failed"], true, "{result}");
        assert_eq!(
            result["msg"],
            "/etc/docker/daemon.json: not valid JSON: expected ident at line 2 column 0; the file was left untouched"
        );
        assert_eq!(state(), before);
    });
    let restore_daemon = snapshot.original(&paths.daemon_json()).map(<[u8]>::to_vec);
    match &restore_daemon {
        Some(bytes) => fs::write(paths.daemon_json(), bytes).unwrap(),
        None => fs::remove_file(paths.daemon_json()).unwrap(),
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    fs::write(
        paths.registries_conf(),
        "[registries.search]\nregistries = ['docker.io']\n",
    )
    .unwrap();
    let before = state();
    let result = run_module(module_args(&registry, false));
    assert_eq!(result["failed"], true, "{result}");
    assert_eq!(
        result["msg"],
        "/etc/containers/registries.conf: is in the v1 format ([registries.search] etc.), which has no mirrors; convert it to the v2 format ([[registry]] tables); the file was left untouched"
    );
    assert_eq!(state(), before);

    let mut args = module_args(&registry, false);
    args["buildset_registry"]
        .as_object_mut()
        .unwrap()
        .remove("cert");
    let result = run_module(args);
    assert_eq!(result["failed"], true, "{result}");
    assert_eq!(
        result["msg"],
        "argument buildset_registry: missing field `cert`"
    );
    assert_eq!(state(), before);
    drop(snapshot);
}

#[test]
fn an_ipv6_registry_works_through_the_alias() {
    let snapshot = HostSnapshot::take();
    let registry = BuildsetServer::start_ipv6();
    remove_test_images(registry.port);
    let result = run_module(module_args(&registry, false));
    let outcome = std::panic::catch_unwind(|| {
        assert_eq!(result["failed"], false, "{result}");
        assert_eq!(
            result["registry"],
            format!("{REGISTRY_ALIAS}:{}", registry.port)
        );
        let hosts = fs::read_to_string("/etc/hosts").unwrap();
        assert!(
            hosts.lines().any(|l| l == format!("::1\t{REGISTRY_ALIAS}")),
            "{hosts}"
        );
        // Clients cannot name [::1]:port; they go through the alias, which
        // the module made resolvable and trusted.
        let alias = format!("{REGISTRY_ALIAS}:{}", registry.port);
        let marker = random_password();
        let digest = push_image(
            &registry,
            &alias,
            &marker,
            &["library/speculative-test:latest", "quay.io/org/img:latest"],
        );
        docker(&["pull", "-q", "speculative-test"]);
        assert_eq!(
            docker(&[
                "image",
                "inspect",
                "-f",
                "{{index .RepoDigests 0}}",
                "speculative-test"
            ]),
            format!("speculative-test@{digest}")
        );
        assert_eq!(docker(&["run", "--rm", "speculative-test"]), marker);
        let inspected = run(Command::new("skopeo").args([
            "inspect",
            "--no-tags",
            "--format",
            "{{.Digest}}",
            "docker://quay.io/org/img:latest",
        ]));
        assert_eq!(inspected.trim(), digest);

        let preload = run_module(module_args(&registry, true));
        assert_eq!(
            preload["preloaded"],
            json!(["quay.io/org/img:latest"]),
            "{preload}"
        );
        assert_eq!(docker(&["run", "--rm", "quay.io/org/img:latest"]), marker);
    });
    remove_test_images(registry.port);
    drop(snapshot);
    if let Err(panic) = outcome {
        eprintln!("registry log:\n{}", registry.log());
        std::panic::resume_unwind(panic);
    }
}

/// A file's path with its content and mtime, or `None` when it is absent.
type FileState = (PathBuf, Option<(Vec<u8>, SystemTime)>);

/// How many times dockerd logged a configuration reload (a SIGHUP), when
/// its log is a file we can read.
fn dockerd_reloads(pid: i32) -> Option<usize> {
    let log = fs::read_link(format!("/proc/{pid}/fd/2")).ok()?;
    let text = fs::read_to_string(log).ok()?;
    Some(
        text.lines()
            .filter(|l| l.contains("Got signal to reload configuration"))
            .count(),
    )
}

/// Docker's images that came from the buildset registry or carry its
/// names (`repository:tag digest`).
fn speculative_docker_images(digest: &str) -> Vec<String> {
    docker(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.Digest}}",
    ])
    .lines()
    .filter(|l| l.contains("quay.io/org/img") || l.contains(REGISTRY_ALIAS) || l.contains(digest))
    .map(str::to_string)
    .collect()
}

#[test]
fn check_mode_signals_pulls_and_writes_nothing() {
    let snapshot = HostSnapshot::take();
    let registry = BuildsetServer::start();
    remove_test_images(registry.port);
    let marker = random_password();
    let digest = push_image(
        &registry,
        &registry.authority(),
        &marker,
        &["quay.io/org/img:latest"],
    );
    let paths = HostPaths::system();
    let authority = format!("{REGISTRY_ALIAS}:{}", registry.port);

    // daemon.json names a mirror the daemon does not use yet: a SIGHUP
    // (or a restart) would make it live.
    let mut daemon: serde_json::Map<String, Value> = snapshot
        .original(&paths.daemon_json())
        .and_then(|c| serde_json::from_slice(c).ok())
        .unwrap_or_default();
    daemon.insert(
        "registry-mirrors".into(),
        json!(["https://pending.speculative-test.invalid/"]),
    );
    fs::write(
        paths.daemon_json(),
        serde_json::to_vec_pretty(&daemon).unwrap(),
    )
    .unwrap();

    let certs_d = paths.docker_certs_d().join(&authority);
    let runtime_dir = PathBuf::from("/run/user/0");
    let mut managed = vec![
        paths.etc_hosts(),
        certs_d.join("ca.crt"),
        paths.daemon_json(),
        home().join(".docker/config.json"),
        runtime_dir.join("containers/auth.json"),
        paths.registries_conf(),
        paths.buildkitd_toml(),
        PathBuf::from(CA_BUNDLE),
    ];
    managed.extend(snapshot.ca_anchor.clone());
    let dirs = [
        certs_d.clone(),
        home().join(".docker"),
        runtime_dir.join("containers"),
        PathBuf::from("/etc/buildkit"),
    ];
    let state = || -> Vec<FileState> {
        managed
            .iter()
            .map(|p| {
                let seen = fs::read(p)
                    .ok()
                    .map(|bytes| (bytes, fs::metadata(p).unwrap().modified().unwrap()));
                (p.clone(), seen)
            })
            .collect()
    };
    let dirs_present = || -> Vec<bool> { dirs.iter().map(|d| d.exists()).collect() };
    assert!(!certs_d.exists(), "{} exists already", certs_d.display());

    // What the module would change, in its order.
    let hosts = fs::read_to_string(paths.etc_hosts()).unwrap();
    let mut expected: Vec<String> = Vec::new();
    if !hosts
        .lines()
        .any(|l| l == format!("127.0.0.1\t{REGISTRY_ALIAS}"))
    {
        expected.push("/etc/hosts".into());
    }
    expected.push(certs_d.join("ca.crt").display().to_string());
    if let Some(anchor) = &snapshot.ca_anchor {
        expected.push(anchor.display().to_string());
    }
    expected.push("/etc/docker/daemon.json".into());
    expected.push(home().join(".docker/config.json").display().to_string());
    if runtime_dir.is_dir() {
        expected.push(
            runtime_dir
                .join("containers/auth.json")
                .display()
                .to_string(),
        );
    }
    expected.push("/etc/containers/registries.conf".into());
    expected.push("/etc/buildkit/buildkitd.toml".into());

    let pid = docker_daemon::dockerd_pid(&paths).expect("dockerd runs");
    let mirrors = docker_daemon::live_mirrors().expect("dockerd answers");
    let reloads = dockerd_reloads(pid);
    let images = speculative_docker_images(&digest);
    let files_before = state();
    let dirs_before = dirs_present();

    let mut args = module_args(&registry, true);
    args["_ansible_check_mode"] = json!(true);
    let (result, printed) = run_module_printing(args);
    let outcome = std::panic::catch_unwind(|| {
        assert_eq!(result["failed"], false, "{result}");
        assert_eq!(result["changed"], true, "{result}");
        assert_eq!(
            result["msg"],
            format!("the host would use {authority} first")
        );
        assert_eq!(result["files"], json!(expected), "{result}");
        let headers: Vec<&str> = result["diff"]
            .as_array()
            .expect("a diff per file with --diff")
            .iter()
            .map(|d| d["before_header"].as_str().unwrap())
            .collect();
        assert_eq!(headers, expected);
        assert_eq!(result["docker_reload"], "needed");
        assert_eq!(result["preloaded"], json!(["quay.io/org/img:latest"]));
        assert!(
            !printed.contains(&registry.password),
            "password leaked: {printed}"
        );

        // No SIGHUP, no restart: same daemon, same live mirrors, no
        // reload in its log.
        assert_eq!(docker_daemon::dockerd_pid(&paths), Some(pid));
        assert_eq!(docker_daemon::live_mirrors(), Some(mirrors.clone()));
        assert_eq!(dockerd_reloads(pid), reloads);
        // Nothing pulled or tagged.
        assert_eq!(speculative_docker_images(&digest), images);
        assert!(images.is_empty(), "{images:?}");
        // Nothing written: same content and mtimes, absent files and
        // directories still absent, the CA bundle not rebuilt.
        assert_eq!(state(), files_before);
        assert_eq!(dirs_present(), dirs_before);
    });
    remove_test_images(registry.port);
    drop(snapshot);
    if let Err(panic) = outcome {
        eprintln!("registry log:\n{}", registry.log());
        std::panic::resume_unwind(panic);
    }
}
