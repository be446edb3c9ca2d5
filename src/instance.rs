//! One buildset registry on this host, as files under its root and a
//! server process: creating its credentials, certificates and
//! configuration, starting it so it outlives the Ansible task, telling
//! whether it serves, stopping it and removing it. `run_buildset_registry`
//! decides what to do; this room does it.
//!
//! - [`layout`]: the on-disk tree and atomic writes.
//! - [`supervisor`]: the detached process or systemd unit.
//! - [`probe`]: whether `/v2/` answers over TLS with the instance's CA.

pub mod layout;
pub mod probe;
pub mod supervisor;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::distr::{Alphanumeric, SampleString as _};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use self::layout::{install_binary, write_atomic, InstanceLayout};
use self::probe::Probe;
use self::supervisor::Supervisor;
use crate::registry::config::{
    Role, ServerConfig, TlsFiles, User, DEFAULT_MAX_TOKEN_LIFETIME_SECS,
};
use crate::zuul::{BuildsetRegistry, BUILDSET_REGISTRY_ALIAS};

/// The user allowed to push, as in Zuul's own role.
pub const USERNAME: &str = "zuul";

/// How long a starting server has to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of the server's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;

/// bcrypt cost of the stored hash. The password is 32 random
/// alphanumerics (190 bits), so the hash's cost adds no safety; a low cost
/// keeps the server's check of every Basic-auth request cheap.
const BCRYPT_COST: u32 = 6;

/// What makes an instance what it is: where clients reach it.
/// (`instance.json`)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Address clients use: hostname or IP literal, IPv6 without brackets.
    pub host: String,
    /// TCP port the server listens on.
    pub port: u16,
    /// The one address the server binds; every address when `None`.
    /// (Absent from the files of instances made before it existed, which
    /// listen on every address.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<IpAddr>,
}

impl Address {
    /// The socket address the server binds.
    pub fn listen_socket(&self) -> SocketAddr {
        match self.listen {
            Some(ip) => SocketAddr::new(ip, self.port),
            None => every_address(self.port),
        }
    }
}

/// Whether the server of an instance is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Running and answering on `/v2/`.
    Serving {
        /// Its pid.
        pid: u32,
    },
    /// Running, but not answering.
    NotAnswering {
        /// Its pid.
        pid: u32,
        /// What the probe saw.
        why: String,
    },
    /// Not running.
    Stopped,
}

/// A complete instance on disk (its files, not necessarily a running
/// server).
#[derive(Debug, Clone)]
pub struct Instance {
    layout: InstanceLayout,
    identity: Address,
    password: String,
    token_secret: String,
    ca_pem: String,
}

