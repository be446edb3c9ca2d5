//! `use_buildset_registry`: point every container tool on the host at the
//! buildset registry first, then upstream (docker daemon mirrors and
//! certs.d, docker and containers credentials, registries.conf,
//! buildkitd.toml, the system CA store, an /etc/hosts alias for an IP
//! literal), reload dockerd with SIGHUP when its mirrors change, and
//! optionally preload the docker image store with the registry's images
//! of other registries than docker.io.

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::ansible::{Context, Module, Outcome};
use crate::client::{Endpoint, RemoteRegistry};
use crate::host::buildset_clients::{self, Plan, Settings};
use crate::host::daemon_json::same_url;
use crate::host::docker_daemon::{self, Reload};
use crate::host::docker_preload;
use crate::host::registries_conf::Namespace;
use crate::host::{docker_config, users, HostPaths};
use crate::zuul::BuildsetRegistry;

/// Arguments of `use_buildset_registry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The registry, as `run_buildset_registry` returned it.
    pub buildset_registry: BuildsetRegistry,
    /// `[registry, upstream URL]` pairs to mirror.
    #[serde(default = "default_namespaces")]
    pub namespaces: Vec<(String, String)>,
    /// `unqualified-search-registries`.
    #[serde(default = "default_unqualified")]
    pub unqualified_registries: Vec<String>,
    /// Whose `~/.docker/config.json` to edit (default: the user who became
    /// root, else the user running the module).
    #[serde(default)]
    pub docker_user: Option<String>,
    /// Pull the registry's images of other registries into docker's store.
    #[serde(default)]
    pub preload: bool,
}

