//! The registry's repository catalog (`GET /v2/_catalog`), followed across
//! the spec's `Link` pages: what a buildset registry holds, for the
//! preload of `use_buildset_registry`. (Tags and digests come from the
//! [`Registry`](super::Registry) operations.)

use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, StatusCode};

use super::error::{redact_url, Error, ErrorKind};
use super::remote::RemoteRegistry;
use super::transport::Body;
use crate::oci::RepositoryName;

/// The token scope the catalog needs on registries that use tokens.
const CATALOG_SCOPE: &str = "registry:catalog:*";

#[derive(serde::Deserialize)]
struct RepositoryList {
    #[serde(default)]
    repositories: Vec<String>,
}

impl RemoteRegistry {
    /// Every repository the registry lists. Names that are not valid
    /// repository names today are skipped.
    pub async fn catalog(&self) -> Result<Vec<RepositoryName>, Error> {
        let t = &self.transport;
        let scopes = [CATALOG_SCOPE.to_string()];
        let mut url = t.url("_catalog?n=1000");
        let mut repositories = Vec::new();
        loop {
            let action = format!("GET {}", redact_url(&url));
            let response = t
                .send(Method::GET, &url, &scopes, HeaderMap::new(), Body::Empty)
                .await?;
            let response = t.expect(response, &action, &[StatusCode::OK]).await?;
            let next = next_page(&url, response.headers());
            let page: RepositoryList = response.json().await.map_err(|e| {
                Error::new(
                    ErrorKind::InvalidResponse(format!("the catalog is not valid: {e}")),
                    &t.endpoint.registry,
                    action.clone(),
                )
            })?;
            repositories.extend(page.repositories.iter().filter_map(|r| r.parse().ok()));
            match next {
                Some(next) => url = next,
                None => return Ok(repositories),
            }
        }
    }
}

/// The absolute URL of `Link: <...>; rel="next"`, relative to `url`.
fn next_page(url: &str, headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    let target = link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })?;
    url::Url::parse(url)
        .ok()?
        .join(target)
        .ok()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn follows_link_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static("</v2/_catalog?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_page("https://r:5000/v2/_catalog?n=2", &headers).as_deref(),
            Some("https://r:5000/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_page("https://r:5000/v2/_catalog", &HeaderMap::new()),
            None
        );
    }
}
