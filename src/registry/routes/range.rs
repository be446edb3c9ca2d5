//! Byte ranges a client sends: the `Range` of a blob GET
//! ([`parse_range`]) and the `Content-Range` of an upload chunk
//! ([`parse_content_range`], checked against the request's
//! `Content-Length` by [`chunk_start`]). Pure functions of the header
//! text, public so that the fuzz targets (`fuzz/`) call what the handlers
//! call.

use crate::registry::errors::{ApiError, ErrorCode};

/// The parsing entry point of a blob GET's `Range` header: `bytes=a-b`,
/// `bytes=a-` or `bytes=-n` within a blob of `size` bytes, as
/// (start, length). `None` when it is malformed, names several ranges, or
/// is not satisfiable (416). A returned range is never empty and ends
/// within the blob.
pub fn parse_range(text: &str, size: u64) -> Option<(u64, u64)> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    // Digits only: `parse` would also take a sign.
    let number = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| n.parse::<u64>().ok())
            .flatten()
    };
    let (start, end) = if first.is_empty() {
        let suffix: u64 = number(last)?;
        (size.checked_sub(suffix.min(size))?, size.checked_sub(1)?)
    } else {
        let start: u64 = number(first)?;
        let end = if last.is_empty() {
            size.checked_sub(1)?
        } else {
            number(last)?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && end < size).then(|| (start, end - start + 1))
}

/// `<start>-<end>`, inclusive, digits only (the spec's
/// `^[0-9]+-[0-9]+$`; a `bytes ` or `bytes=` prefix and a `/<size>`
/// suffix, which some clients send, are tolerated).
pub fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let text = text.trim();
    let text = text
        .strip_prefix("bytes ")
        .or_else(|| text.strip_prefix("bytes="))
        .unwrap_or(text);
    let text = text.split_once('/').map_or(text, |(range, _size)| range);
    let (start, end) = text.split_once('-')?;
    let number = |n: &str| {
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u64>().ok())
            .flatten()
    };
    Some((number(start)?, number(end)?))
}

/// The parsing entry point of an upload chunk's `Content-Range`: where the
/// chunk begins. 400 BLOB_UPLOAD_INVALID when malformed, 416 when it ends
/// before it starts, 400 SIZE_INVALID when its length is not the
/// request's `Content-Length` (when one was sent).
pub fn chunk_start(content_range: &str, content_length: Option<u64>) -> Result<u64, ApiError> {
    let (start, end) = parse_content_range(content_range).ok_or_else(|| {
        ApiError::with_detail(
            ErrorCode::BlobUploadInvalid,
            "Content-Range must be <first byte>-<last byte>",
        )
    })?;
    if end < start {
        return Err(ApiError::with_detail(
            ErrorCode::RangeNotSatisfiable,
            format!("Content-Range {start}-{end} ends before it starts"),
        ));
    }
    // The chunk's length less one: the length itself overflows for
    // `0-18446744073709551615` (found by the `ranges` fuzz target).
    let span = end - start;
    if let Some(length) = content_length.filter(|&length| length.checked_sub(1) != Some(span)) {
        return Err(ApiError::with_detail(
            ErrorCode::SizeInvalid,
            format!(
                "Content-Range {start}-{end} is {} bytes, Content-Length says {length}",
                u128::from(span) + 1
            ),
        ));
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 10)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 10)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 5)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        for bad in [
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=-+5",
            "bytes=a-b",
            "bytes=-",
            "bytes= 1-2",
        ] {
            assert_eq!(parse_range(bad, 100), None, "{bad}");
        }
        assert_eq!(parse_range("bytes=-0", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("100-199"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9)));
        assert_eq!(parse_content_range("bytes=5-9"), Some((5, 9)));
        for bad in [
            "x", "5", "5-", "-9", "+5-9", "5-+9", " 5 - 9", "5-9-10", "a-b", "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_chunk_is_refused_with_the_code_that_says_why() {
        assert_eq!(chunk_start("100-199", Some(100)).unwrap(), 100);
        assert_eq!(chunk_start("100-199", None).unwrap(), 100);
        for (range, length, code) in [
            ("1-", None, ErrorCode::BlobUploadInvalid),
            ("9-5", None, ErrorCode::RangeNotSatisfiable),
            ("0-9", Some(11), ErrorCode::SizeInvalid),
            ("0-9", Some(0), ErrorCode::SizeInvalid),
        ] {
            assert_eq!(
                chunk_start(range, length).unwrap_err().code,
                code,
                "{range}"
            );
        }
        // Every byte a u64 can count: longer than any Content-Length.
        let every_byte = "0-18446744073709551615";
        let refused = chunk_start(every_byte, Some(0)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::SizeInvalid);
        assert_eq!(
            refused.detail.as_deref(),
            Some(
                "Content-Range 0-18446744073709551615 is 18446744073709551616 bytes, \
                 Content-Length says 0"
            )
        );
        assert_eq!(chunk_start(every_byte, None).unwrap(), 0);
    }
}
