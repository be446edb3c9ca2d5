//! Certificates for registries we start: a CA, and a server certificate
//! signed by it. Clients are given the CA. (rustls, unlike Go, refuses a CA
//! certificate presented as the server's own, so one self-signed
//! certificate cannot serve both roles.)

use anyhow::Context as _;

/// A CA and a server certificate it signed, all PEM.
#[derive(Debug, Clone)]
pub struct ServerPki {
    /// The CA certificate: what clients trust (`ca.crt`, the system store,
    /// `buildset_registry.cert`).
    pub ca_pem: String,
    /// The server certificate followed by the CA: what the server presents.
    pub chain_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
}

/// Generate a CA and a server certificate valid for `names` (DNS names or
/// IP literals; IPv6 with or without brackets).
pub fn generate(names: &[String]) -> anyhow::Result<ServerPki> {
    let names: Vec<String> = names
        .iter()
        .map(|n| n.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    let mut ca_params = rcgen::CertificateParams::new(names.clone()).context("CA parameters")?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "speculative.images CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().context("generating the CA key")?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).context("signing the CA")?;

    let mut leaf_params =
        rcgen::CertificateParams::new(names.clone()).context("server parameters")?;
    leaf_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = rcgen::KeyPair::generate().context("generating the server key")?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .context("signing the server certificate")?;

    Ok(ServerPki {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: leaf_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem() {
        let pki = generate(&["localhost".into(), "127.0.0.1".into(), "[::1]".into()]).unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(pki.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(pki.key_pem.contains("PRIVATE KEY"));
    }
}
