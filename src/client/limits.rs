//! Bounded reads of what a registry sends that is not a blob being copied.
//! A blob is streamed and checked against its descriptor's size and
//! digest; everything else is read into memory, so a registry answering
//! with an endless body must not be able to grow ours. Past a bound the
//! read stops with [`ErrorKind::TooLarge`] naming the limit (error bodies
//! are cut instead: only their first bytes are kept).

use bytes::{Bytes, BytesMut};
use reqwest::Response;

use super::error::{root_cause, Error, ErrorKind};

/// Most of an error body kept (the spec's `{"errors": [...]}` is small).
pub const ERROR_BODY_LIMIT: usize = 64 << 10;
/// Largest manifest or index read (the distribution spec's 4 MiB).
pub const MANIFEST_LIMIT: usize = 4 << 20;
/// Largest token answer read.
pub const TOKEN_LIMIT: usize = 1 << 20;
/// Largest page of a tag list or catalog read.
pub const PAGE_LIMIT: usize = 8 << 20;
/// Most pages of one tag list or catalog followed.
pub const MAX_PAGES: usize = 10_000;

/// `bytes` in words: `4 MiB`, `64 KiB`, `100 bytes`.
pub fn human(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The whole body of `response`, or [`ErrorKind::TooLarge`] (naming
/// `what` and `limit`) as soon as it announces or sends more than `limit`
/// bytes.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: usize,
    what: &str,
    registry: &str,
    action: &str,
) -> Result<Bytes, Error> {
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge {
                what: what.to_string(),
                limit: human(limit),
            },
            registry,
            action,
        )
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| broken(&e, registry, action))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// At most the first `limit` bytes of `response`'s body; the rest is not
/// read. A body that breaks gives what arrived before.
pub(crate) async fn read_prefix(mut response: Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    body.freeze()
}

fn broken(e: &reqwest::Error, registry: &str, action: &str) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Body(root_cause(e))
    };
    Error::new(kind, registry, action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human(MANIFEST_LIMIT), "4 MiB");
        assert_eq!(human(ERROR_BODY_LIMIT), "64 KiB");
        assert_eq!(human(PAGE_LIMIT), "8 MiB");
        assert_eq!(human(TOKEN_LIMIT), "1 MiB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
