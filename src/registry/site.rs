//! A site's configuration of the registry as its long-lived intermediate
//! registry: a YAML (`.yaml`, `.yml`) or TOML (`.toml`) file, resolved
//! into the [`ServerConfig`] the server runs. Every key (YAML shown; TOML
//! takes the same keys, `[tls]` and `[users]` as tables):
//!
//! ```yaml
//! listen: ["0.0.0.0:5000", "[::]:5000"]    # required, IPv4 and/or IPv6
//! public_url: https://registry.example.org:5000  # token realm; else the checked Host
//! tls: {cert: certs/domain.crt, key: certs/domain.key}  # PEM chain and key
//! storage: /var/lib/speculative-images/registry        # required
//! htpasswd: auth/htpasswd      # required: bcrypt entries (`htpasswd -B`)
//! users:                       # required: a role per htpasswd user who may log in
//!   zuul: read-write           # pull, push, delete
//!   mirror: read-only          # pull only
//! anonymous_pull: false        # default false: it holds unmerged code
//! deletes: true                # default true
//! token_secret_file: token.secret  # required; made (0600) when absent
//! max_token_lifetime: 12h      # default 12h: longest delegated token
//! prune:                       # optional: prune on a schedule
//!   every: 1h                  #   time between prunes (at least 1s)
//!   older_than: 7d             #   matching tags pushed longer ago go
//!   tags: ["*_*"]              #   tag patterns, `REPO_GLOB:TAG_GLOB` per repository
//!   grace: 1h                  #   default 1h: unreferenced content younger stays
//!   dry_run: false             #   default false: only log what would go
//! limits:                      # each key optional; the defaults shown
//!   tls_handshake_secs: 10     # to finish the TLS handshake
//!   request_head_secs: 30      # to send a request head (and the first request)
//!   idle_secs: 90              # open with no request in flight
//!   stall_secs: 60             # a request whose body and response move no byte
//!   max_connections: 4096      # in total (kept under the fd limit)
//!   max_connections_per_client: 256  # from one address
//!   http2_max_streams: 32      # concurrent streams per HTTP/2 connection
//!   max_uploads: 1024          # open upload sessions in total
//!   max_uploads_per_user: 128  # open upload sessions per user
//! ```
//!
//! Relative paths are taken from the directory of the file. htpasswd
//! users not listed under `users` cannot log in. Unknown keys are
//! refused, and every error names the key.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::auth::htpasswd;
use super::config::{Limits, Role, ServerConfig, TlsFiles, User};

/// The file as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Where clients reach the registry; the token realm is built from it.
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// TLS certificate chain and key (plain HTTP without: only behind a
    /// proxy that terminates TLS).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Directory of blobs, manifests and uploads.
    pub storage: PathBuf,
    /// The htpasswd file with the users' bcrypt hashes.
    pub htpasswd: PathBuf,
    /// Each user's role, by htpasswd name.
    pub users: BTreeMap<String, Role>,
    /// Whether clients without credentials may pull.
    #[serde(default)]
    pub anonymous_pull: bool,
    /// Whether clients may delete manifests and blobs.
    #[serde(default = "yes")]
    pub deletes: bool,
    /// File holding the secret that signs tokens; generated when absent.
    pub token_secret_file: PathBuf,
    /// Longest lifetime of a delegated token: `12h`, `90m`, or seconds.
    #[serde(default = "twelve_hours", deserialize_with = "duration")]
    pub max_token_lifetime: Duration,
    /// Deadlines and caps (see [`Limits`]); each key has a default.
    #[serde(default)]
    pub limits: Limits,
    /// Prune on a schedule (see [`PruneSection`]).
    #[serde(default)]
    pub prune: Option<PruneSection>,
}

