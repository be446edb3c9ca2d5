//! TLS for one registry whose certificate we were given in memory.
//!
//! The given PEM certificates are trusted as roots for this registry only.
//! Besides, a server presenting exactly one of the given certificates as
//! its own is accepted (pinning): sites commonly make the intermediate
//! registry's certificate with `openssl req -x509`, a self-signed
//! certificate marked CA:TRUE, and Go clients (docker, skopeo) accept it as
//! the server's certificate while rustls refuses a CA used as an end entity
//! (`CaUsedAsEndEntity`). Byte-identical pinning is at least as strict as
//! what those clients do. Registries without a given certificate use the
//! system's roots (reqwest's platform verifier), see `transport.rs`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why the given certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// No `CERTIFICATE` block in the PEM text.
    #[error("the certificate is not PEM text holding at least one CERTIFICATE block")]
    NoCertificate,
    /// rustls refused the configuration.
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls client configuration trusting `ca_pem` (roots, and pinned
/// end-entity certificates), offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn client_config(ca_pem: &str) -> Result<rustls::ClientConfig, TlsConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let provider = crate::crypto::provider();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs.iter().cloned());
    // A certificate that cannot serve as a trust anchor can still be pinned.
    let roots_verifier = if roots.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .ok()
    };
    let verifier = PinnedOrRoots {
        pinned: certs,
        roots: roots_verifier,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts a server whose certificate is one of `pinned`, else verifies
/// its chain against the given roots.
#[derive(Debug)]
struct PinnedOrRoots {
    pinned: Vec<CertificateDer<'static>>,
    roots: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.roots {
            Some(roots) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_text_without_certificates() {
        assert!(matches!(
            client_config("not a certificate"),
            Err(TlsConfigError::NoCertificate)
        ));
    }

    #[test]
    fn accepts_a_generated_ca() {
        let pki = crate::pki::generate(&["localhost".into()]).unwrap();
        let config = client_config(&pki.ca_pem).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }
}
