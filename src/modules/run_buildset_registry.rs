//! `run_buildset_registry`: make sure a buildset registry runs on this node
//! (or is gone, with `state: absent`) and return how clients reach it.
//!
//! The decision table lives here; the work (files, certificates, process,
//! probe) is in [`crate::instance`].
//!
//! | on disk          | server            | result                                   |
//! |------------------|-------------------|------------------------------------------|
//! | nothing          | -                 | create, start: changed                   |
//! | same host/port   | answering         | same facts: unchanged, nothing written   |
//! | same host/port   | dead or hung      | restart on the same data: changed        |
//! | other host/port  | any               | stop, rewrite config (same password), start: changed |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

use crate::ansible::{Context, Module, Outcome};
use crate::instance::layout::InstanceLayout;
use crate::instance::supervisor::Supervisor;
use crate::instance::{self, Address, Instance, Status};

/// How long a running but silent server gets before it is restarted.
const GRACE_FOR_A_STARTING_SERVER: std::time::Duration = std::time::Duration::from_secs(5);

/// Arguments of `run_buildset_registry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Directory holding the registry's files (`~` expanded).
    #[serde(default)]
    pub root: Option<String>,
    /// TCP port.
    #[serde(default, deserialize_with = "port_from_number_or_text")]
    pub port: Option<u16>,
    /// The address clients use; the node's primary address by default.
    #[serde(default)]
    pub host: Option<String>,
    /// `present` (default) or `absent`.
    #[serde(default)]
    pub state: Option<State>,
    /// The one address to bind (an address of this node); every address
    /// by default.
    #[serde(default)]
    pub listen: Option<String>,
}

/// Whether the registry should exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Running and answering.
    #[default]
    Present,
    /// Stopped and removed.
    Absent,
}

/// The default `root`.
pub const DEFAULT_ROOT: &str = "~/buildset_registry";
/// The default `port`.
pub const DEFAULT_PORT: u16 = 5000;

/// The `run_buildset_registry` module.
pub struct RunBuildsetRegistry;

impl Module for RunBuildsetRegistry {
    type Args = Args;

    fn run(args: Args, ctx: &mut Context) -> anyhow::Result<Outcome> {
        let root = expand_root(args.root.as_deref().unwrap_or(DEFAULT_ROOT))?;
        let layout = InstanceLayout::new(&root);
        let supervisor = Supervisor::for_host(&layout);
        match args.state.unwrap_or_default() {
            State::Absent => absent(&layout, &supervisor, ctx),
            State::Present => {
                let port = args.port.unwrap_or(DEFAULT_PORT);
                anyhow::ensure!(
                    port != 0,
                    "argument port: must be between 1 and 65535, got 0"
                );
                let listen = args.listen.as_deref().map(validate_listen).transpose()?;
                // Clients reach a server bound to one address there.
                let host = match (args.host, listen) {
                    (Some(h), _) => validate_host(&h)?,
                    (None, Some(ip)) if !ip.is_unspecified() => ip.to_string(),
                    (None, _) => primary_address(),
                };
                let wanted = Address { host, port, listen };
                present(&layout, &supervisor, wanted, ctx)
            }
        }
    }
}

fn present(
    layout: &InstanceLayout,
    supervisor: &Supervisor,
    wanted: Address,
    ctx: &mut Context,
) -> anyhow::Result<Outcome> {
    let root = layout.root().display().to_string();
    let existing = Instance::load(layout)?;
    if let Some(inst) = &existing {
        ctx.secrets.add(inst.password());
        ctx.secrets.add(inst.token_secret());
    }
    let where_ = match wanted.listen {
        Some(_) => format!("under {root} on {}", wanted.listen_socket()),
        None => format!("under {root} on port {}", wanted.port),
    };
    let (instance, verb) = match existing {
        Some(inst) if *inst.identity() == wanted => {
            let pid = match inst.status(supervisor)? {
                Status::Serving { .. } => {
                    return Ok(facts(&inst, false, format!("serving {where_}")))
                }
                Status::NotAnswering { pid, .. } => pid,
                Status::Stopped => 0,
            };
            // A server that runs but is silent may still be starting.
            if pid != 0 && inst.wait_serving(GRACE_FOR_A_STARTING_SERVER)? {
                return Ok(facts(&inst, false, format!("serving {where_}")));
            }
            if ctx.check_mode {
                return Ok(facts(
                    &inst,
                    true,
                    format!("would restart the registry {where_}"),
                ));
            }
            supervisor.stop(layout)?;
            (inst, "restarted")
        }
        Some(inst) => {
            if ctx.check_mode {
                let msg = format!(
                    "would reconfigure the registry under {root} from {}:{} to {}:{} and restart it",
                    inst.identity().host,
                    inst.identity().port,
                    wanted.host,
                    wanted.port
                );
                return Ok(Outcome::new(true).msg(msg));
            }
            // On its own port the old server holds it until stopped;
            // start checks again.
            if wanted.port != inst.identity().port {
                instance::ensure_port_free(&wanted)?;
            }
            supervisor.stop(layout)?;
            let inst = Instance::create(layout, wanted, Some(&inst))?;
            (inst, "reconfigured and restarted")
        }
        None => {
            if ctx.check_mode {
                return Ok(
                    Outcome::new(true).msg(format!("would create and start a registry {where_}"))
                );
            }
            // Leftovers of an unfinished creation (or a server whose
            // identity file is gone) go first.
            supervisor.stop(layout)?;
            instance::ensure_port_free(&wanted)?;
            let inst = Instance::create(layout, wanted, None)?;
            ctx.secrets.add(inst.password());
            ctx.secrets.add(inst.token_secret());
            (inst, "created and started")
        }
    };
    let exe = std::env::current_exe().context("finding the module's own binary")?;
    let pid = instance.start(supervisor, &exe)?;
    Ok(facts(
        &instance,
        true,
        format!("{verb} the registry {where_} (pid {pid})"),
    ))
}