/// The `prune:` section: prune the storage every `every`, removing tags
/// matching `tags` older than `older_than` and what nothing then
/// references (see `speculative-images prune`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSection {
    /// Time between prunes.
    #[serde(deserialize_with = "duration")]
    pub every: Duration,
    /// Matching tags pushed longer ago than this go.
    #[serde(deserialize_with = "duration")]
    pub older_than: Duration,
    /// Tag patterns (`*_*`, `org/*:change_*`).
    pub tags: Vec<crate::registry::storage::TagPattern>,
    /// Unreferenced content younger than this stays (default 1h).
    #[serde(default = "prune_grace", deserialize_with = "duration")]
    pub grace: Duration,
    /// Only log what would go.
    #[serde(default)]
    pub dry_run: bool,
}

fn prune_grace() -> Duration {
    crate::registry::storage::prune::DEFAULT_GRACE
}

fn yes() -> bool {
    true
}

fn twelve_hours() -> Duration {
    Duration::from_secs(super::config::DEFAULT_MAX_TOKEN_LIFETIME_SECS)
}

/// `12h`, `90m`, `1h 30m` (humantime) or a number of seconds.
fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }
    match Written::deserialize(deserializer)? {
        Written::Seconds(secs) => Ok(Duration::from_secs(secs)),
        Written::Text(text) => humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a duration like 12h or 90m ({e})"))
        }),
    }
}

/// Read a site configuration file and everything it names (the htpasswd
/// file, the token secret, made if absent) into a [`ServerConfig`].
pub fn load(path: &Path) -> anyhow::Result<ServerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading site config {}", path.display()))?;
    let site = parse(path, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    site.resolve(base)
        .with_context(|| format!("site config {}", path.display()))
}

/// Parse the text of a site configuration, YAML or TOML by `path`'s
/// extension; errors name the key.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<SiteConfig> {
    let context = || format!("parsing site config {}", path.display());
    let toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if toml {
        let document = toml_edit::de::Deserializer::parse(text).with_context(context)?;
        serde_path_to_error::deserialize(document).map_err(|e| anyhow::anyhow!("{e}"))
    } else {
        serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text))
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    parsed.with_context(context)
}

impl SiteConfig {
    /// Check the values and read the files they name; relative paths are
    /// taken from `base`.
    pub fn resolve(self, base: &Path) -> anyhow::Result<ServerConfig> {
        if self.listen.is_empty() {
            bail!("listen: name at least one address, like \"[::]:5000\"");
        }
        if let Some(url) = &self.public_url {
            check_public_url(url).context("public_url")?;
        }
        let max_token_lifetime_secs = self.max_token_lifetime.as_secs();
        if max_token_lifetime_secs == 0 {
            bail!("max_token_lifetime: must be at least one second");
        }
        let htpasswd_path = base.join(&self.htpasswd);
        let entries = htpasswd::read(&htpasswd_path).context("htpasswd")?;
        let mut users = Vec::new();
        for (name, role) in &self.users {
            let entry = entries
                .iter()
                .find(|e| &e.username == name)
                .with_context(|| {
                    format!(
                        "users.{name}: no user {name:?} in the htpasswd file {}",
                        htpasswd_path.display()
                    )
                })?;
            users.push(User {
                username: name.clone(),
                password_bcrypt: entry.password_bcrypt.clone(),
                role: *role,
            });
        }
        let token_secret =
            token_secret(&base.join(&self.token_secret_file)).context("token_secret_file")?;
        let prune = match self.prune {
            Some(p) => {
                super::prune_schedule::check_every(p.every)
                    .map_err(|e| anyhow::anyhow!("prune.every: {e}"))?;
                if p.tags.is_empty() {
                    bail!("prune.tags: name at least one pattern, like \"*_*\"");
                }
                Some(super::prune_schedule::PruneSchedule {
                    every: p.every,
                    policy: crate::registry::storage::PrunePolicy {
                        tags: p.tags,
                        older_than: p.older_than,
                        grace: p.grace,
                        dry_run: p.dry_run,
                    },
                })
            }
            None => None,
        };
        Ok(ServerConfig {
            listen: self.listen,
            tls: self.tls.map(|tls| TlsFiles {
                cert: base.join(tls.cert),
                key: base.join(tls.key),
            }),
            storage: base.join(&self.storage),
            users,
            public_url: self.public_url,
            max_token_lifetime_secs,
            token_secret,
            anonymous_pull: self.anonymous_pull,
            delete_enabled: self.deletes,
            prune,
            limits: self.limits,
        })
    }
}

