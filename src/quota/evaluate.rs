//! Thresholds and `on_exceed` for one key after its ledger was updated: which warnings
//! and which action this run brings. Pure code. Each crossing is noted in the entry
//! (`warned`, `exceeded_at`), so it is raised once per period (or allowance); a level
//! above the current use is armed again (the operator raised the limit).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ledger::Entry;
use crate::config::{OnExceed, QuotaPolicy};

/// A threshold event of this run, turned into a finding by the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// `warn_at` levels crossed this run (`crossed` ascending; the last is the highest).
    Warning {
        uuid: String,
        key_id: String,
        name: String,
        crossed: Vec<u8>,
        used: u64,
        limit: u64,
    },
    /// 100% crossed this run.
    Exceeded {
        uuid: String,
        key_id: String,
        name: String,
        used: u64,
        limit: u64,
        on_exceed: &'static str,
        /// With `delete`: when the key will be deleted if still over its limit.
        delete_at: Option<DateTime<Utc>>,
    },
    /// A delete waiting for its grace was called off: the key is under its limit again.
    DeleteCancelled {
        uuid: String,
        name: String,
        used: u64,
        limit: u64,
    },
}

/// What `on_exceed` asks for in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceedAction {
    /// Start a fresh allowance (and reset the server's counter).
    Reset,
    /// The grace is over and the key is still over its limit.
    Delete,
}

/// Used share of the limit, in whole percent (rounded down).
pub fn percent(used: u64, limit: u64) -> u64 {
    if limit == 0 {
        return 0;
    }
    u64::try_from(u128::from(used) * 100 / u128::from(limit)).unwrap_or(u64::MAX)
}

/// Thresholds of one key: updates the entry's marks, returns the notices and the action.
pub fn evaluate(
    entry: &mut Entry,
    policy: &QuotaPolicy,
    allow_delete: bool,
    now: DateTime<Utc>,
) -> (Vec<Notice>, Option<ExceedAction>) {
    let mut notices = Vec::new();
    let Some(limit) = policy.limit_bytes else {
        // Account only: nothing to cross (a limit lifted meanwhile disarms everything).
        entry.warned = 0;
        entry.exceeded_at = None;
        entry.delete_due = None;
        return (notices, None);
    };
    let percent = percent(entry.used, limit);
    rearm(entry, policy, percent, limit, &mut notices);
    let crossed: Vec<u8> = policy
        .warn_at
        .iter()
        .copied()
        .filter(|level| *level > entry.warned && u64::from(*level) <= percent)
        .collect();
    if let Some(&highest) = crossed.last() {
        entry.warned = highest;
        notices.push(Notice::Warning {
            uuid: entry.uuid.clone(),
            key_id: entry.key_id.clone(),
            name: entry.name.clone(),
            crossed,
            used: entry.used,
            limit,
        });
    }
    if entry.used < limit {
        return (notices, None);
    }
    let delete = policy.on_exceed == OnExceed::Delete && allow_delete;
    if entry.exceeded_at.is_none() {
        entry.exceeded_at = Some(now);
        // Checked: a grace too long to add is "never", not zero (it once wrapped to now).
        entry.delete_due = delete.then(|| crate::clock::later(now, policy.grace));
        notices.push(Notice::Exceeded {
            uuid: entry.uuid.clone(),
            key_id: entry.key_id.clone(),
            name: entry.name.clone(),
            used: entry.used,
            limit,
            on_exceed: policy.on_exceed.as_str(),
            delete_at: entry.delete_due,
        });
    }
    let action = match policy.on_exceed {
        OnExceed::Alert => None,
        OnExceed::Reset => Some(ExceedAction::Reset),
        OnExceed::Delete if delete => {
            // Over since before `delete` applied (a rule changed): the grace starts now.
            let due = *entry
                .delete_due
                .get_or_insert_with(|| crate::clock::later(now, policy.grace));
            (now >= due).then_some(ExceedAction::Delete)
        }
        OnExceed::Delete => None,
    };
    (notices, action)
}

/// Arm again what the current use is below: a warning level above it, and the exceeded
/// mark (calling off a delete waiting for its grace) when under the limit.
fn rearm(
    entry: &mut Entry,
    policy: &QuotaPolicy,
    percent: u64,
    limit: u64,
    notices: &mut Vec<Notice>,
) {
    if u64::from(entry.warned) > percent {
        entry.warned = policy
            .warn_at
            .iter()
            .copied()
            .filter(|level| u64::from(*level) <= percent)
            .max()
            .unwrap_or(0);
    }
    if entry.used < limit && entry.exceeded_at.take().is_some() && entry.delete_due.take().is_some()
    {
        notices.push(Notice::DeleteCancelled {
            uuid: entry.uuid.clone(),
            name: entry.name.clone(),
            used: entry.used,
            limit,
        });
    }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
