//! What a quota run reports: its plan lines (what was counted, decided and done) and its
//! findings (notices, drops, the guard, deletes, the reset digest, staleness).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::execute::Finished;
use super::observe::{self, STALE_AFTER};
use super::report;
use crate::finding::{Finding, FindingKind};
use crate::jobs::{JobContext, JobResult};
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
}

/// The run's result: plan lines and findings.
pub fn report(ctx: &JobContext<'_>, seen: &Seen<'_>) -> JobResult {
    let mut result = JobResult::default();
    summarize(ctx, seen, &mut result);
    findings(ctx, seen, &mut result);
    result
}

pub fn deleted_findings(server: &str, finished: &Finished, out: &mut Vec<Finding>) {
    for (action, already_gone) in &finished.deleted {
        out.push(report::deleted(server, action, *already_gone));
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
    let Seen {
        observed,
        accounting,
        plan,
        finished,
        suspended,
    } = *seen;
    let server = ctx.server.name.as_str();
    let out = &mut result.findings;
    if !accounting.drops.is_empty() {
        out.push(report::drops(server, &accounting.drops));
    }
    if accounting.ambiguous > 0 {
        let keys = observed
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.uuid.as_str()));
        out.push(report::ambiguous(server, &identity::ambiguity(keys)));
    }
    if !accounting.implausible.is_empty() {
        out.push(report::implausible(server, &accounting.implausible));
    }
    for notice in &plan.notices {
        let next = next_reset(ctx, observed, notice);
        out.extend(report::notice(
            server,
            notice,
            ctx.config.agent.timezone,
            next,
        ));
    }
    if !plan.blocked.is_empty() {
        out.push(report::blocked(server, &plan.blocked, observed.keys.len()));
    }
    deleted_findings(server, finished, out);
    if let Some(digest) = not_applied_digest(ctx, finished, suspended) {
        out.push(digest);
    }
    let changed_at = match accounting.changed {
        true => None,
        false => observed.memory.traffic_changed_at,
    };
    if observe::frozen(changed_at, accounting.connections, ctx.clock.now()) {
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

/// One `reset_not_applied` per server and period: raised when one of the periods of the
/// listed resets has not had its digest yet.
fn not_applied_digest(
    ctx: &JobContext<'_>,
    finished: &Finished,
    suspended: bool,
) -> Option<Finding> {
    if finished.not_applied.is_empty() {
        return None;
    }
    let periods: HashSet<String> = finished
        .not_applied
        .iter()
        .filter_map(|r| r.action.intent_key.split(' ').nth(1).map(str::to_owned))
        .collect();
    let periods: Vec<String> = periods.into_iter().collect();
    let server = ctx.server.name.as_str();
    let kind = FindingKind::ResetNotApplied.as_str();
    match ctx
        .store
        .quota_notice_once(server, kind, &periods, ctx.clock.now())
    {
        Ok(true) => Some(report::not_applied(
            server,
            &finished.not_applied,
            finished.applied,
            suspended,
        )),
        Ok(false) => None,
        Err(error) => {
            tracing::error!(server, %error, "quota: cannot record the reset digest");
            None
        }
    }
}
