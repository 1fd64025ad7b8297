//! Findings: what a job saw that an admin may need to know. Plain data, produced by
//! jobs, recorded by the runner, turned into alerts by the alert pipeline. A finding
//! never says what to do about itself; its kind and details do.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{JobKind, Severity};

/// What kind of thing was found. The snake_case names are a contract (alerts, `check
/// --json`, the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// health: the server did not answer `failures_before_alert` times in a row.
    ServerUnreachable,
    /// health: 401, the API key is refused.
    AuthFailed,
    /// health (1.x): the precise traffic monitor is off, traffic figures are estimates.
    TrafficMonitorUnavailable,
    /// config_sync: drift seen, not (yet) repaired (waiting for confirmations, dry run,
    /// auto_sync off, a deferred sync).
    ConfigDrift,
    /// config_sync: drift was repaired by a sync.
    ConfigDriftRepaired,
    /// config_sync: drift is still there after a sync.
    ConfigDriftPersists,
    /// config_sync: the hourly sync budget is spent; no more syncs until it frees.
    AutoSyncSuspended,
    /// config_sync: the sync call failed (500, repeated 429, timeout).
    SyncFailed,
    /// reality: verify-reality failed.
    RealityInvalid,
    /// reality: verify-reality answered without confirming.
    RealityUnconfirmed,
    /// Any job: the server's answers could not be read (garbled, wrong shape).
    ApiError,
    /// alerts: a notification sink refuses delivery for good (4xx, authentication
    /// refused) or notifications to it expired undelivered. Sent to the other sinks.
    NotificationsFailing,
    /// quota (info): counters dropped without keywarden resetting them (a reset by someone
    /// else, an Xray restart); the new value was counted, nothing was lost.
    CounterResetSeen,
    /// quota: a key crossed a `warn_at` percentage (one-shot, once per period and level).
    QuotaWarning,
    /// quota: a key crossed 100% of its limit (one-shot, once per period or allowance).
    QuotaExceeded,
    /// quota: a key over its limit was deleted (one-shot).
    KeyDeleted,
    /// quota: the server accepted counter resets that did not take effect (one digest per
    /// server and period).
    ResetNotApplied,
    /// quota: quotas are not being enforced: runs keep failing, or counters froze.
    TrafficDataStale,
    /// quota (critical): a plan to reset or delete too many keys at once was not executed.
    MassActionBlocked,
    /// health (2.x, critical): Xray stopped for `xray_confirmations` reads in a row and
    /// keywarden did not restart it (off, dry run, budget spent, rate limited).
    XrayDown,
    /// health (2.x, warning): Xray was stopped; keywarden restarted it and it runs again.
    XrayRestarted,
    /// health (2.x, critical): keywarden restarted Xray and it is still not running.
    XrayDownPersists,
    /// reality (2.x, warning): invalid Reality settings were repaired by fix-reality-keys.
    RealityRepaired,
    /// dataplane (critical): no probed VLESS port accepts a connection.
    VlessPortsClosed,
    /// dataplane (warning): some VLESS ports refuse connections.
    VlessPortUnreachable,
    /// dataplane (critical): a VLESS port answers TLS with a certificate that does not
    /// verify for its server name, or TLS fails.
    RealityCamouflageBroken,
    /// quota: several keys share an id or a uuid; none of them is counted or acted on.
    KeyIdentityAmbiguous,
    /// quota: counter readings beyond what a key can do were not counted.
    TrafficReadingImplausible,
    /// quota (warning): resets interrupted by a crash whose outcome cannot be told from
    /// the next reading: the provable growth was counted, the reset not repeated; up to
    /// the reading before each reset may be uncounted.
    UsageUncertain,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ServerUnreachable => "server_unreachable",
            FindingKind::AuthFailed => "auth_failed",
            FindingKind::TrafficMonitorUnavailable => "traffic_monitor_unavailable",
            FindingKind::ConfigDrift => "config_drift",
            FindingKind::ConfigDriftRepaired => "config_drift_repaired",
            FindingKind::ConfigDriftPersists => "config_drift_persists",
            FindingKind::AutoSyncSuspended => "auto_sync_suspended",
            FindingKind::SyncFailed => "sync_failed",
            FindingKind::RealityInvalid => "reality_invalid",
            FindingKind::RealityUnconfirmed => "reality_unconfirmed",
            FindingKind::ApiError => "api_error",
            FindingKind::NotificationsFailing => "notifications_failing",
            FindingKind::CounterResetSeen => "counter_reset_seen",
            FindingKind::QuotaWarning => "quota_warning",
            FindingKind::QuotaExceeded => "quota_exceeded",
            FindingKind::KeyDeleted => "key_deleted",
            FindingKind::ResetNotApplied => "reset_not_applied",
            FindingKind::TrafficDataStale => "traffic_data_stale",
            FindingKind::MassActionBlocked => "mass_action_blocked",
            FindingKind::XrayDown => "xray_down",
            FindingKind::XrayRestarted => "xray_restarted",
            FindingKind::XrayDownPersists => "xray_down_persists",
            FindingKind::RealityRepaired => "reality_repaired",
            FindingKind::VlessPortsClosed => "vless_ports_closed",
            FindingKind::VlessPortUnreachable => "vless_port_unreachable",
            FindingKind::RealityCamouflageBroken => "reality_camouflage_broken",
            FindingKind::KeyIdentityAmbiguous => "key_identity_ambiguous",
            FindingKind::TrafficReadingImplausible => "traffic_reading_implausible",
            FindingKind::UsageUncertain => "usage_uncertain",
        }
    }

    /// Event notices of the quota job: raised only in the run where the event happened,
    /// so they "resolve" at the next run by design. A resolved notice means nothing for
    /// them; the alert engine may skip it (see docs/quotas.md).
    pub fn is_one_shot(self) -> bool {
        matches!(
            self,
            FindingKind::CounterResetSeen
                | FindingKind::QuotaWarning
                | FindingKind::QuotaExceeded
                | FindingKind::KeyDeleted
                | FindingKind::ResetNotApplied
                | FindingKind::UsageUncertain
        )
    }

    /// Parse the snake_case name (as stored).
    pub fn parse(name: &str) -> Option<FindingKind> {
        FindingKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    pub const ALL: [FindingKind; 29] = [
        FindingKind::ServerUnreachable,
        FindingKind::AuthFailed,
        FindingKind::TrafficMonitorUnavailable,
        FindingKind::ConfigDrift,
        FindingKind::ConfigDriftRepaired,
        FindingKind::ConfigDriftPersists,
        FindingKind::AutoSyncSuspended,
        FindingKind::SyncFailed,
        FindingKind::RealityInvalid,
        FindingKind::RealityUnconfirmed,
        FindingKind::ApiError,
        FindingKind::NotificationsFailing,
        FindingKind::CounterResetSeen,
        FindingKind::QuotaWarning,
        FindingKind::QuotaExceeded,
        FindingKind::KeyDeleted,
        FindingKind::ResetNotApplied,
        FindingKind::TrafficDataStale,
        FindingKind::MassActionBlocked,
        FindingKind::XrayDown,
        FindingKind::XrayRestarted,
        FindingKind::XrayDownPersists,
        FindingKind::RealityRepaired,
        FindingKind::VlessPortsClosed,
        FindingKind::VlessPortUnreachable,
        FindingKind::RealityCamouflageBroken,
        FindingKind::KeyIdentityAmbiguous,
        FindingKind::TrafficReadingImplausible,
        FindingKind::UsageUncertain,
    ];

    /// Kinds that name one outage of a server's data plane (Xray not serving): while one
    /// of them is announced, the others are held, so the admin gets one message for it.
    pub fn is_dataplane_outage(self) -> bool {
        matches!(
            self,
            FindingKind::XrayDown | FindingKind::XrayDownPersists | FindingKind::VlessPortsClosed
        )
    }
}

