//! Property tests: whatever encoding a server picks for a number or a timestamp, the
//! client reads the same value, in every answer shape that carries it.

use chrono::{DateTime, FixedOffset, Utc};
use keywarden::server_api::lenient::{LenientU64, Timestamp};
use keywarden::server_api::wire;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The ways servers in the field write a whole number.
fn encodings(n: u64) -> Vec<Value> {
    let mut out = vec![json!(n), json!(n.to_string()), json!(format!(" {n} "))];
    // Floats are exact only up to 2^53; servers that send floats have small numbers.
    if n < (1u64 << 53) {
        out.push(json!(n as f64));
        out.push(json!(format!("{n}.0")));
    }
    out
}

proptest! {
    #[test]
    fn whole_numbers_read_the_same_in_every_encoding(n in any::<u64>()) {
        for encoded in encodings(n) {
            let read: LenientU64 = serde_json::from_value(encoded.clone()).unwrap();
            prop_assert_eq!(read.0, n, "{}", encoded);
        }
    }

    #[test]
    fn traffic_totals_read_the_same_in_every_answer_shape(n in 0u64..(1u64 << 53), up_share in 0u64..=100) {
        for encoded in encodings(n) {
            let v1 = json!({"key": {"id": "k", "uuid": "u", "name": "n", "is_active": true},
                            "traffic_bytes": {"total_bytes": encoded.clone()}, "source": "precise_monitor"});
            let v2 = json!({"status": "success", "key_id": "k", "key_uuid": "u", "total_bytes": encoded.clone(),
                            "timestamp": "2026-11-28T03:05:57.031341"});
            let variant = json!({"key_id": "k", "total": encoded.clone(), "last_updated": 1795835157});
            for shape in [v1, v2, variant] {
                prop_assert_eq!(wire::key_traffic(&shape).unwrap().total_bytes, n);
            }
        }
        let up = n / 100 * up_share;
        let split = json!({"key_id": "k", "upload": up.to_string(), "download": n - up});
        prop_assert_eq!(wire::key_traffic(&split).unwrap().total_bytes, n);
    }

    #[test]
    // From 1973 on: earlier instants in milliseconds are indistinguishable from seconds.
    fn timestamps_read_the_same_in_every_encoding(seconds in 100_000_000i64..4_000_000_000, micros in 0u32..1_000_000, offset_minutes in -720i32..=840) {
        let instant = DateTime::<Utc>::from_timestamp(seconds, micros * 1000).unwrap();
        let whole = DateTime::<Utc>::from_timestamp(seconds, 0).unwrap();
        let zone = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let exact = [
            json!(instant.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
            json!(instant.to_rfc3339()),
            json!(instant.with_timezone(&zone).to_rfc3339()),
            json!(instant.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        ];
        for encoded in exact {
            let read: Timestamp = serde_json::from_value(encoded.clone()).unwrap();
            prop_assert_eq!(read.0, instant, "{}", encoded);
        }
        for encoded in [json!(seconds), json!(seconds.to_string()), json!(seconds as f64), json!(seconds * 1000)] {
            let read: Timestamp = serde_json::from_value(encoded.clone()).unwrap();
            prop_assert_eq!(read.0, whole, "{}", encoded);
        }
    }

    #[test]
    fn garbage_never_panics(text in ".{0,40}") {
        let _ = serde_json::from_value::<LenientU64>(json!(text));
        let _ = serde_json::from_value::<Timestamp>(json!(text));
        let _ = wire::key_traffic(&json!({"total_bytes": text}));
    }
}