fn absent(
    layout: &InstanceLayout,
    supervisor: &Supervisor,
    ctx: &Context,
) -> anyhow::Result<Outcome> {
    let root = layout.root().display().to_string();
    let running = supervisor.running_pid(layout).is_some();
    let ours = instance::is_instance(layout);
    if !running && !ours {
        return Ok(Outcome::new(false).msg(format!("no registry under {root}")));
    }
    if ctx.check_mode {
        return Ok(Outcome::new(true).msg(format!(
            "would stop the registry under {root} and remove its files"
        )));
    }
    let removal = instance::remove(layout, supervisor)?;
    let mut msg = format!("stopped the registry under {root} and removed its files");
    if removal.kept_root {
        msg.push_str(&format!(
            "; {root} itself is kept: it holds files that are not the registry's"
        ));
    }
    Ok(Outcome::new(true).msg(msg))
}

/// The module's result: the contract value `buildset_registry` unmasked
/// (the role's task is `no_log`).
fn facts(instance: &Instance, changed: bool, msg: String) -> Outcome {
    Outcome::new(changed)
        .msg(msg)
        .secret_value("buildset_registry", instance.facts())
}

/// `~` and `~/...` expanded with `$HOME`; the result must be absolute and
/// not `/`.
fn expand_root(root: &str) -> anyhow::Result<PathBuf> {
    let expanded = if root == "~" || root.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .context("argument root: cannot expand ~, HOME is not set")?;
        PathBuf::from(home).join(root.trim_start_matches('~').trim_start_matches('/'))
    } else if root.starts_with('~') {
        anyhow::bail!("argument root: {root:?}: only ~ and ~/ are expanded (not ~user)");
    } else {
        PathBuf::from(root)
    };
    anyhow::ensure!(
        expanded.is_absolute(),
        "argument root: {root:?} must be an absolute path or start with ~/"
    );
    anyhow::ensure!(
        expanded.parent().is_some(),
        "argument root: {root:?} cannot be the file system root"
    );
    Ok(expanded)
}

/// A hostname or IP literal (IPv6 with or without brackets), returned
/// without brackets.
fn validate_host(host: &str) -> anyhow::Result<String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(bare.to_string());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    anyhow::ensure!(
        !bare.is_empty() && bare.len() <= 253 && bare.split('.').all(label_ok),
        "argument host: {host:?} is neither an IP address nor a DNS name"
    );
    Ok(bare.to_string())
}

/// An IP literal (IPv6 with or without brackets) that is an address of
/// this node, or an unspecified address (every address of its family).
fn validate_listen(listen: &str) -> anyhow::Result<IpAddr> {
    let bare = listen
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(listen);
    let ip: IpAddr = bare.parse().map_err(|_| {
        anyhow::anyhow!(
            "argument listen: {listen:?} is not an IP address (the registry binds an address, not a name)"
        )
    })?;
    // Binding port 0 tells whether the address is this node's without
    // taking a port.
    if let Err(e) = std::net::TcpListener::bind((ip, 0)) {
        anyhow::bail!("argument listen: {ip} is not an address of this node ({e})");
    }
    Ok(ip)
}

