//! Counters across restarts: Xray keeps its traffic counters in memory, so an action that
//! restarts it (a sync, a restart of a stopped Xray, fix-reality-keys) can zero them.
//! Right before such an action, every key's counter is read into the ledger with this
//! job's own observe and account steps (no period roll-over, no thresholds, no actions:
//! the next quota run does those), so the restart loses nothing.

use chrono::{DateTime, Utc};

use super::observe::{self, ObserveError};
use crate::jobs::JobContext;
use crate::model::JobKind;
use crate::quota::plan::{ServerMemory, account_only};
use crate::store::QuotaCommit;

/// How reading the counters in before a restart went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreRead {
    /// Every readable counter is in the ledger.
    Accounted { keys: usize },
    /// The quota job does not run on this server (`skip_jobs`): nothing to keep.
    NotAccounted,
    /// The read (or the ledger write) failed; the action goes ahead anyway.
    Failed { error: String },
}

impl PreRead {
    /// The sentence a finding carries when usage may have been lost.
    pub fn loss_note(&self) -> Option<String> {
        match self {
            PreRead::Failed { error } => Some(format!(
                "Note: reading the traffic counters before restarting Xray failed ({error}); the restart went ahead (users come first), so usage since the last quota run may be lost if the restart zeroed the counters."
            )),
            _ => None,
        }
    }
}

/// Read every key's counter into the ledger now. Never fails the caller's action.
pub async fn account_before_restart(ctx: &JobContext<'_>) -> PreRead {
    let server = ctx.server.name.as_str();
    if !ctx.server.runs(JobKind::Quota) {
        return PreRead::NotAccounted;
    }
    let observed: Result<_, ObserveError> = match observe::remembered(ctx).await {
        Ok(remembered) => observe::observe(ctx, remembered.ledger, remembered.memory)
            .await
            .map_err(ObserveError::from),
        Err(error) => Err(error.into()),
    };
    let observed = match observed {
        Ok(observed) => observed,
        Err(error) => {
            tracing::warn!(server, %error, "quota: counters could not be read before a restart");
            return PreRead::Failed {
                error: error.to_string(),
            };
        }
    };
    let now = ctx.clock.now();
    let accounting = account_only(&observed, &super::settings(ctx), now);
    // A key whose counter dropped unexpectedly is left to the next quota run, which
    // reports the drop; everything else is counted now.
    let dropped: Vec<&str> = accounting.drops.iter().map(|d| d.uuid.as_str()).collect();
    let entries: Vec<_> = accounting
        .entries
        .iter()
        .filter(|entry| !dropped.contains(&entry.uuid.as_str()))
        .cloned()
        .collect();
    let memory = memory_after(&observed.memory, accounting.changed, now);
    // The growth read now counts on today's date, as a quota run's would.
    let daily: Vec<_> = super::daily_usage(&accounting, now, ctx.config.agent.timezone)
        .into_iter()
        .filter(|row| !dropped.contains(&row.uuid.as_str()))
        .collect();
    let keys = entries.len();
    let commit = QuotaCommit {
        entries,
        history: Vec::new(),
        intents: Vec::new(),
        memory,
        api_version: observed.api_version.clone(),
        now,
        read_at: Some(now),
        reread: Vec::new(),
        daily,
    };
    match ctx.store.quota().commit(server, commit).await {
        Ok(()) => {
            tracing::debug!(server, keys, "quota: counters read in before a restart");
            PreRead::Accounted { keys }
        }
        Err(error) => {
            tracing::error!(server, %error, "quota: cannot write the counters read before a restart");
            PreRead::Failed {
                error: error.to_string(),
            }
        }
    }
}

fn memory_after(previous: &ServerMemory, changed: bool, now: DateTime<Utc>) -> ServerMemory {
    ServerMemory {
        traffic_changed_at: match (changed, previous.traffic_changed_at) {
            (false, Some(at)) => Some(at),
            _ => Some(now),
        },
        ..previous.clone()
    }
}
