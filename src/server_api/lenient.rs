//! Liberal decoding of the scalars the API sends: numbers that arrive as ints, floats or
//! numeric strings, and timestamps that arrive as unix seconds or ISO 8601. Servers in
//! the field disagree on these, and a wrong guess must not lose a reading.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A non-negative whole number (bytes, counts) accepted as int, float or numeric string.
/// Fractions are rounded; negatives and non-numbers are decode errors, because a
/// counter below zero means the server is broken, not that nothing was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct LenientU64(pub u64);

/// A number accepted as int, float or numeric string (percentages, megabytes).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize)]
pub struct LenientF64(pub f64);

/// A point in time accepted as unix seconds (int, float, string) or ISO 8601 text,
/// with or without a zone (no zone means UTC, as the servers write naive UTC stamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Timestamp(pub DateTime<Utc>);

/// Parse a number from text the way the servers write them ("123", "1.5e3", " 42 ").
pub fn parse_number(text: &str) -> Option<f64> {
    let value: f64 = text.trim().parse().ok()?;
    value.is_finite().then_some(value)
}

fn f64_to_u64(value: f64) -> Option<u64> {
    // 2^64 itself is not representable; anything at or past it is garbage, not traffic.
    (0.0..18_446_744_073_709_551_616.0)
        .contains(&value)
        .then(|| value.round() as u64)
}

/// Parse a timestamp from text: unix seconds, RFC 3339, or naive ISO 8601 (taken as UTC).
pub fn parse_timestamp_text(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(seconds) = parse_number(text) {
        return unix_seconds(seconds);
    }
    if let Ok(with_zone) = DateTime::parse_from_rfc3339(text) {
        return Some(with_zone.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&naive));
        }
    }
    None
}

fn unix_seconds(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    // Some clients send milliseconds; anything past year 5000 in seconds is read as ms.
    let seconds = if seconds > 95_617_584_000.0 {
        seconds / 1000.0
    } else {
        seconds
    };
    let whole = seconds.floor();
    let nanos = ((seconds - whole) * 1e9).round() as u32;
    DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a numeric string")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        parse_number(v).ok_or_else(|| E::custom(format!("not a number: {v:?}")))
    }
}

impl<'de> Deserialize<'de> for LenientF64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor).map(LenientF64)
    }
}

struct WholeNumberVisitor;

impl<'de> Visitor<'de> for WholeNumberVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number or numeric string")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("negative count: {v}")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        f64_to_u64(v).ok_or_else(|| E::custom(format!("not a valid count: {v}")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let trimmed = v.trim();
        if let Ok(whole) = trimmed.parse::<u64>() {
            return Ok(whole);
        }
        parse_number(trimmed)
            .and_then(f64_to_u64)
            .ok_or_else(|| E::custom(format!("not a valid count: {v:?}")))
    }
}

impl<'de> Deserialize<'de> for LenientU64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(WholeNumberVisitor)
            .map(LenientU64)
    }
}

struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unix seconds or an ISO 8601 timestamp")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        unix_seconds(v).ok_or_else(|| E::custom(format!("not a valid unix time: {v}")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_timestamp_text(v).ok_or_else(|| E::custom(format!("not a valid timestamp: {v:?}")))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(TimestampVisitor)
            .map(Timestamp)
    }
}

/// A boolean that may arrive as true/false, 0/1 or "true"/"false".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LenientBool(pub bool);

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoolVisitor;
        impl Visitor<'_> for BoolVisitor {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
                Ok(v != 0)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
                Ok(v != 0)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Ok(true),
                    "false" | "0" | "no" | "" => Ok(false),
                    _ => Err(E::custom(format!("not a boolean: {v:?}"))),
                }
            }
        }
        deserializer.deserialize_any(BoolVisitor).map(LenientBool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(json: &str) -> Result<u64, serde_json::Error> {
        serde_json::from_str::<LenientU64>(json).map(|v| v.0)
    }

    #[test]
    fn whole_numbers_in_every_encoding() {
        assert_eq!(u("42").unwrap(), 42);
        assert_eq!(u("42.0").unwrap(), 42);
        assert_eq!(u("41.6").unwrap(), 42);
        assert_eq!(u("\"42\"").unwrap(), 42);
        assert_eq!(u("\" 1.5e3 \"").unwrap(), 1500);
        assert_eq!(u("18446744073709551615").unwrap(), u64::MAX);
        assert!(u("-1").is_err());
        assert!(u("\"abc\"").is_err());
        assert!(u("null").is_err());
    }

    #[test]
    fn timestamps_in_every_encoding() {
        let expected = Utc.with_ymd_and_hms(2026, 11, 28, 3, 5, 57).unwrap();
        for json in [
            "1795835157",
            "1795835157.0",
            "\"1795835157\"",
            "1795835157000",
            "\"2026-11-28T03:05:57\"",
            "\"2026-11-28T03:05:57.000000\"",
            "\"2026-11-28T03:05:57Z\"",
            "\"2026-11-28T04:05:57+01:00\"",
            "\"2026-11-28 03:05:57\"",
        ] {
            let parsed: Timestamp = serde_json::from_str(json).unwrap();
            assert_eq!(parsed.0, expected, "{json}");
        }
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn booleans() {
        for (json, expected) in [
            ("true", true),
            ("0", false),
            ("\"True\"", true),
            ("1", true),
        ] {
            assert_eq!(
                serde_json::from_str::<LenientBool>(json).unwrap().0,
                expected
            );
        }
    }
}
