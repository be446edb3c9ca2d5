//! Listing what a registry holds: the repository catalog
//! (`GET /v2/_catalog`), a repository's tags (`GET /v2/<name>/tags/list`),
//! both followed across `Link` pages, and the digest a tag points at
//! (`HEAD /v2/<name>/manifests/<tag>`). Used to preload a buildset
//! registry's images; speaks to registries that allow anonymous or basic
//! auth reads (buildset registries), not to token-auth hubs.

use reqwest::header::{HeaderMap, ACCEPT, LINK};
use reqwest::{Certificate, Client, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::oci::media_type;

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The CA given for the registry is not a PEM certificate.
    #[error("the registry CA is not a PEM certificate: {0}")]
    Ca(reqwest::Error),
    /// The HTTP client could not be built.
    #[error("building an HTTP client: {0}")]
    Client(reqwest::Error),
    /// The request did not get a response.
    #[error("{what} at {url}: {source}")]
    Request {
        /// What we were doing.
        what: &'static str,
        /// The URL asked.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{what} at {url}: the registry answered {status}")]
    Status {
        /// What we were doing.
        what: &'static str,
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: StatusCode,
    },
    /// The response is not what the distribution spec says.
    #[error("{what} at {url}: {reason}")]
    Invalid {
        /// What we were doing.
        what: &'static str,
        /// The URL asked.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// A read-only view of one registry's contents.
#[derive(Debug, Clone)]
pub struct Catalog {
    http: Client,
    base: Url,
    credentials: Option<(String, String)>,
}

#[derive(Deserialize)]
struct RepositoryList {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Page size asked for; registries may return fewer and a `Link`.
const PAGE: usize = 1000;

impl Catalog {
    /// A view of the registry at `authority` (`host:port`, IPv6 in
    /// brackets) trusting only `ca_pem`, reading with `credentials` when
    /// given.
    pub fn new(
        authority: &str,
        ca_pem: &str,
        credentials: Option<(String, String)>,
    ) -> Result<Catalog, CatalogError> {
        let ca = Certificate::from_pem(ca_pem.as_bytes()).map_err(CatalogError::Ca)?;
        let http = Client::builder()
            .tls_certs_only([ca])
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(CatalogError::Client)?;
        let base =
            Url::parse(&format!("https://{authority}/")).map_err(|e| CatalogError::Invalid {
                what: "parsing the registry address",
                url: authority.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Catalog {
            http,
            base,
            credentials,
        })
    }

    /// Every repository name in the registry.
    pub async fn repositories(&self) -> Result<Vec<String>, CatalogError> {
        let mut out = Vec::new();
        let mut next = Some(self.url(&format!("v2/_catalog?n={PAGE}")));
        while let Some(url) = next.take() {
            let (list, link): (RepositoryList, _) = self
                .get_json("listing the registry's repositories", url)
                .await?;
            out.extend(list.repositories);
            next = link;
        }
        Ok(out)
    }

    /// Every tag of `repository`.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, CatalogError> {
        let mut out = Vec::new();
        let mut next = Some(self.url(&format!("v2/{repository}/tags/list?n={PAGE}")));
        while let Some(url) = next.take() {
            let (list, link): (TagList, _) = self.get_json("listing tags", url).await?;
            out.extend(list.tags.unwrap_or_default());
            next = link;
        }
        Ok(out)
    }

    /// The digest `repository:tag` points at, as the registry reports it.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<String, CatalogError> {
        let what = "reading a manifest digest";
        let url = self.url(&format!("v2/{repository}/manifests/{tag}"));
        let response = self
            .auth(self.http.head(url.clone()))
            .header(ACCEPT, media_type::MANIFEST_TYPES.join(", "))
            .send()
            .await
            .map_err(|source| CatalogError::Request {
                what,
                url: url.to_string(),
                source,
            })?;
        if !response.status().is_success() {
            return Err(CatalogError::Status {
                what,
                url: url.to_string(),
                status: response.status(),
            });
        }
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| CatalogError::Invalid {
                what,
                url: url.to_string(),
                reason: "no Docker-Content-Digest header".into(),
            })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a relative path joins")
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        url: Url,
    ) -> Result<(T, Option<Url>), CatalogError> {
        let response = self
            .auth(self.http.get(url.clone()))
            .send()
            .await
            .map_err(|source| CatalogError::Request {
                what,
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(CatalogError::Status {
                what,
                url: url.to_string(),
                status,
            });
        }
        let next = next_page(&url, response.headers());
        let body = response
            .json::<T>()
            .await
            .map_err(|e| CatalogError::Invalid {
                what,
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok((body, next))
    }
}

/// The `rel="next"` target of a `Link` header, relative to `url`.
fn next_page(url: &Url, headers: &HeaderMap) -> Option<Url> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        url.join(target).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn follows_link_headers() {
        let url = Url::parse("https://r:5000/v2/_catalog?n=2").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static("</v2/_catalog?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_page(&url, &headers).unwrap().as_str(),
            "https://r:5000/v2/_catalog?last=b&n=2"
        );
        assert_eq!(next_page(&url, &HeaderMap::new()), None);
    }
}
