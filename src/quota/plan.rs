//! The quota plan of one server run: the ledger after this run's readings (periods rolled
//! over at their boundaries, catch-up included), the threshold notices, and the resets and
//! deletes to carry out, after the blast-radius guard. Pure: observed state + settings +
//! now in, data out; the job persists and executes it.
//!
//! Longer than 400 lines on purpose: the run's working state and its steps (accounting,
//! roll-over, evaluation, the guard) share that state; each step is a short function.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

pub use super::action::{Action, ActionKind, Reason};
use super::action::{Candidate, guard};
use super::evaluate::{ExceedAction, Notice, evaluate};
use super::ledger::{self, Accounted, Drop, Entry, HistoryRow, KeyInfo, Reading};
use super::period::{self, Window};
use super::plausible::{self, Implausible};
use super::rules::{self, RuleRef};
use crate::config::{AdoptMode, CounterResets, QuotaPolicy, QuotasConfig};
pub use crate::model::quota::ServerMemory;

/// One key as observed in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedKey {
    pub id: String,
    pub uuid: String,
    pub name: String,
    pub active: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub reading: Reading,
}

/// The ledger by uuid. A fast hasher (seeded per process): a run at 100 000 keys
/// hashes each uuid several times.
pub type Ledger = foldhash::HashMap<String, Entry>;

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct Observed {
    pub server: String,
    pub api_version: String,
    pub keys: Vec<ObservedKey>,
    /// The ledger by uuid (keys gone from the server included).
    pub ledger: Ledger,
    pub memory: ServerMemory,
}

/// The settings the planner needs.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub quotas: &'a QuotasConfig,
    pub tz: Tz,
    pub allow_delete: bool,
    pub counter_resets: CounterResets,
    pub dry_run: bool,
}

/// Whether resets also call the server this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ServerResets {
    Call,
    /// `counter_resets = "never"`.
    Never,
    /// `auto`, after every reset of the last period was ignored by this API version.
    Suspended {
        version: String,
    },
}

/// The ledger after this run (to commit as one transaction with the intents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Every entry seen or newly gone in this run.
    pub entries: Vec<Entry>,
    pub history: Vec<HistoryRow>,
    /// Unexpected counter drops (`counter_reset_seen`).
    pub drops: Vec<Drop>,
    /// Readings not believed (`traffic_reading_implausible`); those keys were left alone.
    pub implausible: Vec<Rejected>,
    /// Keys left alone because their id or uuid also names another key.
    pub ambiguous: usize,
    pub adopted: usize,
    pub failed_readings: usize,
    pub growth: u64,
    /// Growth per key uuid (keys that grew in this run; adoptions are not growth): the
    /// report's daily totals.
    pub growth_by_key: Vec<(String, u64)>,
    /// Some key's counter changed in this run.
    pub changed: bool,
    /// Some key reported open connections.
    pub connections: bool,
}

/// A reading of one key that was not believed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub uuid: String,
    pub name: String,
    /// The last counter the ledger holds (what the reading would have moved from).
    pub previous: Option<u64>,
    pub why: Implausible,
}

/// The decisions of this run: printed by `check`/dry runs, asserted in tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Held back by the blast-radius guard.
    pub blocked: Vec<Action>,
    pub notices: Vec<Notice>,
    pub server_resets: ServerResets,
    /// Keys that started a new period in this run.
    pub boundaries: usize,
    /// Fresh allowances and periods started in the ledger without a server reset.
    pub ledger_only_resets: usize,
    /// `auto` tries resets again: the API version changed since they were suspended.
    pub resets_resumed: bool,
    pub dry_run: bool,
}

impl Plan {
    /// Nothing to do and nothing to say.
    pub fn is_quiet(&self) -> bool {
        self.actions.is_empty() && self.blocked.is_empty() && self.notices.is_empty()
    }
}

/// Plan one run on one server.
pub fn plan(
    observed: &Observed,
    settings: &Settings<'_>,
    now: DateTime<Utc>,
) -> (Accounting, Plan) {
    let server_resets = server_resets(observed, settings);
    let mut run = Run {
        observed,
        settings,
        now,
        windows: HashMap::new(),
        accounting: Accounting::default(),
        candidates: Vec::new(),
        notices: Vec::new(),
        boundaries: 0,
        ledger_only: 0,
        resets_allowed: server_resets == ServerResets::Call,
    };
    let mut by_uuid: foldhash::HashMap<&str, Entry> =
        foldhash::HashMap::with_capacity_and_hasher(observed.keys.len(), Default::default());
    for key in &observed.keys {
        if let Some(entry) = run.key(key) {
            by_uuid.insert(key.uuid.as_str(), entry);
        }
    }
    let (actions, blocked) = guard(run.candidates, observed.keys.len());
    let mut accounting = run.accounting;
    let ledger_only = run.ledger_only
        + actions
            .iter()
            .filter(|a| a.kind == ActionKind::Reset && !a.call_server)
            .count();
    if !settings.dry_run {
        for action in &actions {
            let Some(entry) = by_uuid.get_mut(action.uuid.as_str()) else {
                continue;
            };
            if action.reason == Reason::Exceeded {
                start_allowance(entry, now);
            }
            if action.kind == ActionKind::Reset && action.call_server {
                entry.expect_drop = true;
            }
        }
    }
    accounting.entries = by_uuid.into_values().collect();
    accounting.entries.extend(gone(observed, now));
    let plan = Plan {
        actions,
        blocked,
        notices: run.notices,
        resets_resumed: resumed(observed, settings),
        server_resets,
        boundaries: run.boundaries,
        ledger_only_resets: ledger_only,
        dry_run: settings.dry_run,
    };
    (accounting, plan)
}

