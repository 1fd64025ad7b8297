//! What a job run tells the metrics: typed facts, returned with the run's result. Jobs
//! say what happened; `jobs::metrics::MetricsObserver` alone turns facts into series, so
//! neither the runner nor the jobs know a metric's name or labels.

use std::time::Duration;

use crate::model::quota::{ActionKind, IntentOutcome};

/// One fact of one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// health: whether the server answered.
    ServerUp(bool),
    /// config_sync: the run found config.json drifted.
    DriftDetected,
    /// config_sync: what a sync came to.
    Sync(SyncResult),
    /// config_sync: syncs still allowed in the budget's window after this run.
    SyncBudgetLeft(u32),
    /// quota: a reset or delete finished.
    QuotaAction {
        kind: ActionKind,
        outcome: IntentOutcome,
    },
    /// health (2.x): whether Xray was running at the end of the run.
    XrayUp(bool),
    /// dataplane: VLESS ports probed, how many completed a verified handshake, and the
    /// handshake durations of those.
    VlessPorts {
        probed: usize,
        open: usize,
        latencies: Vec<Duration>,
    },
    /// quota, with `metrics_per_key`: a key's usage after the run, and its limit.
    KeyUsage {
        uuid: String,
        used: u64,
        limit: Option<u64>,
    },
}

/// What a sync came to, as the `syncs` metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncResult {
    /// In sync afterwards.
    Repaired,
    /// The server synced; the drift stayed.
    Persists,
    /// The sync failed, or the rate limiter refused it several times in a row.
    Failed,
}

impl SyncResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncResult::Repaired => "repaired",
            SyncResult::Persists => "persists",
            SyncResult::Failed => "failed",
        }
    }
}
