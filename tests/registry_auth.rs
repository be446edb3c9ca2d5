//! Who may do what on the real server over TLS: anonymous pulls work,
//! anonymous pushes and wrong passwords are refused with a bearer
//! challenge, Docker Hub credentials sent to a mirror still pull, and
//! tokens we did not sign, expired ones and ones for another scope are
//! refused.

use reqwest::blocking::{Client, RequestBuilder, Response};
use speculative_images::oci::Digest;
use speculative_images::registry::auth::token::{self, Access, Claims};

use crate::support::buildset::BuildsetServer;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Api {
    registry: BuildsetServer,
    client: Client,
}

impl Api {
    fn start() -> Api {
        let registry = BuildsetServer::start();
        let client = registry.client();
        Api { registry, client }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.registry.url())
    }

    fn as_user(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth(&self.registry.username, Some(&self.registry.password))
    }

    /// Push a one-layer image with the user's Basic credentials.
    fn push_image(&self, repo: &str, tag: &str) -> Digest {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer = format!("layer of {repo}:{tag}").into_bytes();
        for blob in [&config, &layer] {
            let digest = Digest::sha256(blob);
            let reply = self
                .as_user(
                    self.client
                        .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"))),
                )
                .body(blob.clone())
                .send()
                .unwrap();
            assert_eq!(reply.status(), 201, "{}", self.registry.log());
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256(&layer).to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let reply = self
            .as_user(
                self.client
                    .put(self.url(&format!("/v2/{repo}/manifests/{tag}"))),
            )
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .unwrap();
        assert_eq!(reply.status(), 201, "{}", self.registry.log());
        Digest::sha256(&manifest)
    }

    /// Ask the token endpoint for `scope`, with Basic credentials or none.
    fn token(&self, scope: &str, creds: Option<(&str, &str)>) -> Response {
        let mut request = self.client.get(self.url("/auth/token")).query(&[
            ("service", self.registry.authority().as_str()),
            ("scope", scope),
        ]);
        if let Some((user, password)) = creds {
            request = request.basic_auth(user, Some(password));
        }
        request.send().unwrap()
    }

    fn token_value(&self, scope: &str, creds: Option<(&str, &str)>) -> String {
        let reply = self.token(scope, creds);
        assert_eq!(reply.status(), 200);
        let json: serde_json::Value = reply.json().unwrap();
        assert_eq!(json["token"], json["access_token"]);
        assert_eq!(json["expires_in"], 3600);
        json["token"].as_str().unwrap().to_string()
    }

    fn start_upload(&self, repo: &str, bearer: Option<&str>) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().unwrap()
    }
}

pub(crate) fn error_code(reply: Response) -> String {
    let json: serde_json::Value = reply.json().expect("JSON error body");
    json["errors"][0]["code"].as_str().unwrap().to_string()
}

pub(crate) fn challenge(reply: &Response) -> String {
    reply
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate challenge")
        .to_str()
        .unwrap()
        .to_string()
}

fn claims(repo: &str, actions: &[&str], exp: u64) -> Claims {
    Claims {
        sub: Some("zuul".into()),
        access: vec![Access {
            kind: "repository".into(),
            name: repo.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }],
        exp,
    }
}

#[test]
fn anonymous_push_is_refused_with_a_bearer_challenge() {
    let api = Api::start();
    let authority = api.registry.authority();
    let reply = api.start_upload("org/img", None);
    assert_eq!(reply.status(), 401);
    assert_eq!(
        challenge(&reply),
        format!(
            "Bearer realm=\"https://{authority}/auth/token\",service=\"{authority}\",scope=\"repository:org/img:pull,push\""
        )
    );
    assert_eq!(error_code(reply), "UNAUTHORIZED");

    // An anonymous token only ever grants pull.
    let token = api.token_value("repository:org/img:pull,push", None);
    let reply = api.start_upload("org/img", Some(&token));
    assert_eq!(reply.status(), 401);
    assert!(challenge(&reply).ends_with(",error=\"insufficient_scope\""));
    assert_eq!(error_code(reply), "UNAUTHORIZED");
    assert!(api
        .registry
        .storage
        .join("uploads")
        .read_dir()
        .unwrap()
        .next()
        .is_none());

    // `/v2/` tells anonymous clients where to get a token.
    let base = api.client.get(api.url("/v2/")).send().unwrap();
    assert_eq!(base.status(), 401);
    assert!(challenge(&base).starts_with("Bearer realm="));
}

