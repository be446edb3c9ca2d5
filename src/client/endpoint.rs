//! How to reach one registry: its address, credentials, the certificate
//! to trust, and whether it speaks plain HTTP. Built from the Zuul
//! variables (`buildset_registry`, `intermediate_registry`) or by hand.

use std::fmt;

use crate::oci::reference::{is_docker_hub, DOCKER_HUB_API};

/// Docker Hub's token service.
pub const DOCKER_HUB_AUTH: &str = "auth.docker.io";

/// A username and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (or a token used as one).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// Connection settings of one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as references name it (`docker.io` for Docker Hub,
    /// `[::1]:5000` for an IPv6 literal).
    pub registry: String,
    /// Credentials; anonymous when absent.
    pub credentials: Option<Credentials>,
    /// PEM certificate(s) to trust for this registry instead of the system
    /// roots (a CA, or the server's own self-signed certificate).
    pub ca_pem: Option<String>,
    /// Speak plain HTTP (a registry marked insecure).
    pub insecure: bool,
    /// Hosts (`host`, or `host:port`) besides the registry's own that may
    /// serve its bearer tokens and be sent its credentials for them; see
    /// [`Endpoint::allow_token_host`].
    pub token_hosts: Vec<String>,
}

impl Endpoint {
    /// Anonymous HTTPS with the system roots.
    pub fn new(registry: impl Into<String>) -> Endpoint {
        Endpoint {
            registry: registry.into(),
            credentials: None,
            ca_pem: None,
            insecure: false,
            token_hosts: Vec::new(),
        }
    }

    /// With credentials.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Endpoint {
        self.credentials = Some(Credentials {
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Trusting `ca_pem` (PEM) for this registry.
    pub fn with_ca_pem(mut self, ca_pem: impl Into<String>) -> Endpoint {
        self.ca_pem = Some(ca_pem.into());
        self
    }

    /// Over plain HTTP.
    pub fn insecure(mut self, insecure: bool) -> Endpoint {
        self.insecure = insecure;
        self
    }

    /// Allowing `host` (any port) or `host:port` to serve this registry's
    /// bearer tokens. Without it, a token realm on another host than the
    /// registry's is refused when we hold credentials (they would be sent
    /// there). Docker Hub's `auth.docker.io` is always allowed for
    /// `docker.io`.
    pub fn allow_token_host(mut self, host: impl Into<String>) -> Endpoint {
        self.token_hosts.push(host.into());
        self
    }

    /// Whether `host` (as a URL spells it, IPv6 in brackets) at `port` may
    /// serve this registry's tokens: its own authority, an allowed host,
    /// or `auth.docker.io` for Docker Hub.
    pub fn is_token_host(&self, host: &str, port: u16) -> bool {
        let with_port = format!("{host}:{port}");
        let own = url::Url::parse(&self.base_url()).ok();
        let own_origin = own
            .as_ref()
            .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)));
        if own_origin.is_some_and(|(h, p)| h.eq_ignore_ascii_case(host) && p == port) {
            return true;
        }
        if is_docker_hub(&self.registry) && host.eq_ignore_ascii_case(DOCKER_HUB_AUTH) {
            return true;
        }
        self.token_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(&with_port))
    }

    /// `host[:port]` to connect to (Docker Hub's API host for `docker.io`).
    pub fn api_authority(&self) -> &str {
        if is_docker_hub(&self.registry) {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `https://host:port` (or `http://` when insecure).
    pub fn base_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.api_authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let e = Endpoint::new("reg:5000").with_credentials("zuul", "s3cr3t-pw");
        let text = format!("{e:?}");
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(text.contains("zuul"));
    }

    #[test]
    fn token_hosts() {
        let e = Endpoint::new("reg:5000");
        assert!(e.is_token_host("reg", 5000));
        assert!(!e.is_token_host("reg", 5001));
        assert!(!e.is_token_host("auth.docker.io", 443));
        let e = e.allow_token_host("auth.example.org");
        assert!(e.is_token_host("auth.example.org", 8443));
        let e = Endpoint::new("[::1]:5000").allow_token_host("[::1]:5001");
        assert!(e.is_token_host("[::1]", 5000));
        assert!(e.is_token_host("[::1]", 5001));
        assert!(!e.is_token_host("[::1]", 5002));
        let hub = Endpoint::new("docker.io");
        assert!(hub.is_token_host("auth.docker.io", 443));
        assert!(hub.is_token_host("registry-1.docker.io", 443));
        assert!(!hub.is_token_host("evil.example.org", 443));
    }

    #[test]
    fn urls() {
        assert_eq!(Endpoint::new("[::1]:5000").base_url(), "https://[::1]:5000");
        assert_eq!(
            Endpoint::new("docker.io").base_url(),
            "https://registry-1.docker.io"
        );
        assert_eq!(
            Endpoint::new("reg:80").insecure(true).base_url(),
            "http://reg:80"
        );
    }
}
