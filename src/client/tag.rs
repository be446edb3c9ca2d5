//! Tag listing over HTTP, following the spec's `Link` pagination (see
//! `pages.rs`).

use super::auth::{repository_scope, Authenticator};
use super::error::Error;
use super::pages::for_each_page;
use crate::oci::{RepositoryName, Tag};

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

pub(crate) async fn list(
    auth: &Authenticator,
    repository: &RepositoryName,
) -> Result<Vec<Tag>, Error> {
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let path = format!("{repository}/tags/list");
    let mut tags = Vec::new();
    // An unknown repository (404) has no tags.
    for_each_page(auth, &path, &scopes, "tag list", true, |page: TagList| {
        // A registry may hold tags older than today's grammar; skip them.
        tags.extend(
            page.tags
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.parse().ok()),
        );
    })
    .await?;
    Ok(tags)
}