fn default_namespaces() -> Vec<(String, String)> {
    [
        ("docker.io", "https://registry-1.docker.io"),
        ("quay.io", "https://quay.io"),
        ("gcr.io", "https://gcr.io"),
        ("registry.k8s.io", "https://registry.k8s.io"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn default_unqualified() -> Vec<String> {
    vec!["docker.io".to_string()]
}

/// The `use_buildset_registry` module.
pub struct UseBuildsetRegistry;

impl Module for UseBuildsetRegistry {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        run_on(&HostPaths::system(), args, ctx)
    }
}

/// The module on the host `paths` stands for. Daemons and system commands
/// (dockerd's reload, the CA bundle rebuild, preloading) only act when
/// `paths` is the real host.
pub fn run_on(paths: &HostPaths, args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
    let preload = args.preload && paths.is_system();
    let settings = settings(paths, args)?;
    ctx.secrets.add(settings.auth_token());
    let plan = buildset_clients::plan(paths, &settings)?;
    configure(paths, &settings, &plan, preload, ctx)
}

/// Validate the arguments into settings; nothing is touched yet.
pub fn settings(paths: &HostPaths, args: Args) -> anyhow::Result<Settings> {
    let registry = args.buildset_registry;
    let host = registry
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    anyhow::ensure!(!host.is_empty(), "argument buildset_registry.host: empty");
    anyhow::ensure!(registry.port != 0, "argument buildset_registry.port: 0");
    let cert = validate_cert(&registry.cert)?;
    let namespaces = args
        .namespaces
        .iter()
        .map(|(name, url)| namespace(name, url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let user_name = match args.docker_user.filter(|u| !u.is_empty()) {
        Some(user) => user,
        None => std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty())
            // SAFETY: getuid(2) cannot fail.
            .unwrap_or_else(|| unsafe { libc::getuid() }.to_string()),
    };
    let docker_user = users::lookup(paths, &user_name).context("argument docker_user")?;
    Ok(Settings {
        host,
        port: registry.port,
        username: registry.username,
        password: registry.password,
        cert,
        namespaces,
        unqualified: args.unqualified_registries,
        docker_user,
    })
}

/// The cert must be at least one PEM certificate.
fn validate_cert(cert: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !cert.trim().is_empty(),
        "argument buildset_registry.cert: empty; the registry's CA certificate (PEM) is required"
    );
    CertificateDer::from_pem_slice(cert.as_bytes()).map_err(|e| {
        anyhow::anyhow!("argument buildset_registry.cert: not a PEM certificate ({e})")
    })?;
    Ok(cert.trim().to_string() + "\n")
}

/// `[registry, https://host[:port][/path]]` → a namespace whose upstream
/// location is `host[:port][/path]`.
fn namespace(name: &str, url: &str) -> anyhow::Result<Namespace> {
    let bad = |why: &str| anyhow::anyhow!("argument namespaces: {name:?} → {url:?}: {why}");
    anyhow::ensure!(!name.is_empty(), bad("empty registry name"));
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
    let mut upstream = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let path = parsed.path().trim_matches('/');
    if !path.is_empty() {
        upstream = format!("{upstream}/{path}");
    }
    Ok(Namespace {
        registry: name.to_string(),
        upstream,
    })
}

/// Apply the plan (unless in check mode), make the daemons and the CA
/// bundle follow, preload, and report.
fn configure(
    paths: &HostPaths,
    settings: &Settings,
    plan: &Plan,
    preload: bool,
    ctx: &mut Context,
) -> anyhow::Result<Outcome> {
    let mirror = settings.mirror_url();
    let mut files: Vec<String> = plan.changed().map(|e| e.display.clone()).collect();
    let diffs: Vec<_> = plan.changed().map(|e| e.diff()).collect();
    // A daemon.json already right but not yet live (an interrupted run)
    // still needs the reload.
    let system = paths.is_system();
    // Asked once: `docker info` is the slowest step of an unchanged run.
    let live = if system {
        docker_daemon::live_mirrors()
    } else {
        None
    };
    let live_first = live.as_ref().and_then(|m| m.first());
    let needs_reload = system
        && (plan.daemon_json_changed()
            || (live.is_some() && !live_first.is_some_and(|m| same_url(m, &mirror))));

    let mut reloaded = None;
    if !ctx.check_mode {
        files = plan.apply()?;
        if let Some((store, _)) = plan.ca_store.filter(|_| system && plan.ca_changed()) {
            store.update()?;
        }
        if needs_reload {
            reloaded = Some(docker_daemon::reload(paths, &mirror)?);
        }
    }

    let mut preloaded = Vec::new();
    if preload && live.is_none() {
        ctx.warn("preload skipped: no docker daemon answers on this host");
    } else if preload {
        let credentials = docker_credentials_dir(settings)?;
        preloaded = docker_preload::preload_missing(
            &*buildset_client(settings)?,
            &settings.authority(),
            credentials.path(),
            ctx.check_mode,
        )?;
    }

    let changed = !files.is_empty() || needs_reload || !preloaded.is_empty();
    let reload = match reloaded {
        Some(Reload::Signalled(_)) => "sighup",
        Some(Reload::Restarted) => "restarted",
        Some(Reload::NotRunning) => "not running",
        None if needs_reload => "needed",
        None => "none",
    };
    let msg = if changed && ctx.check_mode {
        format!("the host would use {} first", settings.authority())
    } else if changed {
        format!("the host now uses {} first", settings.authority())
    } else {
        format!("the host already uses {} first", settings.authority())
    };
    Ok(Outcome::new(changed)
        .msg(msg)
        .value("files", files)
        .value("registry", settings.authority())
        .value("docker_reload", reload)
        .value("preloaded", preloaded)
        .diffs(diffs))
}

/// A client of the buildset registry, on its own address.
fn buildset_client(settings: &Settings) -> anyhow::Result<std::sync::Arc<RemoteRegistry>> {
    let connect = crate::zuul::naming::authority(&settings.host, settings.port);
    Ok(RemoteRegistry::new(
        Endpoint::new(connect)
            .with_credentials(&settings.username, &settings.password)
            .with_ca_pem(&settings.cert),
    )?)
}

/// A private DOCKER_CONFIG holding only the buildset registry's
/// credentials, for the docker CLI's pulls; removed when dropped.
fn docker_credentials_dir(settings: &Settings) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().context("creating a temporary DOCKER_CONFIG")?;
    let text = docker_config::with_auth(None, &settings.authority(), &settings.auth_token())?;
    std::fs::write(dir.path().join("config.json"), text)
        .context("writing a temporary DOCKER_CONFIG")?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_from_urls() {
        assert_eq!(
            namespace("docker.io", "https://registry-1.docker.io").unwrap(),
            Namespace {
                registry: "docker.io".into(),
                upstream: "registry-1.docker.io".into()
            }
        );
        assert_eq!(
            namespace("example", "https://mirror.example:8443/base/")
                .unwrap()
                .upstream,
            "mirror.example:8443/base"
        );
        assert_eq!(
            namespace("q", "quay.io").unwrap_err().to_string(),
            "argument namespaces: \"q\" → \"quay.io\": relative URL without a base"
        );
    }

    #[test]
    fn cert_is_required() {
        assert_eq!(
            validate_cert("  ").unwrap_err().to_string(),
            "argument buildset_registry.cert: empty; the registry's CA certificate (PEM) is required"
        );
        assert!(validate_cert("hello")
            .unwrap_err()
            .to_string()
            .starts_with("argument buildset_registry.cert: not a PEM certificate"));
    }
}
