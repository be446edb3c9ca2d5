//! Tag listing over HTTP, following the spec's `Link` pagination (see
//! `pages.rs`).

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::auth::{repository_scope, Authenticator};
use super::error::{redact_url, Error, ErrorKind};
use super::limits::{read_limited, MAX_PAGES, PAGE_LIMIT};
use super::pages::next_page;
use super::transport::Body;
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
    let t = auth.transport();
    let scopes = [repository_scope(repository.as_str(), "pull")];
    let mut url = t.url(&format!("{repository}/tags/list?n=1000"));
    let mut tags = Vec::new();
    for _ in 0..MAX_PAGES {
        let action = format!("GET {}", redact_url(&url));
        let response = auth
            .send(Method::GET, &url, &scopes, HeaderMap::new(), Body::Empty)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(tags);
        }
        let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
        let next = next_page(&url, response.headers());
        let body = read_limited(
            response,
            PAGE_LIMIT,
            "a tag list page",
            &t.endpoint.registry,
            &action,
        )
        .await?;
        let page: TagList = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse(format!("the tag list is not valid: {e}")),
                &t.endpoint.registry,
                action.clone(),
            )
        })?;
        // A registry may hold tags older than today's grammar; skip them.
        tags.extend(
            page.tags
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.parse().ok()),
        );
        match next {
            Some(next) => url = next,
            None => return Ok(tags),
        }
    }
    Err(Error::new(
        ErrorKind::TooLarge {
            what: "a tag list".into(),
            limit: format!("{MAX_PAGES} pages"),
        },
        &t.endpoint.registry,
        format!(
            "GET {}",
            redact_url(&t.url(&format!("{repository}/tags/list")))
        ),
    ))
}
