//! Listings with the spec's `n`/`last` pagination: `tags/list` of a
//! repository and `/v2/_catalog` of all repositories.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::{set, Reply, Req};
use crate::oci::RepositoryName;
use crate::registry::errors::{ApiError, ErrorCode};

/// `GET /v2/<name>/tags/list`.
pub async fn tags(request: &Req<'_>, name: RepositoryName) -> Reply {
    let all = request.storage().tags(&name).await?;
    let (page, next) = paginate(request, all)?;
    let body = serde_json::json!({"name": name.as_str(), "tags": page});
    Ok(listing(
        body,
        next.map(|last| (format!("/v2/{name}/tags/list"), last)),
    ))
}

/// `GET /v2/_catalog`.
pub async fn catalog(request: &Req<'_>) -> Reply {
    let all = request.storage().repositories().await?;
    let (page, next) = paginate(request, all)?;
    let body = serde_json::json!({"repositories": page});
    Ok(listing(
        body,
        next.map(|last| ("/v2/_catalog".to_string(), last)),
    ))
}

/// One page of a listing, and `(last, n)` for the next page if any.
type Page = (Vec<String>, Option<(String, usize)>);

/// The items after `last`, at most `n`; and the `last` of the next page
/// when more remain. `all` is sorted.
fn paginate(request: &Req<'_>, all: Vec<String>) -> Result<Page, ApiError> {
    let n = match request.query("n") {
        None => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::with_detail(ErrorCode::Unsupported, "n must be a number"))?,
        ),
    };
    let after = request.query("last");
    let mut items: Vec<String> = match &after {
        Some(last) => all.into_iter().filter(|t| t > last).collect(),
        None => all,
    };
    let mut next = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                next = Some((last.clone(), n));
            }
        }
    }
    Ok((items, next))
}

fn listing(body: serde_json::Value, next: Option<(String, (String, usize))>) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some((path, (last, n))) = next {
        let last: String = url::form_urlencoded::byte_serialize(last.as_bytes()).collect();
        set(
            &mut response,
            "link",
            format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
    response
}
