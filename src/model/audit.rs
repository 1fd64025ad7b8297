//! The audit log's entries: what keywarden did (or meant to do) to a server, for people
//! to read. Append-only; no decision reads it back (decisions read typed state: sync
//! attempts, quota intents).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// config_sync: POST /api/system/sync-config.
    Sync,
    /// reality (and config_sync after a sync): POST /api/system/verify-reality.
    VerifyReality,
    /// quota: a key's traffic counter reset.
    QuotaReset,
    /// quota: a key deleted.
    QuotaDelete,
    /// health (2.x): a stopped Xray restarted through POST /api/system/sync-config.
    XrayRestart,
    /// reality (2.x): POST fix-reality-keys.
    RealityFix,
}

impl AuditAction {
    pub const ALL: [AuditAction; 6] = [
        AuditAction::Sync,
        AuditAction::VerifyReality,
        AuditAction::QuotaReset,
        AuditAction::QuotaDelete,
        AuditAction::XrayRestart,
        AuditAction::RealityFix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Sync => "sync",
            AuditAction::VerifyReality => "verify_reality",
            AuditAction::QuotaReset => "quota_reset",
            AuditAction::QuotaDelete => "quota_delete",
            AuditAction::XrayRestart => "xray_restart",
            AuditAction::RealityFix => "reality_fix",
        }
    }

    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// How it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// Written right before the call.
    Started,
    Ok,
    Failed,
    /// An action the server refused with 429 (it did not run).
    Deferred,
    /// Not done: dry run.
    DryRun,
    /// A sync the server reported failed although a fresh read shows it repaired.
    Misreported,
    /// An action that ran while the problem stayed (the drift, a stopped Xray, invalid
    /// Reality settings).
    Persists,
    /// A call answered without a verdict, or whose result could not be read back.
    Unconfirmed,
    /// The server could not be asked.
    NoAnswer,
    /// A reset that took effect (the counter dropped).
    Applied,
    /// A reset the server accepted and ignored.
    NotApplied,
    /// 2.x: no traffic since the last reset, nothing to reset.
    NothingToReset,
    /// A reset whose counter could not be read back.
    Unverified,
    /// A reset interrupted by a crash whose counter grew since: whether it happened
    /// cannot be told; the growth was counted and it was not sent again.
    Uncertain,
    /// The key was gone when its reset was made.
    KeyGone,
    Deleted,
    /// The key was already gone when its delete was finished.
    AlreadyGone,
}

impl AuditResult {
    pub const ALL: [AuditResult; 17] = [
        AuditResult::Started,
        AuditResult::Ok,
        AuditResult::Failed,
        AuditResult::Deferred,
        AuditResult::DryRun,
        AuditResult::Misreported,
        AuditResult::Persists,
        AuditResult::Unconfirmed,
        AuditResult::NoAnswer,
        AuditResult::Applied,
        AuditResult::NotApplied,
        AuditResult::NothingToReset,
        AuditResult::Unverified,
        AuditResult::Uncertain,
        AuditResult::KeyGone,
        AuditResult::Deleted,
        AuditResult::AlreadyGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Started => "started",
            AuditResult::Ok => "ok",
            AuditResult::Failed => "failed",
            AuditResult::Deferred => "deferred",
            AuditResult::DryRun => "dry_run",
            AuditResult::Misreported => "misreported",
            AuditResult::Persists => "persists",
            AuditResult::Unconfirmed => "unconfirmed",
            AuditResult::NoAnswer => "no_answer",
            AuditResult::Applied => "applied",
            AuditResult::NotApplied => "not_applied",
            AuditResult::NothingToReset => "nothing_to_reset",
            AuditResult::Unverified => "unverified",
            AuditResult::Uncertain => "uncertain",
            AuditResult::KeyGone => "key_gone",
            AuditResult::Deleted => "deleted",
            AuditResult::AlreadyGone => "already_gone",
        }
    }

    pub fn parse(name: &str) -> Option<AuditResult> {
        AuditResult::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for AuditResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One action keywarden took (or meant to take) on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub server: String,
    pub action: AuditAction,
    /// What it was done to: "config.json", "reality", a key's uuid.
    pub target: String,
    pub result: AuditResult,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
        for result in AuditResult::ALL {
            assert_eq!(AuditResult::parse(result.as_str()), Some(result));
            assert_eq!(serde_json::to_value(result).unwrap(), result.as_str());
        }
        assert_eq!(AuditResult::parse("maybe"), None);
    }
}
