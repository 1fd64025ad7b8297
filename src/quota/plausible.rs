//! Whether a counter reading can be true. A server that answers 18 000 000 000 000 000
//! 000 bytes for a key would otherwise be believed: the key counted as 15.6 EiB, reset
//! or deleted, the period total pinned at the store's limit. An implausible reading is
//! rejected for that key (its ledger is left as it was, nothing acts on it) and reported;
//! the bounds are documented in docs/quotas.md. Pure code.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ledger::Entry;

/// No key's counter gets here: 2^53 bytes (8 PiB) is years of a saturated 10 Gbit/s
/// link, and the largest integer a JSON number carries intact through most parsers.
pub const MAX_COUNTER: u64 = 1 << 53;

/// The fastest a key's traffic can grow: 100 Gbit/s (12.5 GB/s), more than any VPN
/// server's uplink.
pub const MAX_BYTES_PER_SECOND: u64 = 12_500_000_000;

/// Growth up to this is plausible whatever the time since the last reading (clocks,
/// counters that lag a little).
pub const SLACK_BYTES: u64 = 1 << 30;

/// Why a reading was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Implausible {
    /// The counter is beyond `MAX_COUNTER`.
    TooLarge { bytes: u64 },
    /// It grew faster than `MAX_BYTES_PER_SECOND` since the last reading.
    TooFast {
        bytes: u64,
        growth: u64,
        seconds: i64,
    },
    /// Counting it would overflow the ledger.
    Overflow { bytes: u64 },
}

impl Implausible {
    /// The counter that was read.
    pub fn bytes(&self) -> u64 {
        match self {
            Implausible::TooLarge { bytes }
            | Implausible::TooFast { bytes, .. }
            | Implausible::Overflow { bytes } => *bytes,
        }
    }
}

/// A reading of a key seen for the first time: only the absolute bound applies (its
/// counter is cumulative since the key was created, however long ago).
pub fn check_first(bytes: u64) -> Result<(), Implausible> {
    if bytes > MAX_COUNTER {
        return Err(Implausible::TooLarge { bytes });
    }
    Ok(())
}

/// A reading of a key the ledger knows: the absolute bound, then the growth it implies
/// (computed as `ledger::account` will) against the time since the last reading.
pub fn check(entry: &Entry, bytes: u64, now: DateTime<Utc>) -> Result<(), Implausible> {
    check_first(bytes)?;
    let growth = match entry.counter {
        Some(last) if bytes >= last => bytes - last,
        // A drop restarts the counter from zero: all of it is new.
        Some(_) => bytes,
        // The first figure of a key adopted while idle: cumulative, like a first
        // reading, so only the absolute bound applies to it.
        None => bytes,
    };
    if entry.counter.is_some() {
        let since = entry.read_at.unwrap_or(entry.first_seen);
        let seconds = (now - since).num_seconds().max(0);
        let allowed =
            SLACK_BYTES.saturating_add((seconds as u64).saturating_mul(MAX_BYTES_PER_SECOND));
        if growth > allowed {
            return Err(Implausible::TooFast {
                bytes,
                growth,
                seconds,
            });
        }
    }
    // The store keeps signed 64-bit integers: stay clear of them.
    let fits = |total: u64| {
        total
            .checked_add(growth)
            .is_some_and(|t| t <= i64::MAX as u64)
    };
    if !fits(entry.used) || !fits(entry.period_total) {
        return Err(Implausible::Overflow { bytes });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::quota::ledger::{KeyInfo, Reading, adopt};

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn entry(counter: u64) -> Entry {
        let key = KeyInfo {
            id: "1",
            uuid: "u1",
            name: "k",
        };
        let reading = Reading::Counter {
            bytes: counter,
            connections: None,
        };
        adopt(&key, reading, at(-600), at(0)).expect("adopted")
    }

    #[test]
    fn absolute_bound() {
        assert_eq!(check_first(MAX_COUNTER), Ok(()));
        assert_eq!(
            check_first(18_000_000_000_000_000_000),
            Err(Implausible::TooLarge {
                bytes: 18_000_000_000_000_000_000
            })
        );
        assert!(check(&entry(0), MAX_COUNTER + 1, at(10)).is_err());
    }

    #[test]
    fn growth_bound_follows_the_time_since_the_last_reading() {
        let ten_minutes = 600 * MAX_BYTES_PER_SECOND + SLACK_BYTES;
        assert_eq!(check(&entry(5), 5 + ten_minutes, at(10)), Ok(()));
        assert_eq!(
            check(&entry(5), 6 + ten_minutes, at(10)),
            Err(Implausible::TooFast {
                bytes: 6 + ten_minutes,
                growth: 1 + ten_minutes,
                seconds: 600
            })
        );
        // A drop counts the new value whole.
        assert!(check(&entry(u64::from(u32::MAX)), SLACK_BYTES + 1, at(0)).is_err());
        assert_eq!(
            check(&entry(u64::from(u32::MAX)), SLACK_BYTES, at(0)),
            Ok(())
        );
    }

    #[test]
    fn the_ledger_never_overflows() {
        let mut full = entry(0);
        full.used = i64::MAX as u64 - 10;
        assert_eq!(
            check(&full, 11, at(10)),
            Err(Implausible::Overflow { bytes: 11 })
        );
        assert_eq!(check(&full, 10, at(10)), Ok(()));
    }
}
