//! 1.x traffic figures (TrafficStats, `keys_stats` entries) and their formatting: pure code.

use serde_json::Value;

use super::wire::{KeyStat, TrafficStats};

/// "0 B", "512 B", "48.56 KB", "1.50 GB": binary units, two decimals, like the 1.x server.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A float field that the real server writes as an integer 0 for an idle key.
fn figure(value: f64, idle: bool) -> Value {
    if idle {
        Value::from(0)
    } else {
        Value::from(round2(value))
    }
}

/// Share of all connections, in percent.
fn ratio(connections: u32, total_connections: u32) -> f64 {
    if total_connections == 0 {
        0.0
    } else {
        f64::from(connections) * 100.0 / f64::from(total_connections)
    }
}

/// TrafficStats of one key.
pub fn stats(bytes: u64, connections: u32, total_connections: u32, timestamp: i64) -> TrafficStats {
    let idle = bytes == 0 && connections == 0;
    TrafficStats {
        total_bytes: bytes,
        total_formatted: format_bytes(bytes),
        total_mb: figure(bytes as f64 / 1_048_576.0, idle),
        connections,
        connection_ratio: figure(ratio(connections, total_connections), idle),
        connections_count: connections,
        source: "alternative_monitor",
        method: "network_distribution",
        timestamp,
    }
}

/// One `keys_stats` entry of the bulk answer.
pub fn key_stat(uuid: &str, bytes: u64, connections: u32, total_connections: u32) -> KeyStat {
    let idle = bytes == 0 && connections == 0;
    KeyStat {
        uuid: uuid.to_string(),
        connections,
        total_bytes: bytes,
        total_formatted: format_bytes(bytes),
        total_mb: figure(bytes as f64 / 1_048_576.0, idle),
        connection_ratio: figure(ratio(connections, total_connections), idle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_server() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(49_725), "48.56 KB");
        assert_eq!(format_bytes(6_291_456), "6.00 MB");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024 / 2), "1.50 GB");
    }

    #[test]
    fn ratios_match_the_recorded_sample() {
        // v1_extra_traffic_exact_after_31s: 5, 3 and 1 connections.
        let total = 9;
        assert_eq!(
            key_stat("a", 0, 5, total).connection_ratio,
            Value::from(55.56)
        );
        assert_eq!(
            key_stat("b", 0, 3, total).connection_ratio,
            Value::from(33.33)
        );
        assert_eq!(
            key_stat("c", 0, 1, total).connection_ratio,
            Value::from(11.11)
        );
    }

    #[test]
    fn an_idle_key_has_integer_zeros() {
        let s = stats(0, 0, 4, 1);
        assert_eq!(s.total_mb, Value::from(0));
        assert_eq!(s.connection_ratio, Value::from(0));
        assert!(s.total_mb.is_u64());
        let busy = stats(1_048_576, 1, 1, 1);
        assert_eq!(busy.total_mb, Value::from(1.0));
        assert_eq!(busy.connection_ratio, Value::from(100.0));
    }
}
