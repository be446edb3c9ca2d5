//! The registry's repository catalog (`GET /v2/_catalog`), followed across
//! the spec's `Link` pages: what a buildset registry holds, for the
//! preload of `use_buildset_registry`. (Tags and digests come from the
//! [`Registry`](super::Registry) operations.)

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::auth::Authenticator;
use super::error::{redact_url, Error, ErrorKind};
use super::limits::{read_limited, MAX_PAGES, PAGE_LIMIT};
use super::pages::next_page;
use super::transport::Body;
use crate::oci::RepositoryName;

/// The token scope the catalog needs on registries that use tokens.
const CATALOG_SCOPE: &str = "registry:catalog:*";

#[derive(serde::Deserialize)]
struct RepositoryList {
    #[serde(default)]
    repositories: Vec<String>,
}

/// Every repository the registry lists. Names that are not valid
/// repository names today are skipped.
pub(crate) async fn list(auth: &Authenticator) -> Result<Vec<RepositoryName>, Error> {
    let t = auth.transport();
    let scopes = [CATALOG_SCOPE.to_string()];
    let mut url = t.url("_catalog?n=1000");
    let mut repositories = Vec::new();
    for _ in 0..MAX_PAGES {
        let action = format!("GET {}", redact_url(&url));
        let response = auth
            .send(Method::GET, &url, &scopes, HeaderMap::new(), Body::Empty)
            .await?;
        let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
        let next = next_page(&url, response.headers());
        let body = read_limited(
            response,
            PAGE_LIMIT,
            "a catalog page",
            &t.endpoint.registry,
            &action,
        )
        .await?;
        let page: RepositoryList = serde_json::from_slice(&body).map_err(|e| {
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
    Err(Error::new(
        ErrorKind::TooLarge {
            what: "a catalog".into(),
            limit: format!("{MAX_PAGES} pages"),
        },
        &t.endpoint.registry,
        format!("GET {}", redact_url(&t.url("_catalog"))),
    ))
}