impl Instance {
    /// The instance under `layout`, or `None` when there is none or its
    /// creation never finished (no `instance.json`).
    pub fn load(layout: &InstanceLayout) -> anyhow::Result<Option<Instance>> {
        let identity_text = match fs::read_to_string(layout.identity()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", layout.identity().display()))
            }
        };
        let damaged = || {
            format!(
                "the buildset registry under {} is damaged (state: absent removes it)",
                layout.root().display()
            )
        };
        let identity: Address = serde_json::from_str(&identity_text)
            .with_context(|| format!("parsing {}", layout.identity().display()))
            .with_context(damaged)?;
        let password = fs::read_to_string(layout.password())
            .with_context(|| format!("reading {}", layout.password().display()))
            .with_context(damaged)?
            .trim()
            .to_string();
        let config = ServerConfig::load(&layout.config()).with_context(damaged)?;
        let ca_pem = fs::read_to_string(layout.ca())
            .with_context(|| format!("reading {}", layout.ca().display()))
            .with_context(damaged)?;
        Ok(Some(Instance {
            layout: layout.clone(),
            identity,
            password,
            token_secret: config.token_secret,
            ca_pem,
        }))
    }

    /// Write a complete instance for `identity` under `layout`. From a
    /// `previous` instance it keeps the password, the token secret and the
    /// stored images, and the certificates when the host is the same;
    /// everything else is new.
    pub fn create(
        layout: &InstanceLayout,
        identity: Address,
        previous: Option<&Instance>,
    ) -> anyhow::Result<Instance> {
        layout.create_dirs()?;
        let password = match previous {
            Some(p) => p.password.clone(),
            None => Alphanumeric.sample_string(&mut rand::rng(), 32),
        };
        let token_secret = match previous {
            Some(p) => p.token_secret.clone(),
            None => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                hex::encode(bytes)
            }
        };
        let ca_pem = match previous {
            Some(p) if p.identity.host == identity.host && p.identity.listen == identity.listen => {
                p.ca_pem.clone()
            }
            _ => write_certificates(layout, &identity)?,
        };
        let password_bcrypt =
            bcrypt::hash(&password, BCRYPT_COST).context("hashing the password")?;
        let config = ServerConfig {
            listen: vec![identity.listen_socket()],
            tls: Some(TlsFiles {
                cert: layout.server_chain(),
                key: layout.server_key(),
            }),
            storage: layout.storage(),
            users: vec![User {
                username: USERNAME.to_string(),
                password_bcrypt,
                role: Role::ReadWrite,
            }],
            public_url: None,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            token_secret: token_secret.clone(),
            anonymous_pull: true,
            delete_enabled: true,
            prune: None,
            limits: Default::default(),
        };
        let config_json = serde_json::to_vec_pretty(&config).context("rendering the config")?;
        write_atomic(
            &layout.password(),
            format!("{password}\n").as_bytes(),
            0o600,
        )?;
        write_atomic(&layout.config(), &config_json, 0o600)?;
        // Last: its presence says the instance is complete.
        let identity_json = serde_json::to_vec_pretty(&identity).context("rendering identity")?;
        write_atomic(&layout.identity(), &identity_json, 0o644)?;
        Ok(Instance {
            layout: layout.clone(),
            identity,
            password,
            token_secret,
            ca_pem,
        })
    }

    /// Where clients reach it.
    pub fn identity(&self) -> &Address {
        &self.identity
    }

    /// The registry user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The secret that signs bearer tokens.
    pub fn token_secret(&self) -> &str {
        &self.token_secret
    }

    /// The facts clients need: `buildset_registry`.
    pub fn facts(&self) -> BuildsetRegistry {
        BuildsetRegistry {
            host: self.identity.host.clone(),
            port: self.identity.port,
            username: USERNAME.to_string(),
            password: self.password.clone(),
            cert: self.ca_pem.clone(),
        }
    }

    /// Whether its server runs and answers.
    pub fn status(&self, supervisor: &Supervisor) -> anyhow::Result<Status> {
        let Some(pid) = supervisor.running_pid(&self.layout) else {
            return Ok(Status::Stopped);
        };
        Ok(
            match Probe::new(self.identity.listen_socket(), &self.ca_pem)?.check() {
                Ok(()) => Status::Serving { pid },
                Err(why) => Status::NotAnswering { pid, why },
            },
        )
    }

    /// Wait up to `timeout` for a running server to answer.
    pub fn wait_serving(&self, timeout: Duration) -> anyhow::Result<bool> {
        let probe = Probe::new(self.identity.listen_socket(), &self.ca_pem)?;
        let deadline = Instant::now() + timeout;
        loop {
            if probe.check().is_ok() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Start the server from a copy of `exe` (the running module binary)
    /// and wait until it answers; returns its pid. On failure the error
    /// quotes the end of the server's log.
    pub fn start(&self, supervisor: &Supervisor, exe: &Path) -> anyhow::Result<u32> {
        install_binary(exe, &self.layout.binary())?;
        ensure_port_free(&self.identity)?;
        let mut started = supervisor.start(&self.layout)?;
        let probe = Probe::new(self.identity.listen_socket(), &self.ca_pem)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let last = match probe.check() {
                Ok(()) => return Ok(supervisor.running_pid(&self.layout).unwrap_or(started.pid)),
                Err(why) => why,
            };
            if let Some(status) = started.exited() {
                let _ = std::fs::remove_file(self.layout.pid_file());
                anyhow::bail!(
                    "the buildset registry server exited ({status}) before answering; {}",
                    self.log_excerpt()
                );
            }
            if Instant::now() >= deadline {
                let _ = supervisor.stop(&self.layout);
                anyhow::bail!(
                    "the buildset registry did not answer within {}s ({last}); {}",
                    START_TIMEOUT.as_secs(),
                    self.log_excerpt()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_excerpt(&self) -> String {
        format!(
            "the end of its log {}:\n{}",
            self.layout.log().display(),
            self.layout.log_tail(LOG_TAIL_LINES)
        )
    }
}

/// What [`remove`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// A server was running and was stopped.
    pub stopped: bool,
    /// Files were removed.
    pub removed_files: bool,
    /// The root itself stayed because it holds files that are not ours.
    pub kept_root: bool,
}

/// Stop the instance's server and remove its files. Only the instance's
/// own entries are removed, and only when the root holds an instance
/// (`instance.json` or `config.json`); the root goes when nothing else is
/// left in it.
pub fn remove(layout: &InstanceLayout, supervisor: &Supervisor) -> anyhow::Result<Removal> {
    let mut removal = Removal {
        stopped: supervisor.stop(layout)?,
        ..Removal::default()
    };
    if !is_instance(layout) {
        return Ok(removal);
    }
    for entry in layout.existing_entries() {
        let result = if entry.is_dir() && !entry.is_symlink() {
            fs::remove_dir_all(&entry)
        } else {
            fs::remove_file(&entry)
        };
        result.with_context(|| format!("removing {}", entry.display()))?;
        removal.removed_files = true;
    }
    match fs::remove_dir(layout.root()) {
        Ok(()) => removal.removed_files = true,
        Err(_) if layout.root().exists() => removal.kept_root = true,
        Err(_) => {}
    }
    Ok(removal)
}

/// Whether the root holds an instance, complete or not.
pub fn is_instance(layout: &InstanceLayout) -> bool {
    layout.identity().is_file() || layout.config().is_file()
}

/// Fail unless the identity's port can be bound on its address (checked
/// before anything is created, and again before each start).
pub fn ensure_port_free(identity: &Address) -> anyhow::Result<()> {
    let (port, listen) = (identity.port, identity.listen_socket());
    if let Err(e) = TcpListener::bind(listen) {
        anyhow::bail!(
            "cannot start the buildset registry on port {port}: binding {listen}: {e} \
             (another program holds the port? choose another `port`)"
        );
    }
    Ok(())
}

/// Every address on `port`: `[::]` (IPv4 and IPv6) where IPv6 exists.
fn every_address(port: u16) -> SocketAddr {
    let ipv6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
    if ipv6 {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }
}

/// The names the certificate covers: the host, the address it listens on
/// (the probe's target), loopback both ways, and the alias
/// `use_buildset_registry` writes to `/etc/hosts`.
pub fn certificate_names(identity: &Address) -> Vec<String> {
    let mut names = vec![identity.host.clone()];
    let listen = identity.listen.filter(|ip| !ip.is_unspecified());
    let fixed = ["127.0.0.1", "::1", "localhost", BUILDSET_REGISTRY_ALIAS].map(String::from);
    for name in listen.map(|ip| ip.to_string()).into_iter().chain(fixed) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Generate and write the CA, chain and key; returns the CA PEM.
fn write_certificates(layout: &InstanceLayout, identity: &Address) -> anyhow::Result<String> {
    let pki = crate::pki::generate(&certificate_names(identity))
        .context("generating the registry's certificates")?;
    write_atomic(&layout.server_key(), pki.key_pem.as_bytes(), 0o600)?;
    write_atomic(&layout.server_chain(), pki.chain_pem.as_bytes(), 0o644)?;
    write_atomic(&layout.ca(), pki.ca_pem.as_bytes(), 0o644)?;
    Ok(pki.ca_pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn identity(host: &str, port: u16) -> Address {
        Address {
            host: host.into(),
            port,
            listen: None,
        }
    }

    #[test]
    fn creates_a_complete_instance_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path().join("reg"));
        assert!(Instance::load(&layout).unwrap().is_none());
        let made = Instance::create(&layout, identity("10.1.2.3", 5000), None).unwrap();
        let facts = made.facts();
        assert_eq!(facts.username, "zuul");
        assert_eq!(facts.password.len(), 32);
        assert!(facts.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        for private in [layout.config(), layout.password(), layout.server_key()] {
            let mode = fs::metadata(&private).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", private.display());
        }
        assert_eq!(fs::metadata(layout.root()).unwrap().mode() & 0o777, 0o700);

        let config = ServerConfig::load(&layout.config()).unwrap();
        assert_eq!(config.listen[0].port(), 5000);
        assert_eq!(config.storage, layout.storage());
        assert_eq!(config.users[0].username, "zuul");
        assert!(bcrypt::verify(&facts.password, &config.users[0].password_bcrypt).unwrap());
        assert_eq!(config.token_secret.len(), 64);
        assert!(!fs::read_to_string(layout.config())
            .unwrap()
            .contains(&facts.password));

        let loaded = Instance::load(&layout).unwrap().unwrap();
        assert_eq!(loaded.facts(), facts);
        assert_eq!(loaded.token_secret(), made.token_secret());
    }

    #[test]
    fn a_new_port_keeps_credentials_and_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path());
        let first = Instance::create(&layout, identity("reg.example.org", 5000), None).unwrap();
        let moved =
            Instance::create(&layout, identity("reg.example.org", 5001), Some(&first)).unwrap();
        assert_eq!(moved.password(), first.password());
        assert_eq!(moved.facts().cert, first.facts().cert);
        let rehosted =
            Instance::create(&layout, identity("other.example.org", 5001), Some(&moved)).unwrap();
        assert_eq!(rehosted.password(), first.password());
        assert_ne!(rehosted.facts().cert, first.facts().cert);
    }

    #[test]
    fn an_unfinished_instance_is_no_instance() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path());
        Instance::create(&layout, identity("::1", 5000), None).unwrap();
        fs::remove_file(layout.identity()).unwrap();
        assert!(Instance::load(&layout).unwrap().is_none());
        assert!(is_instance(&layout), "config.json still marks it ours");
    }

    #[test]
    fn a_damaged_instance_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path());
        Instance::create(&layout, identity("::1", 5000), None).unwrap();
        fs::remove_file(layout.password()).unwrap();
        let err = format!("{:#}", Instance::load(&layout).unwrap_err());
        assert!(
            err.starts_with(&format!(
                "the buildset registry under {} is damaged (state: absent removes it): reading {}",
                dir.path().display(),
                layout.password().display()
            )),
            "{err}"
        );
    }

    #[test]
    fn removal_keeps_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path().join("reg"));
        Instance::create(&layout, identity("::1", 5000), None).unwrap();
        fs::write(layout.root().join("notes.txt"), "mine").unwrap();
        let removal = remove(&layout, &Supervisor::Detached).unwrap();
        assert_eq!(
            removal,
            Removal {
                stopped: false,
                removed_files: true,
                kept_root: true
            }
        );
        let left: Vec<_> = fs::read_dir(layout.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
        fs::remove_file(layout.root().join("notes.txt")).unwrap();
        // Not an instance any more: nothing is touched.
        assert_eq!(
            remove(&layout, &Supervisor::Detached).unwrap(),
            Removal::default()
        );
        assert!(layout.root().exists());
    }

    #[test]
    fn a_directory_without_an_instance_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        let layout = InstanceLayout::new(dir.path());
        assert_eq!(
            remove(&layout, &Supervisor::Detached).unwrap(),
            Removal::default()
        );
        assert!(dir.path().join("bin").exists());
    }

    #[test]
    fn certificate_names_cover_loopback_and_the_alias() {
        assert_eq!(
            certificate_names(&identity("localhost", 5000)),
            ["localhost", "127.0.0.1", "::1", BUILDSET_REGISTRY_ALIAS]
        );
        assert_eq!(certificate_names(&identity("fd00::5", 5000))[0], "fd00::5");
    }

    #[test]
    fn a_listen_address_is_bound_and_certified() {
        let mut bound = identity("reg.example.org", 5000);
        bound.listen = Some(Ipv4Addr::new(10, 1, 2, 3).into());
        assert_eq!(bound.listen_socket(), "10.1.2.3:5000".parse().unwrap());
        assert_eq!(
            certificate_names(&bound),
            [
                "reg.example.org",
                "10.1.2.3",
                "127.0.0.1",
                "::1",
                "localhost",
                BUILDSET_REGISTRY_ALIAS
            ]
        );
        // The unspecified address is no name to certify.
        bound.listen = Some(Ipv4Addr::UNSPECIFIED.into());
        assert_eq!(certificate_names(&bound).len(), 5);
    }

    #[test]
    fn identities_written_before_listen_existed_still_load() {
        let old: Address = serde_json::from_str(r#"{"host": "10.1.2.3", "port": 5000}"#).unwrap();
        assert_eq!(old, identity("10.1.2.3", 5000));
        // And the default writes the same file as before.
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"host":"10.1.2.3","port":5000}"#
        );
    }

    #[test]
    fn a_new_listen_address_gets_new_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path());
        let first = Instance::create(&layout, identity("127.0.0.1", 5000), None).unwrap();
        let mut bound = identity("127.0.0.1", 5000);
        bound.listen = Some(Ipv4Addr::LOCALHOST.into());
        let rebound = Instance::create(&layout, bound, Some(&first)).unwrap();
        assert_eq!(rebound.password(), first.password());
        assert_ne!(rebound.facts().cert, first.facts().cert);
        let config = ServerConfig::load(&layout.config()).unwrap();
        assert_eq!(config.listen, ["127.0.0.1:5000".parse().unwrap()]);
    }
}
