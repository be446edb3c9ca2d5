//! The spec's pagination: `Link: <...>; rel="next"` on tag lists and the
//! catalog, resolved against the page's URL. Where a page points is
//! decided by the registry: the transport sends credentials only to the
//! registry's own origin (see `transport.rs`), and a list is followed for
//! at most [`MAX_PAGES`](super::limits::MAX_PAGES) pages.

use reqwest::header::{HeaderMap, LINK};

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
