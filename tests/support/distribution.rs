//! Debian's `docker-registry` (distribution 2.8, the seed's `registry:2`)
//! configured exactly as the seed's compose file does: TLS from
//! `domain.crt`/`domain.key` and htpasswd auth with realm "Registry Realm".
//! The configuration is the shipped example,
//! `examples/intermediate-registry/config.yml`, rendered the way
//! `bench/lib/distribution.sh` renders it: only the storage root, the
//! certificate, key and htpasswd paths, the listen address and the log level
//! are replaced. Used as the intermediate registry, and as the anchor in
//! benchmarks.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use super::tls::{self_signed_ca, server_pki, TlsPair};
use super::{free_port, random_password, wait_until};

/// How to start a [`Distribution`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Listen on `::1` only (else `127.0.0.1`).
    pub ipv6: bool,
    /// Serve one self-signed CA certificate (CA:TRUE) as the server's own,
    /// as sites do with `openssl req -x509`, instead of a CA-signed leaf.
    pub ca_as_leaf: bool,
    /// Turn `storage.delete` on. The seed's `registry:2` (and so the
    /// example) leaves it off, refusing every DELETE; only tests that need
    /// deletes to succeed ask for it.
    pub delete_enabled: bool,
}

/// A running distribution registry; stopped and removed on drop.
pub struct Distribution {
    /// Listening port.
    pub port: u16,
    /// Host clients use: `127.0.0.1` or `::1`.
    pub host: String,
    /// htpasswd user.
    pub username: String,
    /// That user's password.
    pub password: String,
    /// TLS material (the cert is its own CA).
    pub tls: TlsPair,
    /// The registry's storage root.
    pub data: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Distribution {
    /// Start one on 127.0.0.1.
    pub fn start() -> Distribution {
        Distribution::start_with(Options::default())
    }

    /// Start one on IPv6 loopback only.
    pub fn start_ipv6() -> Distribution {
        Distribution::start_with(Options {
            ipv6: true,
            ..Options::default()
        })
    }

    /// Start one as `options` say.
    pub fn start_with(options: Options) -> Distribution {
        let host = if options.ipv6 { "::1" } else { "127.0.0.1" };
        let dir = tempfile::tempdir().expect("tempdir");
        let names = ["localhost", "127.0.0.1", "::1"];
        let tls = if options.ca_as_leaf {
            self_signed_ca(dir.path(), &names)
        } else {
            server_pki(dir.path(), &names)
        };
        let username = "zuul".to_string();
        let password = random_password();
        let hash = bcrypt::hash_with_result(&password, 4)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoY);
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{username}:{hash}\n")).expect("write htpasswd");
        let data = dir.path().join("data");
        let port = free_port();
        let ip: IpAddr = host.parse().expect("ip");
        let addr = SocketAddr::new(ip, port);
        let config = dir.path().join("config.yml");
        let rendered = render_example(&data, &addr, &tls, &htpasswd, options.delete_enabled);
        std::fs::write(&config, rendered).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        // The access log (one line per request) goes to stdout.
        let access = std::fs::File::create(dir.path().join("access.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdout(access)
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt install docker-registry)");
        wait_until("docker-registry", Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Distribution {
            port,
            host: host.to_string(),
            username,
            password,
            tls,
            data,
            child,
            _dir: dir,
        }
    }

    /// `host:port`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The access log so far: one line per HTTP request served.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self._dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The shipped example configuration.
const EXAMPLE: &str = include_str!("../../examples/intermediate-registry/config.yml");

/// `EXAMPLE` with this instance's paths, address and log level (each
/// replaced line must be there: a changed example fails here rather than
/// silently testing another configuration), plus `storage.delete` when
/// asked for.
fn render_example(
    data: &std::path::Path,
    addr: &SocketAddr,
    tls: &TlsPair,
    htpasswd: &std::path::Path,
    delete_enabled: bool,
) -> String {
    let replacements = [
        (
            "rootdirectory: /var/registry/data".to_string(),
            format!("rootdirectory: {}", data.display()),
        ),
        (
            "certificate: /var/registry/certs/domain.crt".to_string(),
            format!("certificate: {}", tls.cert_path.display()),
        ),
        (
            "key: /var/registry/certs/domain.key".to_string(),
            format!("key: {}", tls.key_path.display()),
        ),
        (
            "path: /var/registry/auth/htpasswd".to_string(),
            format!("path: {}", htpasswd.display()),
        ),
        ("addr: \":5000\"".to_string(), format!("addr: \"{addr}\"")),
        ("level: info".to_string(), "level: warn".to_string()),
    ];
    let mut config = EXAMPLE.to_string();
    for (from, to) in replacements {
        assert_eq!(
            config.matches(&from).count(),
            1,
            "examples/intermediate-registry/config.yml: expected one `{from}`"
        );
        config = config.replace(&from, &to);
    }
    assert!(
        !config.contains("delete:"),
        "examples/intermediate-registry/config.yml enables deletes; the seed's registry:2 does not"
    );
    if delete_enabled {
        let storage = "  filesystem:\n";
        assert!(config.contains(storage));
        config = config.replacen(storage, "  delete:\n    enabled: true\n  filesystem:\n", 1);
    }
    config
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
