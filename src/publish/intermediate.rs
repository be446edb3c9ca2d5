//! Promote from the intermediate registry (`promote_container_image_method:
//! intermediate-registry`): no temporary tag is published; after merge the
//! image the gate build pushed to the intermediate registry is copied
//! whole (every platform) to its final tag, and the digest published is
//! checked to be the one the gate tested.
//!
//! The gate build's images are its `container_image` artifacts: from
//! `zuul.artifacts` where Zuul hands them to the promote pipeline, else
//! from Zuul's REST API (`<api>/builds?<query>`, newest first; the first
//! successful build is taken, as zuul-jobs takes the first answer).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::upload::copy_or_predict;
use crate::client::{Error as ClientError, Registry};
use crate::oci::{Digest, Reference};
use crate::zuul::Artifact;

/// One final tag and where the gate build left its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatePromotion {
    /// The image's `repository` (as in `container_images`).
    pub repository: String,
    /// The final tag.
    pub tag: String,
    /// The gate build's image in the intermediate registry.
    pub source: Reference,
    /// The final tag on the target registry.
    pub target: Reference,
}

/// A tag promoted from the intermediate registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromotedFromGate {
    /// The repository.
    pub repository: String,
    /// The final tag.
    pub tag: String,
    /// The gate build's image it came from (`inter:5000/org/app:<build>_latest`).
    pub source: String,
    /// The digest the gate tested (what the intermediate registry holds).
    pub gate_digest: Digest,
    /// The digest the final tag names now.
    pub digest: Digest,
    /// Always true once written: the final tag names the gate's digest.
    pub same_as_gate: bool,
    /// Manifests written to the target.
    pub manifests_written: usize,
    /// Blobs sent to the target (the ones it lacked).
    pub blobs_copied: usize,
    /// Bytes sent.
    pub bytes_copied: u64,
    /// Whether the final tag moved.
    pub changed: bool,
}

/// Why a promote from the intermediate registry failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No artifact for an image's tag.
    #[error(
        "the gate build left no container_image artifact for {repository}:{tag} (it left {known:?}); \
         nothing was promoted"
    )]
    NoArtifact {
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
        /// `repository:tag` of the artifacts there are.
        known: Vec<String>,
    },
    /// An artifact whose `url` is not an image reference.
    #[error("artifact {name:?} has the url {url:?}, not docker://<registry>/<repository>:<tag>")]
    BadUrl {
        /// `repository:tag`.
        name: String,
        /// The url.
        url: String,
    },
    /// An artifact in a registry other than the intermediate registry.
    #[error(
        "artifact {name:?} is in {registry}, not the intermediate registry {intermediate}; \
         nothing was promoted"
    )]
    OtherRegistry {
        /// `repository:tag`.
        name: String,
        /// Where the artifact is.
        registry: String,
        /// The intermediate registry.
        intermediate: String,
    },
    /// Zuul's API could not be asked, or had no build.
    #[error("{0}")]
    Api(String),
    /// The final tag does not name the gate's digest after the copy.
    #[error("after copying, {target} names {actual}, not {expected}, the digest the gate tested")]
    Diverged {
        /// The final tag.
        target: String,
        /// The gate's digest.
        expected: Digest,
        /// What it names.
        actual: String,
    },
    /// A registry failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The `container_image` artifacts, as `repository:tag` → url.
