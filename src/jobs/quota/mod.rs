//! The quota job: traffic accounting and quota enforcement on one server. It owns the
//! usage ledger, the quota intents and the quota findings; it must not touch config.json
//! or Reality (it reads config_sync's sync attempts to know when Xray restarted). Each run:
//!
//! 1. finishes intents left open by a previous run (a crash between intent and completion);
//! 2. observes (the ledger and memory, then key list and counters) -> plans (pure,
//!    `crate::quota`);
//! 3. commits the ledger, the finished periods and the new intents in one transaction;
//! 4. carries out the intents (resets read back and verified, deletes), unless a dry run,
//!    and records a reset digest that is due;
//! 5. reports (pure): threshold notices, drops, the guard, the reset digest, staleness.
//!
//! See docs/quotas.md for the accounting rules and why notices are one-shot.
//!
//! Longer than 400 lines on purpose: which ledger entries a commit writes (only those
//! that changed; keys merely read again move their reading time) sits next to the
//! commit, with its table test at the bottom.

mod before_restart;
mod execute;
mod observe;
mod outcome;
mod report;

use std::collections::HashSet;

use chrono::{DateTime, Utc};

pub use before_restart::{PreRead, account_before_restart};
pub use observe::{ObserveError, Remembered, STALE_AFTER};

use self::execute::Finished;
use super::{JobContext, JobResult};
use crate::config::CounterResets;
use crate::model::FindingKind;
use crate::model::quota::Entry;
use crate::model::report::DailyUsage;
use crate::quota::plan::{
    Accounting, Action, Ledger, Observed, ServerMemory, ServerResets, Settings,
};
use crate::quota::{self, Plan};
use crate::store::QuotaCommit;

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
            Ok(mut done) => {
                // Already in the ledger this run reads.
                done.changed.clear();
                finished = done;
            }
            Err(error) => return store_failure(error),
        }
    }
    let remembered = match observe::remembered(ctx).await {
        Ok(remembered) => remembered,
        Err(error) => return failed(ctx, error.into(), None, &finished).await,
    };
    let Remembered {
        ledger,
        memory,
        digests,
    } = remembered;
    let failures = memory.consecutive_failures;
    let observed = match observe::observe(ctx, ledger, memory).await {
        Ok(observed) => observed,
        Err(error) => return failed(ctx, error.into(), Some(failures), &finished).await,
    };
    let now = ctx.clock.now();
    let (mut accounting, plan) = quota::plan(&observed, &settings(ctx), now);
    tracing::debug!(server = %ctx.server.name, actions = plan.actions.len(), blocked = plan.blocked.len(), "quota plan");
    let memory = next_memory(&observed, &accounting, &plan, now);
    // The per-key usage facts need the ledger after the run; otherwise it is moved into
    // the commit rather than copied (10 000 entries are megabytes).
    let usage = match ctx.config.agent.metrics_per_key {
        true => accounting.entries.clone(),
        false => Vec::new(),
    };
    let suspended = match commit_and_execute(
        ctx,
        &observed,
        &mut accounting,
        &plan,
        memory,
        now,
        crash,
    )
    .await
    {
        Ok((done, suspended)) => {
            merge(&mut finished, done);
            suspended
        }
        Err(result) => return result,
    };
    let digest = raise_digest(ctx, &finished, &digests).await;
    let seen = outcome::Seen {
        observed: &observed,
        accounting: &accounting,
        plan: &plan,
        finished: &finished,
        suspended,
        digest,
    };
    let mut result = outcome::report(ctx, &seen);
    result.facts = outcome::facts(ctx, &finished, &usage);
    result
}

/// Whether the `reset_not_applied` digest is raised in this run: once per server and
/// period, recorded before it is raised (if recording fails it is not raised).
async fn raise_digest(ctx: &JobContext<'_>, finished: &Finished, raised: &HashSet<String>) -> bool {
    let periods = outcome::new_digest_periods(finished, raised);
    if periods.is_empty() {
        return false;
    }
    let server = ctx.server.name.as_str();
    let kind = FindingKind::ResetNotApplied;
    let now = ctx.clock.now();
    match ctx
        .store
        .quota()
        .record_notices(server, kind, &periods, now)
        .await
    {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(server, %error, "quota: cannot record the reset digest");
            false
        }
    }
}

