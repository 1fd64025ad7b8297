//! Alerts as plain data: what the engine decides about, what the outbox stores and
//! what the renderers format. No IO, no clock, no configuration here.

use chrono::{DateTime, Utc};

pub use crate::model::alert::{Alert, AlertState, AlertStatus, Notice, OutboxRow, Reason};
use crate::model::{Finding, FindingKind, Severity};

/// Pseudo server name of alerts about keywarden itself (`notifications_failing`).
pub const AGENT: &str = "keywarden";

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
