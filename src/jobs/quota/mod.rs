//! The quota job: traffic accounting and quota enforcement on one server. It owns the
//! usage ledger, the quota intents and the quota findings; it must not touch config.json
//! or Reality (config_sync only tells it, through `note_sync_pending`, that it is about to
//! restart Xray). Each run:
//!
//! 1. finishes intents left open by a previous run (a crash between intent and completion);
//! 2. observes (key list, counters, the ledger) -> plans (pure, `crate::quota`);
//! 3. commits the ledger, the finished periods and the new intents in one transaction;
//! 4. carries out the intents (resets read back and verified, deletes), unless a dry run;
//! 5. reports: threshold notices, drops, the guard, the reset digest, staleness.
//!
//! See docs/quotas.md for the accounting rules and why notices are one-shot.

mod execute;
mod observe;
mod report;

use std::collections::HashSet;

use chrono::{DateTime, Utc};

pub use observe::{ObserveError, STALE_AFTER};

use self::execute::Finished;
use super::{JobContext, JobResult};
use crate::config::CounterResets;
use crate::finding::{Finding, FindingKind};
use crate::quota::plan::{Accounting, Action, Observed, ServerMemory, ServerResets, Settings};
use crate::quota::{self, Plan, human_bytes, period, rules};
use crate::store::{QuotaCommit, Store};

/// Failed runs in a row that make the accounting stale.
pub const FAILURES_BEFORE_STALE: u32 = 3;

/// Where a test stops a run as if the process had been killed (crash-safety tests only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The intents are committed; nothing was sent.
    AfterIntents,
    /// The calls were made; nothing was recorded about them.
    AfterRemoteCalls,
}

/// config_sync calls this right before a sync POST: the sync restarts Xray, which may zero
/// the counters; the next quota run then takes the drop as expected (the new value is
/// counted, no `counter_reset_seen`). Never fails the sync: a store error is logged.
pub fn note_sync_pending(store: &Store, server: &str, now: DateTime<Utc>) {
    if let Err(error) = store.quota_note_sync(server, now) {
        tracing::warn!(server, %error, "quota: cannot note the sync; a counter drop after it will be reported");
    }
}

/// Run the job once on `ctx.server`.
pub async fn run(ctx: &JobContext<'_>) -> JobResult {
    run_with(ctx, None).await
}

/// `run`, stopping at `crash` as if the process died there (tests).
#[doc(hidden)]
pub async fn run_with(ctx: &JobContext<'_>, crash: Option<CrashPoint>) -> JobResult {
    let mut finished = Finished::default();
    if !ctx.dry_run {
        // On start, intents left open by a previous run are finished first.
        match open_intents(ctx, crash).await {
            Ok(done) if done.crashed => return JobResult::default(),
            Ok(done) => finished = done,
            Err(error) => return store_failure(error),
        }
    }
    let observed = match observe::observe(ctx).await {
        Ok(observed) => observed,
        Err(error) => return failed(ctx, error, &finished),
    };
    let now = ctx.clock.now();
    let (accounting, plan) = quota::plan(&observed, &settings(ctx), now);
    tracing::debug!(server = %ctx.server.name, actions = plan.actions.len(), blocked = plan.blocked.len(), "quota plan");
    let mut memory = next_memory(&observed, &accounting, &plan, now);
    let intents: Vec<Action> = match ctx.dry_run {
        true => Vec::new(),
        false => plan
            .actions
            .iter()
            .filter(|a| a.call_server)
            .cloned()
            .collect(),
    };
    let commit = QuotaCommit {
        entries: &accounting.entries,
        history: &accounting.history,
        intents: &intents,
        memory: &memory,
        api_version: &observed.api_version,
        now,
    };
    if let Err(error) = ctx.store.quota_commit(&ctx.server.name, &commit) {
        return store_failure(error);
    }
    if crash == Some(CrashPoint::AfterIntents) {
        return JobResult::default();
    }
    if !intents.is_empty() {
        match open_intents(ctx, crash).await {
            Ok(done) if done.crashed => return JobResult::default(),
            Ok(done) => merge(&mut finished, done),
            Err(error) => return store_failure(error),
        }
    }
    let suspend = suspend_resets(ctx, &plan, &finished);
    if suspend {
        memory.resets_suspended_version = Some(observed.api_version.clone());
        let saved =
            ctx.store
                .quota_save_memory(&ctx.server.name, &memory, &observed.api_version, now);
        if let Err(error) = saved {
            tracing::error!(server = %ctx.server.name, %error, "quota: cannot save the reset suspension");
        }
    }
    let mut result = JobResult::default();
    summarize(ctx, &observed, &accounting, &plan, &finished, &mut result);
    findings(
        ctx,
        &observed,
        &accounting,
        &plan,
        &finished,
        suspend,
        &mut result,
    );
    result
}

