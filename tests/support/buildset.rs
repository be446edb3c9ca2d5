//! Our own buildset registry, the real `buildset-registry` binary started
//! as a child process on loopback with TLS (a CA-signed certificate), one
//! bcrypt user and a fresh token secret; stopped on drop. `kill()` and
//! `restart()` keep the storage, for crash tests.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use speculative_images::registry::config::{
    Role, ServerConfig, TlsFiles, User, DEFAULT_MAX_TOKEN_LIFETIME_SECS,
};

use super::tls::server_pki;
use super::{free_port, random_password, wait_until};

/// A running buildset registry.
pub struct BuildsetServer {
    /// Host clients use: `127.0.0.1` or `::1`.
    pub host: String,
    /// Listening port.
    pub port: u16,
    /// The user allowed to push.
    pub username: String,
    /// That user's password.
    pub password: String,
    /// PEM of the CA that signed the server certificate (what clients trust).
    pub ca_pem: String,
    /// The registry's storage root.
    pub storage: PathBuf,
    /// The secret signing its tokens (for tests that forge or expire them).
    pub token_secret: String,
    /// The server's config file.
    pub config_path: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl BuildsetServer {
    /// Start one on 127.0.0.1.
    pub fn start() -> BuildsetServer {
        BuildsetServer::start_on("127.0.0.1")
    }

    /// Start one on IPv6 loopback.
    pub fn start_ipv6() -> BuildsetServer {
        BuildsetServer::start_on("::1")
    }

    /// Start one on HTTPS's own port 443 of a loopback address of its own
    /// (`127.0.0.<n>`), so that its registry name has no port: the
    /// container family names images `<registry>/<repository>`, and a
    /// `host:port` cannot be the first path element of a repository in
    /// the buildset or intermediate registry.
    pub fn start_without_port() -> BuildsetServer {
        for _ in 0..50 {
            let host = format!("127.0.0.{}", 2 + rand::random::<u8>() % 250);
            if std::net::TcpListener::bind((host.as_str(), 443)).is_ok() {
                return BuildsetServer::start_at(&host, Some(443));
            }
        }
        panic!("no loopback address with port 443 free");
    }

    fn start_on(host: &str) -> BuildsetServer {
        BuildsetServer::start_at(host, None)
    }

    fn start_at(host: &str, port: Option<u16>) -> BuildsetServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = server_pki(
            dir.path(),
            &[
                "localhost",
                "127.0.0.1",
                "::1",
                "zuul-jobs.buildset-registry",
                host,
            ],
        );
        let username = "zuul".to_string();
        let password = random_password();
        let token_secret = hex::encode(rand::random::<[u8; 32]>());
        let storage = dir.path().join("storage");
        let port = port.unwrap_or_else(|| free_port_on(host));
        let ip: IpAddr = host.parse().expect("ip");
        let config = ServerConfig {
            listen: vec![SocketAddr::new(ip, port)],
            tls: Some(TlsFiles {
                cert: tls.cert_path.clone(),
                key: tls.key_path.clone(),
            }),
            storage: storage.clone(),
            users: vec![User {
                username: username.clone(),
                password_bcrypt: bcrypt::hash(&password, 4).expect("bcrypt"),
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
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
            .expect("write config");
        let mut server = BuildsetServer {
            host: host.to_string(),
            port,
            username,
            password,
            ca_pem: tls.cert_pem,
            storage,
            token_secret,
            config_path,
            child: None,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_buildset-registry"))
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start buildset-registry");
        self.child = Some(child);
        let addr = SocketAddr::new(self.host.parse().unwrap(), self.port);
        wait_until("buildset-registry", Duration::from_secs(20), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("buildset-registry exited ({status}):\n{}", self.log());
            }
            std::net::TcpStream::connect(addr).is_ok()
        });
    }

    /// `host:port`, IPv6 in brackets; `host` alone on port 443.
    pub fn authority(&self) -> String {
        if self.port == 443 {
            return self.host.clone();
        }
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// `https://host:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.authority())
    }

    /// The facts `run_buildset_registry` would return for this server.
    pub fn as_buildset_registry(&self) -> speculative_images::zuul::BuildsetRegistry {
        speculative_images::zuul::BuildsetRegistry {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            password: self.password.clone(),
            cert: self.ca_pem.clone(),
        }
    }

    /// A blocking HTTP client trusting the registry's CA.
    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA pem"),
            )
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The server's log so far: one line per request (method, path,
    /// status, bytes), across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the server with SIGKILL (no cleanup), keeping its storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port, config and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// A free port on `host` (the IPv6 loopback has its own port space).
fn free_port_on(host: &str) -> u16 {
    if host == "127.0.0.1" {
        return free_port();
    }
    std::net::TcpListener::bind((host, 0))
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl Drop for BuildsetServer {
    fn drop(&mut self) {
        self.kill();
        // A trust entry `docker_trust` made for this server is now useless.
        let _ = std::fs::remove_dir_all(
            std::path::Path::new("/etc/docker/certs.d").join(self.authority()),
        );
    }
}
