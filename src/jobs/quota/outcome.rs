//! What a quota run reports: its plan lines (what was counted, decided and done) and its
//! findings (notices, drops, the guard, deletes, the reset digest, staleness).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::execute::Finished;
use super::observe::{self, STALE_AFTER};
use super::report;
use crate::jobs::{Fact, JobContext, JobResult};
use crate::model::quota::Entry;
use crate::model::{Finding, stamp};
use crate::quota::plan::{Accounting, Observed, ServerResets};
use crate::quota::{self, Plan, human_bytes, identity, period, rules};

/// What one run saw, decided and did.
#[derive(Clone, Copy)]
pub struct Seen<'a> {
    pub observed: &'a Observed,
    pub accounting: &'a Accounting,
    pub plan: &'a Plan,
    pub finished: &'a Finished,
    /// `auto` stopped calling reset on this server in this run.
    pub suspended: bool,
    /// The `reset_not_applied` digest is due (and recorded) in this run.
    pub digest: bool,
}

/// The run's result: plan lines and findings.
pub fn report(ctx: &JobContext<'_>, seen: &Seen<'_>) -> JobResult {
    let mut result = JobResult::default();
    summarize(ctx, seen, &mut result);
    findings(ctx, seen, &mut result);
    result
}

/// Findings about intents finished from a run that died (and deletes): raised even when
/// the rest of this run fails.
pub fn deleted_findings(server: &str, finished: &Finished, out: &mut Vec<Finding>) {
    for (action, already_gone) in &finished.deleted {
        out.push(report::deleted(server, action, *already_gone));
    }
    if !finished.uncertain.is_empty() {
        out.push(report::uncertain(server, &finished.uncertain));
    }
}

/// Plan lines: what was counted, decided and done.
fn summarize(ctx: &JobContext<'_>, seen: &Seen<'_>, result: &mut JobResult) {
    let Seen {
        observed,
        accounting,
        plan,
        finished,
        ..
    } = *seen;
    let server = ctx.server.name.as_str();
    let mut line = format!(
        "{server}: {} keys accounted, {} counted this run",
        observed.keys.len(),
        human_bytes(accounting.growth)
    );
    let mut extra = |n: usize, what: &str| {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    };
    extra(accounting.adopted, "adopted");
    extra(plan.boundaries, "started a new period");
    extra(finished.resets(), "counter resets");
    extra(finished.applied, "verified");
    extra(finished.not_applied.len(), "not applied");
    extra(finished.uncertain.len(), "uncertain after a crash");
    extra(finished.unfinished, "left for the next run");
    extra(accounting.failed_readings, "readings failed");
    extra(accounting.ambiguous, "left alone (shared id or uuid)");
    extra(accounting.implausible.len(), "readings not believed");
    result.plan.push(line);
    match &plan.server_resets {
        ServerResets::Never if plan.ledger_only_resets > 0 => result.plan.push(format!(
            "{server}: counter_resets = \"never\": {} period(s) started in the ledger only",
            plan.ledger_only_resets
        )),
        ServerResets::Suspended { version } if plan.ledger_only_resets > 0 => result.plan.push(format!(
            "{server}: not calling reset (API {version} ignored every reset); the ledger started {} period(s)",
            plan.ledger_only_resets
        )),
        _ => {}
    }
    if plan.resets_resumed {
        result.plan.push(format!(
            "{server}: the API version changed: trying counter resets again"
        ));
    }
    let mut lines: Vec<String> = plan
        .notices
        .iter()
        .map(|n| report::notice_line(server, n))
        .collect();
    lines.extend(
        plan.actions
            .iter()
            .filter(|a| a.call_server)
            .map(|a| report::action_line(server, a, ctx.dry_run)),
    );
    lines.extend(
        plan.blocked
            .iter()
            .map(|a| format!("BLOCKED {}", report::action_line(server, a, true))),
    );
    lines.extend(finished.failed_deletes.iter().map(|(a, error)| {
        format!(
            "{server}: delete of key {} failed: {error}",
            report::key_label(&a.name, &a.uuid)
        )
    }));
    result.plan.extend(report::capped(lines));
}

