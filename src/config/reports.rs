//! Typed `[reports]` settings: when the usage report is sent, what it covers and where.

use super::schedule::Schedule;

/// What a scheduled report covers (the CLI also takes a month, `YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportPeriodKind {
    /// Monday to Sunday before the report's day, in the agent's time zone.
    LastWeek,
    /// The calendar month before the report's day.
    LastMonth,
}

impl ReportPeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportPeriodKind::LastWeek => "last-week",
            ReportPeriodKind::LastMonth => "last-month",
        }
    }
}

/// `[reports]`
#[derive(Debug, Clone, PartialEq)]
pub struct ReportsConfig {
    /// When the scheduled report is sent (agent's time zone).
    pub schedule: Schedule,
    /// What a scheduled report covers.
    pub period: ReportPeriodKind,
    /// Email and webhook sinks (by name) the scheduled report goes to; empty: none is sent.
    pub sinks: Vec<String>,
    /// How many keys "top keys" lists.
    pub top_keys: usize,
}