/// One finding of one job run on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub server: String,
    #[serde(serialize_with = "serialize_job")]
    pub job: JobKind,
    pub kind: FindingKind,
    /// What it is about within the server: a key uuid, "config.json", "reality", or ""
    /// for the server as a whole. (server, kind, subject) is the alert fingerprint.
    pub subject: String,
    pub severity: Severity,
    /// One line, for a subject line or a phone notification.
    pub summary: String,
    /// What was seen, what keywarden already did, what the admin should do next.
    pub details: String,
}

fn serialize_job<S: serde::Serializer>(job: &JobKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(job.as_str())
}

impl Finding {
    /// The alert fingerprint: (server, kind, subject).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.server, self.kind, &self.subject)
    }
}

fn fingerprint(server: &str, kind: FindingKind, subject: &str) -> String {
    format!("{server}/{}/{subject}", kind.as_str())
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A finding as the store holds it: open from `first_seen` until `resolved_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFinding {
    pub server: String,
    pub job: JobKind,
    pub kind: FindingKind,
    pub subject: String,
    pub severity: Severity,
    pub summary: String,
    pub details: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl StoredFinding {
    /// The alert fingerprint: (server, kind, subject).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.server, self.kind, &self.subject)
    }
}

/// What recording a run's findings changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingChanges {
    /// Fingerprints new in this run.
    pub opened: Vec<String>,
    /// Fingerprints that were open and are again.
    pub continuing: Vec<String>,
    /// Open findings of this (server, job) this run no longer produced.
    pub resolved: Vec<StoredFinding>,
    /// Open findings of every server and job afterwards, per severity (for the
    /// `alerts_firing` gauge).
    pub open: OpenFindings,
}

/// How many findings are open, per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFindings {
    pub info: u64,
    pub warning: u64,
    pub critical: u64,
}

impl OpenFindings {
    pub fn count(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Info => self.info,
            Severity::Warning => self.warning,
            Severity::Critical => self.critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(FindingKind::parse("nope"), None);
    }

    #[test]
    fn quota_event_notices_are_one_shot_conditions_are_not() {
        let one_shot: Vec<&str> = FindingKind::ALL
            .into_iter()
            .filter(|k| k.is_one_shot())
            .map(FindingKind::as_str)
            .collect();
        assert_eq!(
            one_shot,
            [
                "counter_reset_seen",
                "quota_warning",
                "quota_exceeded",
                "key_deleted",
                "reset_not_applied",
                "usage_uncertain"
            ]
        );
    }
}
