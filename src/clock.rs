//! Time, injectable: production reads the system clock, tests move a manual one.
//! Jobs and planners take `now` from here and never call `Utc::now()` themselves.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};

/// The latest instant keywarden computes with: later results stop here. Year 9999 still
/// round-trips through the store's RFC 3339 text (a later one did not, and every quota
/// run after it failed).
pub fn far_future() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The earliest instant keywarden computes with (the year 1).
pub fn far_past() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `at + by`, checked: a sum past `far_future` (a configured duration of thousands of
/// years) is `far_future`, never a panic or a wrap to the past.
pub fn later(at: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(by)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .map_or_else(far_future, |sum| sum.min(far_future()))
}

/// `at - by`, checked: before `far_past` it is `far_past`.
pub fn earlier(at: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(by)
        .ok()
        .and_then(|delta| at.checked_sub_signed(delta))
        .map_or_else(far_past, |difference| difference.max(far_past()))
}

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests, the demo).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates_instead_of_wrapping_or_panicking() {
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(later(now, day), now + chrono::Duration::days(1));
        assert_eq!(earlier(now, day), now - chrono::Duration::days(1));
        let eons = std::time::Duration::from_secs(99_999_999_999_999 * 86_400);
        assert_eq!(later(now, eons), far_future());
        assert_eq!(later(now, std::time::Duration::MAX), far_future());
        assert_eq!(earlier(now, eons), far_past());
        let text = crate::store::ts(far_future());
        assert_eq!(
            DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)),
            Ok(far_future())
        );
    }
}
