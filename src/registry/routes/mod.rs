//! HTTP routes of the distribution API. The dispatcher turns path and
//! method into an [`Operation`], checks the access it needs with
//! [`auth`](crate::registry::auth) once, and only then calls its handler;
//! handlers parse the request, call [`Storage`] and shape the response,
//! and never touch the filesystem. Names come from [`path`], error codes
//! from [`errors`](crate::registry::errors).

mod blobs;
mod listing;
mod log;
mod manifests;
pub mod operation;
pub mod path;
pub mod range;
mod referrers;
mod sources;
mod token;
mod uploads;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::registry::auth::{AccessControl, Identity, Need};
use crate::registry::errors::{ApiError, ErrorCode};
use crate::registry::pull_through::PullThrough;
use crate::registry::storage::Storage;
use operation::Operation;

/// What every handler shares.
pub struct ServerState {
    /// The content store.
    pub storage: Arc<Storage>,
    /// Fetches of recorded blobs in flight.
    pub pull_through: PullThrough,
    /// Who may do what.
    pub auth: AccessControl,
    /// `https` or `http`, for the token realm.
    pub scheme: &'static str,
    /// Whether manifests, tags and blobs may be deleted.
    pub delete_enabled: bool,
}

/// Shared state of the router.
pub type AppState = Arc<ServerState>;

/// The registry's router: `/v2/...`, `/auth/token`, request logging.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/auth/token", get(token::issue).post(token::issue_oauth))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn(log::log_request))
        .with_state(state)
}

/// Route a `/v2/` request by its parsed path and method: refuse what the
/// API does not offer, then what the client may not do, then run it.
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
    let Some(operation) = Operation::of(route, &method) else {
        return ApiError::new(ErrorCode::Unsupported).into_response();
    };
    if operation.deletes_content() && !state.delete_enabled {
        return ApiError::with_detail(
            ErrorCode::Unsupported,
            "deleting is disabled on this registry",
        )
        .into_response();
    }
    let mut request = Req {
        state: &state,
        uri: &uri,
        headers: &headers,
        identity: Identity::Anonymous,
    };
    match request.authorize(&operation.need()).await {
        Ok(identity) => request.identity = identity,
        Err(refused) => return refused.into_response(),
    }
    let user = log::User::of(&request.identity);
    let result = match operation {
        Operation::Base => base().await,
        Operation::Catalog => listing::catalog(&request).await,
        Operation::ListTags(name) => listing::tags(&request, name).await,
        Operation::GetManifest {
            name,
            reference,
            head,
        } => manifests::get(&request, name, &reference, head).await,
        Operation::PutManifest(name, r) => manifests::put(&request, name, &r, body).await,
        Operation::DeleteManifest(name, r) => manifests::delete(&request, name, &r).await,
        Operation::GetBlob { name, digest, head } => {
            blobs::get(&request, name, &digest, head).await
        }
        Operation::DeleteBlob(name, digest) => blobs::delete(&request, name, &digest).await,
        Operation::StartUpload(name) => uploads::start(&request, name, body).await,
        Operation::UploadStatus(name, id) => uploads::status(&request, name, &id).await,
        Operation::PatchUpload(name, id) => uploads::patch(&request, name, &id, body).await,
        Operation::FinishUpload(name, id) => uploads::put(&request, name, &id, body).await,
        Operation::CancelUpload(name, id) => uploads::cancel(&request, name, &id).await,
        Operation::ListReferrers(name, digest) => referrers::list(&request, name, &digest).await,
        Operation::RecordSources(name) => sources::record(&request, name, body).await,
        Operation::ListSources(name) => sources::list(&request, name).await,
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(user);
    response
}

/// The parts of a request handlers read.
pub(crate) struct Req<'a> {
    state: &'a AppState,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    /// Who is asking, already allowed what the operation needs.
    identity: Identity,
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
    async fn authorize(&self, need: &Need) -> Result<Identity, ApiError> {
        let auth = &self.state.auth;
        let identity = auth.identify(self.header(header::AUTHORIZATION)).await;
        match auth.authorize(&identity, need) {
            Ok(()) => Ok(identity),
            Err(refusal) => Err(ApiError {
                code: refusal.code,
                challenge: Some(auth.challenge(self.state.scheme, &self.host(), &refusal)),
                detail: Some(refusal.detail),
            }),
        }
    }

    /// Whether the client may also do what `need` names (beyond what the
    /// operation needs, which the dispatcher checked).
    fn may(&self, need: &Need) -> bool {
        self.state.auth.authorize(&self.identity, need).is_ok()
    }
}

type Reply = Result<Response, ApiError>;

/// `GET /v2/`: the API version check; the dispatcher's 401 tells
/// clients how to log in.
async fn base() -> Reply {
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
