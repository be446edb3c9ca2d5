//! Is the registry up? `GET https://<loopback>:<port>/v2/`, trusting only
//! the instance's CA: a 200 or a 401 means our server answered (another
//! program on the port cannot present a certificate our fresh CA signed).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;

/// A reusable prober for one instance.
pub struct Probe {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    urls: Vec<String>,
}

impl Probe {
    /// A prober for the registry bound to `listen` whose CA is `ca_pem`.
    pub fn new(listen: SocketAddr, ca_pem: &str) -> anyhow::Result<Probe> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .context("reading the registry's CA certificate")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the probe's runtime")?;
        crate::crypto::install_default();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the probe's HTTP client")?;
        // A server on every address is probed on loopback, the one that
        // always routes (IPv6 only when IPv4 is not there); a server bound
        // to one address, on that address.
        let port = listen.port();
        let urls = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => vec![format!("https://127.0.0.1:{port}/v2/")],
            IpAddr::V6(ip) if ip.is_unspecified() => vec![
                format!("https://127.0.0.1:{port}/v2/"),
                format!("https://[::1]:{port}/v2/"),
            ],
            _ => vec![format!("https://{listen}/v2/")],
        };
        Ok(Probe {
            runtime,
            client,
            urls,
        })
    }

    /// `Ok` when the registry answers; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for url in &self.urls {
            match self
                .runtime
                .block_on(async { self.client.get(url).send().await })
            {
                Ok(resp) if matches!(resp.status().as_u16(), 200 | 401) => return Ok(()),
                Ok(resp) => errors.push(format!("{url} answered {}", resp.status())),
                Err(e) => errors.push(format!("{url}: {}", error_chain(&e))),
            }
        }
        Err(errors.join("; "))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_listening_is_reported_per_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pki = crate::pki::generate(&["localhost".into()]).unwrap();
        let every = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        let err = Probe::new(every, &pki.ca_pem).unwrap().check().unwrap_err();
        assert!(
            err.contains(&format!("https://127.0.0.1:{port}/v2/")),
            "{err}"
        );
        assert!(err.contains(&format!("https://[::1]:{port}/v2/")), "{err}");
    }

    #[test]
    fn a_bound_server_is_probed_on_its_address_only() {
        let pki = crate::pki::generate(&["localhost".into()]).unwrap();
        let bound = SocketAddr::from(([127, 0, 0, 2], 1));
        let err = Probe::new(bound, &pki.ca_pem).unwrap().check().unwrap_err();
        assert!(err.starts_with("https://127.0.0.2:1/v2/: "), "{err}");
        assert!(!err.contains("[::1]"), "{err}");
    }
}