pub fn image_artifacts(artifacts: &[Artifact]) -> BTreeMap<String, String> {
    let text = |a: &Artifact, key: &str| {
        a.metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    artifacts
        .iter()
        .filter(|a| text(a, "type").as_deref() == Some("container_image"))
        .filter_map(|a| {
            Some((
                format!("{}:{}", text(a, "repository")?, text(a, "tag")?),
                a.url.clone(),
            ))
        })
        .collect()
}

/// One build as Zuul's `/builds` lists it.
#[derive(Debug, Deserialize)]
struct ZuulBuild {
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

/// The artifacts of the newest successful build Zuul's REST API at `api`
/// (`https://zuul.example.org/api/tenant/<tenant>`) lists for `query`.
pub async fn artifacts_from_api(
    api: &str,
    query: &str,
    ca_pem: Option<&str>,
) -> Result<Vec<Artifact>, GateError> {
    crate::crypto::install_default();
    let url = format!("{}/builds?{query}", api.trim_end_matches('/'));
    let shown = crate::client::redact_url(&url);
    let mut http = reqwest::Client::builder()
        .user_agent(concat!("speculative-images/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem.filter(|p| !p.trim().is_empty()) {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| GateError::Api(format!("promote_container_image_api_cert: {e}")))?;
        http = http.add_root_certificate(cert);
    }
    let http = http
        .build()
        .map_err(|e| GateError::Api(format!("setting up a client for {shown}: {e}")))?;
    let response = http
        .get(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| GateError::Api(format!("GET {shown}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(GateError::Api(format!("GET {shown}: {status}")));
    }
    let builds: Vec<ZuulBuild> = response
        .json()
        .await
        .map_err(|e| GateError::Api(format!("GET {shown}: not a list of builds: {e}")))?;
    builds
        .into_iter()
        .find(|b| b.result.as_deref() == Some("SUCCESS"))
        .map(|b| b.artifacts)
        .ok_or_else(|| {
            GateError::Api(format!(
                "GET {shown}: Zuul lists no successful build for this query; nothing was promoted"
            ))
        })
}

/// Pair each `(repository, tag, target)` with its gate artifact from
/// `artifacts` (`repository:tag` → url), all in `intermediate`.
pub fn plan(
    wanted: &[(String, String, Reference)],
    artifacts: &BTreeMap<String, String>,
    intermediate: &str,
) -> Result<Vec<GatePromotion>, GateError> {
    wanted
        .iter()
        .map(|(repository, tag, target)| {
            let name = format!("{repository}:{tag}");
            let Some(url) = artifacts.get(&name) else {
                return Err(GateError::NoArtifact {
                    repository: repository.clone(),
                    tag: tag.clone(),
                    known: artifacts.keys().cloned().collect(),
                });
            };
            let source: Reference = url
                .strip_prefix("docker://")
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| GateError::BadUrl {
                    name: name.clone(),
                    url: url.clone(),
                })?;
            if source.registry != intermediate {
                return Err(GateError::OtherRegistry {
                    name,
                    registry: source.registry,
                    intermediate: intermediate.to_string(),
                });
            }
            Ok(GatePromotion {
                repository: repository.clone(),
                tag: tag.clone(),
                source,
                target: target.clone(),
            })
        })
        .collect()
}

/// Copy every promotion from `source` to `target` (each's own handle by
/// registry name), blobs the target has skipped; then check the final tag
/// names the digest the gate tested. In check mode, only find out.
pub async fn promote_all<S: Registry, D: Registry>(
    source: &Arc<S>,
    targets: &BTreeMap<String, Arc<D>>,
    promotions: &[GatePromotion],
    check_mode: bool,
) -> Result<Vec<PromotedFromGate>, GateError> {
    let mut done = Vec::with_capacity(promotions.len());
    for p in promotions {
        let target = &targets[&p.target.registry];
        let gate_digest = source
            .manifest_head(&p.source.repository, &p.source.manifest_reference())
            .await?
            .ok_or_else(|| GateError::NoArtifact {
                repository: p.repository.clone(),
                tag: p.tag.clone(),
                known: vec![format!(
                    "{} (gone from the intermediate registry)",
                    p.source
                )],
            })?;
        let report = copy_or_predict(source, &p.source, target, &p.target, check_mode).await?;
        let digest = if check_mode {
            gate_digest.clone()
        } else {
            let named = target
                .manifest_head(&p.target.repository, &p.target.manifest_reference())
                .await?;
            if named.as_ref() != Some(&gate_digest) {
                return Err(GateError::Diverged {
                    target: p.target.to_string(),
                    expected: gate_digest,
                    actual: named.map_or("nothing".to_string(), |d| d.to_string()),
                });
            }
            gate_digest.clone()
        };
        done.push(PromotedFromGate {
            repository: p.repository.clone(),
            tag: p.tag.clone(),
            source: p.source.to_string(),
            same_as_gate: digest == gate_digest,
            gate_digest,
            digest,
            manifests_written: report.manifests_written,
            blobs_copied: report.blobs_copied,
            bytes_copied: report.bytes_copied,
            changed: report.changed,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(repository: &str, tag: &str, url: &str) -> Artifact {
        serde_json::from_value(serde_json::json!({
            "name": format!("{repository}:{tag}"), "url": url,
            "metadata": {"type": "container_image", "repository": repository, "tag": tag},
        }))
        .unwrap()
    }

    #[test]
    fn artifacts_are_paired_with_tags_in_the_intermediate_registry_only() {
        let mut all = vec![artifact(
            "quay.io/org/app",
            "latest",
            "docker://inter:5000/quay.io/org/app:b1_latest",
        )];
        all.push(
            serde_json::from_value(serde_json::json!({"name": "logs", "url": "https://x"}))
                .unwrap(),
        );
        let map = image_artifacts(&all);
        assert_eq!(map.len(), 1);
        let target: Reference = "quay.io/org/app:latest".parse().unwrap();
        let wanted = [("quay.io/org/app".to_string(), "latest".to_string(), target)];
        let planned = plan(&wanted, &map, "inter:5000").unwrap();
        assert_eq!(
            planned[0].source.to_string(),
            "inter:5000/quay.io/org/app:b1_latest"
        );
        assert_eq!(
            plan(&wanted, &map, "other:5000").unwrap_err().to_string(),
            "artifact \"quay.io/org/app:latest\" is in inter:5000, not the intermediate registry \
             other:5000; nothing was promoted"
        );
        let v1 = [(
            "quay.io/org/app".to_string(),
            "v1".to_string(),
            "quay.io/org/app:v1".parse().unwrap(),
        )];
        assert_eq!(
            plan(&v1, &map, "inter:5000").unwrap_err().to_string(),
            "the gate build left no container_image artifact for quay.io/org/app:v1 (it left \
             [\"quay.io/org/app:latest\"]); nothing was promoted"
        );
    }
}
