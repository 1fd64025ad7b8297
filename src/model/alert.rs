//! Alerts as the store keeps them: the lifecycle of each fingerprint (`AlertState`), the
//! notices queued per sink (`Notice`, then `OutboxRow`), and each sink's health.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Severity;

/// Whether an alert is going on or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        [AlertStatus::Firing, AlertStatus::Resolved]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One alert: a finding's fingerprint with its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// `server/kind/subject`.
    pub fingerprint: String,
    pub server: String,
    /// A `FindingKind` name (kept as text: the outbox may outlive a kind).
    pub kind: String,
    pub subject: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub summary: String,
    /// What was seen, what keywarden already did, what the admin should do next.
    pub details: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First notice of a firing alert.
    New,
    /// Still firing after `repeat_interval`.
    Repeat,
    /// The severity changed.
    Changed,
    /// Held while its server was unreachable, sent now that it answers again.
    Released,
    /// The alert is over.
    Resolved,
    /// `keywarden alert-test`.
    Test,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::Repeat => "repeat",
            Reason::Changed => "changed",
            Reason::Released => "released",
            Reason::Resolved => "resolved",
            Reason::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        [
            Reason::New,
            Reason::Repeat,
            Reason::Changed,
            Reason::Released,
            Reason::Resolved,
            Reason::Test,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

/// The lifecycle of one fingerprint, as the store keeps it between runs and restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertState {
    pub alert: Alert,
    /// When a notice about it was last queued.
    pub last_notified_at: Option<DateTime<Utc>>,
    /// The severity of that notice; `None`: nothing owed a resolved notice.
    pub last_notified_severity: Option<Severity>,
    /// The worst severity notified in this firing (routes the resolved notice).
    pub max_notified_severity: Option<Severity>,
    /// Held back while its server is unreachable.
    pub held: bool,
}

/// One notice for one sink, as planned (before it is an outbox row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub sink: String,
    pub reason: Reason,
    pub alert: Alert,
    /// Not sent before (group_wait for new alerts).
    pub due_at: DateTime<Utc>,
}

/// A notice in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub sink: String,
    pub reason: Reason,
    pub alert: Alert,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// What keywarden knows of one sink's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SinkHealth {
    pub sink: String,
    /// `notifications_failing` was raised for it and has not resolved.
    pub failing: bool,
    pub consecutive_failures: u32,
    /// The last error (never holds a secret: sinks strip URLs and credentials).
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Outbox totals of one sink.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OutboxCounts {
    pub sink: String,
    pub pending: u64,
    pub delivered: u64,
    pub dropped: u64,
}
