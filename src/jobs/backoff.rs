//! Backing a failing server off: after consecutive transport failures its scheduled runs
//! wait longer and longer (capped at the job's interval); a completed run clears it.
//! Pure: the runner keeps the state and asks.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Backoff of one server after consecutive transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    pub failures: u32,
    pub not_before: Option<DateTime<Utc>>,
}

/// The first backoff step; it doubles per failure, capped at the job's interval.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);

impl Backoff {
    /// The state after a run (pure): failures count up and push `not_before` out by
    /// min(BACKOFF_BASE * 2^(n-1), interval); a completed run clears it.
    pub fn after_run(
        self,
        transport_failure: bool,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> Backoff {
        if !transport_failure {
            return Backoff::default();
        }
        let failures = self.failures.saturating_add(1);
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << (failures - 1).min(20))
            .min(interval);
        Backoff {
            failures,
            not_before: Some(crate::clock::later(now, step)),
        }
    }

    pub fn blocks(&self, now: DateTime<Utc>) -> bool {
        self.not_before.is_some_and(|not_before| now < not_before)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, second).unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_interval_and_clears_on_success() {
        let interval = Duration::from_secs(30);
        let one = Backoff::default().after_run(true, at(0), interval);
        assert_eq!(
            one,
            Backoff {
                failures: 1,
                not_before: Some(at(5))
            }
        );
        let two = one.after_run(true, at(10), interval);
        assert_eq!(two.not_before, Some(at(20)));
        let many = (0..10).fold(two, |b, _| b.after_run(true, at(30), interval));
        assert_eq!(
            many.not_before,
            Some(at(30) + chrono::Duration::seconds(30)),
            "capped at the interval"
        );
        assert!(many.blocks(at(40)));
        assert!(!many.blocks(at(0) + chrono::Duration::seconds(60)));
        assert_eq!(many.after_run(false, at(50), interval), Backoff::default());
    }
}
