//! HTTP routes of the distribution API. Handlers parse the request, ask
//! [`auth`](crate::registry::auth) whether it is allowed, call [`Storage`]
//! and shape the response; they never touch the filesystem. Names come
//! from [`path`], error codes from [`errors`](crate::registry::errors).

mod blobs;
mod listing;
mod log;
mod manifests;
pub mod path;
mod token;
mod uploads;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::registry::auth::{Authenticator, Identity, Need};
use crate::registry::errors::{ApiError, ErrorCode};
use crate::registry::storage::Storage;
use path::Route;

/// What every handler shares.
pub struct Registry {
    /// The content store.
    pub storage: Storage,
    /// Who may do what.
    pub auth: Authenticator,
    /// `https` or `http`, for the token realm.
    pub scheme: &'static str,
}

/// Shared state of the router.
pub type AppState = Arc<Registry>;

/// The registry's router: `/v2/...`, `/auth/token`, request logging.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/auth/token", get(token::issue).post(token::issue_oauth))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn(log::log_request))
        .with_state(state)
}

/// Route a `/v2/` request by its parsed path and method.
async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = match path::parse(uri.path()) {
        None => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Some(Err(e)) => return e.into_response(),
        Some(Ok(route)) => route,
    };
    let request = Req {
        state: &state,
        uri: &uri,
        headers: &headers,
    };
    let result = match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => base(&request).await,
        (Route::Catalog, Method::GET) => listing::catalog(&request).await,
        (Route::Tags(name), Method::GET) => listing::tags(&request, name).await,
        (Route::Manifest(name, r), m @ (Method::GET | Method::HEAD)) => {
            manifests::get(&request, name, &r, m == Method::HEAD).await
        }
        (Route::Manifest(name, r), Method::PUT) => manifests::put(&request, name, &r, body).await,
        (Route::Manifest(name, r), Method::DELETE) => manifests::delete(&request, name, &r).await,
        (Route::Blob(name, d), m @ (Method::GET | Method::HEAD)) => {
            blobs::get(&request, name, &d, m == Method::HEAD).await
        }
        (Route::Blob(name, _), Method::DELETE) => blobs::delete(&request, name).await,
        (Route::Uploads(name), Method::POST) => uploads::start(&request, name, body).await,
        (Route::Upload(name, id), Method::GET) => uploads::status(&request, name, &id).await,
        (Route::Upload(name, id), Method::PATCH) => uploads::patch(&request, name, &id, body).await,
        (Route::Upload(name, id), Method::PUT) => uploads::put(&request, name, &id, body).await,
        (Route::Upload(name, id), Method::DELETE) => uploads::cancel(&request, name, &id).await,
        _ => Err(ApiError::new(ErrorCode::Unsupported)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The parts of a request handlers read.
pub(crate) struct Req<'a> {
    state: &'a AppState,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

impl Req<'_> {
    fn storage(&self) -> &Storage {
        &self.state.storage
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, percent-decoded.
    fn query(&self, key: &str) -> Option<String> {
        let query = self.uri.query()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// The host the client addressed (for the token realm).
    fn host(&self) -> String {
        self.header(header::HOST)
            .map(str::to_string)
            .or_else(|| self.uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "localhost".to_string())
    }

    /// Who is asking, refused with a challenge unless allowed `need`.
    async fn authorize(&self, need: Need) -> Result<Identity, ApiError> {
        let auth = &self.state.auth;
        let identity = auth.identify(self.header(header::AUTHORIZATION)).await;
        match auth.authorize(&identity, &need) {
            Ok(()) => Ok(identity),
            Err(refusal) => Err(ApiError {
                code: refusal.code,
                challenge: Some(auth.challenge(self.state.scheme, &self.host(), &refusal)),
                detail: Some(refusal.detail),
            }),
        }
    }
}

type Reply = Result<Response, ApiError>;

/// `GET /v2/`: the API version check; 401 tells clients how to log in.
async fn base(request: &Req<'_>) -> Reply {
    request.authorize(Need::Base).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response())
}

/// Set a header from a string we built (always valid).
fn set(response: &mut Response, name: &'static str, value: impl AsRef<str>) {
    if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
        response.headers_mut().insert(name, value);
    }
}

/// An empty response with a status.
fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Tell every client which API it speaks to.
pub(crate) fn api_version_header(response: &mut Response) {
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
}

/// The request type the middleware sees.
pub(crate) type AnyRequest = Request<Body>;
