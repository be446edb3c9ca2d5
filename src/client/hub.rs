//! Docker Hub's own API (`hub.docker.com`), for what its registry API does
//! not offer: tags with their last update time, and deleting one tag. A
//! login with the account's password gives a JWT that the tag calls carry.
//! Only Docker Hub speaks this; other registries use
//! [`super::TagDeleted`]-style spec operations.

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::error::{redact_url, Error, ErrorKind};
use super::registry::TagDeleted;
use crate::oci::{RepositoryName, Tag};

/// Where Docker Hub's API answers.
pub const HUB_API_URL: &str = "https://hub.docker.com";

/// The name errors give this API.
const HUB: &str = "hub.docker.com";

/// One tag as Docker Hub lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HubTag {
    /// The tag.
    pub name: String,
    /// When it was last pushed (RFC 3339), if Hub says.
    #[serde(default)]
    pub last_updated: Option<String>,
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    results: Vec<HubTag>,
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
}

/// A logged-in session with Docker Hub's API.
pub struct HubApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for HubApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubApi").field("base", &self.base).finish()
    }
}

impl HubApi {
    /// Log in at `base` (normally [`HUB_API_URL`]) for a JWT.
    pub async fn login(base: &str, username: &str, password: &str) -> Result<HubApi, Error> {
        crate::crypto::install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("speculative-images/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::new(ErrorKind::Internal(e.to_string()), HUB, "setting up"))?;
        let url = format!("{}/v2/users/login/", base.trim_end_matches('/'));
        let action = format!("POST {}", redact_url(&url));
        let response = http
            .post(&url)
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .map_err(|e| failed(&action, &e))?;
        let answer: LoginAnswer = read_json(response, &action, &[StatusCode::OK])
            .await
            .map_err(|mut e| {
                // Refused, not missing: say whose credentials.
                e.username = Some(username.to_string());
                e
            })?;
        Ok(HubApi {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: answer.token,
        })
    }

    /// Every tag of `repository`, following Hub's pagination.
    pub async fn tags(&self, repository: &RepositoryName) -> Result<Vec<HubTag>, Error> {
        let mut url = Some(format!(
            "{}/v2/repositories/{repository}/tags/?page_size=100",
            self.base
        ));
        let mut tags = Vec::new();
        while let Some(next) = url {
            let action = format!("GET {}", redact_url(&next));
            let response = self
                .request(Method::GET, &next)
                .send()
                .await
                .map_err(|e| failed(&action, &e))?;
            let page: TagPage = read_json(response, &action, &[StatusCode::OK]).await?;
            tags.extend(page.results);
            url = page.next.filter(|n| n.starts_with(&self.base));
        }
        Ok(tags)
    }

    /// Delete `tag` of `repository` (the image stays if other tags name it).
    pub async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<TagDeleted, Error> {
        let url = format!("{}/v2/repositories/{repository}/tags/{tag}/", self.base);
        let action = format!("DELETE {}", redact_url(&url));
        let response = self
            .request(Method::DELETE, &url)
            .send()
            .await
            .map_err(|e| failed(&action, &e))?;
        tag_deleted(response.status(), HUB, &action)
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).header(
            reqwest::header::AUTHORIZATION,
            format!("JWT {}", self.token),
        )
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    action: &str,
    expected: &[StatusCode],
) -> Result<T, Error> {
    read_service_json(response, HUB, "Docker Hub", action, expected).await
}

/// Read the JSON answer of a registry's own API (`service`, named `who`
/// in errors), failing on any status not `expected`.
pub(super) async fn read_service_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    service: &str,
    who: &str,
    action: &str,
    expected: &[StatusCode],
) -> Result<T, Error> {
    let status = response.status();
    if !expected.contains(&status) {
        return Err(service_status_error(status, service, action));
    }
    let body = super::limits::read_limited(
        response,
        super::limits::PAGE_LIMIT,
        "an answer",
        service,
        action,
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| {
        Error::new(
            ErrorKind::InvalidResponse(format!("the answer is not what {who} sends: {e}")),
            service,
            action,
        )
    })
}

/// What the answer `status` of a registry API's tag delete means.
pub(super) fn tag_deleted(
    status: StatusCode,
    service: &str,
    action: &str,
) -> Result<TagDeleted, Error> {
    match status {
        StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED => Ok(TagDeleted::Deleted),
        StatusCode::NOT_FOUND => Ok(TagDeleted::Absent),
        status => Err(service_status_error(status, service, action)),
    }
}

/// The error for an unexpected `status` from `service`.
pub(super) fn service_status_error(status: StatusCode, service: &str, action: &str) -> Error {
    let kind = match status {
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Denied,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
        _ => ErrorKind::Status,
    };
    let mut error = Error::new(kind, service, action);
    error.status = Some(status);
    error
}

fn failed(action: &str, e: &reqwest::Error) -> Error {
    service_failed(HUB, action, e)
}

/// The error for a request to `service` that got no answer.
pub(super) fn service_failed(service: &str, action: &str, e: &reqwest::Error) -> Error {
    let kind = if e.is_connect() {
        ErrorKind::Connect(e.to_string())
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Body(e.to_string())
    };
    Error::new(kind, service, action)
}
