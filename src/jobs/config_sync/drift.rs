//! What one read of a server says about drift between its key store and config.json.
//! Pure code: the server's answers in, a `Drift` (or none) out.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::server_api::{ConfigStatus, SyncValidation};

/// One read of a server's sync state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Read {
    /// GET /api/system/config-status (on 2.x a per-process cached view, possibly stale).
    pub status: ConfigStatus,
    /// GET /api/system/xray/validate-sync (2.x): config.json read fresh, short_ids compared.
    pub validation: Option<SyncValidation>,
}

/// Which answer the drift was judged from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Witness {
    /// 1.x: config-status reads config.json fresh.
    ConfigStatus,
    /// 2.x: validate-sync reads config.json fresh; config-status may be stale in either
    /// direction (synchronized while drifted, unsynchronized after a good sync), so it is
    /// not used for the verdict.
    ValidateSync,
}

/// Drift seen in one read. Lists are sorted, so equal drifts compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// In the key store, missing from config.json (those users cannot connect).
    pub missing_from_config: Vec<String>,
    /// In config.json, not in the key store (revoked or unknown clients that can connect).
    pub extra_in_config: Vec<String>,
    /// 2.x: clients whose inbound's short_id differs from the key store.
    pub short_id_mismatches: Vec<String>,
    /// The server's own verdict was "not in sync" (alone, with empty lists, it still counts).
    pub server_says_unsynced: bool,
    pub witness: Witness,
    /// 2.x: config-status claimed `synchronized: true` although the fresh read drifted.
    pub stale_status: bool,
    /// Clients in the key store, as the witness counted them.
    pub key_store_count: u64,
    /// Clients in config.json, as the witness counted them.
    pub config_count: u64,
}

