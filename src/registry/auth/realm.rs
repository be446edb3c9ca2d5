//! Where the `WWW-Authenticate` challenge sends clients for a token. The
//! realm is a URL clients follow with credentials, so it is never copied
//! from the request unchecked: it comes from the configured `public_url`,
//! else from the `Host` header only when that is a plain `host[:port]`
//! (a DNS name, an IPv4 address, or an IPv6 literal in brackets), else
//! from the listen address.

use std::net::{Ipv6Addr, SocketAddr};

/// What the realm and `service` of a challenge are built from.
#[derive(Debug, Clone)]
pub struct Realm {
    public_url: Option<url::Url>,
    fallback: String,
}

impl Realm {
    /// From the configured `public_url`, if any, and the listen addresses.
    pub fn new(public_url: Option<&url::Url>, listen: &[SocketAddr]) -> Realm {
        let fallback = match listen.first() {
            Some(addr) if addr.ip().is_unspecified() => format!("localhost:{}", addr.port()),
            Some(addr) => addr.to_string(),
            None => "localhost".to_string(),
        };
        Realm {
            public_url: public_url.cloned(),
            fallback,
        }
    }

    /// `(realm URL, service)` for a request that came with `host` over
    /// `scheme` (`https` or `http`).
    pub fn for_request(&self, scheme: &str, host: &str) -> (String, String) {
        if let Some(url) = &self.public_url {
            let authority = authority(url);
            return (
                format!("{}://{authority}/auth/token", url.scheme()),
                authority,
            );
        }
        let host = if is_host_and_port(host) {
            host
        } else {
            &self.fallback
        };
        (format!("{scheme}://{host}/auth/token"), host.to_string())
    }
}

/// `host[:port]` of a URL, IPv6 in brackets, the port only when given.
fn authority(url: &url::Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Whether `value` is `host[:port]`: a DNS name or IPv4 address (letters,
/// digits, `-`, `.`, `_`), or `[IPv6]`, with an optional decimal port.
pub fn is_host_and_port(value: &str) -> bool {
    let (host_ok, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (ip.parse::<Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (host, port) = value.split_at(value.find(':').unwrap_or(value.len()));
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (name_ok, port)
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u16>().is_ok()
        });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_host_and_port_pass() {
        for good in [
            "registry.example.org",
            "registry.example.org:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[fd00::5]",
            "zuul-jobs.buildset-registry",
        ] {
            assert!(is_host_and_port(good), "{good}");
        }
        for bad in [
            "",
            "x\",realm=\"http://evil.example/steal",
            "user@host",
            "host/path",
            "host:",
            "host:99999",
            "host:5000:1",
            "[::1",
            "[not-ip]:5000",
            "[::1]x",
            "host name",
            "::1",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
    }

    #[test]
    fn public_url_wins_and_bad_hosts_fall_back_to_the_listen_address() {
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:5000".parse().unwrap()];
        let plain = Realm::new(None, &listen);
        assert_eq!(
            plain.for_request("https", "x\",realm=\"http://evil.example/steal"),
            (
                "https://127.0.0.1:5000/auth/token".to_string(),
                "127.0.0.1:5000".to_string()
            )
        );
        assert_eq!(
            plain.for_request("https", "[::1]:5000").0,
            "https://[::1]:5000/auth/token"
        );
        let url = url::Url::parse("https://registry.example.org:5000").unwrap();
        let public = Realm::new(Some(&url), &listen);
        assert_eq!(
            public.for_request("http", "other:1"),
            (
                "https://registry.example.org:5000/auth/token".to_string(),
                "registry.example.org:5000".to_string()
            )
        );
        let wildcard: Vec<SocketAddr> = vec!["[::]:5000".parse().unwrap()];
        assert_eq!(
            Realm::new(None, &wildcard).for_request("https", "a b").1,
            "localhost:5000"
        );
    }
}