#[test]
fn anonymous_pull_works_directly_and_with_a_token() {
    let api = Api::start();
    let digest = api.push_image("org/img", "latest");
    let direct = api
        .client
        .get(api.url("/v2/org/img/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(
        direct.headers()["docker-content-digest"].to_str().unwrap(),
        digest.to_string()
    );
    let token = api.token_value("repository:org/img:pull", None);
    let with_token = api
        .client
        .get(api.url("/v2/org/img/tags/list"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(with_token.status(), 200);
}

#[test]
fn wrong_password_is_refused_for_login_and_push() {
    let api = Api::start();
    let wrong = Some(("zuul", "not-the-password"));
    // Login (no scope asked) fails.
    let login = api
        .client
        .get(api.url("/auth/token"))
        .query(&[("service", api.registry.authority().as_str())])
        .basic_auth("zuul", Some("not-the-password"))
        .send()
        .unwrap();
    assert_eq!(login.status(), 401);
    assert_eq!(error_code(login), "UNAUTHORIZED");
    let base = api
        .client
        .get(api.url("/v2/"))
        .basic_auth("zuul", Some("not-the-password"))
        .send()
        .unwrap();
    assert_eq!(base.status(), 401);
    // Push with Basic fails.
    let push = api
        .client
        .post(api.url("/v2/org/img/blobs/uploads/"))
        .basic_auth("zuul", Some("not-the-password"))
        .send()
        .unwrap();
    assert_eq!(push.status(), 401);
    assert_eq!(error_code(push), "UNAUTHORIZED");
    // A token asked with the wrong password does not push.
    let token = api.token_value("repository:org/img:pull,push", wrong);
    assert_eq!(api.start_upload("org/img", Some(&token)).status(), 401);
    // The right password does.
    let token = api.token_value(
        "repository:org/img:pull,push",
        Some(("zuul", &api.registry.password)),
    );
    assert_eq!(api.start_upload("org/img", Some(&token)).status(), 202);
    let base = api.as_user(api.client.get(api.url("/v2/"))).send().unwrap();
    assert_eq!(base.status(), 200);
}

#[test]
fn docker_hub_credentials_sent_to_the_mirror_still_pull() {
    let api = Api::start();
    api.push_image("library/alpine", "latest");
    let hub = Some(("dockerhub-user", "dockerhub-password"));
    let direct = api
        .client
        .get(api.url("/v2/library/alpine/manifests/latest"))
        .basic_auth("dockerhub-user", Some("dockerhub-password"))
        .send()
        .unwrap();
    assert_eq!(direct.status(), 200);
    let token = api.token_value("repository:library/alpine:pull", hub);
    let with_token = api
        .client
        .get(api.url("/v2/library/alpine/manifests/latest"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(with_token.status(), 200);
}

#[test]
fn tokens_we_did_not_sign_expired_or_for_another_scope_are_refused() {
    let api = Api::start();
    let secret = api.registry.token_secret.as_bytes();
    let later = token::now() + 600;
    let cases = [
        (
            "signed with another secret",
            token::issue(
                b"another secret",
                &claims("org/img", &["pull", "push"], later),
            ),
            "invalid_token",
        ),
        (
            "expired",
            token::issue(
                secret,
                &claims("org/img", &["pull", "push"], token::now() - 1),
            ),
            "invalid_token",
        ),
        (
            "for another repository",
            token::issue(secret, &claims("org/other", &["pull", "push"], later)),
            "insufficient_scope",
        ),
        (
            "pull only",
            token::issue(secret, &claims("org/img", &["pull"], later)),
            "insufficient_scope",
        ),
        ("not a token", "garbage".to_string(), "invalid_token"),
    ];
    for (what, token, error) in cases {
        let reply = api.start_upload("org/img", Some(&token));
        assert_eq!(reply.status(), 401, "{what}");
        assert!(
            challenge(&reply).ends_with(&format!(",error=\"{error}\"")),
            "{what}: {}",
            challenge(&reply)
        );
        assert_eq!(error_code(reply), "UNAUTHORIZED", "{what}");
    }
    // The same claims signed with our secret do push.
    let good = token::issue(secret, &claims("org/img", &["pull", "push"], later));
    assert_eq!(api.start_upload("org/img", Some(&good)).status(), 202);
    // A forged token does not even pull, though anonymous pulls are open:
    // a client presenting a bad token must get a new one.
    api.push_image("org/img", "latest");
    let forged = token::issue(b"another secret", &claims("org/img", &["pull"], later));
    let reply = api
        .client
        .get(api.url("/v2/org/img/manifests/latest"))
        .bearer_auth(forged)
        .send()
        .unwrap();
    assert_eq!(reply.status(), 401);
}

#[test]
fn docker_login_with_a_wrong_password_fails() {
    let api = Api::start();
    crate::support::docker_trust(&api.registry.authority(), &api.registry.ca_pem);
    let docker = crate::registry_docker::Docker::new();
    let out = docker
        .cmd()
        .args(["login", "--username", "zuul", "--password", "wrong"])
        .arg(api.registry.authority())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unauthorized") || stderr.contains("401"),
        "{stderr}"
    );
}

#[test]
fn oauth_password_grant_issues_tokens_like_get() {
    let api = Api::start();
    let post = |form: &[(&str, &str)]| {
        api.client
            .post(api.url("/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .unwrap()
    };
    let scope = "repository:org/img:pull,push";
    let good = post(&[
        ("grant_type", "password"),
        ("username", "zuul"),
        ("password", &api.registry.password),
        ("scope", scope),
        ("service", "x"),
    ]);
    assert_eq!(good.status(), 200);
    let token: serde_json::Value = good.json().unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    assert_eq!(api.start_upload("org/img", Some(&token)).status(), 202);
    // A wrong password gets at most pull.
    let bad = post(&[
        ("grant_type", "password"),
        ("username", "zuul"),
        ("password", "wrong"),
        ("scope", scope),
    ]);
    let token: serde_json::Value = bad.json().unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    assert_eq!(api.start_upload("org/img", Some(&token)).status(), 401);
    // Refresh tokens are not issued: the client falls back to GET.
    let refresh = post(&[("grant_type", "refresh_token"), ("refresh_token", "x")]);
    assert_eq!(refresh.status(), 401);
}
