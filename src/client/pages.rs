//! The spec's pagination: `Link: <...>; rel="next"` on tag lists and the
//! catalog, resolved against the page's URL. Where a page points is
//! decided by the registry: the transport sends credentials only to the
//! registry's own origin (see `transport.rs`), and a list is followed for
//! at most [`MAX_PAGES`](super::limits::MAX_PAGES) pages.

use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::auth::Authenticator;
use super::error::{redact_url, Error, ErrorKind};
use super::limits::{read_limited, MAX_PAGES, PAGE_LIMIT};
use super::transport::Body;

/// GET `path?n=1000` and every page its `Link` headers name, each read
/// within [`PAGE_LIMIT`] and parsed as `P`, and hand each page to `each`.
/// `what` names the listing in messages ("catalog", "tag list"); with
/// `missing_is_empty`, a 404 ends the listing instead of failing it.
pub(crate) async fn for_each_page<P: DeserializeOwned>(
    auth: &Authenticator,
    path: &str,
    scopes: &[String],
    what: &str,
    missing_is_empty: bool,
    mut each: impl FnMut(P),
) -> Result<(), Error> {
    let t = auth.transport();
    let mut url = t.url(&format!("{path}?n=1000"));
    for _ in 0..MAX_PAGES {
        let action = format!("GET {}", redact_url(&url));
        let response = auth
            .send(Method::GET, &url, scopes, HeaderMap::new(), Body::Empty)
            .await?;
        if missing_is_empty && response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let response = t.check_status(response, &action, &[StatusCode::OK]).await?;
        let next = next_page(&url, response.headers());
        let page_name = format!("a {what} page");
        let body = read_limited(
            response,
            PAGE_LIMIT,
            &page_name,
            &t.endpoint.registry,
            &action,
        )
        .await?;
        let page = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse(format!("the {what} is not valid: {e}")),
                &t.endpoint.registry,
                action.clone(),
            )
        })?;
        each(page);
        match next {
            Some(next) => url = next,
            None => return Ok(()),
        }
    }
    Err(Error::new(
        ErrorKind::TooLarge {
            what: format!("a {what}"),
            limit: format!("{MAX_PAGES} pages"),
        },
        &t.endpoint.registry,
        format!("GET {}", redact_url(&t.url(path))),
    ))
}

/// The absolute URL of `Link: <...>; rel="next"`, relative to `url`.
pub(crate) fn next_page(url: &str, headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    let target = link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })?;
    url::Url::parse(url)
        .ok()?
        .join(target)
        .ok()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn follows_link_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static("</v2/_catalog?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_page("https://r:5000/v2/_catalog?n=2", &headers).as_deref(),
            Some("https://r:5000/v2/_catalog?last=b&n=2")
        );
        headers.insert(
            LINK,
            HeaderValue::from_static("<https://other:1/v2/a/tags/list?last=b>; rel=next"),
        );
        assert_eq!(
            next_page("https://r:5000/v2/a/tags/list", &headers).as_deref(),
            Some("https://other:1/v2/a/tags/list?last=b")
        );
        assert_eq!(
            next_page("https://r:5000/v2/_catalog", &HeaderMap::new()),
            None
        );
    }
}