/// Only the account step of [`plan`]: this run's readings into the ledger (new keys
/// adopted), with no period roll-over, no thresholds and no actions. For reading the
/// counters in right before an action restarts Xray (a restart can zero them); the next
/// full run rolls periods over and evaluates thresholds from the ledger as usual.
pub fn account_only(
    observed: &Observed,
    settings: &Settings<'_>,
    now: DateTime<Utc>,
) -> Accounting {
    let mut run = Run {
        observed,
        settings,
        now,
        windows: HashMap::new(),
        accounting: Accounting::default(),
        candidates: Vec::new(),
        notices: Vec::new(),
        boundaries: 0,
        ledger_only: 0,
        resets_allowed: false,
    };
    let mut entries = Vec::with_capacity(observed.keys.len());
    for key in &observed.keys {
        let quotas = settings.quotas;
        let rule = rules::matching(quotas, &observed.server, &key.id, &key.uuid, &key.name);
        let window = run.window(rule, rule.policy(quotas));
        entries.extend(run.account(key, &window).map(|(entry, _)| entry));
    }
    let mut accounting = run.accounting;
    accounting.entries = entries;
    accounting
}

fn start_allowance(entry: &mut Entry, now: DateTime<Utc>) {
    ledger::fresh_allowance(entry);
    entry.exceed_resets = entry.exceed_resets.saturating_add(1);
    entry.last_reset = Some(now);
}

/// What this run's reading did to a key's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Seen for the first time: taken into the ledger.
    Adopted,
    /// Counted as usual.
    Counted,
    /// Left as it was: the reading failed, was ambiguous or was not believed.
    Untouched,
}

/// The per-run working state.
struct Run<'a> {
    observed: &'a Observed,
    settings: &'a Settings<'a>,
    now: DateTime<Utc>,
    windows: HashMap<RuleRef, Window>,
    accounting: Accounting,
    candidates: Vec<Candidate>,
    notices: Vec<Notice>,
    boundaries: usize,
    ledger_only: usize,
    /// `counter_resets` lets this run call the server's reset.
    resets_allowed: bool,
}

