//! Deleting one tag: the distribution spec's `DELETE
//! /v2/<name>/manifests/<tag>`, which removes the tag and leaves the
//! manifest and its other tags alone. Not every registry implements it
//! (distribution 2.8 deletes by digest only); such a refusal is told apart
//! so callers can decide what else to do.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::auth::{repository_scope, Authenticator};
use super::error::{redact_url, Error};
use super::registry::TagDeleted;
use super::transport::Body;
use crate::oci::{RepositoryName, Tag};

/// Delete `tag` of `repository`, keeping the manifest it names.
pub(crate) async fn delete(
    auth: &Authenticator,
    repository: &RepositoryName,
    tag: &Tag,
) -> Result<TagDeleted, Error> {
    let t = auth.transport();
    let scopes = [repository_scope(repository.as_str(), "delete")];
    let url = t.url(&format!("{repository}/manifests/{tag}"));
    let action = format!("DELETE {}", redact_url(&url));
    let response = auth
        .send(Method::DELETE, &url, &scopes, HeaderMap::new(), Body::Empty)
        .await?;
    match response.status() {
        StatusCode::NOT_FOUND => Ok(TagDeleted::Absent),
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST => Ok(TagDeleted::Unsupported),
        _ => {
            t.check_status(response, &action, &[StatusCode::ACCEPTED, StatusCode::OK])
                .await?;
            Ok(TagDeleted::Deleted)
        }
    }
}
