//! The quota job's persisted records: the usage ledger (an entry per key and server, the
//! finished periods), the resets and deletes it decides (actions) and their intents as
//! stored, and what it remembers per server.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AuditResult;
use super::time::stamp;

/// One key's ledger row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    /// The last counter seen; `None` until the server reported one (an idle 1.x key).
    pub counter: Option<u64>,
    /// Bytes counted against the limit: since the period start, or since the last
    /// `on_exceed = "reset"` (a fresh allowance).
    pub used: u64,
    /// All bytes of the current period (kept in the history when it ends).
    pub period_total: u64,
    pub period_start: DateTime<Utc>,
    /// Adopted mid-period: true until its first full period begins.
    pub adopted: bool,
    /// The highest `warn_at` percentage raised in this allowance (0: none yet).
    pub warned: u8,
    /// When 100% was crossed in this allowance (`quota_exceeded` was raised).
    pub exceeded_at: Option<DateTime<Utc>>,
    /// `on_exceed = "reset"` resets in this period (each one's intent has its own key).
    pub exceed_resets: u32,
    /// `on_exceed = "delete"`: when the grace ends and the key goes if still over.
    pub delete_due: Option<DateTime<Utc>>,
    /// keywarden sent a reset not yet confirmed by a reading: a drop is expected.
    pub expect_drop: bool,
    /// When keywarden last started a period or allowance for this key.
    pub last_reset: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    /// The last successful reading (an absence from the 1.x bulk answer included).
    pub read_at: Option<DateTime<Utc>>,
    /// The last reading whose counter differed from the one before.
    pub changed_at: Option<DateTime<Utc>>,
    /// When the key was no longer on the server (`None` while it is).
    pub gone_at: Option<DateTime<Utc>>,
}

/// A finished period, kept as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub total: u64,
    /// Usage of the last allowance (equals `total` without `on_exceed` resets).
    pub used: u64,
    pub adopted: bool,
}

/// What to do to a key on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Reset,
    Delete,
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A period boundary passed (exempt from the guard).
    Boundary,
    /// Over the limit with `on_exceed = "reset"`.
    Exceeded,
    /// Over the limit with `on_exceed = "delete"` when the grace ended.
    GraceEnded,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Reset => "reset",
            ActionKind::Delete => "delete",
        }
    }
    pub fn parse(text: &str) -> Option<ActionKind> {
        [ActionKind::Reset, ActionKind::Delete]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Boundary => "boundary",
            Reason::Exceeded => "exceeded",
            Reason::GraceEnded => "grace_ended",
        }
    }
    pub fn parse(text: &str) -> Option<Reason> {
        [Reason::Boundary, Reason::Exceeded, Reason::GraceEnded]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// One reset or delete, keyed so that it happens at most once: its `intent_key()` is
/// unique per server and key (the period for a boundary reset, the allowance for an
/// exceeded one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub kind: ActionKind,
    pub reason: Reason,
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    /// The period the action belongs to: for a boundary reset the period it starts,
    /// else the key's current period.
    pub period_start: DateTime<Utc>,
    /// An exceeded reset: which allowance of the period it ends (from 1); 0 otherwise.
    pub allowance: u32,
    /// The counter when planned (the baseline the reset is verified against).
    pub counter_before: Option<u64>,
    /// Whether the server is called: false for a fresh allowance kept in the ledger only
    /// (`counter_resets` off or suspended, an inactive key).
    pub call_server: bool,
}

impl Action {
    /// The key that makes the action happen at most once per server and key:
    /// "period <start>", "exceeded <start> #<allowance>" or "delete <start>" (the same
    /// text every release wrote, so intents stay unique across upgrades).
    pub fn intent_key(&self) -> String {
        let start = stamp(self.period_start);
        match self.reason {
            Reason::Boundary => format!("period {start}"),
            Reason::Exceeded => format!("exceeded {start} #{}", self.allowance),
            Reason::GraceEnded => format!("delete {start}"),
        }
    }
}

/// What the store remembers of a server for the quota job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ServerMemory {
    /// The first quota run on this server (`None`: this is it).
    pub first_run_at: Option<DateTime<Utc>>,
    /// Quota runs that failed in a row.
    pub consecutive_failures: u32,
    /// The last run in which any key's counter changed.
    pub traffic_changed_at: Option<DateTime<Utc>>,
    /// When config_sync last restarted Xray here (counters may drop across it).
    pub sync_noted_at: Option<DateTime<Utc>>,
    /// `counter_resets = "auto"`: the API version whose resets were all ignored; no more
    /// reset calls until the version changes.
    pub resets_suspended_version: Option<String>,
}

