//! Alerts as plain data: what the engine decides about, what the outbox stores and
//! what the renderers format. No IO, no clock, no configuration here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Severity;
use crate::model::{Finding, FindingKind};

/// Pseudo server name of alerts about keywarden itself (`notifications_failing`).
pub const AGENT: &str = "keywarden";

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

/// What a run said about one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The finding is present (new or continuing).
    Present(Facts),
    /// The finding was open and the run no longer produced it.
    Gone { fingerprint: String },
}

/// The facts of a present finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub fingerprint: String,
    pub server: String,
    pub kind: String,
    pub subject: String,
    pub severity: Severity,
    pub summary: String,
    pub details: String,
}

impl From<&Finding> for Facts {
    fn from(finding: &Finding) -> Facts {
        Facts {
            fingerprint: finding.fingerprint(),
            server: finding.server.clone(),
            kind: finding.kind.as_str().to_string(),
            subject: finding.subject.clone(),
            severity: finding.severity,
            summary: finding.summary.clone(),
            details: finding.details.clone(),
        }
    }
}

/// The fingerprint of the alert saying that notifications to `sink` fail.
pub fn sink_failing_fingerprint(sink: &str) -> String {
    format!(
        "{AGENT}/{}/{sink}",
        FindingKind::NotificationsFailing.as_str()
    )
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

impl AlertState {
    /// A newly firing alert, never notified.
    pub fn firing(facts: &Facts, now: DateTime<Utc>) -> AlertState {
        AlertState {
            alert: Alert {
                fingerprint: facts.fingerprint.clone(),
                server: facts.server.clone(),
                kind: facts.kind.clone(),
                subject: facts.subject.clone(),
                severity: facts.severity,
                status: AlertStatus::Firing,
                summary: facts.summary.clone(),
                details: facts.details.clone(),
                started_at: now,
                ended_at: None,
            },
            last_notified_at: None,
            last_notified_severity: None,
            max_notified_severity: None,
            held: false,
        }
    }
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

/// One item of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub reason: Reason,
    pub alert: Alert,
}

/// What one send carries: one notice, or a digest of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub items: Vec<Item>,
}

impl Message {
    pub fn new(items: Vec<Item>) -> Message {
        Message { items }
    }

    /// The server all items are about, if they share one.
    pub fn server(&self) -> Option<&str> {
        let first = self.items.first()?.alert.server.as_str();
        self.items
            .iter()
            .all(|item| item.alert.server == first)
            .then_some(first)
    }

    /// Firing when anything in it fires, else resolved.
    pub fn status(&self) -> AlertStatus {
        if self
            .items
            .iter()
            .any(|item| item.alert.status == AlertStatus::Firing)
        {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        }
    }

    pub fn is_digest(&self) -> bool {
        self.items.len() > 1
    }

    /// Firing items of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.items
            .iter()
            .filter(|item| {
                item.alert.severity == severity && item.alert.status == AlertStatus::Firing
            })
            .count()
    }

    /// Distinct servers, in order of appearance.
    pub fn servers(&self) -> Vec<&str> {
        let mut servers: Vec<&str> = Vec::new();
        for item in &self.items {
            if !servers.contains(&item.alert.server.as_str()) {
                servers.push(&item.alert.server);
            }
        }
        servers
    }
}
