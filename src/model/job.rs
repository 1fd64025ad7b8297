//! The periodic jobs by kind, and job runs as they are recorded.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The periodic jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Health,
    ConfigSync,
    Reality,
    Quota,
    /// TLS handshakes with every VLESS port, from outside.
    Dataplane,
}

impl JobKind {
    /// Every job, in the order summaries list them.
    pub const ALL: [JobKind; 5] = [
        JobKind::Health,
        JobKind::ConfigSync,
        JobKind::Reality,
        JobKind::Quota,
        JobKind::Dataplane,
    ];

    /// The snake_case name used in the file (`skip_jobs`, `[jobs.*]`), logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Health => "health",
            JobKind::ConfigSync => "config_sync",
            JobKind::Reality => "reality",
            JobKind::Quota => "quota",
            JobKind::Dataplane => "dataplane",
        }
    }

    /// The job of a snake_case name.
    pub fn parse(name: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|job| job.as_str() == name)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Ran, nothing worse than info found.
    Ok,
    /// Ran; the worst finding is a warning.
    Warning,
    /// Ran; the worst finding is critical.
    Critical,
    /// Could not complete (the server did not answer, or an internal error).
    Error,
    /// Not run: the previous run was still going, or the server is backed off.
    Skipped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Warning => "warning",
            RunOutcome::Critical => "critical",
            RunOutcome::Error => "error",
            RunOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Ok,
            RunOutcome::Warning,
            RunOutcome::Critical,
            RunOutcome::Error,
            RunOutcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One job run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub server: String,
    pub job: JobKind,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    pub detail: String,
}

/// Who runs a job on a server now, across processes: the store's lease on (server,
/// job). The runner takes it before a run and gives it back after; one that was not
/// given back (the process died) may be taken over once it expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub server: String,
    pub job: JobKind,
    /// Which process and runner holds it ("keywarden run, pid 4242, runner 1").
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    /// Until when it holds unless renewed; after this anyone may take it over.
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for job in JobKind::ALL {
            assert_eq!(JobKind::parse(job.as_str()), Some(job));
            assert_eq!(serde_json::to_value(job).unwrap(), job.as_str());
        }
        assert_eq!(JobKind::parse("Health"), None);
        assert_eq!(format!("{:<8}|", JobKind::Quota), "quota   |");
    }
}
