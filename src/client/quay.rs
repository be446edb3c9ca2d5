//! quay.io's own API (`https://quay.io/api/v1`), for what its registry API
//! does not offer: tags with when they were last written, and deleting one
//! tag. Calls carry an OAuth application token (`api_token` of
//! `container_registry_credentials`) as a bearer token.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::error::{redact_url, Error, ErrorKind};
use super::hub::{read_service_json, service_failed, tag_deleted};
use super::registry::TagDeleted;
use crate::oci::{RepositoryName, Tag};

/// Tags asked for per page.
const PAGE_SIZE: usize = 100;

/// Pages followed at most (a runaway `has_additional` stops here).
const MAX_PAGES: usize = 1000;

/// One tag as quay.io lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QuayTag {
    /// The tag.
    pub name: String,
    /// When it was written, in seconds since the epoch.
    #[serde(default)]
    pub start_ts: Option<i64>,
    /// The same as an RFC 2822 date (`Thu, 23 Mar 2023 21:59:40 -0000`).
    #[serde(default)]
    pub last_modified: Option<String>,
}

impl QuayTag {
    /// When the tag was last written, if quay.io says.
    pub fn written(&self) -> Option<DateTime<Utc>> {
        self.start_ts
            .and_then(|ts| DateTime::from_timestamp(ts, 0))
            .or_else(|| {
                let text = self.last_modified.as_deref()?;
                DateTime::parse_from_rfc2822(text)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
    }
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Vec<QuayTag>,
    #[serde(default)]
    has_additional: bool,
}

/// quay.io's API, with a token.
pub struct QuayApi {
    http: reqwest::Client,
    base: String,
    token: String,
    name: String,
}

impl std::fmt::Debug for QuayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuayApi").field("base", &self.base).finish()
    }
}

impl QuayApi {
    /// The API at `base` (normally `https://quay.io/api/v1`), called with
    /// `token`.
    pub fn new(base: &str, token: &str) -> Result<QuayApi, Error> {
        crate::crypto::install_default();
        let base = base.trim_end_matches('/').to_string();
        let name = reqwest::Url::parse(&base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "quay.io".to_string());
        let http = reqwest::Client::builder()
            .user_agent(concat!("speculative-images/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::new(ErrorKind::Internal(e.to_string()), &name, "setting up"))?;
        Ok(QuayApi {
            http,
            base,
            token: token.to_string(),
            name,
        })
    }

    /// Every active tag of `repository`, following quay.io's pages.
    pub async fn tags(&self, repository: &RepositoryName) -> Result<Vec<QuayTag>, Error> {
        let mut tags = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}/repository/{repository}/tag/?onlyActiveTags=true&limit={PAGE_SIZE}&page={page}",
                self.base
            );
            let action = format!("GET {}", redact_url(&url));
            let response = self
                .request(Method::GET, &url)
                .send()
                .await
                .map_err(|e| service_failed(&self.name, &action, &e))?;
            let answer: TagPage =
                read_service_json(response, &self.name, "quay.io", &action, &[StatusCode::OK])
                    .await?;
            tags.extend(answer.tags);
            if !answer.has_additional {
                break;
            }
        }
        Ok(tags)
    }

    /// Delete `tag` of `repository` (the image stays if other tags name it).
    pub async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<TagDeleted, Error> {
        let url = format!("{}/repository/{repository}/tag/{tag}", self.base);
        let action = format!("DELETE {}", redact_url(&url));
        let response = self
            .request(Method::DELETE, &url)
            .send()
            .await
            .map_err(|e| service_failed(&self.name, &action, &e))?;
        tag_deleted(response.status(), &self.name, &action)
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_from_start_ts_else_last_modified() {
        let tag = |start_ts, last: Option<&str>| QuayTag {
            name: "t".into(),
            start_ts,
            last_modified: last.map(str::to_string),
        };
        assert_eq!(
            tag(Some(1_679_608_780), None)
                .written()
                .unwrap()
                .to_rfc3339(),
            "2023-03-23T21:59:40+00:00"
        );
        assert_eq!(
            tag(None, Some("Thu, 23 Mar 2023 21:59:40 -0000"))
                .written()
                .unwrap()
                .to_rfc3339(),
            "2023-03-23T21:59:40+00:00"
        );
        assert_eq!(tag(None, Some("yesterday")).written(), None);
    }
}
