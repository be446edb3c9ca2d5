//! Tag listing over HTTP, following the spec's `Link` pagination.

use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, StatusCode};

use super::auth::repository_scope;
use super::error::{redact_url, Error, ErrorKind};
use super::remote::RemoteRegistry;
use super::transport::Body;
use crate::oci::{RepositoryName, Tag};

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RemoteRegistry {
    pub(crate) async fn list_tags(&self, repository: &RepositoryName) -> Result<Vec<Tag>, Error> {
        let t = &self.transport;
        let scopes = [repository_scope(repository.as_str(), "pull")];
        let mut url = t.url(&format!("{repository}/tags/list?n=1000"));
        let mut tags = Vec::new();
        loop {
            let action = format!("GET {}", redact_url(&url));
            let response = t
                .send(Method::GET, &url, &scopes, HeaderMap::new(), Body::Empty)
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            let response = t.expect(response, &action, &[StatusCode::OK]).await?;
            let next = next_link(response.headers());
            let page: TagList = response.json().await.map_err(|e| {
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
                Some(link) => {
                    let base = url::Url::parse(&url).map_err(|e| {
                        Error::new(
                            ErrorKind::InvalidResponse(e.to_string()),
                            &t.endpoint.registry,
                            action.clone(),
                        )
                    })?;
                    url = match base.join(&link) {
                        Ok(u) => u.to_string(),
                        Err(_) => return Ok(tags),
                    };
                }
                None => return Ok(tags),
            }
        }
    }
}

/// The target of `Link: <...>; rel="next"`.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(LINK)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn follows_next_links() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("</v2/a/tags/list?n=2&last=b>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).unwrap(), "/v2/a/tags/list?n=2&last=b");
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