impl Run<'_> {
    /// Account, roll over and evaluate one key; its entry afterwards (`None`: no reading
    /// and no ledger yet).
    fn key(&mut self, key: &ObservedKey) -> Option<Entry> {
        let quotas = self.settings.quotas;
        let rule = rules::matching(quotas, &self.observed.server, &key.id, &key.uuid, &key.name);
        let policy = rule.policy(quotas);
        let window = self.window(rule, policy);
        let (mut entry, step) = self.account(key, &window)?;
        if step == Step::Untouched {
            // Untouched this run: a boundary is handled (caught up) at the next reading,
            // so no traffic of the ending period is lost to a reset.
            return Some(entry);
        }
        if let Some(start) = window.start.filter(|start| *start > entry.period_start) {
            self.roll_over(key, &mut entry, start);
        }
        let (notices, action) = evaluate(&mut entry, policy, self.settings.allow_delete, self.now);
        self.notices.extend(notices);
        // keywarden does not act on history it did not see: a key adopted in this run
        // is never reset or deleted in it (`adopt = "count"` may put it over its limit).
        let action = action.filter(|_| step != Step::Adopted);
        if let Some(action) = action {
            let (kind, reason, allowance) = match action {
                // The allowance this reset ends: each one's intent has its own key.
                ExceedAction::Reset => {
                    (ActionKind::Reset, Reason::Exceeded, entry.exceed_resets + 1)
                }
                ExceedAction::Delete => (ActionKind::Delete, Reason::GraceEnded, 0),
            };
            // 1.x refuses traffic calls for inactive keys; the ledger is the truth anyway.
            let call_server = kind == ActionKind::Delete || (self.resets_allowed && key.active);
            let mut action = action_for(&entry, kind, reason, entry.period_start, call_server);
            action.allowance = allowance;
            self.candidates.push(Candidate {
                action,
                allow_mass: policy.allow_mass,
            });
        }
        Some(entry)
    }

    fn window(&mut self, rule: RuleRef, policy: &QuotaPolicy) -> Window {
        let (tz, now) = (self.settings.tz, self.now);
        *self
            .windows
            .entry(rule)
            .or_insert_with(|| period::window(policy, tz, now))
    }

    /// The entry after this run's reading: the ledger's, or a new one (adoption), and
    /// what the reading did to it.
    fn account(&mut self, key: &ObservedKey, window: &Window) -> Option<(Entry, Step)> {
        let info = KeyInfo {
            id: &key.id,
            uuid: &key.uuid,
            name: &key.name,
        };
        match key.reading {
            Reading::Failed => self.accounting.failed_readings += 1,
            Reading::Ambiguous => self.accounting.ambiguous += 1,
            Reading::Counter {
                connections: Some(n),
                ..
            } => self.accounting.connections |= n > 0,
            _ => {}
        }
        let adopt = self.settings.quotas.adopt;
        let Some(previous) = self.observed.ledger.get(&key.uuid) else {
            if let Reading::Counter { bytes, .. } = key.reading
                && let Err(why) = plausible::check_first(bytes)
            {
                self.reject(key, None, why);
                return None;
            }
            // A lifetime quota (or a cron that never fired) counts from first sight.
            let start = window.start.unwrap_or(self.now);
            let mut entry = ledger::adopt(&info, key.reading, start, self.now)?;
            if adopt == AdoptMode::Baseline {
                // The counter holds traffic from before keywarden saw the key.
                entry.used = 0;
                entry.period_total = 0;
            }
            self.accounting.adopted += 1;
            self.accounting.changed = true;
            return Some((entry, Step::Adopted));
        };
        let mut entry = previous.clone();
        if let (None, Reading::Counter { bytes, .. }, AdoptMode::Baseline) =
            (entry.counter, key.reading, adopt)
            && entry.adopted
            && plausible::check_first(bytes).is_ok()
        {
            // The first figure of a key adopted while idle (1.x): cumulative since the
            // key was created, so it is the baseline, not usage.
            entry.counter = Some(bytes);
        }
        let sync_at = self.observed.memory.sync_noted_at;
        let Accounted {
            growth,
            changed,
            drop,
            rejected,
        } = ledger::account(&mut entry, &info, key.reading, sync_at, self.now);
        if let Some(why) = rejected {
            self.reject(key, previous.counter, why);
            return Some((entry, Step::Untouched));
        }
        if matches!(key.reading, Reading::Failed | Reading::Ambiguous) {
            return Some((entry, Step::Untouched));
        }
        self.accounting.growth = self.accounting.growth.saturating_add(growth);
        if growth > 0 {
            self.accounting
                .growth_by_key
                .push((entry.uuid.clone(), growth));
        }
        self.accounting.changed |= changed;
        self.accounting.drops.extend(drop);
        Some((entry, Step::Counted))
    }

    fn reject(&mut self, key: &ObservedKey, previous: Option<u64>, why: Implausible) {
        self.accounting.implausible.push(Rejected {
            uuid: key.uuid.clone(),
            name: key.name.clone(),
            previous,
            why,
        });
    }

    /// A boundary passed since the entry's period started (once, however many passed
    /// while keywarden was down): history, a new period, and the server counter reset.
    fn roll_over(&mut self, key: &ObservedKey, entry: &mut Entry, start: DateTime<Utc>) {
        self.accounting
            .history
            .push(ledger::roll_over(entry, start, self.now));
        self.boundaries += 1;
        // A counter that started after the boundary holds only this period's traffic;
        // 1.x refuses traffic calls for inactive keys (and their counters do not move).
        let created_after = key.created_at.is_some_and(|created| created >= start);
        if !self.resets_allowed || !key.active || created_after {
            self.ledger_only += 1;
            return;
        }
        self.candidates.push(Candidate {
            action: action_for(entry, ActionKind::Reset, Reason::Boundary, start, true),
            allow_mass: true,
        });
    }
}

fn action_for(
    entry: &Entry,
    kind: ActionKind,
    reason: Reason,
    period_start: DateTime<Utc>,
    call_server: bool,
) -> Action {
    Action {
        kind,
        reason,
        call_server,
        uuid: entry.uuid.clone(),
        key_id: entry.key_id.clone(),
        name: entry.name.clone(),
        period_start,
        allowance: 0,
        counter_before: entry.counter,
    }
}

/// Keys in the ledger that the server no longer lists: marked gone (once).
fn gone(observed: &Observed, now: DateTime<Utc>) -> Vec<Entry> {
    let listed: foldhash::HashSet<&str> = observed.keys.iter().map(|k| k.uuid.as_str()).collect();
    observed
        .ledger
        .values()
        .filter(|entry| entry.gone_at.is_none() && !listed.contains(entry.uuid.as_str()))
        .map(|entry| Entry {
            gone_at: Some(now),
            ..entry.clone()
        })
        .collect()
}

fn server_resets(observed: &Observed, settings: &Settings<'_>) -> ServerResets {
    match settings.counter_resets {
        CounterResets::Never => ServerResets::Never,
        CounterResets::Always => ServerResets::Call,
        CounterResets::Auto => match &observed.memory.resets_suspended_version {
            Some(version) if *version == observed.api_version => ServerResets::Suspended {
                version: version.clone(),
            },
            _ => ServerResets::Call,
        },
    }
}

fn resumed(observed: &Observed, settings: &Settings<'_>) -> bool {
    settings.counter_resets == CounterResets::Auto
        && observed
            .memory
            .resets_suspended_version
            .as_ref()
            .is_some_and(|version| *version != observed.api_version)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
