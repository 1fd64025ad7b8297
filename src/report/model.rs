//! The usage report as plain data: what every renderer (text, HTML, JSON, charts) reads.
//! Built by `gather` from the store; serialized as is into JSON webhooks.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::period::ReportPeriod;

/// One report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: ReportPeriod,
    /// The period before, for the change figures.
    pub previous: ReportPeriod,
    pub generated_at: DateTime<Utc>,
    /// IANA name of the zone days are counted in.
    pub timezone: String,
    /// The period had not ended when the report was made (numbers so far).
    pub partial: bool,
    pub traffic: Traffic,
    pub top_keys: Vec<KeyUsage>,
    /// Keys at or above their first warning level now, the most used first.
    pub near_quota: Vec<QuotaStanding>,
    /// How many more were near quota than listed.
    pub near_quota_more: usize,
    pub actions: Vec<ActionCount>,
    pub findings: Vec<FindingLine>,
    pub availability: Vec<Availability>,
}

/// Traffic of the whole fleet and per server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    pub total_bytes: u64,
    pub previous_total_bytes: u64,
    /// Percent change against the previous period; `None` when that had no traffic.
    pub change_percent: Option<f64>,
    pub servers: Vec<ServerTraffic>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerTraffic {
    pub server: String,
    pub total_bytes: u64,
    pub previous_total_bytes: u64,
    pub change_percent: Option<f64>,
    /// One entry per day of the period, zero where nothing was counted.
    pub daily: Vec<DayBytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayBytes {
    pub day: NaiveDate,
    pub bytes: u64,
}

/// One of the most used keys of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyUsage {
    pub server: String,
    pub name: String,
    pub uuid: String,
    /// Traffic in the report period.
    pub period_bytes: u64,
    /// Used in the key's current quota period, and its limit (`None`: account only).
    pub quota_used_bytes: Option<u64>,
    pub quota_limit_bytes: Option<u64>,
    pub quota_percent: Option<f64>,
}

/// A key near or over its quota, as the ledger has it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaStanding {
    pub server: String,
    pub name: String,
    pub uuid: String,
    pub used_bytes: u64,
    pub limit_bytes: u64,
    pub percent: f64,
    pub over: bool,
}

/// How often keywarden did something on a server, by action and result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    pub server: String,
    /// As in the audit log: sync (restarts Xray), verify_reality, quota_reset, quota_delete.
    pub action: String,
    pub result: String,
    pub count: u64,
}

/// A finding open at some time in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingLine {
    pub server: String,
    pub kind: String,
    pub severity: String,
    pub summary: String,
    pub first_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Raised in the period (else: already open when it began).
    pub raised_in_period: bool,
    /// Resolved in the period (else: still open at its end).
    pub resolved_in_period: bool,
    /// How long it was (or has been, at the period's end) open, in seconds.
    pub open_seconds: i64,
}

/// One availability series of one server over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    pub server: String,
    /// `api` today; data-plane checks add theirs.
    pub series: String,
    pub title: String,
    pub checks: u64,
    pub up: u64,
    /// Percent of checks that found it up; `None` without checks.
    pub percent: Option<f64>,
    /// Per day of the period: percent up, `None` where no check ran.
    pub daily: Vec<DayShare>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DayShare {
    pub day: NaiveDate,
    pub percent: Option<f64>,
}

/// Percent change from `before` to `now`; `None` when there was nothing before.
pub fn change_percent(before: u64, now: u64) -> Option<f64> {
    (before > 0).then(|| {
        let change = (now as f64 - before as f64) * 100.0 / before as f64;
        (change * 10.0).round() / 10.0
    })
}

/// `up` of `checks` as a percent with two decimals.
pub fn share(up: u64, checks: u64) -> Option<f64> {
    (checks > 0).then(|| (up as f64 * 10_000.0 / checks as f64).round() / 100.0)
}
