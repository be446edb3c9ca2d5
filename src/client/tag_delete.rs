//! Deleting one tag: the distribution spec's `DELETE
//! /v2/<name>/manifests/<tag>`, which removes the tag and leaves the
//! manifest and its other tags alone. Not every registry implements it
//! (distribution 2.8 deletes by digest only); such a refusal is told apart
//! so callers can decide what else to do.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::error::{redact_url, Error};
use super::remote::RemoteRegistry;
use super::transport::Body;
use crate::oci::{RepositoryName, Tag};

/// What became of a tag delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagDeleted {
    /// The tag is gone.
    Deleted,
    /// There was no such tag.
    Absent,
    /// The registry does not delete tags by name (400/405, `UNSUPPORTED`).
    Unsupported,
}

impl RemoteRegistry {
    /// Delete `tag` of `repository`, keeping the manifest it names.
    pub async fn tag_delete(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<TagDeleted, Error> {
        let t = &self.transport;
        let scopes = [repository_scope(repository.as_str(), "delete")];
        let url = t.url(&format!("{repository}/manifests/{tag}"));
        let action = format!("DELETE {}", redact_url(&url));
        let response = t
            .send(Method::DELETE, &url, &scopes, HeaderMap::new(), Body::Empty)
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(TagDeleted::Absent),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST => Ok(TagDeleted::Unsupported),
            _ => {
                t.expect(response, &action, &[StatusCode::ACCEPTED, StatusCode::OK])
                    .await?;
                Ok(TagDeleted::Deleted)
            }
        }
    }
}
