//! Which tags a promote cleans up: the temporary tags uploads leave
//! (`change_<n>_<tag>`, or `<pipeline>_<tag>` without a change) once they
//! are older than [`MAX_AGE_SECONDS`]. Younger ones may belong to changes still in
//! the gate; final tags never match.

use chrono::{DateTime, Utc};

/// How old a temporary tag must be to count as leaked: a day, in seconds
/// (`remove_registry_tag_age`'s default).
pub const MAX_AGE_SECONDS: u64 = 86_400;

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

/// Whether a tag last written at `written` is older than
/// [`MAX_AGE_SECONDS`] at `now`.
pub fn is_stale(written: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    is_older(written, now, MAX_AGE_SECONDS)
}

/// Whether a tag last written at `written` is more than `max_age` whole
/// seconds old at `now`: the total age, days included (zuul-jobs compares
/// `timedelta.seconds`, the part below a day, so a tag two days old looks
/// new there).
pub fn is_older(written: DateTime<Utc>, now: DateTime<Utc>, max_age: u64) -> bool {
    let age = now.signed_duration_since(written).num_seconds();
    age > i64::try_from(max_age).unwrap_or(i64::MAX)
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
        let old = parse_time("2026-11-24T15:59:58.123456789Z").unwrap();
        let fresh = parse_time("2026-11-25T10:00:00+02:00").unwrap();
        assert!(is_stale(old, now));
        // A day and a fraction of a second is a day in whole seconds.
        let a_day = parse_time("2026-11-24T15:59:59.123456789Z").unwrap();
        assert!(!is_stale(a_day, now));
        assert!(!is_stale(fresh, now));
        assert_eq!(parse_time("yesterday"), None);
        // Two days and a minute: old, though its part below a day is small.
        let two_days = parse_time("2026-11-23T15:59:00Z").unwrap();
        assert!(is_older(two_days, now, 3600));
        assert!(!is_older(now, now, 0));
        assert!(is_older(
            parse_time("2026-11-25T15:59:59Z").unwrap(),
            now,
            0
        ));
    }
}
