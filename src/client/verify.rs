//! A blob stream that checks its content on the way through: it counts and
//! hashes every chunk and, at the end, fails instead of finishing when the
//! content does not match the descriptor (size or digest). Placed between
//! a source's GET and a destination's PUT, the failure aborts the upload,
//! so the destination never commits a wrong blob.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::error::{Error, ErrorKind};
use super::registry::BlobStream;
use crate::oci::{Digest, Hasher};

/// `inner`, verified against `digest` and `size`.
pub struct Verified {
    inner: BlobStream,
    digest: Digest,
    size: u64,
    seen: u64,
    hasher: Option<Hasher>,
    registry: String,
}

impl Verified {
    /// Verify `inner` (read from `registry`) against `digest` and `size`.
    pub fn new(inner: BlobStream, digest: Digest, size: u64, registry: &str) -> Verified {
        Verified {
            inner,
            hasher: Some(digest.algorithm().hasher()),
            digest,
            size,
            seen: 0,
            registry: registry.to_string(),
        }
    }

    fn error(&self, kind: ErrorKind) -> Error {
        Error::new(
            kind,
            &self.registry,
            format!("reading blob {}", self.digest),
        )
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(hasher) = this.hasher.as_mut() else {
            return Poll::Ready(None);
        };
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.size {
                    let kind = ErrorKind::SizeMismatch {
                        expected: this.size,
                        actual: this.seen,
                    };
                    this.hasher = None;
                    return Poll::Ready(Some(Err(this.error(kind))));
                }
                hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let actual = this.hasher.take().map(Hasher::finish);
                if this.seen != this.size {
                    let kind = ErrorKind::SizeMismatch {
                        expected: this.size,
                        actual: this.seen,
                    };
                    return Poll::Ready(Some(Err(this.error(kind))));
                }
                match actual {
                    Some(actual) if actual != this.digest => {
                        let kind = ErrorKind::DigestMismatch {
                            expected: this.digest.clone(),
                            actual,
                        };
                        Poll::Ready(Some(Err(this.error(kind))))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn stream_of(chunks: &[&'static [u8]]) -> BlobStream {
        let items: Vec<Result<Bytes, Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn drain(mut s: Verified) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn passes_matching_content() {
        let d = Digest::sha256(b"hello world");
        let v = Verified::new(stream_of(&[b"hello ", b"world"]), d, 11, "r");
        assert_eq!(drain(v).await.unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn fails_on_wrong_digest_size_or_length() {
        let d = Digest::sha256(b"hello world");
        let v = Verified::new(stream_of(&[b"hello there"]), d.clone(), 11, "r");
        let e = drain(v).await.unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::DigestMismatch {
                expected: d.clone(),
                actual: Digest::sha256(b"hello there")
            }
        );
        let v = Verified::new(stream_of(&[b"hello"]), d.clone(), 11, "r");
        let e = drain(v).await.unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::SizeMismatch {
                expected: 11,
                actual: 5
            }
        );
        let v = Verified::new(stream_of(&[b"hello world!"]), d, 11, "r");
        let e = drain(v).await.unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::SizeMismatch {
                expected: 11,
                actual: 12
            }
        );
    }
}
