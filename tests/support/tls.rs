//! Certificates generated at test time (no key is committed): a CA and a
//! server certificate it signed, as a site would deploy.

use std::path::{Path, PathBuf};

/// TLS material written as PEM files.
pub struct TlsPair {
    /// PEM of the CA (give it to clients).
    pub cert_pem: String,
    /// Path of the server's certificate chain (`domain.crt`).
    pub cert_path: PathBuf,
    /// Path of the server's key (`domain.key`).
    pub key_path: PathBuf,
}

/// Generate TLS material for `names` into `dir`.
pub fn server_pki(dir: &Path, names: &[&str]) -> TlsPair {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let pki = speculative_images::pki::generate(&names).expect("generate certificates");
    let cert_path = dir.join("domain.crt");
    let key_path = dir.join("domain.key");
    std::fs::write(&cert_path, &pki.chain_pem).expect("write cert");
    std::fs::write(&key_path, &pki.key_pem).expect("write key");
    TlsPair {
        cert_pem: pki.ca_pem,
        cert_path,
        key_path,
    }
}

/// One self-signed certificate with CA:TRUE serving as the server's own,
/// like `openssl req -x509 -newkey ... -addext subjectAltName=...` makes;
/// clients are given that same certificate.
pub fn self_signed_ca(dir: &Path, names: &[&str]) -> TlsPair {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("certificate parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "intermediate registry");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-sign");
    let cert_path = dir.join("domain.crt");
    let key_path = dir.join("domain.key");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    TlsPair {
        cert_pem: cert.pem(),
        cert_path,
        key_path,
    }
}
