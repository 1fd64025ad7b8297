//! What every action that restarts Xray shares (health's restart of a stopped Xray,
//! reality's fix-reality-keys; config_sync's sync follows the same steps in its own
//! executor): the counters are read into the ledger first, the attempt is written to the
//! shared hourly sync budget (the intent) and to the audit log before the POST, and its
//! outcome is written to the attempt afterwards (a 429 takes it out of the budget; the
//! quota job reads the attempts to expect counter drops). The decision to act is the
//! caller's plan; the streak and the budget it reads are computed alike (below).

use chrono::{DateTime, Utc};

use super::JobContext;
use super::config_sync::{self, SYNC_WINDOW, counted_attempts};
use super::quota::{self, PreRead};
use crate::model::{AttemptKind, AuditAction, AuditEntry, AuditResult, SyncAttemptOutcome};
use crate::store::StoreError;

/// Consecutive bad reads up to this run's last one: this run's trailing bad reads, plus
/// the `remembered` streak when every read of this run was bad.
pub fn streak<T>(reads: &[T], remembered: u32, bad: impl Fn(&T) -> bool) -> u32 {
    let trailing = reads.iter().rev().take_while(|read| bad(read)).count();
    let trailing = u32::try_from(trailing).unwrap_or(u32::MAX);
    match trailing {
        0 => 0,
        n if n as usize == reads.len() => remembered.saturating_add(n),
        n => n,
    }
}

/// The attempts of the server's hourly budget that count now (for observe). A store that
/// cannot say is an error of the run: read as "no attempts" it once let a restart or a
/// fix through on a budget nobody knew (the error is logged here).
pub async fn budget(ctx: &JobContext<'_>) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let (server, now) = (ctx.server.name.as_str(), ctx.clock.now());
    match ctx
        .store
        .sync()
        .attempts_since(server, now - SYNC_WINDOW)
        .await
    {
        Ok(attempts) => Ok(counted_attempts(&attempts, now)),
        Err(error) => {
            tracing::error!(server, %error, "cannot read the sync budget; not acting");
            Err(error)
        }
    }
}

/// Why a confirmed action waits, in the order every restart action checks: the job's own
/// reason (`own`: switched off, ...), then the hourly budget of `attempts` (`spent` makes
/// the job's reason of its use, the maximum and when it frees), then a dry run (`dry`).
/// `None`: act now.
pub fn hold<B>(
    own: Option<B>,
    (attempts, max, now): (&[DateTime<Utc>], u32, DateTime<Utc>),
    spent: impl FnOnce(u32, u32, DateTime<Utc>) -> B,
    dry: Option<B>,
) -> Option<B> {
    own.or_else(|| match config_sync::budget_spent(attempts, max, now)? {
        config_sync::Blocker::BudgetSpent {
            syncs,
            max,
            frees_at,
        } => Some(spent(syncs, max, frees_at)),
        _ => None,
    })
    .or(dry)
}

/// An action about to be sent.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The budget entry.
    pub id: i64,
    pub kind: AttemptKind,
    /// The audit target ("xray", "reality").
    pub target: &'static str,
    pub pre_read: PreRead,
}

/// Read the counters in, then record the intent. `Err`: the intent could not be written,
/// so the action must not be sent (the budget could not hold).
pub async fn begin(
    ctx: &JobContext<'_>,
    kind: AttemptKind,
    target: &'static str,
    detail: &str,
) -> Result<Attempt, String> {
    let server = ctx.server.name.as_str();
    let pre_read = quota::account_before_restart(ctx).await;
    let at = ctx.clock.now();
    let id = match ctx.store.sync().record_attempt(server, kind, at).await {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(server, %error, action = kind.as_str(), "cannot record the attempt; not acting");
            return Err(format!("the attempt could not be recorded: {error}"));
        }
    };
    let attempt = Attempt {
        id,
        kind,
        target,
        pre_read,
    };
    append(ctx, kind, target, at, AuditResult::Started, detail).await;
    Ok(attempt)
}

/// The server refused with 429: the action did not run and spends no budget.
pub async fn deferred(ctx: &JobContext<'_>, attempt: &Attempt, detail: &str) {
    finish(ctx, attempt, SyncAttemptOutcome::Deferred).await;
    let now = ctx.clock.now();
    append(
        ctx,
        attempt.kind,
        attempt.target,
        now,
        AuditResult::Deferred,
        detail,
    )
    .await;
}

/// The server answered; how the action ended (`Ok`, `Failed`, `Persists`, ...).
pub async fn finished(ctx: &JobContext<'_>, attempt: &Attempt, result: AuditResult, detail: &str) {
    finish(ctx, attempt, SyncAttemptOutcome::Completed).await;
    let now = ctx.clock.now();
    append(ctx, attempt.kind, attempt.target, now, result, detail).await;
}

/// A dry run that would have acted.
pub async fn dry_run(ctx: &JobContext<'_>, kind: AttemptKind, target: &str, detail: &str) {
    let now = ctx.clock.now();
    append(ctx, kind, target, now, AuditResult::DryRun, detail).await;
}

/// Record how the attempt ended. If that fails it stays started, which counts against the
/// budget: the next action may come later, never sooner.
async fn finish(ctx: &JobContext<'_>, attempt: &Attempt, outcome: SyncAttemptOutcome) {
    if let Err(error) = ctx.store.sync().finish_attempt(attempt.id, outcome).await {
        tracing::error!(server = %ctx.server.name, %error, action = attempt.kind.as_str(), "cannot record how the attempt ended");
    }
}

async fn append(
    ctx: &JobContext<'_>,
    kind: AttemptKind,
    target: &str,
    at: DateTime<Utc>,
    result: AuditResult,
    detail: &str,
) {
    let action = match kind {
        AttemptKind::Sync => AuditAction::Sync,
        AttemptKind::XrayRestart => AuditAction::XrayRestart,
        AttemptKind::RealityFix => AuditAction::RealityFix,
    };
    let entry = AuditEntry {
        at,
        server: ctx.server.name.clone(),
        action,
        target: target.to_string(),
        result,
        detail: detail.to_string(),
    };
    if let Err(error) = ctx.store.audit().append(&entry).await {
        tracing::error!(server = %ctx.server.name, %action, %result, %error, "cannot write the audit log");
    }
}