/// Where an intent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    /// Written with the decision; the remote call has not been made.
    Pending,
    /// Marked right before the remote call: it may or may not have reached the server.
    Sending,
    /// Finished (verified, or judged).
    Done,
    /// The remote call failed; a delete is tried again when planned again.
    Failed,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Sending => "sending",
            IntentState::Done => "done",
            IntentState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<IntentState> {
        [
            IntentState::Pending,
            IntentState::Sending,
            IntentState::Done,
            IntentState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// How a finished intent came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentOutcome {
    /// A reset that took effect: the counter read back dropped.
    Applied,
    /// A reset the server accepted and ignored: the counter did not drop.
    NotApplied,
    /// 2.x: no traffic since the last reset, nothing to reset.
    NothingToReset,
    /// A reset whose counter could not be read back (the next reading settles it).
    Unverified,
    /// A reset found `sending` after a crash whose counter grew past the reading before
    /// it: whether it happened cannot be told. The growth was counted, the reset not
    /// sent again (see docs/quotas.md, "A reset interrupted by a crash").
    Uncertain,
    /// The call failed (a reset's counter did not drop; a delete is tried again).
    Failed,
    /// The key was gone when its reset was made.
    KeyGone,
    Deleted,
    /// The key was already gone when its delete was finished.
    AlreadyGone,
}

impl IntentOutcome {
    pub const ALL: [IntentOutcome; 9] = [
        IntentOutcome::Applied,
        IntentOutcome::NotApplied,
        IntentOutcome::NothingToReset,
        IntentOutcome::Unverified,
        IntentOutcome::Uncertain,
        IntentOutcome::Failed,
        IntentOutcome::KeyGone,
        IntentOutcome::Deleted,
        IntentOutcome::AlreadyGone,
    ];

    /// The name stored, audited and used as the `result` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            IntentOutcome::Applied => "applied",
            IntentOutcome::NotApplied => "not_applied",
            IntentOutcome::NothingToReset => "nothing_to_reset",
            IntentOutcome::Unverified => "unverified",
            IntentOutcome::Uncertain => "uncertain",
            IntentOutcome::Failed => "failed",
            IntentOutcome::KeyGone => "key_gone",
            IntentOutcome::Deleted => "deleted",
            IntentOutcome::AlreadyGone => "already_gone",
        }
    }

    pub fn parse(text: &str) -> Option<IntentOutcome> {
        IntentOutcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

impl From<IntentOutcome> for AuditResult {
    fn from(outcome: IntentOutcome) -> AuditResult {
        match outcome {
            IntentOutcome::Applied => AuditResult::Applied,
            IntentOutcome::NotApplied => AuditResult::NotApplied,
            IntentOutcome::NothingToReset => AuditResult::NothingToReset,
            IntentOutcome::Unverified => AuditResult::Unverified,
            IntentOutcome::Uncertain => AuditResult::Uncertain,
            IntentOutcome::Failed => AuditResult::Failed,
            IntentOutcome::KeyGone => AuditResult::KeyGone,
            IntentOutcome::Deleted => AuditResult::Deleted,
            IntentOutcome::AlreadyGone => AuditResult::AlreadyGone,
        }
    }
}

/// A stored intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub action: Action,
    pub state: IntentState,
    /// `None` while the intent is open.
    pub outcome: Option<IntentOutcome>,
    /// The call's error, when there was one.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An intent as it is finished: `Done` or `Failed`, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedIntent {
    pub id: i64,
    pub state: IntentState,
    pub outcome: IntentOutcome,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn intent_keys_are_derived_from_the_period_as_before() {
        let action = |reason, allowance| Action {
            kind: ActionKind::Reset,
            reason,
            uuid: "u".into(),
            key_id: "1".into(),
            name: "n".into(),
            period_start: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            allowance,
            counter_before: None,
            call_server: true,
        };
        let keys: Vec<String> = [
            action(Reason::Boundary, 0),
            action(Reason::Exceeded, 2),
            action(Reason::GraceEnded, 0),
        ]
        .iter()
        .map(Action::intent_key)
        .collect();
        assert_eq!(
            keys,
            [
                "period 2026-11-01T00:00:00.000Z",
                "exceeded 2026-11-01T00:00:00.000Z #2",
                "delete 2026-11-01T00:00:00.000Z"
            ]
        );
    }

    #[test]
    fn outcomes_round_trip_and_audit_under_the_same_name() {
        for outcome in IntentOutcome::ALL {
            assert_eq!(IntentOutcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(AuditResult::from(outcome).as_str(), outcome.as_str());
        }
    }
}
