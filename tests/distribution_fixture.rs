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
