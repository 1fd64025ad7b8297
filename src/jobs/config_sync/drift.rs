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
#[path = "drift_tests.rs"]
pub(super) mod tests;