/// Commit the ledger with the new intents, carry them out, and suspend resets the server
/// ignores (`auto`). `Err`: the run ends here (a store failure, or a test's crash point).
async fn commit_and_execute(
    ctx: &JobContext<'_>,
    observed: &Observed,
    accounting: &mut Accounting,
    plan: &Plan,
    mut memory: ServerMemory,
    read_at: DateTime<Utc>,
    crash: Option<CrashPoint>,
) -> Result<(Finished, bool), JobResult> {
    let intents: Vec<Action> = match ctx.dry_run {
        true => Vec::new(),
        false => plan
            .actions
            .iter()
            .filter(|a| a.call_server)
            .cloned()
            .collect(),
    };
    let (server, now) = (ctx.server.name.as_str(), ctx.clock.now());
    let daily = daily_usage(accounting, now, ctx.config.agent.timezone);
    let (entries, reread) = changed_entries(
        &observed.ledger,
        std::mem::take(&mut accounting.entries),
        read_at,
    );
    let commit = QuotaCommit {
        entries,
        history: std::mem::take(&mut accounting.history),
        intents: intents.clone(),
        memory: memory.clone(),
        api_version: observed.api_version.clone(),
        now,
        // The instant the plan stamped on the entries it read.
        read_at: Some(read_at),
        reread,
        daily,
    };
    ctx.store
        .quota()
        .commit(server, commit)
        .await
        .map_err(store_failure)?;
    if crash == Some(CrashPoint::AfterIntents) {
        return Err(JobResult::default());
    }
    let finished = match intents.is_empty() {
        true => Finished::default(),
        false => open_intents(ctx, crash).await.map_err(store_failure)?,
    };
    if finished.crashed {
        return Err(JobResult::default());
    }
    let suspended = suspend_resets(ctx, plan, &finished);
    if suspended {
        memory.resets_suspended_version = Some(observed.api_version.clone());
        // The memory alone: a commit with nothing else in it.
        let commit = QuotaCommit {
            entries: Vec::new(),
            history: Vec::new(),
            intents: Vec::new(),
            memory,
            api_version: observed.api_version.clone(),
            now,
            read_at: None,
            reread: Vec::new(),
            daily: Vec::new(),
        };
        if let Err(error) = ctx.store.quota().commit(server, commit).await {
            tracing::error!(server, %error, "quota: cannot save the reset suspension");
        }
    }
    Ok((finished, suspended))
}

/// The entries to write, and the uuids of those only read again at `read_at` (equal to
/// the ledger as read but for their reading time): the store moves their reading time
/// without touching their rows, so a run where few counters moved writes few rows.
pub(super) fn changed_entries(
    ledger: &Ledger,
    entries: Vec<Entry>,
    read_at: DateTime<Utc>,
) -> (Vec<Entry>, Vec<String>) {
    let mut changed = Vec::new();
    let mut reread = Vec::new();
    for mut entry in entries {
        match ledger.get(&entry.uuid) {
            // Equal to the ledger once its reading time is the one read: only read again.
            Some(before) if entry.read_at == Some(read_at) => {
                entry.read_at = before.read_at;
                if entry == *before {
                    reread.push(entry.uuid);
                } else {
                    entry.read_at = Some(read_at);
                    changed.push(entry);
                }
            }
            _ => changed.push(entry),
        }
    }
    (changed, reread)
}

