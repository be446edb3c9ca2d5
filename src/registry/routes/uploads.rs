//! `/v2/<name>/blobs/uploads/...`: start (with monolithic `digest` or a
//! cross-repository `mount`), PATCH chunks, PUT to finish, GET status,
//! DELETE to cancel. Bodies stream into storage.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::blobs::parse_digest;
use super::range;
use super::{empty, set, Reply, Req};
use crate::oci::{Digest, RepositoryName};
use crate::registry::auth::{Action, Need};
use crate::registry::errors::{ApiError, ErrorCode};
use crate::registry::storage::StorageError;

/// `POST /v2/<name>/blobs/uploads/`.
pub async fn start(request: &Req<'_>, name: RepositoryName, body: Body) -> Reply {
    let storage = request.storage();
    if let Some(mount) = request.query("mount") {
        let digest = parse_digest(&mount)?;
        if let Some(source) = mount_source(request, &name, request.query("from").as_deref()) {
            // Unknown in the source (or deleted there): a plain upload.
            if storage.blob_size(&source, &digest).await.is_ok() {
                storage.keep_blob(&name, &digest).await?;
                return Ok(created(&name, &digest));
            }
            // Recorded there as living upstream: recorded here too, so a
            // client pushing an image built on a lazily pulled one sends
            // none of its base layers.
            if storage.mount_source(&source, &name, &digest).await? {
                return Ok(created(&name, &digest));
            }
        }
    }
    let monolithic = request
        .query("digest")
        .map(|d| parse_digest(&d))
        .transpose()?;
    let owner = super::log::User::of(&request.identity).0;
    let id = storage.start_upload(&name, &owner).await?;
    if let Some(digest) = monolithic {
        // The client never learns this upload's id: whatever ends the
        // request early (a body cut short, a full disk, the connection
        // dropped) must not leave the upload behind.
        let unfinished = Unfinished::new(request, &id);
        storage
            .finish_upload(&name, &id, None, &digest, body.into_data_stream())
            .await?;
        unfinished.done();
        return Ok(created(&name, &digest));
    }
    Ok(accepted(&name, &id, 0))
}

/// An upload whose id the client does not know: removed when dropped
/// before [`Unfinished::done`], also when the request's future is
/// dropped mid-body.
struct Unfinished {
    state: Option<super::AppState>,
    id: String,
}

impl Unfinished {
    fn new(request: &Req<'_>, id: &str) -> Unfinished {
        Unfinished {
            state: Some(request.state.clone()),
            id: id.to_string(),
        }
    }

    fn done(mut self) {
        self.state = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        let id = std::mem::take(&mut self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { state.storage.abandon_upload(&id).await });
        }
    }
}

/// The repository a mount into `name` may take a blob from: `from` when
/// the client may pull it; without `from` (the spec lets the registry
/// look anywhere it can read) `name` itself, as blobs are shared by every
/// repository. `None`: no mount, a fresh upload instead.
fn mount_source(
    request: &Req<'_>,
    name: &RepositoryName,
    from: Option<&str>,
) -> Option<RepositoryName> {
    let source = match from {
        Some(from) => from.parse::<RepositoryName>().ok()?,
        None => name.clone(),
    };
    request
        .may(&Need::Repository(source.clone(), Action::Pull))
        .then_some(source)
}

/// `GET /v2/<name>/blobs/uploads/<id>`: how much arrived.
pub async fn status(request: &Req<'_>, name: RepositoryName, id: &str) -> Reply {
    let size = request.storage().upload_size(&name, id).await?;
    let mut response = accepted(&name, id, size);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: append a chunk.
pub async fn patch(request: &Req<'_>, name: RepositoryName, id: &str, body: Body) -> Reply {
    let start = chunk_start(request)?;
    let appended = request
        .storage()
        .append_upload(&name, id, start, body.into_data_stream())
        .await;
    match appended {
        Ok(size) => Ok(accepted(&name, id, size)),
        Err(e) => out_of_order(&name, id, e),
    }
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: last bytes, verify, commit.
pub async fn put(request: &Req<'_>, name: RepositoryName, id: &str, body: Body) -> Reply {
    let digest = request.query("digest").ok_or_else(|| {
        ApiError::with_detail(ErrorCode::DigestInvalid, "the digest parameter is missing")
    })?;
    let digest = parse_digest(&digest)?;
    let start = chunk_start(request)?;
    // A PUT that carries the whole blob (the upload holds nothing yet) and
    // fails mid-body leaves nothing to resume: remove the upload then,
    // also when the request is dropped.
    let whole = request.storage().upload_size(&name, id).await.ok() == Some(0);
    let unfinished = whole.then(|| Unfinished::new(request, id));
    let finished = request
        .storage()
        .finish_upload(&name, id, start, &digest, body.into_data_stream())
        .await;
    if let Some(unfinished) = unfinished {
        if !matches!(finished, Err(StorageError::Body(_))) {
            unfinished.done();
        }
    }
    match finished {
        Ok(()) => Ok(created(&name, &digest)),
        Err(e) => out_of_order(&name, id, e),
    }
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`.
pub async fn cancel(request: &Req<'_>, name: RepositoryName, id: &str) -> Reply {
    request.storage().cancel_upload(&name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Where the request's chunk begins, from its `Content-Range` (see
/// [`range::chunk_start`]); `None` without one.
fn chunk_start(request: &Req<'_>) -> Result<Option<u64>, ApiError> {
    let Some(text) = request.header(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let length = request
        .header(header::CONTENT_LENGTH)
        .and_then(|value| value.parse::<u64>().ok());
    range::chunk_start(text, length).map(Some)
}

/// A chunk that does not begin where the upload ends: 416 with the
/// upload's `Location` and current `Range`, so the client can resume.
fn out_of_order(name: &RepositoryName, id: &str, error: StorageError) -> Reply {
    let StorageError::RangeMismatch { size, .. } = error else {
        return Err(error.into());
    };
    let mut refused = ApiError::from(error).into_response();
    for (header, value) in upload_headers(name, id, size) {
        set(&mut refused, header, value);
    }
    Ok(refused)
}

fn created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    set(
        &mut response,
        "location",
        format!("/v2/{name}/blobs/{digest}"),
    );
    set(&mut response, "docker-content-digest", digest.to_string());
    set(&mut response, "content-length", "0");
    response
}

fn accepted(name: &RepositoryName, id: &str, size: u64) -> Response {
    let mut response = empty(StatusCode::ACCEPTED);
    for (header, value) in upload_headers(name, id, size) {
        set(&mut response, header, value);
    }
    set(&mut response, "content-length", "0");
    response
}

/// Where an upload is and how much it holds.
fn upload_headers(name: &RepositoryName, id: &str, size: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", size.saturating_sub(1))),
        ("docker-upload-uuid", id.to_string()),
    ]
}