async fn open_intents(
    ctx: &JobContext<'_>,
    crash: Option<CrashPoint>,
) -> Result<Finished, crate::store::StoreError> {
    let open = ctx.store.quota_open_intents(&ctx.server.name)?;
    execute::finish(ctx, open, crash).await
}

fn merge(into: &mut Finished, more: Finished) {
    into.deleted.extend(more.deleted);
    into.not_applied.extend(more.not_applied);
    into.failed_deletes.extend(more.failed_deletes);
    into.applied += more.applied;
    into.nothing_to_reset += more.nothing_to_reset;
    into.unverified += more.unverified;
    into.unfinished += more.unfinished;
}

fn settings<'a>(ctx: &'a JobContext<'_>) -> Settings<'a> {
    Settings {
        quotas: &ctx.config.quotas,
        tz: ctx.config.agent.timezone,
        allow_delete: ctx.config.agent.allow_delete,
        counter_resets: ctx.server.counter_resets,
        dry_run: ctx.dry_run,
    }
}

/// The server's memory after a successful observation.
fn next_memory(
    observed: &Observed,
    accounting: &Accounting,
    plan: &Plan,
    now: DateTime<Utc>,
) -> ServerMemory {
    let previous = &observed.memory;
    let traffic_changed_at = match (accounting.changed, previous.traffic_changed_at) {
        (false, Some(at)) => Some(at),
        _ => Some(now),
    };
    ServerMemory {
        first_run_at: previous.first_run_at.or(Some(now)),
        consecutive_failures: 0,
        traffic_changed_at,
        sync_noted_at: previous.sync_noted_at,
        resets_suspended_version: match plan.resets_resumed {
            true => None,
            false => previous.resets_suspended_version.clone(),
        },
    }
}

/// `counter_resets = "auto"`: resets were made in this run and every one that could be
/// judged was ignored: stop calling reset until the API version changes.
fn suspend_resets(ctx: &JobContext<'_>, plan: &Plan, finished: &Finished) -> bool {
    ctx.server.counter_resets == CounterResets::Auto
        && plan.server_resets == ServerResets::Call
        && finished.applied == 0
        && finished.not_applied.iter().any(|r| r.error.is_none())
}

/// The store is local: without it no ledger holds, so nothing is done.
fn store_failure(error: crate::store::StoreError) -> JobResult {
    tracing::error!(%error, "quota: the state store failed");
    JobResult {
        transport_failure: Some(format!("quota not run: {error}")),
        ..JobResult::default()
    }
}

/// The server could not be observed: counted; after `FAILURES_BEFORE_STALE` in a row the
/// accounting is stale.
fn failed(ctx: &JobContext<'_>, error: ObserveError, finished: &Finished) -> JobResult {
    let server = ctx.server.name.as_str();
    let mut result = JobResult::default();
    deleted_findings(server, finished, &mut result.findings);
    let failures = ctx
        .store
        .quota_note_failure(server, ctx.clock.now())
        .unwrap_or_else(|store_error| {
            tracing::error!(server, error = %store_error, "quota: cannot count the failed run");
            1
        });
    if failures >= FAILURES_BEFORE_STALE {
        let why = format!("the last {failures} quota runs failed ({error})");
        result.findings.push(report::stale(server, &why));
    }
    match error {
        ObserveError::Api(error) if !error.is_transient() => {
            tracing::warn!(server, %error, "quota: traffic unreadable");
            result.findings.push(report::api_error(server, &error));
        }
        error => result.transport_failure = Some(error.to_string()),
    }
    result
}

fn deleted_findings(server: &str, finished: &Finished, out: &mut Vec<Finding>) {
    for (action, already_gone) in &finished.deleted {
        out.push(report::deleted(server, action, *already_gone));
    }
}

/// Plan lines: what was counted, decided and done.
fn summarize(
    ctx: &JobContext<'_>,
    observed: &Observed,
    accounting: &Accounting,
    plan: &Plan,
    finished: &Finished,
    result: &mut JobResult,
) {
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
fn findings(
    ctx: &JobContext<'_>,
    observed: &Observed,
    accounting: &Accounting,
    plan: &Plan,
    finished: &Finished,
    suspended: bool,
    result: &mut JobResult,
) {
    let server = ctx.server.name.as_str();
    let out = &mut result.findings;
    if !accounting.drops.is_empty() {
        out.push(report::drops(server, &accounting.drops));
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
