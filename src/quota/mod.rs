//! Traffic accounting and quotas, the pure part: period arithmetic (`period`), the usage
//! ledger (`ledger`), rule matching (`rules`), thresholds and `on_exceed` (`evaluate`),
//! actions and the blast-radius guard (`action`), and the run's plan (`plan`). No IO, no
//! clock, no server: the quota job (`jobs::quota`) observes, calls in here, persists and
//! executes. See docs/quotas.md.

pub mod action;
pub mod evaluate;
pub mod identity;
pub mod ledger;
pub mod period;
pub mod plan;
pub mod plausible;
pub mod rules;

pub use evaluate::Notice;
pub use ledger::{Entry, HistoryRow, Reading};
pub use plan::{Action, ActionKind, Observed, ObservedKey, Plan, Reason, ServerMemory, plan};
pub use rules::RuleRef;

/// "512 B", "1.5 KiB", "12.3 GiB": binary units, for tables and messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let decimals = if value < 10.0 { 2 } else { 1 };
    format!("{value:.decimals$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.00 KiB"),
            (1536, "1.50 KiB"),
            (10 * 1024 * 1024, "10.0 MiB"),
            (100 << 30, "100.0 GiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(super::human_bytes(bytes), want, "{bytes}");
        }
    }
}
