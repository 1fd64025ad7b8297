//! What every action that restarts Xray shares (health's restart of a stopped Xray,
//! reality's fix-reality-keys; config_sync's sync follows the same steps in its own
//! executor): the counters are read into the ledger first, the attempt is written to the
//! shared hourly sync budget (the intent) and to the audit log before the POST, and the
//! quota job is told that counters may drop. The decision to act is the caller's plan.

use chrono::{DateTime, Utc};

use super::JobContext;
use super::quota::{self, PreRead};
use crate::store::{AttemptKind, AuditEntry};

/// An action about to be sent.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub kind: AttemptKind,
    /// When it was recorded (the budget entry's time).
    pub at: DateTime<Utc>,
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
    if let Err(error) = ctx.store.record_budget_attempt(server, kind, at) {
        tracing::error!(server, %error, action = kind.as_str(), "cannot record the attempt; not acting");
        return Err(format!("the attempt could not be recorded: {error}"));
    }
    let attempt = Attempt {
        kind,
        at,
        target,
        pre_read,
    };
    audit(ctx, &attempt, at, "started", detail);
    quota::note_sync_pending(ctx.store, server, at);
    Ok(attempt)
}

/// The server refused with 429: the action did not run and spends no budget.
pub fn deferred(ctx: &JobContext<'_>, attempt: &Attempt, detail: &str) {
    let server = ctx.server.name.as_str();
    if let Err(error) = ctx.store.mark_attempt_deferred(server, attempt.at) {
        tracing::error!(server, %error, "cannot take the deferred attempt out of the budget");
    }
    audit(ctx, attempt, ctx.clock.now(), "deferred", detail);
}

/// How the action ended (`ok`, `failed`, `persists`, ...).
pub fn finished(ctx: &JobContext<'_>, attempt: &Attempt, result: &str, detail: &str) {
    audit(ctx, attempt, ctx.clock.now(), result, detail);
}

/// A dry run that would have acted.
pub fn dry_run(ctx: &JobContext<'_>, kind: AttemptKind, target: &str, detail: &str) {
    append(
        ctx,
        kind.as_str(),
        target,
        ctx.clock.now(),
        "dry_run",
        detail,
    );
}

fn audit(ctx: &JobContext<'_>, attempt: &Attempt, at: DateTime<Utc>, result: &str, detail: &str) {
    append(
        ctx,
        attempt.kind.as_str(),
        attempt.target,
        at,
        result,
        detail,
    );
}

fn append(
    ctx: &JobContext<'_>,
    action: &str,
    target: &str,
    at: DateTime<Utc>,
    result: &str,
    detail: &str,
) {
    let entry = AuditEntry {
        at,
        server: ctx.server.name.clone(),
        action: action.to_string(),
        target: target.to_string(),
        result: result.to_string(),
        detail: detail.to_string(),
    };
    if let Err(error) = ctx.store.append_audit(&entry) {
        tracing::error!(server = %ctx.server.name, action, result, %error, "cannot write the audit log");
    }
}
