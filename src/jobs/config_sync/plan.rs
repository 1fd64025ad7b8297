//! The pure decision of config_sync: observed reads + remembered streak + sync budget +
//! settings + now -> what to do. No IO and no clock.
//!
//! Decisions, in order: no drift -> in sync; fewer consecutive drifted reads than
//! `confirmations` -> wait; `auto_sync = false` -> blocked; a sync that would leave
//! config.json without any client -> blocked (too large to act on alone); the hourly
//! budget spent -> blocked; dry run -> blocked (it *would* sync); else sync.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::drift::{Drift, Read};
use crate::config::ConfigSyncJobConfig;
use crate::store::DriftMemory;

/// The sliding window of the sync budget (`max_syncs_per_hour`).
pub const SYNC_WINDOW: TimeDelta = TimeDelta::hours(1);

/// What `observe` saw: the server's answers and what the store remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub server: String,
    /// This run's reads, oldest first: one in daemon mode; in check mode up to
    /// `confirmations`, stopping after the first read in sync (so only the last may be).
    pub reads: Vec<Read>,
    /// Consecutive drifted reads of earlier runs (survives restarts).
    pub memory: DriftMemory,
    /// Sync attempts of the last hour that count against the budget, oldest first
    /// (attempts the server refused with 429 do not count: it did not sync).
    pub sync_attempts: Vec<DateTime<Utc>>,
    /// Consecutive syncs of this drift streak the server deferred with 429.
    pub deferrals: u32,
    /// The server has validate-sync (2.x).
    pub validate_sync: bool,
}

/// Why a confirmed drift is not synced now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocker {
    /// `[jobs.config_sync].auto_sync = false`: alert only.
    AutoSyncOff,
    /// The sync would remove every client from config.json (empty key store).
    WouldEmptyConfig,
    /// `max_syncs_per_hour` syncs in the last hour; the next is possible at `frees_at`.
    BudgetSpent {
        syncs: u32,
        max: u32,
        frees_at: DateTime<Utc>,
    },
    /// Dry run: the sync would happen now but is not sent.
    DryRun,
}

/// What config_sync does on one server in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Plan {
    /// config.json matches the key store: nothing to do, the streak resets.
    InSync,
    /// Drift seen `n` times in a row; a sync needs `of`.
    WaitForConfirmation { drift: Drift, n: u32, of: u32 },
    /// Confirmed drift: sync now.
    Sync { drift: Drift, confirmations: u32 },
    /// Confirmed drift that is not synced.
    Blocked { drift: Drift, reason: Blocker },
}

impl Plan {
    /// The drift of the latest read, if any.
    pub fn drift(&self) -> Option<&Drift> {
        match self {
            Plan::InSync => None,
            Plan::WaitForConfirmation { drift, .. }
            | Plan::Sync { drift, .. }
            | Plan::Blocked { drift, .. } => Some(drift),
        }
    }
}