/// An `http(s)://host[:port]` URL, nothing more: the registry's API is at
/// its root.
fn check_public_url(url: &url::Url) -> anyhow::Result<()> {
    if !matches!(url.scheme(), "https" | "http") {
        bail!("{url}: must start with https:// (or http://)");
    }
    if url.host().is_none() {
        bail!("{url}: names no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("must not hold credentials");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        bail!("{url}: must be scheme://host[:port] only, with no path, query or fragment");
    }
    Ok(())
}

/// The secret in `path`, made (32 random bytes, hex, mode 0600) when the
/// file is absent. Never shown in errors.
fn token_secret(path: &Path) -> anyhow::Result<String> {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(format!("{secret}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            return Ok(secret);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:04o}): `chmod 600` it",
            path.display(),
            mode & 0o7777
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret = text.trim();
    if secret.len() < 32 {
        bail!(
            "{} holds fewer than 32 characters; remove it to have a new secret made",
            path.display()
        );
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
listen: ["127.0.0.1:5000", "[::1]:5000"]
public_url: https://registry.example.org:5000
tls: {cert: certs/domain.crt, key: /abs/domain.key}
storage: data
htpasswd: htpasswd
users:
  zuul: read-write
  reader: read-only
token_secret_file: token.secret
max_token_lifetime: 2h
"#;

    fn site_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let htpasswd = format!("zuul:{hash}\nreader:{hash}\nunlisted:{hash}\n");
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        dir
    }

    fn load_text(dir: &Path, name: &str, text: &str) -> anyhow::Result<ServerConfig> {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn yaml_resolves_into_the_server_config() {
        let dir = site_dir();
        let config = load_text(dir.path(), "site.yaml", YAML).unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.storage, dir.path().join("data"));
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("certs/domain.crt"));
        assert_eq!(tls.key, Path::new("/abs/domain.key"));
        let roles: Vec<_> = config
            .users
            .iter()
            .map(|u| (&*u.username, u.role))
            .collect();
        assert_eq!(
            roles,
            [("reader", Role::ReadOnly), ("zuul", Role::ReadWrite)]
        );
        assert!(!config.anonymous_pull);
        assert!(config.delete_enabled);
        assert_eq!(config.max_token_lifetime_secs, 7200);
        assert_eq!(
            config.public_url.unwrap().as_str(),
            "https://registry.example.org:5000/"
        );
        // The secret was made, 0600, and is read back the same next time.
        let secret_path = dir.path().join("token.secret");
        let mode = std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(config.token_secret.len(), 64);
        let again = load_text(dir.path(), "site.yaml", YAML).unwrap();
        assert_eq!(again.token_secret, config.token_secret);
    }

    #[test]
    fn the_example_site_config_parses() {
        let path = Path::new("examples/intermediate-registry/registry.yaml");
        let text = include_str!("../../examples/intermediate-registry/registry.yaml");
        let site = parse(path, text).unwrap();
        assert_eq!(site.users["zuul"], Role::ReadWrite);
        assert!(!site.anonymous_pull);
        assert_eq!(site.max_token_lifetime, Duration::from_secs(12 * 3600));
    }

    #[test]
    fn a_prune_section_becomes_the_servers_schedule() {
        let dir = site_dir();
        let text = format!(
            "{YAML}prune:\n  every: 6h\n  older_than: 7d\n  tags: ['*_*', 'speculative-images/changes:*']\n"
        );
        let schedule = load_text(dir.path(), "site.yaml", &text)
            .unwrap()
            .prune
            .unwrap();
        assert_eq!(schedule.every, Duration::from_secs(6 * 3600));
        assert_eq!(schedule.policy.older_than, Duration::from_secs(7 * 86400));
        assert_eq!(schedule.policy.grace, Duration::from_secs(3600));
        assert!(!schedule.policy.dry_run);
        let tags: Vec<String> = schedule.policy.tags.iter().map(|t| t.to_string()).collect();
        assert_eq!(tags, ["*_*", "speculative-images/changes:*"]);
        assert!(schedule.policy.tags[0].matches("org/img", "1234_latest"));
        assert!(load_text(dir.path(), "site.yaml", YAML)
            .unwrap()
            .prune
            .is_none());
    }

    #[test]
    fn toml_takes_the_same_keys() {
        let dir = site_dir();
        let toml = r#"
listen = ["[::]:5000"]
storage = "data"
htpasswd = "htpasswd"
token_secret_file = "token.secret"
anonymous_pull = true
deletes = false
max_token_lifetime = 600

[users]
zuul = "read-write"
"#;
        let config = load_text(dir.path(), "site.toml", toml).unwrap();
        assert!(config.anonymous_pull);
        assert!(!config.delete_enabled);
        assert_eq!(config.max_token_lifetime_secs, 600);
        assert_eq!(config.users.len(), 1);
        assert!(config.public_url.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let dir = site_dir();
        let cases = [
            (
                YAML.replace("storage: data", "storage: data\nstorge: x"),
                "storge",
            ),
            (
                YAML.replace("reader: read-only", "reader: admin"),
                "users.reader",
            ),
            (YAML.replace("2h", "two hours"), "max_token_lifetime"),
            (YAML.replace("\"[::1]:5000\"", "\"[::1]\""), "listen[1]"),
            (
                YAML.replace("reader: read-only", "ghost: read-only"),
                "users.ghost: no user \"ghost\" in the htpasswd file",
            ),
            (
                YAML.replace("https://registry.example.org:5000", "https://r.example/v2"),
                "public_url: https://r.example/v2: must be scheme://host[:port] only",
            ),
            (
                YAML.replace("2h", "0s"),
                "max_token_lifetime: must be at least one second",
            ),
        ];
        for (text, expected) in cases {
            let error = format!(
                "{:#}",
                load_text(dir.path(), "site.yaml", &text).unwrap_err()
            );
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let prune = |section: &str| format!("{YAML}prune: {section}\n");
        for (section, expected) in [
            (
                "{every: 1h, older_than: 7d, tags: ['[x']}",
                "tags[0]: prune.tags: \"[x\": tag pattern: a [ is not closed by ]",
            ),
            (
                "{every: 0s, older_than: 7d, tags: ['*_*']}",
                "prune.every: 0s is too often",
            ),
            (
                "{every: 1h, older_than: a week, tags: ['*_*']}",
                "prune.older_than",
            ),
            (
                "{every: 1h, older_than: 7d, tags: []}",
                "prune.tags: name at least one",
            ),
            ("{every: 1h, older_than: 7d}", "prune: missing field `tags`"),
            (
                "{every: 1h, older_than: 7d, tags: ['*_*'], dryrun: true}",
                "prune: unknown field `dryrun`",
            ),
        ] {
            let error = format!(
                "{:#}",
                load_text(dir.path(), "site.yaml", &prune(section)).unwrap_err()
            );
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let toml = "listen = [\"[::]:5000\"]\nbogus = 1\n";
        let error = format!(
            "{:#}",
            load_text(dir.path(), "site.toml", toml).unwrap_err()
        );
        assert!(error.contains("bogus"), "{error}");
    }

    #[test]
    fn a_token_secret_others_can_read_is_refused_and_never_shown() {
        let dir = site_dir();
        let secret = "s".repeat(40);
        let path = dir.path().join("token.secret");
        std::fs::write(&path, &secret).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = format!(
            "{:#}",
            load_text(dir.path(), "site.yaml", YAML).unwrap_err()
        );
        assert!(
            error.contains("token_secret_file: ") && error.contains("(mode 0644)"),
            "{error}"
        );
        assert!(!error.contains(&secret));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = load_text(dir.path(), "site.yaml", YAML).unwrap();
        assert_eq!(config.token_secret, secret);
    }
}
