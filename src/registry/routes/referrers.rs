//! `/v2/<name>/referrers/<digest>`: the manifests of a repository whose
//! `subject` is that digest, as an OCI image index (distribution-spec
//! 1.1), optionally filtered by `artifactType`. Never 404: an unknown
//! subject has an empty list.

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};

use super::blobs::parse_digest;
use super::{set, Reply, Req};
use crate::oci::{media_type, RepositoryName};

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`.
pub async fn list(request: &Req<'_>, name: RepositoryName, subject: &str) -> Reply {
    let subject = parse_digest(subject)?;
    let artifact_type = request.query("artifactType").filter(|t| !t.is_empty());
    let manifests = request
        .storage()
        .referrers(&name, &subject, artifact_type.as_deref())
        .await?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let mut response: Response = (StatusCode::OK, index.to_string()).into_response();
    set(&mut response, "content-type", media_type::OCI_INDEX);
    if artifact_type.is_some() {
        set(&mut response, "oci-filters-applied", "artifactType");
    }
    Ok(response)
}