/// Decide what to do. Any drift counts towards the streak, whatever its uuids: the file
/// is drifted either way; the signature is kept only to describe the streak.
pub fn plan(
    observed: &Observed,
    settings: &ConfigSyncJobConfig,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Plan {
    let Some(drift) = observed.reads.last().and_then(Drift::of) else {
        return Plan::InSync;
    };
    let n = streak(observed);
    let of = settings.confirmations.max(1);
    if n < of {
        return Plan::WaitForConfirmation { drift, n, of };
    }
    let reason = if !settings.auto_sync {
        Blocker::AutoSyncOff
    } else if drift.would_empty_config() {
        Blocker::WouldEmptyConfig
    } else if let Some(spent) =
        budget_spent(&observed.sync_attempts, settings.max_syncs_per_hour, now)
    {
        spent
    } else if dry_run {
        Blocker::DryRun
    } else {
        return Plan::Sync {
            drift,
            confirmations: n,
        };
    };
    Plan::Blocked { drift, reason }
}

/// Consecutive drifted reads up to and including this run's last read: this run's
/// trailing drifted reads, plus the remembered streak when every read of this run drifted.
pub fn streak(observed: &Observed) -> u32 {
    let reads = &observed.reads;
    let trailing = reads
        .iter()
        .rev()
        .take_while(|read| Drift::of(read).is_some())
        .count();
    let trailing = u32::try_from(trailing).unwrap_or(u32::MAX);
    match trailing {
        0 => 0,
        n if n as usize == reads.len() => observed.memory.confirmations.saturating_add(n),
        n => n,
    }
}

/// The streak to remember after this plan (before any sync: `execute` replaces it after
/// one, since a sync starts a new streak).
pub fn remember(observed: &Observed, plan: &Plan, now: DateTime<Utc>) -> DriftMemory {
    let Some(drift) = plan.drift() else {
        return DriftMemory::default();
    };
    let confirmations = streak(observed);
    let continued = observed.memory.confirmations > 0
        && confirmations as usize > observed.reads.len()
        && observed.memory.first_seen.is_some();
    DriftMemory {
        confirmations,
        first_seen: if continued {
            observed.memory.first_seen
        } else {
            Some(now)
        },
        signature: drift.signature(),
    }
}

/// `Some(BudgetSpent)` when `max` attempts fall within the last hour. The budget frees
/// when the oldest attempt that keeps it full leaves the window.
pub fn budget_spent(attempts: &[DateTime<Utc>], max: u32, now: DateTime<Utc>) -> Option<Blocker> {
    let mut live: Vec<DateTime<Utc>> = attempts
        .iter()
        .copied()
        .filter(|at| *at + SYNC_WINDOW > now)
        .collect();
    live.sort();
    let max = max.max(1);
    let used = u32::try_from(live.len()).unwrap_or(u32::MAX);
    (used >= max).then(|| Blocker::BudgetSpent {
        syncs: used,
        max,
        frees_at: live[live.len() - max as usize] + SYNC_WINDOW,
    })
}

#[cfg(test)]
mod tests {
    use super::super::drift::tests::{v1, v2, validation};
    use super::*;
    use crate::config::Schedule;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn minutes(m: i64) -> TimeDelta {
        TimeDelta::minutes(m)
    }

    fn settings(confirmations: u32, max: u32, auto_sync: bool) -> ConfigSyncJobConfig {
        ConfigSyncJobConfig {
            schedule: Schedule::parse("0 */5 * * * *").expect("schedule"),
            auto_sync,
            confirmations,
            max_syncs_per_hour: max,
            verify_reality_after_sync: false,
        }
    }

    fn observed(reads: Vec<Read>, remembered: u32, attempts: &[i64]) -> Observed {
        Observed {
            server: "fra-1".into(),
            reads,
            memory: DriftMemory {
                confirmations: remembered,
                first_seen: (remembered > 0).then(|| now() - minutes(5)),
                signature: String::new(),
            },
            sync_attempts: attempts.iter().map(|m| now() - minutes(*m)).collect(),
            deferrals: 0,
            validate_sync: false,
        }
    }

    fn drifted() -> Read {
        v1(false, &["a", "b"], &["a", "x"])
    }

    fn clean() -> Read {
        v1(true, &["a"], &["a"])
    }

    /// The plan's action, without the drift (checked elsewhere).
    #[derive(Debug, PartialEq)]
    enum Want {
        InSync,
        Wait(u32, u32),
        Sync(u32),
        Blocked(Blocker),
    }

    fn want(plan: &Plan) -> Want {
        match plan {
            Plan::InSync => Want::InSync,
            Plan::WaitForConfirmation { n, of, .. } => Want::Wait(*n, *of),
            Plan::Sync { confirmations, .. } => Want::Sync(*confirmations),
            Plan::Blocked { reason, .. } => Want::Blocked(reason.clone()),
        }
    }

    #[test]
    fn plans() {
        let spent = |syncs, max, frees_in: i64| {
            Want::Blocked(Blocker::BudgetSpent {
                syncs,
                max,
                frees_at: now() + minutes(frees_in),
            })
        };
        let empty_store = v1(false, &[], &["x"]);
        let v2_stale = v2(true, validation(&["b"], &[], &[]));
        let v2_after_sync = v2(false, validation(&[], &[], &[]));
        #[rustfmt::skip]
        let table: Vec<(&str, Observed, ConfigSyncJobConfig, bool, Want)> = vec![
            ("in sync", observed(vec![clean()], 0, &[]), settings(2, 4, true), false, Want::InSync),
            ("in sync resets a streak", observed(vec![clean()], 3, &[]), settings(2, 4, true), false, Want::InSync),
            ("first drifted read waits", observed(vec![drifted()], 0, &[]), settings(2, 4, true), false, Want::Wait(1, 2)),
            ("remembered read confirms", observed(vec![drifted()], 1, &[]), settings(2, 4, true), false, Want::Sync(2)),
            ("one confirmation syncs at once", observed(vec![drifted()], 0, &[]), settings(1, 4, true), false, Want::Sync(1)),
            ("check: re-reads confirm", observed(vec![drifted(), drifted()], 0, &[]), settings(2, 4, true), false, Want::Sync(2)),
            ("check: drift gone on re-read", observed(vec![drifted(), clean()], 1, &[]), settings(2, 4, true), false, Want::InSync),
            ("2.x witness beats stale status", observed(vec![v2_stale], 0, &[]), settings(1, 4, true), false, Want::Sync(1)),
            ("2.x stale unsynchronized is no drift", observed(vec![v2_after_sync], 2, &[]), settings(1, 4, true), false, Want::InSync),
            ("waiting comes before auto_sync off", observed(vec![drifted()], 0, &[]), settings(2, 4, false), false, Want::Wait(1, 2)),
            ("auto_sync off", observed(vec![drifted()], 1, &[]), settings(2, 4, false), false, Want::Blocked(Blocker::AutoSyncOff)),
            ("auto_sync off beats dry run", observed(vec![drifted()], 1, &[]), settings(2, 4, false), true, Want::Blocked(Blocker::AutoSyncOff)),
            ("empty key store", observed(vec![empty_store], 0, &[]), settings(1, 4, true), false, Want::Blocked(Blocker::WouldEmptyConfig)),
            ("budget spent", observed(vec![drifted()], 1, &[50, 10]), settings(2, 2, true), false, spent(2, 2, 10)),
            ("budget spent beats dry run", observed(vec![drifted()], 1, &[50, 10]), settings(2, 2, true), true, spent(2, 2, 10)),
            ("over budget frees with the right attempt", observed(vec![drifted()], 1, &[10, 40, 30]), settings(2, 2, true), false, spent(3, 2, 30)),
            ("old attempts leave the window", observed(vec![drifted()], 1, &[61, 60, 10]), settings(2, 2, true), false, Want::Sync(2)),
            ("budget left", observed(vec![drifted()], 1, &[10]), settings(2, 2, true), false, Want::Sync(2)),
            ("dry run would sync", observed(vec![drifted()], 1, &[]), settings(2, 4, true), true, Want::Blocked(Blocker::DryRun)),
        ];
        for (name, observed, settings, dry_run, expected) in table {
            let plan = plan(&observed, &settings, dry_run, now());
            assert_eq!(want(&plan), expected, "{name}");
        }
    }

    #[test]
    fn the_plan_carries_the_latest_drift() {
        let changed = v1(false, &["a", "b"], &["b"]);
        let observed = observed(vec![drifted(), changed.clone()], 0, &[]);
        let plan = plan(&observed, &settings(2, 4, true), false, now());
        assert_eq!(plan.drift(), Drift::of(&changed).as_ref());
        let json = serde_json::to_value(&plan).expect("serialize");
        assert_eq!(json["action"], "sync");
        assert_eq!(json["drift"]["missing_from_config"][0], "a");
        let blocked = Plan::Blocked {
            drift: Drift::of(&changed).expect("drift"),
            reason: Blocker::DryRun,
        };
        let json = serde_json::to_value(&blocked).expect("serialize");
        assert_eq!(
            (&json["action"], &json["reason"]["kind"]),
            (&"blocked".into(), &"dry_run".into())
        );
    }

    #[test]
    fn memory_counts_resets_and_keeps_the_first_sighting() {
        let settings = settings(3, 4, true);
        let fresh = observed(vec![drifted()], 0, &[]);
        let memory = remember(&fresh, &plan(&fresh, &settings, false, now()), now());
        assert_eq!(memory.confirmations, 1);
        assert_eq!(memory.first_seen, Some(now()));
        assert_eq!(memory.signature, "missing:b;extra:x;short_id:");

        let continued = observed(vec![drifted()], 1, &[]);
        let memory = remember(
            &continued,
            &plan(&continued, &settings, false, now()),
            now(),
        );
        assert_eq!(memory.confirmations, 2);
        assert_eq!(memory.first_seen, Some(now() - minutes(5)));

        let gone = observed(vec![clean()], 2, &[]);
        let memory = remember(&gone, &plan(&gone, &settings, false, now()), now());
        assert_eq!(memory, DriftMemory::default());

        let back = observed(vec![drifted(), clean(), drifted()], 2, &[]);
        assert_eq!(
            streak(&back),
            1,
            "a clean read in between breaks the streak"
        );
    }
}
