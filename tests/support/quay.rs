//! quay.io cannot be reached here; a stand-in of the two calls of its tag
//! API that tag removal makes, as quay.io documents them: the paginated
//! tag list (`GET /api/v1/repository/<repo>/tag/`, each tag with
//! `start_ts` and `last_modified`, `has_additional` for more pages) and
//! the tag delete (`DELETE /api/v1/repository/<repo>/tag/<tag>`), both
//! with the application's token as bearer token. It records what it was
//! sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Tags per page at most (quay.io's limit is larger; small here so pages
/// are followed).
const PAGE: usize = 2;

#[derive(Default)]
struct Inner {
    token: String,
    /// `repository:tag` of every tag deleted, in order.
    deleted: Vec<String>,
    /// Every `Authorization` header received, in order.
    authorizations: Vec<String>,
    /// The tags of each repository, with when each was written.
    tags: BTreeMap<String, Vec<(String, DateTime<Utc>)>>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running stand-in.
pub struct QuayStandIn {
    /// Its API base (`http://127.0.0.1:<port>/api/v1`).
    pub api: String,
    state: Shared,
}

impl QuayStandIn {
    /// Start a stand-in accepting `token`, holding `tags` as
    /// `(repository, tag, written)`.
    pub fn start(token: &str, tags: &[(&str, &str, DateTime<Utc>)]) -> Self {
        let mut inner = Inner {
            token: token.into(),
            ..Inner::default()
        };
        for (repository, name, written) in tags {
            inner
                .tags
                .entry(repository.to_string())
                .or_default()
                .push((name.to_string(), *written));
        }
        let state: Shared = Arc::new(Mutex::new(inner));
        let app = Router::new()
            .route("/api/v1/repository/{namespace}/{name}/tag/", get(list))
            .route(
                "/api/v1/repository/{namespace}/{name}/tag/{tag}",
                delete(remove),
            )
            .with_state(state.clone());
        let base = super::stand_in::serve(app);
        QuayStandIn {
            api: format!("{base}/api/v1"),
            state,
        }
    }

    /// `repository:tag` of every tag deleted.
    pub fn deleted(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.clone()
    }

    /// Every `Authorization` header received.
    pub fn authorizations(&self) -> Vec<String> {
        self.state.lock().unwrap().authorizations.clone()
    }

    /// The tags `repository` still has.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        self.state.lock().unwrap().tags[repository]
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Record the header; whether it carries the token.
fn authorized(state: &mut Inner, headers: &HeaderMap) -> bool {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    state.authorizations.push(header.clone());
    header == format!("Bearer {}", state.token)
}

async fn list(
    State(state): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap();
    if !authorized(&mut state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Invalid token"})),
        )
            .into_response();
    }
    let repository = format!("{namespace}/{name}");
    let Some(tags) = state.tags.get(&repository) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let limit: usize = query
        .get("limit")
        .and_then(|p| p.parse().ok())
        .unwrap_or(50)
        .min(PAGE);
    let results: Vec<Value> = tags
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|(name, written)| {
            json!({
                "name": name,
                "reversion": false,
                "start_ts": written.timestamp(),
                "manifest_digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "is_manifest_list": false,
                "size": 1024,
                "last_modified": written.format("%a, %d %b %Y %H:%M:%S -0000").to_string(),
            })
        })
        .collect();
    Json(json!({
        "tags": results,
        "page": page,
        "has_additional": tags.len() > page * limit,
    }))
    .into_response()
}

async fn remove(
    State(state): State<Shared>,
    Path((namespace, name, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> StatusCode {
    let mut state = state.lock().unwrap();
    if !authorized(&mut state, &headers) {
        return StatusCode::UNAUTHORIZED;
    }
    let repository = format!("{namespace}/{name}");
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
