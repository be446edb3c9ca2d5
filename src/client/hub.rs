//! Docker Hub's own API (`hub.docker.com`), for what its registry API does
//! not offer: tags with their last update time, and deleting one tag. A
//! login with the account's password gives a JWT that the tag calls carry.
//! Only Docker Hub speaks this; other registries use
//! [`super::TagDeleted`]-style spec operations.

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::error::{redact_url, Error, ErrorKind};
use super::tag_delete::TagDeleted;
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
            .map_err(|e| Error::new(ErrorKind::Tls(e.to_string()), HUB, "setting up"))?;
        let url = format!("{}/v2/users/login/", base.trim_end_matches('/'));
        let action = format!("POST {}", redact_url(&url));
        let response = http
            .post(&url)
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .map_err(|e| failed(&action, &e))?;
        let answer: LoginAnswer = read_json(response, &action, &[StatusCode::OK]).await?;
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
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED => {
                Ok(TagDeleted::Deleted)
            }
            StatusCode::NOT_FOUND => Ok(TagDeleted::Absent),
            status => Err(status_error(status, &action)),
        }
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
    let status = response.status();
    if !expected.contains(&status) {
        return Err(status_error(status, action));
    }
    response.json().await.map_err(|e| {
        Error::new(
            ErrorKind::InvalidResponse(format!("the answer is not what Docker Hub sends: {e}")),
            HUB,
            action,
        )
    })
}

fn status_error(status: StatusCode, action: &str) -> Error {
    let kind = match status {
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::FORBIDDEN => ErrorKind::Denied,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
        _ => ErrorKind::Status,
    };
    let mut error = Error::new(kind, HUB, action);
    error.status = Some(status);
    error
}

fn failed(action: &str, e: &reqwest::Error) -> Error {
    let kind = if e.is_connect() {
        ErrorKind::Connect(e.to_string())
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Body(e.to_string())
    };
    Error::new(kind, HUB, action)
}

#[cfg(test)]
mod tests {
    //! Docker Hub cannot be reached here; a stand-in speaking the three
    //! calls the way Hub documents them checks the requests we send.

    use super::*;
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::routing::{delete, get, post};
    use axum::{Json, Router};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    type Deleted = Arc<Mutex<Vec<String>>>;

    async fn start() -> (String, Deleted) {
        let deleted: Deleted = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let next = format!("{base}/v2/repositories/org/app/tags/?page=2");
        let app = Router::new()
            .route(
                "/v2/users/login/",
                post(|Json(body): Json<serde_json::Value>| async move {
                    if body == serde_json::json!({"username": "u", "password": "pw"}) {
                        (StatusCode::OK, Json(serde_json::json!({"token": "jwt-1"})))
                    } else {
                        (StatusCode::UNAUTHORIZED, Json(serde_json::json!({})))
                    }
                }),
            )
            .route(
                "/v2/repositories/org/app/tags/",
                get(move |Query(q): Query<HashMap<String, String>>, h: HeaderMap| {
                    let next = next.clone();
                    async move {
                        assert_eq!(h["authorization"], "JWT jwt-1");
                        Json(if q.get("page").map(String::as_str) == Some("2") {
                            serde_json::json!({"next": null, "results": [
                                {"name": "latest", "last_updated": "2026-11-25T10:00:00.123456Z"}]})
                        } else {
                            serde_json::json!({"next": next, "results": [
                                {"name": "change_1_latest", "last_updated": "2026-11-20T10:00:00Z"}]})
                        })
                    }
                }),
            )
            .route(
                "/v2/repositories/org/app/tags/{tag}/",
                delete(
                    |State(deleted): State<Deleted>,
                     axum::extract::Path(tag): axum::extract::Path<String>,
                     h: HeaderMap| async move {
                        assert_eq!(h["authorization"], "JWT jwt-1");
                        if tag == "gone" {
                            return StatusCode::NOT_FOUND;
                        }
                        deleted.lock().unwrap().push(tag);
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(deleted.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, deleted)
    }

    #[tokio::test]
    async fn login_list_and_delete() {
        let (base, deleted) = start().await;
        let err = HubApi::login(&base, "u", "wrong").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(!err.to_string().contains("wrong"), "{err}");

        let hub = HubApi::login(&base, "u", "pw").await.unwrap();
        let repo: RepositoryName = "org/app".parse().unwrap();
        let tags = hub.tags(&repo).await.unwrap();
        let names: Vec<_> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["change_1_latest", "latest"]);
        assert_eq!(
            tags[0].last_updated.as_deref(),
            Some("2026-11-20T10:00:00Z")
        );

        let tag: Tag = "change_1_latest".parse().unwrap();
        assert_eq!(
            hub.delete_tag(&repo, &tag).await.unwrap(),
            TagDeleted::Deleted
        );
        let gone: Tag = "gone".parse().unwrap();
        assert_eq!(
            hub.delete_tag(&repo, &gone).await.unwrap(),
            TagDeleted::Absent
        );
        assert_eq!(*deleted.lock().unwrap(), ["change_1_latest"]);
    }
}
