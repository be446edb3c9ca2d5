//! Which tags a promote cleans up: the temporary tags uploads leave
//! (`change_<n>_<tag>`, or `<pipeline>_<tag>` without a change) once they
//! are older than [`MAX_AGE`]. Younger ones may belong to changes still in
//! the gate; final tags never match.

use chrono::{DateTime, Duration, Utc};

/// How old a temporary tag must be to count as leaked.
pub const MAX_AGE: Duration = Duration::hours(24);

/// Whether `tag` is a temporary tag an upload makes: `change_*`, or
/// `<pipeline>_*` when a pipeline is given.
pub fn is_temporary(tag: &str, pipeline: Option<&str>) -> bool {
    if tag.starts_with("change_") {
        return true;
    }
    match pipeline {
        Some(pipeline) if !pipeline.is_empty() => tag
            .strip_prefix(pipeline)
            .is_some_and(|rest| rest.starts_with('_')),
        _ => false,
    }
}

/// Whether a tag last written at `written` is older than [`MAX_AGE`] at
/// `now`.
pub fn is_stale(written: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now.signed_duration_since(written) > MAX_AGE
}

/// Parse an RFC 3339 time as registries write them (Docker Hub's
/// `last_updated`, an image config's `created`).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_tags() {
        assert!(is_temporary("change_42_latest", None));
        assert!(is_temporary("periodic_latest", Some("periodic")));
        assert!(!is_temporary("periodic-latest", Some("periodic")));
        assert!(!is_temporary("latest", Some("promote")));
        assert!(!is_temporary("changes", None));
        assert!(!is_temporary("v1_latest", Some("")));
    }

    #[test]
    fn ages() {
        let now = parse_time("2026-11-25T16:00:00Z").unwrap();
        let old = parse_time("2026-11-24T15:59:59.123456789Z").unwrap();
        let fresh = parse_time("2026-11-25T10:00:00+02:00").unwrap();
        assert!(is_stale(old, now));
        assert!(!is_stale(fresh, now));
        assert_eq!(parse_time("yesterday"), None);
    }
}
