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
    let body = super::limits::read_limited(
        response,
        super::limits::PAGE_LIMIT,
        "an answer",
        HUB,
        action,
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| {
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
pub(crate) mod stand_in {
    //! Docker Hub cannot be reached here; a stand-in speaking the three
    //! calls the way Hub documents them (login for a JWT, paginated tag
    //! list with `last_updated`, tag delete) records what it was sent, for
    //! this client's tests and the promote cleanup's.

    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{delete, get, post};
    use axum::{Json, Router};
    use serde_json::{json, Value};

    /// The JWT a successful login hands out.
    pub(crate) const JWT: &str = "jwt-1";
    /// Tags per page (Hub's is larger; small here so pages are followed).
    const PAGE: usize = 2;

    #[derive(Default)]
    struct Inner {
        username: String,
        password: String,
        /// Every login body, in order.
        logins: Vec<Value>,
        /// `repository:tag` of every tag deleted, in order.
        deleted: Vec<String>,
        /// The tags of each repository: `(name, last_updated)`.
        tags: BTreeMap<String, Vec<(String, Option<String>)>>,
    }

    /// A running stand-in.
    pub(crate) struct HubStandIn {
        /// Its URL, to pass as Hub's API base.
        pub base: String,
        state: Arc<Mutex<Inner>>,
    }

    impl HubStandIn {
        /// Every login body received.
        pub fn logins(&self) -> Vec<Value> {
            self.state.lock().unwrap().logins.clone()
        }

        /// `repository:tag` of every tag deleted.
        pub fn deleted(&self) -> Vec<String> {
            self.state.lock().unwrap().deleted.clone()
        }

        /// The tags `repository` still has.
        pub fn tags(&self, repository: &str) -> Vec<String> {
            self.state.lock().unwrap().tags[repository]
                .iter()
                .map(|(name, _)| name.clone())
                .collect()
        }
    }

    type Shared = Arc<Mutex<Inner>>;

    /// Start a stand-in accepting `username`/`password`, holding `tags`
    /// as `(repository, tag, last_updated)`.
    pub(crate) async fn start(
        username: &str,
        password: &str,
        tags: &[(&str, &str, Option<&str>)],
    ) -> HubStandIn {
        let mut inner = Inner {
            username: username.into(),
            password: password.into(),
            ..Inner::default()
        };
        for (repository, name, updated) in tags {
            inner
                .tags
                .entry(repository.to_string())
                .or_default()
                .push((name.to_string(), updated.map(str::to_string)));
        }
        let state: Shared = Arc::new(Mutex::new(inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v2/users/login/", post(login))
            .route("/v2/repositories/{namespace}/{name}/tags/", get(list))
            .route(
                "/v2/repositories/{namespace}/{name}/tags/{tag}/",
                delete(remove),
            )
            .with_state((state.clone(), base.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HubStandIn { base, state }
    }

    async fn login(
        State((state, _)): State<(Shared, String)>,
        Json(body): Json<Value>,
    ) -> Response {
        let mut state = state.lock().unwrap();
        state.logins.push(body.clone());
        if body == json!({"username": state.username, "password": state.password}) {
            Json(json!({"token": JWT})).into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"detail": "Incorrect authentication credentials"})),
            )
                .into_response()
        }
    }

    fn authorized(headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == format!("JWT {JWT}").as_bytes())
    }

    async fn list(
        State((state, base)): State<(Shared, String)>,
        Path((namespace, name)): Path<(String, String)>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let repository = format!("{namespace}/{name}");
        let state = state.lock().unwrap();
        let Some(tags) = state.tags.get(&repository) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let results: Vec<Value> = tags
            .iter()
            .skip((page - 1) * PAGE)
            .take(PAGE)
            .map(|(name, updated)| json!({"name": name, "last_updated": updated}))
            .collect();
        let next = (tags.len() > page * PAGE).then(|| {
            format!(
                "{base}/v2/repositories/{repository}/tags/?page={}",
                page + 1
            )
        });
        Json(json!({"count": tags.len(), "next": next, "results": results})).into_response()
    }

    async fn remove(
        State((state, _)): State<(Shared, String)>,
        Path((namespace, name, tag)): Path<(String, String, String)>,
        headers: HeaderMap,
    ) -> StatusCode {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED;
        }
        let repository = format!("{namespace}/{name}");
        let mut state = state.lock().unwrap();
        let Some(tags) = state.tags.get_mut(&repository) else {
            return StatusCode::NOT_FOUND;
        };
        let Some(at) = tags.iter().position(|(t, _)| *t == tag) else {
            return StatusCode::NOT_FOUND;
        };
        tags.remove(at);
        state.deleted.push(format!("{repository}:{tag}"));
        StatusCode::NO_CONTENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn login_list_and_delete() {
        let hub = stand_in::start(
            "u",
            "pw",
            &[
                ("org/app", "change_1_latest", Some("2026-11-20T10:00:00Z")),
                ("org/app", "latest", Some("2026-11-25T10:00:00.123456Z")),
                ("org/app", "v1", None),
            ],
        )
        .await;
        let err = HubApi::login(&hub.base, "u", "wrong").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert_eq!(
            err.to_string(),
            format!(
                "POST {}/v2/users/login/: 401 Unauthorized: registry hub.docker.com refused the credentials of user \"u\"",
                hub.base
            )
        );

        let api = HubApi::login(&hub.base, "u", "pw").await.unwrap();
        assert_eq!(
            hub.logins(),
            [
                serde_json::json!({"username": "u", "password": "wrong"}),
                serde_json::json!({"username": "u", "password": "pw"}),
            ]
        );
        let repo: RepositoryName = "org/app".parse().unwrap();
        // Two pages: the second reached through `next`.
        let tags = api.tags(&repo).await.unwrap();
        let names: Vec<_> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["change_1_latest", "latest", "v1"]);
        assert_eq!(
            tags[0].last_updated.as_deref(),
            Some("2026-11-20T10:00:00Z")
        );
        assert_eq!(tags[2].last_updated, None);

        let tag: Tag = "change_1_latest".parse().unwrap();
        assert_eq!(
            api.delete_tag(&repo, &tag).await.unwrap(),
            TagDeleted::Deleted
        );
        let gone: Tag = "gone".parse().unwrap();
        assert_eq!(
            api.delete_tag(&repo, &gone).await.unwrap(),
            TagDeleted::Absent
        );
        assert_eq!(hub.deleted(), ["org/app:change_1_latest"]);
        assert_eq!(hub.tags("org/app"), ["latest", "v1"]);
    }
}
