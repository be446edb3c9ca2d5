//! Certificates for registries we start: a CA, and a server certificate
//! signed by it. Clients are given the CA. (rustls, unlike Go, refuses a CA
//! certificate presented as the server's own, so one self-signed
//! certificate cannot serve both roles.)
//!
//! Both pass strict X.509 checks (`openssl verify -x509_strict`, Python
//! 3.13's default context): every certificate carries its Subject Key
//! Identifier and its issuer's Authority Key Identifier, and every CA has a
//! subject of its own, so a bundle holding the CAs of several registries
//! (the system store of a node that used more than one) still leads a
//! verifier to the right one.

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
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.use_authority_key_identifier_extension = true;
    let ca_id = hex::encode(rand::random::<[u8; 8]>());
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("speculative.images CA {ca_id}"),
    );
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
    leaf_params.use_authority_key_identifier_extension = true;
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

    /// `openssl verify -x509_strict` of `leaf` against the CAs in `bundle`.
    fn strict_verify(bundle: &str, leaf: &str) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bundle.pem"), bundle).unwrap();
        std::fs::write(dir.path().join("leaf.pem"), leaf).unwrap();
        std::process::Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
            .arg(dir.path().join("bundle.pem"))
            .arg(dir.path().join("leaf.pem"))
            .output()
            .expect("openssl runs")
    }

    fn leaf_of(pki: &ServerPki) -> String {
        let end = "-----END CERTIFICATE-----\n";
        let at = pki.chain_pem.find(end).unwrap() + end.len();
        pki.chain_pem[..at].to_string()
    }

    #[test]
    fn every_leaf_verifies_strictly_against_a_bundle_of_several_cas() {
        let first = generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let second = generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert_ne!(first.ca_pem, second.ca_pem);
        let bundle = format!("{}{}", first.ca_pem, second.ca_pem);
        for pki in [&first, &second] {
            let out = strict_verify(&bundle, &leaf_of(pki));
            assert!(
                out.status.success(),
                "openssl verify -x509_strict: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // And a leaf is not accepted by the other instance's CA alone.
        let out = strict_verify(&second.ca_pem, &leaf_of(&first));
        assert!(!out.status.success());
    }
}
