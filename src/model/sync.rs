//! config_sync's memory: the drift streak of a server and its sync attempts.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The consecutive drifted reads of one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftMemory {
    pub confirmations: u32,
    pub first_seen: Option<DateTime<Utc>>,
    /// A stable description of what drifted (sorted uuids), to tell streaks apart.
    pub signature: String,
}

/// What an attempt of a server's hourly sync budget was: every action that restarts
/// Xray spends the same budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// config_sync's sync of a drifted config.json.
    Sync,
    /// health: a stopped Xray restarted through sync-config.
    XrayRestart,
    /// reality (2.x): fix-reality-keys.
    RealityFix,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Sync => "sync",
            AttemptKind::XrayRestart => "xray_restart",
            AttemptKind::RealityFix => "reality_fix",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptKind> {
        [
            AttemptKind::Sync,
            AttemptKind::XrayRestart,
            AttemptKind::RealityFix,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// How a sync attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAttemptOutcome {
    /// Recorded before the POST and not (yet) answered: in flight, or the process died.
    /// It counts against the budget (the server may have synced).
    Started,
    /// The server refused with 429 and did not sync: not counted against the budget.
    Deferred,
    /// The server answered (it synced, or failed to): counted.
    Completed,
}

impl SyncAttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncAttemptOutcome::Started => "started",
            SyncAttemptOutcome::Deferred => "deferred",
            SyncAttemptOutcome::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<SyncAttemptOutcome> {
        [
            SyncAttemptOutcome::Started,
            SyncAttemptOutcome::Deferred,
            SyncAttemptOutcome::Completed,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One attempt of a server's sync budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SyncAttempt {
    pub at: DateTime<Utc>,
    pub kind: AttemptKind,
    pub outcome: SyncAttemptOutcome,
}