/// This run's growth per key, counted on today's date in the agent's time zone (traffic
/// between two runs across midnight lands on the later day).
pub(super) fn daily_usage(
    accounting: &Accounting,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Vec<DailyUsage> {
    let day = now.with_timezone(&tz).date_naive();
    // By uuid: a search of the entries per growing key made a 10 000-key run quadratic.
    let entries: foldhash::HashMap<&str, &Entry> = accounting
        .entries
        .iter()
        .map(|entry| (entry.uuid.as_str(), entry))
        .collect();
    accounting
        .growth_by_key
        .iter()
        .filter_map(|(uuid, bytes)| {
            let entry = entries.get(uuid.as_str())?;
            Some(DailyUsage {
                day,
                uuid: uuid.clone(),
                key_id: entry.key_id.clone(),
                name: entry.name.clone(),
                bytes: *bytes,
            })
        })
        .collect()
}

async fn open_intents(
    ctx: &JobContext<'_>,
    crash: Option<CrashPoint>,
) -> Result<Finished, crate::store::StoreError> {
    let open = ctx.store.quota().open_intents(&ctx.server.name).await?;
    if !open.is_empty() {
        // With a key list at hand the client refuses calls by an id or uuid that now
        // names several keys (an intent decided before the server listed duplicates).
        ctx.api.ensure_key_list().await;
    }
    execute::finish(ctx, open, crash).await
}

fn merge(into: &mut Finished, more: Finished) {
    into.deleted.extend(more.deleted);
    into.not_applied.extend(more.not_applied);
    into.failed_deletes.extend(more.failed_deletes);
    into.applied += more.applied;
    into.nothing_to_reset += more.nothing_to_reset;
    into.unverified += more.unverified;
    into.uncertain.extend(more.uncertain);
    into.unfinished += more.unfinished;
    into.outcomes.extend(more.outcomes);
    into.changed.extend(more.changed);
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

/// The server could not be observed: counted (`previous`: the failures in a row before
/// this run, when the store could be read); after `FAILURES_BEFORE_STALE` in a row the
/// accounting is stale.
async fn failed(
    ctx: &JobContext<'_>,
    error: ObserveError,
    previous: Option<u32>,
    finished: &Finished,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let mut result = JobResult {
        facts: outcome::facts(ctx, finished, &[]),
        ..JobResult::default()
    };
    outcome::deleted_findings(server, finished, &mut result.findings);
    let failures = previous.unwrap_or(0).saturating_add(1);
    let saved = ctx
        .store
        .quota()
        .save_failures(server, failures, ctx.clock.now());
    if let Err(store_error) = saved.await {
        tracing::error!(server, error = %store_error, "quota: cannot count the failed run");
    }
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
    }

    fn entry(n: u32) -> Entry {
        Entry {
            uuid: format!("uuid-{n}"),
            key_id: format!("id-{n}"),
            name: format!("key {n}"),
            counter: Some(100),
            used: 100,
            period_total: 100,
            period_start: at(0),
            adopted: false,
            warned: 0,
            exceeded_at: None,
            exceed_resets: 0,
            delete_due: None,
            expect_drop: false,
            last_reset: None,
            first_seen: at(0),
            read_at: Some(at(1)),
            changed_at: Some(at(1)),
            gone_at: None,
        }
    }

    #[test]
    fn only_entries_that_changed_are_written_the_rest_are_reread() {
        let ledger: Ledger = (1..=5).map(|n| (format!("uuid-{n}"), entry(n))).collect();
        let read = |mut e: Entry| {
            e.read_at = Some(at(2));
            e
        };
        let mut grew = read(entry(2));
        grew.counter = Some(200);
        let mut renamed = read(entry(3));
        renamed.name = "renamed".into();
        // Not read this run (a failed reading): keeps its time, nothing else changed.
        let unread = entry(4);
        let mut flagged = read(entry(5));
        flagged.expect_drop = true;
        let adopted = read(entry(6));
        let entries = vec![
            read(entry(1)),
            grew.clone(),
            renamed.clone(),
            unread.clone(),
            flagged.clone(),
            adopted.clone(),
        ];
        let (written, reread) = changed_entries(&ledger, entries, at(2));
        assert_eq!(reread, vec!["uuid-1".to_string()]);
        assert_eq!(written, vec![grew, renamed, unread, flagged, adopted]);
    }
}
