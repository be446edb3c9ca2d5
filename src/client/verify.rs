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
    /// Finished or failed: yield nothing more.
    failed: bool,
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
            failed: false,
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

impl Verified {
    /// The digest check, once all `size` bytes went through.
    fn check_digest(&mut self) -> Result<(), Error> {
        match self.hasher.take().map(Hasher::finish) {
            Some(actual) if actual != self.digest => {
                let kind = ErrorKind::DigestMismatch {
                    expected: self.digest.clone(),
                    actual,
                };
                self.failed = true;
                Err(self.error(kind))
            }
            _ => Ok(()),
        }
    }

    fn size_mismatch(&mut self) -> Error {
        self.failed = true;
        self.hasher = None;
        self.error(ErrorKind::SizeMismatch {
            expected: self.size,
            actual: self.seen,
        })
    }
}

impl Stream for Verified {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.size {
                    return Poll::Ready(Some(Err(this.size_mismatch())));
                }
                if let Some(hasher) = this.hasher.as_mut() {
                    hasher.update(&chunk);
                }
                // Check with the last byte, before handing it on: a sender
                // bounded by Content-Length may never ask for the end.
                if this.seen == this.size {
                    if let Err(e) = this.check_digest() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if this.seen != this.size {
                    return Poll::Ready(Some(Err(this.size_mismatch())));
                }
                match this.check_digest() {
                    Err(e) => Poll::Ready(Some(Err(e))),
                    Ok(()) => {
                        this.failed = true; // done: nothing more to yield
                        Poll::Ready(None)
                    }
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
    async fn the_last_chunk_is_withheld_when_the_digest_is_wrong() {
        // A sender bounded by Content-Length stops asking after the last
        // byte: the error must come instead of that byte.
        let d = Digest::sha256(b"hello world");
        let mut v = Verified::new(stream_of(&[b"hello ", b"there"]), d, 11, "r");
        assert_eq!(v.next().await.unwrap().unwrap(), "hello ");
        let e = v.next().await.unwrap().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::DigestMismatch { .. }), "{e}");
        assert!(v.next().await.is_none());
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
