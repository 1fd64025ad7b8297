//! Timestamps: UTC instants (`chrono::DateTime<Utc>`), and the one text form they are
//! stored and keyed in: RFC 3339 with milliseconds and a `Z` ("2026-11-28T10:00:00.000Z").
//! The form is fixed-width, so text order is time order, and intent keys built from it
//! stay equal across releases.

use chrono::{DateTime, SecondsFormat, Utc};

/// An instant as stored and as written in keys.
pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The instant of a stored timestamp (`None`: not RFC 3339).
pub fn parse_stamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn stamps_round_trip_and_sort_as_text() {
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        assert_eq!(stamp(at), "2026-11-28T10:00:00.000Z");
        assert_eq!(parse_stamp(&stamp(at)), Some(at));
        let later = at + chrono::Duration::milliseconds(1500);
        assert!(stamp(at) < stamp(later));
        assert_eq!(parse_stamp("yesterday"), None);
    }
}