fn sorted(items: &[String]) -> Vec<String> {
    items
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn difference(a: &[String], b: &[String]) -> Vec<String> {
    let b: BTreeSet<&String> = b.iter().collect();
    sorted(
        &a.iter()
            .filter(|item| !b.contains(item))
            .cloned()
            .collect::<Vec<_>>(),
    )
}

/// "1 uuid", "2 uuids".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Drift {
    /// The drift in `read`, or `None` when the witness says config.json is in sync.
    pub fn of(read: &Read) -> Option<Drift> {
        let drift = match &read.validation {
            Some(v) => Drift::from_validation(v, &read.status),
            None => Drift::from_status(&read.status),
        };
        drift.is_drift().then_some(drift)
    }

    fn from_status(status: &ConfigStatus) -> Drift {
        Drift {
            missing_from_config: difference(&status.key_store_uuids, &status.config_uuids),
            extra_in_config: difference(&status.config_uuids, &status.key_store_uuids),
            short_id_mismatches: Vec::new(),
            server_says_unsynced: !status.synchronized,
            witness: Witness::ConfigStatus,
            stale_status: false,
            key_store_count: status.key_store_uuids.len() as u64,
            config_count: status.config_uuids.len() as u64,
        }
    }

    fn from_validation(v: &SyncValidation, status: &ConfigStatus) -> Drift {
        Drift {
            missing_from_config: sorted(&v.missing_in_config),
            extra_in_config: sorted(&v.extra_in_config),
            short_id_mismatches: sorted(&v.short_id_mismatches),
            server_says_unsynced: !(v.synced && v.uuid_synced && v.short_id_synced),
            witness: Witness::ValidateSync,
            // config-status knows only uuids: a short_id mismatch does not make it stale.
            stale_status: status.synchronized
                && !(v.missing_in_config.is_empty() && v.extra_in_config.is_empty()),
            key_store_count: v.keys_count,
            config_count: v.config_count,
        }
    }

    fn is_drift(&self) -> bool {
        !self.missing_from_config.is_empty()
            || !self.extra_in_config.is_empty()
            || !self.short_id_mismatches.is_empty()
            || self.server_says_unsynced
    }

    fn lists_empty(&self) -> bool {
        self.missing_from_config.is_empty()
            && self.extra_in_config.is_empty()
            && self.short_id_mismatches.is_empty()
    }

    /// A stable description of what drifted (for `DriftMemory::signature`).
    pub fn signature(&self) -> String {
        let mut text = format!(
            "missing:{};extra:{};short_id:{}",
            self.missing_from_config.join(","),
            self.extra_in_config.join(","),
            self.short_id_mismatches.join(",")
        );
        if self.server_says_unsynced && self.lists_empty() {
            text.push_str(";server_flag");
        }
        text
    }

    /// A sync would leave config.json without a single client: the key store is empty
    /// while config.json is not. That is a broken key store far more often than a wish.
    pub fn would_empty_config(&self) -> bool {
        self.key_store_count == 0 && self.config_count > 0
    }

    /// One line: "2 uuids missing from config.json, 1 extra"; `past` for "was missing".
    pub fn describe(&self, past: bool) -> String {
        let (missing, extra) = (self.missing_from_config.len(), self.extra_in_config.len());
        let verb = |n: usize| match (past, n) {
            (false, _) => "",
            (true, 1) => "was ",
            (true, _) => "were ",
        };
        let mut parts = Vec::new();
        if missing > 0 {
            let uuids = count(missing, "uuid");
            parts.push(format!("{uuids} {}missing from config.json", verb(missing)));
        }
        if extra > 0 && missing > 0 {
            parts.push(format!("{extra} extra"));
        } else if extra > 0 {
            let uuids = count(extra, "extra uuid");
            parts.push(format!("{uuids} {}in config.json", verb(extra)));
        }
        if !self.short_id_mismatches.is_empty() {
            parts.push(count(self.short_id_mismatches.len(), "short_id mismatch"));
        }
        if parts.is_empty() {
            let verb = if past { "reported" } else { "reports" };
            parts.push(format!("the server {verb} config.json out of sync"));
        }
        parts.join(", ")
    }

    /// Multi-line: the uuids, one list per line, and how they were seen.
    pub fn uuid_lines(&self) -> String {
        let mut lines = Vec::new();
        let list = |label: &str, items: &[String]| format!("  {label}: {}", items.join(", "));
        if !self.missing_from_config.is_empty() {
            lines.push(list(
                "missing from config.json (in the key store)",
                &self.missing_from_config,
            ));
        }
        if !self.extra_in_config.is_empty() {
            lines.push(list(
                "extra in config.json (not in the key store)",
                &self.extra_in_config,
            ));
        }
        if !self.short_id_mismatches.is_empty() {
            lines.push(list(
                "short_id differs from the key store",
                &self.short_id_mismatches,
            ));
        }
        if self.server_says_unsynced && self.lists_empty() {
            lines.push("  the server reports config.json out of sync, with no uuid listed".into());
        }
        lines.push(format!(
            "  key store: {}, config.json: {} ({})",
            count(self.key_store_count as usize, "client"),
            count(self.config_count as usize, "client"),
            self.witness_text()
        ));
        if self.stale_status {
            lines.push(
                "  config-status (the API's cached view) still claims synchronized: its cache is stale"
                    .into(),
            );
        }
        lines.join("\n")
    }

    fn witness_text(&self) -> &'static str {
        match self.witness {
            Witness::ConfigStatus => "read through config-status",
            Witness::ValidateSync => "read fresh through validate-sync",
        }
    }

    /// Compact uuids for an audit entry.
    pub fn audit_text(&self) -> String {
        format!(
            "missing from config.json: [{}]; extra in config.json: [{}]; short_id mismatches: [{}]",
            self.missing_from_config.join(", "),
            self.extra_in_config.join(", "),
            self.short_id_mismatches.join(", ")
        )
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn status(synchronized: bool, keys: &[&str], config: &[&str]) -> ConfigStatus {
        let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ConfigStatus {
            synchronized,
            key_store_count: keys.len() as u64,
            config_count: config.len() as u64,
            key_store_uuids: owned(keys),
            config_uuids: owned(config),
            timestamp: None,
        }
    }

    pub fn validation(missing: &[&str], extra: &[&str], short_ids: &[&str]) -> SyncValidation {
        let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let uuid_synced = missing.is_empty() && extra.is_empty();
        SyncValidation {
            synced: uuid_synced && short_ids.is_empty(),
            uuid_synced,
            short_id_synced: short_ids.is_empty(),
            keys_count: 3,
            config_count: 3,
            missing_in_config: owned(missing),
            extra_in_config: owned(extra),
            short_id_mismatches: owned(short_ids),
            short_id_mismatches_count: short_ids.len() as u64,
        }
    }

    pub fn v1(synchronized: bool, keys: &[&str], config: &[&str]) -> Read {
        Read {
            status: status(synchronized, keys, config),
            validation: None,
        }
    }

    pub fn v2(status_synchronized: bool, validation: SyncValidation) -> Read {
        Read {
            status: status(status_synchronized, &["a", "b"], &["a", "b"]),
            validation: Some(validation),
        }
    }

    /// What a drifted read should yield.
    struct Expect {
        missing: &'static [&'static str],
        extra: &'static [&'static str],
        flag: bool,
        stale: bool,
    }

    #[test]
    fn drift_is_judged_by_the_witness() {
        let expect = |missing, extra, flag, stale| {
            Some(Expect {
                missing,
                extra,
                flag,
                stale,
            })
        };
        let table = [
            ("1.x in sync", v1(true, &["a", "b"], &["b", "a"]), None),
            (
                "1.x both kinds",
                v1(false, &["a", "b"], &["b", "x"]),
                expect(&["a"], &["x"], true, false),
            ),
            (
                "1.x flag alone",
                v1(false, &["a"], &["a"]),
                expect(&[], &[], true, false),
            ),
            (
                "1.x sets disagree with the flag",
                v1(true, &["a"], &[]),
                expect(&["a"], &[], false, false),
            ),
            (
                "2.x stale cache says synchronized",
                v2(true, validation(&["b"], &[], &[])),
                expect(&["b"], &[], true, true),
            ),
            (
                "2.x stale cache says unsynchronized after a good sync",
                v2(false, validation(&[], &[], &[])),
                None,
            ),
        ];
        for (name, read, expected) in table {
            let drift = Drift::of(&read);
            let Some(expected) = expected else {
                assert_eq!(drift, None, "{name}");
                continue;
            };
            let drift = drift.unwrap_or_else(|| panic!("{name}: no drift"));
            assert_eq!(drift.missing_from_config, expected.missing, "{name}");
            assert_eq!(drift.extra_in_config, expected.extra, "{name}");
            assert_eq!(drift.server_says_unsynced, expected.flag, "{name}");
            assert_eq!(drift.stale_status, expected.stale, "{name}");
        }
    }

    #[test]
    fn short_id_mismatches_are_drift() {
        let drift = Drift::of(&v2(true, validation(&[], &[], &["c"]))).expect("drift");
        assert_eq!(drift.short_id_mismatches, ["c"]);
        assert!(!drift.stale_status, "config-status does not know short_ids");
        assert_eq!(drift.describe(false), "1 short_id mismatch");
        assert_eq!(drift.signature(), "missing:;extra:;short_id:c");
    }

    #[test]
    fn descriptions() {
        let table = [
            (
                v1(true, &["a", "b"], &["x"]),
                false,
                "2 uuids missing from config.json, 1 extra",
            ),
            (
                v1(true, &["a"], &[]),
                true,
                "1 uuid was missing from config.json",
            ),
            (
                v1(true, &["a", "b"], &[]),
                true,
                "2 uuids were missing from config.json",
            ),
            (v1(true, &[], &["x"]), false, "1 extra uuid in config.json"),
            (
                v1(true, &[], &["x", "y"]),
                true,
                "2 extra uuids were in config.json",
            ),
            (
                v1(false, &["a"], &["a"]),
                false,
                "the server reports config.json out of sync",
            ),
        ];
        for (read, past, expected) in table {
            assert_eq!(Drift::of(&read).expect("drift").describe(past), expected);
        }
    }

    #[test]
    fn signatures_ignore_order_and_note_a_bare_flag() {
        let one = Drift::of(&v1(true, &["b", "a"], &["x"])).expect("drift");
        let two = Drift::of(&v1(true, &["a", "b"], &["x"])).expect("drift");
        assert_eq!(one.signature(), two.signature());
        assert_eq!(one.signature(), "missing:a,b;extra:x;short_id:");
        let flag = Drift::of(&v1(false, &["a"], &["a"])).expect("drift");
        assert_eq!(flag.signature(), "missing:;extra:;short_id:;server_flag");
    }

    #[test]
    fn an_empty_key_store_would_empty_config() {
        assert!(
            Drift::of(&v1(false, &[], &["x", "y"]))
                .expect("drift")
                .would_empty_config()
        );
        assert!(
            !Drift::of(&v1(false, &["a"], &["x"]))
                .expect("drift")
                .would_empty_config()
        );
    }
}