/// The run's findings.
fn findings(ctx: &JobContext<'_>, seen: &Seen<'_>, result: &mut JobResult) {
    let server = ctx.server.name.as_str();
    let out = &mut result.findings;
    if !seen.accounting.drops.is_empty() {
        out.push(report::drops(server, &seen.accounting.drops));
    }
    if seen.accounting.ambiguous > 0 {
        let keys = seen
            .observed
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.uuid.as_str()));
        out.push(report::ambiguous(server, &identity::ambiguity(keys)));
    }
    if !seen.accounting.implausible.is_empty() {
        out.push(report::implausible(server, &seen.accounting.implausible));
    }
    for notice in &seen.plan.notices {
        let next = next_reset(ctx, seen.observed, notice);
        out.extend(report::notice(
            server,
            notice,
            ctx.config.agent.timezone,
            next,
        ));
    }
    if !seen.plan.blocked.is_empty() {
        out.push(report::blocked(
            server,
            &seen.plan.blocked,
            seen.observed.keys.len(),
        ));
    }
    deleted_findings(server, seen.finished, out);
    if seen.digest {
        out.push(report::not_applied(
            server,
            &seen.finished.not_applied,
            seen.finished.applied,
            seen.suspended,
        ));
    }
    let changed_at = match seen.accounting.changed {
        true => None,
        false => seen.observed.memory.traffic_changed_at,
    };
    if observe::frozen(changed_at, seen.accounting.connections, ctx.clock.now()) {
        let why = format!(
            "no key's traffic counter changed for {} h while the server reports open connections",
            STALE_AFTER.num_hours()
        );
        out.push(report::stale(server, &why));
    }
}

/// The next reset of a notice's key (for its text).
fn next_reset(
    ctx: &JobContext<'_>,
    observed: &Observed,
    notice: &quota::Notice,
) -> Option<DateTime<Utc>> {
    let uuid = match notice {
        quota::Notice::Warning { uuid, .. } | quota::Notice::Exceeded { uuid, .. } => uuid,
        quota::Notice::DeleteCancelled { .. } => return None,
    };
    let key = observed.keys.iter().find(|k| &k.uuid == uuid)?;
    let quotas = &ctx.config.quotas;
    let policy =
        rules::matching(quotas, &ctx.server.name, &key.id, &key.uuid, &key.name).policy(quotas);
    period::window(policy, ctx.config.agent.timezone, ctx.clock.now()).next
}

/// What the run tells the metrics: every reset and delete finished, and with
/// `metrics_per_key` each key's usage after the run (`entries`, as the verifications left
/// them) and its limit.
pub fn facts(ctx: &JobContext<'_>, finished: &Finished, entries: &[Entry]) -> Vec<Fact> {
    let mut facts: Vec<Fact> = finished
        .outcomes
        .iter()
        .map(|&(kind, outcome)| Fact::QuotaAction { kind, outcome })
        .collect();
    if !ctx.config.agent.metrics_per_key {
        return facts;
    }
    let changed: HashMap<&str, &Entry> = finished
        .changed
        .iter()
        .map(|entry| (entry.uuid.as_str(), entry))
        .collect();
    let quotas = &ctx.config.quotas;
    let server = ctx.server.name.as_str();
    for entry in entries {
        let entry = changed.get(entry.uuid.as_str()).copied().unwrap_or(entry);
        if entry.gone_at.is_some() {
            continue;
        }
        let rule = rules::matching(quotas, server, &entry.key_id, &entry.uuid, &entry.name);
        facts.push(Fact::KeyUsage {
            uuid: entry.uuid.clone(),
            used: entry.used,
            limit: rule.policy(quotas).limit_bytes,
        });
    }
    facts
}

/// The periods of this run's resets that did not take effect whose `reset_not_applied`
/// digest was not raised yet (pure): the digest is due when there is any.
pub fn new_digest_periods(finished: &Finished, raised: &HashSet<String>) -> Vec<String> {
    let periods: BTreeSet<String> = finished
        .not_applied
        .iter()
        .map(|r| stamp(r.action.period_start))
        .filter(|period| !raised.contains(period))
        .collect();
    periods.into_iter().collect()
}
