//! The usage ledger of one key on one server: what keywarden counted, independent of what
//! the server's counter does. Pure arithmetic on readings; the store persists entries.
//!
//! Rules: growth of the counter is added; a drop (someone else's reset, an Xray restart)
//! adds the new value, since the counter restarted from zero, so nothing is lost or counted
//! twice; a failed reading changes nothing, and neither does an implausible one (see
//! `plausible`): the ledger never saturates. A key seen for the first time is adopted;
//! what its counter then counts for is `quotas.adopt` (the planner applies it).

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::model::quota::{Entry, HistoryRow};

use super::plausible::{self, Implausible};

/// One key's counter as observed in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reading {
    /// The counter, and the open connections when the server says.
    Counter {
        bytes: u64,
        connections: Option<u64>,
    },
    /// Absent from the 1.x bulk answer: no new traffic (not zero).
    Idle,
    /// The read failed: leave the ledger alone.
    Failed,
    /// The key's id or uuid also names another key: nothing read can be trusted to be
    /// this key's, so the ledger is left alone (see `identity`).
    Ambiguous,
}

/// A drop of the counter keywarden did not cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drop {
    pub uuid: String,
    pub name: String,
    pub from: u64,
    pub to: u64,
}

/// What a reading did to an entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accounted {
    /// Bytes added to the period.
    pub growth: u64,
    /// The counter changed.
    pub changed: bool,
    /// An unexpected drop (to report as `counter_reset_seen`).
    pub drop: Option<Drop>,
    /// The reading was not believed; the entry's figures are unchanged.
    pub rejected: Option<Implausible>,
}

/// The key as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo<'a> {
    pub id: &'a str,
    pub uuid: &'a str,
    pub name: &'a str,
}

/// A new entry for a key seen for the first time: its counter counts as usage of the
/// period that started at `period_start`.
pub fn adopt(
    key: &KeyInfo<'_>,
    reading: Reading,
    period_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Entry> {
    let counter = match reading {
        Reading::Counter { bytes, .. } if plausible::check_first(bytes).is_err() => return None,
        Reading::Counter { bytes, .. } => Some(bytes),
        Reading::Idle => None,
        Reading::Failed | Reading::Ambiguous => return None,
    };
    let used = counter.unwrap_or(0);
    Some(Entry {
        uuid: key.uuid.to_owned(),
        key_id: key.id.to_owned(),
        name: key.name.to_owned(),
        counter,
        used,
        period_total: used,
        period_start,
        adopted: true,
        warned: 0,
        exceeded_at: None,
        exceed_resets: 0,
        delete_due: None,
        expect_drop: false,
        last_reset: None,
        first_seen: now,
        read_at: Some(now),
        changed_at: Some(now),
        gone_at: None,
    })
}

/// Apply this run's reading. `sync_at`: when config_sync last restarted Xray on this
/// server (a drop across it is expected).
pub fn account(
    entry: &mut Entry,
    key: &KeyInfo<'_>,
    reading: Reading,
    sync_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Accounted {
    entry.gone_at = None;
    // Usually unchanged: no new string per key and run.
    if entry.key_id != key.id {
        entry.key_id = key.id.to_owned();
    }
    if entry.name != key.name {
        entry.name = key.name.to_owned();
    }
    let bytes = match reading {
        Reading::Failed | Reading::Ambiguous => return Accounted::default(),
        Reading::Idle => {
            entry.read_at = Some(now);
            return Accounted::default();
        }
        Reading::Counter { bytes, .. } => bytes,
    };
    if let Err(why) = plausible::check(entry, bytes, now) {
        return Accounted {
            rejected: Some(why),
            ..Accounted::default()
        };
    }
    let expected = entry.expect_drop || sync_at.is_some_and(|at| entry.read_at <= Some(at));
    let (growth, drop) = match entry.counter {
        // First figure for a key adopted while idle: all of it is this period's.
        None => (bytes, None),
        Some(last) if bytes >= last => (bytes - last, None),
        Some(last) => {
            let drop = (!expected).then(|| Drop {
                uuid: entry.uuid.clone(),
                name: entry.name.clone(),
                from: last,
                to: bytes,
            });
            (bytes, drop)
        }
    };
    let changed = entry.counter != Some(bytes);
    entry.counter = Some(bytes);
    entry.used = entry.used.saturating_add(growth);
    entry.period_total = entry.period_total.saturating_add(growth);
    entry.expect_drop = false;
    entry.read_at = Some(now);
    if changed {
        entry.changed_at = Some(now);
    }
    Accounted {
        growth,
        changed,
        drop,
        rejected: None,
    }
}

/// End the entry's period at `new_start` (a boundary): the finished period goes to the
/// history and a new one starts from zero with every threshold armed again.
pub fn roll_over(entry: &mut Entry, new_start: DateTime<Utc>, now: DateTime<Utc>) -> HistoryRow {
    let history = HistoryRow {
        uuid: entry.uuid.clone(),
        key_id: entry.key_id.clone(),
        name: entry.name.clone(),
        period_start: entry.period_start,
        period_end: new_start,
        total: entry.period_total,
        used: entry.used,
        adopted: entry.adopted,
    };
    entry.period_start = new_start;
    entry.period_total = 0;
    entry.adopted = false;
    entry.exceed_resets = 0;
    entry.last_reset = Some(now);
    fresh_allowance(entry);
    history
}

/// A fresh allowance within the period (`on_exceed = "reset"`, or a new period).
pub fn fresh_allowance(entry: &mut Entry) {
    entry.used = 0;
    entry.warned = 0;
    entry.exceeded_at = None;
    entry.delete_due = None;
}

/// 1 MiB: a counter at or below this after a reset counts as reset (connections still
/// open add a little).
pub const RESET_SLACK_BYTES: u64 = 1024 * 1024;

/// Whether a counter read back after a reset shows the reset took effect: it dropped to
/// at most max(1 MiB, 1% of what it was).
pub fn reset_applied(before: Option<u64>, after: u64) -> bool {
    after <= RESET_SLACK_BYTES.max(before.unwrap_or(0) / 100)
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
