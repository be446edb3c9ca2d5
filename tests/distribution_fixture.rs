//! The intermediate-registry fixture behaves like the seed's registry:2.

use crate::support::distribution::Distribution;

#[test]
fn distribution_requires_auth_and_serves_tls() {
    let reg = Distribution::start();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(reg.tls.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{}/v2/", reg.authority());
    let anon = client.get(&url).send().unwrap();
    assert_eq!(anon.status(), 401, "{}", reg.log());
    let authed = client
        .get(&url)
        .basic_auth(&reg.username, Some(&reg.password))
        .send()
        .unwrap();
    assert_eq!(authed.status(), 200, "{}", reg.log());
}

/// DELETE of a manifest by digest: refused (405) as the seed's registry:2
/// refuses it, accepted (202) only when a test asks for deletes.
#[test]
fn deletes_are_off_as_in_the_seed_unless_asked_for() {
    use crate::client_fixtures::{client_of, push_image, random_image, Flavor};
    use crate::support::distribution::Options;

    for (delete_enabled, expected) in [(false, 405), (true, 202)] {
        let reg = Distribution::start_with(Options {
            delete_enabled,
            ..Options::default()
        });
        let image = random_image(Flavor::Oci, "amd64", &[100]);
        tokio::runtime::Runtime::new().unwrap().block_on(push_image(
            &client_of(&reg),
            "org/img",
            Some("t"),
            &image,
        ));
        let client = reqwest::blocking::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(reg.tls.cert_pem.as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let url = format!(
            "https://{}/v2/org/img/manifests/{}",
            reg.authority(),
            image.manifest.digest
        );
        let response = client
            .delete(&url)
            .basic_auth(&reg.username, Some(&reg.password))
            .send()
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            expected,
            "delete_enabled: {delete_enabled}: {}",
            reg.log()
        );
    }
}