/// The address this node reaches the rest of the network from: the source
/// address of a route to a documentation address (no packet is sent), or
/// loopback when there is no route.
fn primary_address() -> String {
    let via = |bind: IpAddr, to: IpAddr| -> Option<IpAddr> {
        let socket = UdpSocket::bind((bind, 0)).ok()?;
        socket.connect((to, 9)).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    };
    via(
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv4Addr::new(192, 0, 2, 1).into(),
    )
    .or_else(|| {
        via(
            Ipv6Addr::UNSPECIFIED.into(),
            "2001:db8::1".parse::<Ipv6Addr>().ok()?.into(),
        )
    })
    .map(|ip| ip.to_string())
    .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// Ansible passes `port` as a number, or as text when it comes from
/// `-e` or a templated string.
fn port_from_number_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    let Some(raw) = Option::<NumberOrText>::deserialize(d)? else {
        return Ok(None);
    };
    let port = match &raw {
        NumberOrText::Number(n) => u16::try_from(*n).ok(),
        NumberOrText::Text(t) => t.trim().parse::<u16>().ok(),
    };
    let shown = match raw {
        NumberOrText::Number(n) => n.to_string(),
        NumberOrText::Text(t) => format!("{t:?}"),
    };
    port.map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{shown} is not a TCP port (1-65535)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ansible::{run_module, Invocation};
    use serde_json::{json, Value};

    fn run(args: Value) -> (Value, bool) {
        let mut all = args.as_object().unwrap().clone();
        all.insert(
            "_ansible_module_name".into(),
            json!("speculative.images.run_buildset_registry"),
        );
        let inv = Invocation::from_json(&Value::Object(all).to_string()).unwrap();
        run_module::<RunBuildsetRegistry>(inv)
    }

    #[test]
    fn an_unknown_argument_is_refused_by_name() {
        let (out, failed) = run(json!({"root": "/tmp/x", "colour": "red"}));
        assert!(failed);
        let msg = out["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("argument colour: unknown field `colour`, expected one of"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_their_argument() {
        for (args, expected) in [
            (
                json!({"port": "many"}),
                "argument port: \"many\" is not a TCP port (1-65535)",
            ),
            (
                json!({"port": 70000}),
                "argument port: 70000 is not a TCP port (1-65535)",
            ),
            (
                json!({"port": 0}),
                "argument port: must be between 1 and 65535, got 0",
            ),
            (
                json!({"state": "running"}),
                "argument state: unknown variant `running`, expected `present` or `absent`",
            ),
            (
                json!({"host": "reg istry"}),
                "argument host: \"reg istry\" is neither an IP address nor a DNS name",
            ),
            (
                json!({"root": "relative/dir"}),
                "argument root: \"relative/dir\" must be an absolute path or start with ~/",
            ),
            (
                json!({"root": "~bob/reg"}),
                "argument root: \"~bob/reg\": only ~ and ~/ are expanded (not ~user)",
            ),
            (
                json!({"root": "/"}),
                "argument root: \"/\" cannot be the file system root",
            ),
            (
                json!({"listen": "registry.example.org"}),
                "argument listen: \"registry.example.org\" is not an IP address (the registry binds an address, not a name)",
            ),
            (
                // TEST-NET-1: documentation only, on no node.
                json!({"listen": "192.0.2.1"}),
                "argument listen: 192.0.2.1 is not an address of this node (",
            ),
        ] {
            let (out, failed) = run(args.clone());
            assert!(failed, "{args}");
            let msg = out["msg"].as_str().unwrap();
            assert!(msg.starts_with(expected), "{args}: {msg}");
        }
    }

    #[test]
    fn port_accepts_text() {
        let args: Args = crate::ansible::invocation::parse_args(json!({"port": "5001"})).unwrap();
        assert_eq!(args.port, Some(5001));
    }

    #[test]
    fn hosts_lose_their_brackets() {
        assert_eq!(validate_host("[fd00::5]").unwrap(), "fd00::5");
        assert_eq!(
            validate_host("reg-1.example.org").unwrap(),
            "reg-1.example.org"
        );
        assert_eq!(validate_host("192.0.2.7").unwrap(), "192.0.2.7");
    }

    #[test]
    fn the_default_host_is_an_address() {
        assert!(primary_address().parse::<IpAddr>().is_ok());
    }

    #[test]
    fn check_mode_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("reg");
        let port = 5000;
        let (out, failed) = run(json!({
            "root": root, "port": port, "host": "127.0.0.1", "_ansible_check_mode": true
        }));
        assert!(!failed, "{out}");
        assert_eq!(out["changed"], true);
        assert_eq!(
            out["msg"],
            format!(
                "would create and start a registry under {} on port {port}",
                root.display()
            )
        );
        assert!(!root.exists());
    }

    #[test]
    fn a_taken_port_fails_before_anything_is_created() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("reg");
        let (out, failed) = run(json!({"root": root, "port": port, "host": "127.0.0.1"}));
        assert!(failed, "{out}");
        let msg = out["msg"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!(
                "cannot start the buildset registry on port {port}: binding [::]:{port}: Address already in use"
            )),
            "{msg}"
        );
        assert!(!root.exists());
    }

    #[test]
    fn absent_without_a_registry_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nothing-here");
        let (out, failed) = run(json!({"root": root, "state": "absent"}));
        assert!(!failed, "{out}");
        assert_eq!(out["changed"], false);
        assert_eq!(out["msg"], format!("no registry under {}", root.display()));
    }
}
