//! Test support: the registry's router called in-process (tower `oneshot`), over a
//! temporary storage dir: for protocol and edge-case tests that need no
//! network, and a snapshot of the store to prove bad input changed nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use speculative_images::oci::Digest;
use speculative_images::registry::config::{
    Role, ServerConfig, User, DEFAULT_MAX_TOKEN_LIFETIME_SECS,
};
use tower::ServiceExt as _;

/// The secret the in-process registry signs its tokens with.
const TOKEN_SECRET: &str = "s3cret-for-tests";

/// A registry router over a fresh storage dir, with one user.
pub struct InProcess {
    pub router: axum::Router,
    pub storage: PathBuf,
    pub username: String,
    pub password: String,
    adjust: fn(&mut ServerConfig),
    _dir: tempfile::TempDir,
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The spec error code of the first error in the body.
    pub fn error_code(&self) -> String {
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not an error body: {:?}", self.body));
        json["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {json}"))
            .to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

impl InProcess {
    pub fn new() -> InProcess {
        InProcess::configured(|_| {})
    }

    /// A registry whose configuration `adjust` changes first (e.g. deletes
    /// disabled).
    pub fn configured(adjust: fn(&mut ServerConfig)) -> InProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        InProcess::over(dir, crate::support::random_password(), adjust)
    }

    fn over(dir: tempfile::TempDir, password: String, adjust: fn(&mut ServerConfig)) -> InProcess {
        let storage = dir.path().join("storage");
        let mut config = ServerConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            tls: None,
            storage: storage.clone(),
            users: vec![User {
                username: "zuul".into(),
                password_bcrypt: bcrypt::hash(&password, 4).unwrap(),
                role: Role::ReadWrite,
            }],
            public_url: None,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            token_secret: TOKEN_SECRET.into(),
            anonymous_pull: true,
            delete_enabled: true,
            prune: None,
            limits: Default::default(),
        };
        adjust(&mut config);
        let state = speculative_images::registry::state(&config).expect("registry state");
        InProcess {
            router: speculative_images::registry::app(state),
            storage,
            username: "zuul".into(),
            password,
            adjust,
            _dir: dir,
        }
    }

    /// Stop this instance and start another over the same storage (its
    /// in-memory upload state is gone, as after a crash).
    pub fn restart(self) -> InProcess {
        let InProcess {
            _dir,
            password,
            adjust,
            ..
        } = self;
        InProcess::over(_dir, password, adjust)
    }

    pub fn basic(&self) -> String {
        let creds = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    }

    /// `Bearer <token>` signed with this registry's secret, granting each
    /// `(repository, actions)` pair and nothing else.
    pub fn bearer(&self, grants: &[(&str, &[&str])]) -> String {
        use speculative_images::registry::auth::token;
        let claims = token::Claims {
            sub: Some(self.username.clone()),
            access: grants
                .iter()
                .map(|(repository, actions)| token::Access {
                    kind: "repository".into(),
                    name: repository.to_string(),
                    actions: actions.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
            exp: token::now() + 600,
        };
        format!("Bearer {}", token::issue(TOKEN_SECRET.as_bytes(), &claims))
    }

    /// Send a request as the registry user.
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut all = vec![("authorization", self.basic())];
        all.extend(headers.iter().map(|(k, v)| (*k, v.to_string())));
        self.send_raw(method, uri, &all, body.into()).await
    }

    /// PUT a manifest of `media_type` under `reference` (tag or digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: impl std::fmt::Display,
        media_type: &str,
        bytes: impl Into<Body>,
    ) -> Reply {
        let uri = format!("/v2/{repo}/manifests/{reference}");
        self.send("PUT", &uri, &[("content-type", media_type)], bytes)
            .await
    }

    /// Send a request with exactly these headers.
    pub async fn send_raw(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test:5000");
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .expect("router never fails");
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }

    /// Push a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256(data);
        let reply = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        digest
    }

    /// Push an image manifest naming a config and layers pushed first.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (Digest, Vec<u8>) {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
        let layer = format!("layer of {seed}");
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let layer_digest = self.push_blob(repo, layer.as_bytes()).await;
        let manifest = image_manifest(&config_digest, config.len(), &layer_digest, layer.len());
        let reply = self
            .send(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        (Digest::sha256(&manifest), manifest)
    }

    /// Every file under the storage dir (except `tmp/`) with its content
    /// digest: equal snapshots mean the store did not change.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut files = BTreeMap::new();
        walk(&self.storage, &self.storage, &mut files);
        files
    }
}

fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        if rel.starts_with("tmp") {
            continue;
        }
        if path.is_dir() {
            files.insert(rel, "dir".into());
            walk(root, &path, files);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            files.insert(rel, Digest::sha256(&bytes).to_string());
        }
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// An OCI image manifest's bytes.
pub fn image_manifest(
    config: &Digest,
    config_size: usize,
    layer: &Digest,
    layer_size: usize,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_size}],
    }))
    .unwrap()
}
