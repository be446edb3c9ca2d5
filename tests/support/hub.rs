//! Docker Hub cannot be reached here; a stand-in speaking the three calls
//! of its API the way Hub documents them (login for a JWT, paginated tag
//! list with `last_updated`, tag delete) records what it was sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The JWT a successful login hands out.
pub const JWT: &str = "jwt-1";
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
pub struct HubStandIn {
    /// Its URL, to pass as Hub's API base.
    pub base: String,
    state: Arc<Mutex<Inner>>,
}

impl HubStandIn {
    /// Start a stand-in accepting `username`/`password`, holding `tags`
    /// as `(repository, tag, last_updated)`.
    pub fn start(username: &str, password: &str, tags: &[(&str, &str, Option<&str>)]) -> Self {
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
        let base_cell = Arc::new(Mutex::new(String::new()));
        let app = Router::new()
            .route("/v2/users/login/", post(login))
            .route("/v2/repositories/{namespace}/{name}/tags/", get(list))
            .route(
                "/v2/repositories/{namespace}/{name}/tags/{tag}/",
                delete(remove),
            )
            .with_state((state.clone(), base_cell.clone()));
        let base = super::stand_in::serve(app);
        *base_cell.lock().unwrap() = base.clone();
        HubStandIn { base, state }
    }

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
type Base = Arc<Mutex<String>>;

async fn login(State((state, _)): State<(Shared, Base)>, Json(body): Json<Value>) -> Response {
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
    State((state, base)): State<(Shared, Base)>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let repository = format!("{namespace}/{name}");
    let base = base.lock().unwrap().clone();
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
    State((state, _)): State<(Shared, Base)>,
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
