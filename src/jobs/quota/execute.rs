//! Carrying out intents: the server calls of resets and deletes, and what they change in
//! the ledger. An intent is already in the store (pending) when this runs; it is marked
//! `sending` right before its call and `done` after verification, in batches. A `sending`
//! intent found on start may or may not have reached the server: its counter is read
//! first and settles it (see `settle_interrupted`), so that each key is reset once and
//! no traffic since is lost.
//!
//! Longer than 400 lines on purpose (about 25 of them tests): making a call, judging its
//! verdict and what it does to the ledger are one sequence.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::CrashPoint;
use super::observe::read_counter;
use super::report::NotApplied;
use crate::jobs::JobContext;
use crate::model::quota::{FinishedIntent, Intent, IntentOutcome, IntentState};
use crate::model::{AuditAction, AuditEntry};
use crate::quota::ledger::{self, KeyInfo};
use crate::quota::plan::{Action, ActionKind};
use crate::quota::{Entry, Reading};
use crate::server_api::{ApiError, DeleteOutcome, KeyRef, ServerApi};
use crate::store::StoreError;

/// What finishing intents came to (over one or more batches).
#[derive(Debug, Default)]
pub struct Finished {
    /// Deleted keys (true: already gone when keywarden finished the delete).
    pub deleted: Vec<(Action, bool)>,
    pub not_applied: Vec<NotApplied>,
    /// Resets verified by reading the counter back.
    pub applied: usize,
    /// 2.x answered "Traffic history not found": nothing to reset.
    pub nothing_to_reset: usize,
    /// The counter could not be read back; the next reading settles it.
    pub unverified: usize,
    /// Interrupted resets whose counter grew since: whether they happened cannot be told
    /// (the growth was counted; they were not sent again).
    pub uncertain: Vec<NotApplied>,
    /// Left open for the next run (the server could not be asked).
    pub unfinished: usize,
    pub failed_deletes: Vec<(Action, String)>,
    /// Every intent finished, by kind and outcome (for the metrics).
    pub outcomes: Vec<(ActionKind, IntentOutcome)>,
    /// The ledger entries the verifications changed, as written.
    pub changed: Vec<Entry>,
    /// Stopped at a test's crash point.
    pub crashed: bool,
}

impl Finished {
    pub fn resets(&self) -> usize {
        self.applied
            + self.not_applied.len()
            + self.nothing_to_reset
            + self.unverified
            + self.uncertain.len()
    }
}

/// How one intent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Applied,
    NotApplied,
    NothingToReset,
    Unverified(String),
    /// An interrupted reset whose counter grew since: it may or may not have happened.
    Uncertain,
    /// The reset call failed and the counter did not drop.
    Failed(String),
    /// 404 "Key not found": the key is gone.
    KeyGone,
    Deleted,
    AlreadyGone,
    DeleteFailed(String),
    /// Not decided: leave the intent open.
    Unfinished(String),
}

impl Verdict {
    /// How the intent is finished, `None` to leave it open.
    fn finished(&self, id: i64) -> Option<FinishedIntent> {
        let (state, outcome, error) = match self {
            Verdict::Applied => (IntentState::Done, IntentOutcome::Applied, None),
            Verdict::NotApplied => (IntentState::Done, IntentOutcome::NotApplied, None),
            Verdict::NothingToReset => (IntentState::Done, IntentOutcome::NothingToReset, None),
            Verdict::Unverified(error) => {
                (IntentState::Done, IntentOutcome::Unverified, Some(error))
            }
            Verdict::Uncertain => (IntentState::Done, IntentOutcome::Uncertain, None),
            Verdict::Failed(error) => (IntentState::Done, IntentOutcome::Failed, Some(error)),
            Verdict::KeyGone => (IntentState::Done, IntentOutcome::KeyGone, None),
            Verdict::Deleted => (IntentState::Done, IntentOutcome::Deleted, None),
            Verdict::AlreadyGone => (IntentState::Done, IntentOutcome::AlreadyGone, None),
            Verdict::DeleteFailed(error) => {
                (IntentState::Failed, IntentOutcome::Failed, Some(error))
            }
            Verdict::Unfinished(_) => return None,
        };
        Some(FinishedIntent {
            id,
            state,
            outcome,
            error: error.cloned(),
        })
    }
}

/// One intent's result: the verdict and the counter read back.
struct Outcome {
    intent: Intent,
    verdict: Verdict,
    read_back: Option<u64>,
    baseline: Option<u64>,
}

/// Intents carried out together: one store transaction marks them sending, one finishes them.
const BATCH_PER_CONNECTION: usize = 8;

/// Carry out `intents` (pending or sending), in batches.
pub async fn finish(
    ctx: &JobContext<'_>,
    intents: Vec<Intent>,
    crash: Option<CrashPoint>,
) -> Result<Finished, StoreError> {
    let mut finished = Finished::default();
    if intents.is_empty() {
        return Ok(finished);
    }
    let server = ctx.server.name.as_str();
    let mut ledger: HashMap<String, Entry> = ctx
        .store
        .quota()
        .ledger(server)
        .await?
        .into_iter()
        .map(|e| (e.uuid.clone(), e))
        .collect();
    let batch = ctx.server.concurrency.max(1) * BATCH_PER_CONNECTION;
    for chunk in intents.chunks(batch) {
        let pending: Vec<i64> = chunk
            .iter()
            .filter(|i| i.state == IntentState::Pending)
            .map(|i| i.id)
            .collect();
        let now = ctx.clock.now();
        ctx.store.quota().mark_sending(&pending, now).await?;
        let outcomes = call_server(ctx.api, chunk, &ledger).await;
        if crash == Some(CrashPoint::AfterRemoteCalls) {
            finished.crashed = true;
            return Ok(finished);
        }
        settle(ctx, outcomes, &mut ledger, &mut finished).await?;
    }
    Ok(finished)
}

/// Make the calls of one batch concurrently (the client caps requests in flight).
async fn call_server(
    api: &ServerApi,
    chunk: &[Intent],
    ledger: &HashMap<String, Entry>,
) -> Vec<Outcome> {
    let mut tasks = JoinSet::new();
    for intent in chunk {
        let baseline = ledger
            .get(&intent.action.uuid)
            .map_or(intent.action.counter_before, |e| e.counter);
        let (api, intent) = (api.clone(), intent.clone());
        tasks.spawn(async move {
            let (verdict, read_back) = match intent.action.kind {
                ActionKind::Reset => {
                    let sent_before = intent.state == IntentState::Sending;
                    reset(&api, &intent.action, baseline, sent_before).await
                }
                ActionKind::Delete => (delete(&api, &intent.action).await, None),
            };
            Outcome {
                intent,
                verdict,
                read_back,
                baseline,
            }
        });
    }
    let mut outcomes = Vec::with_capacity(chunk.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            // A panicked call leaves its intent open; the next run finishes it.
            Err(error) => tracing::error!(%error, "quota: an intent's task failed"),
        }
    }
    outcomes
}

/// Whether a counter read after a reset (possibly long after) shows the reset happened.
fn dropped(baseline: Option<u64>, now: u64) -> bool {
    baseline.is_some_and(|before| now < before) || ledger::reset_applied(baseline, now)
}

/// 2.x answers a reset of a counter with no history since the last reset with this 404.
fn nothing_to_reset(error: &ApiError) -> bool {
    error.is_not_found()
        && error
            .server_detail()
            .is_some_and(|d| d.contains("Traffic history not found"))
}

/// What the counter read after a crash says about a reset that was `sending` (it may or
/// may not have reached the server), `before`: the reading before the reset. Pure; the
/// rule that loses the least (docs/quotas.md, "A reset interrupted by a crash"):
/// - dropped below `before` (or to the reset slack): it happened; the reading is traffic
///   since the reset and is counted whole;
/// - exactly `before`: nothing moved; it did not take effect (yet): send it (again),
///   which cannot lose anything counted;
/// - above `before`: cannot be told (a reset followed by more traffic than `before`, or
///   no reset and some traffic). The growth over `before` is what can be proven: it is
///   counted, and the reset is not sent again (a second reset without proof that the
///   first failed would wipe traffic nobody counted); up to `before` may be uncounted.
pub fn settle_interrupted(before: Option<u64>, now: u64) -> Interrupted {
    if dropped(before, now) {
        Interrupted::Happened
    } else if before == Some(now) {
        Interrupted::SendAgain
    } else {
        Interrupted::Uncertain
    }
}

/// How `settle_interrupted` settled an interrupted reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    Happened,
    SendAgain,
    Uncertain,
}

/// Reset one key's counter and read it back. `sent_before`: a previous run may already
/// have sent this reset; the counter read first settles it (`settle_interrupted`).
async fn reset(
    api: &ServerApi,
    action: &Action,
    baseline: Option<u64>,
    sent_before: bool,
) -> (Verdict, Option<u64>) {
    if sent_before {
        match read_counter(api, &action.key_id, &action.uuid).await {
            Ok(now) => match settle_interrupted(baseline, now) {
                Interrupted::Happened => return (Verdict::Applied, Some(now)),
                Interrupted::Uncertain => return (Verdict::Uncertain, Some(now)),
                Interrupted::SendAgain => {}
            },
            Err(error) if error.is_not_found() => return (Verdict::KeyGone, None),
            Err(error) => return (Verdict::Unfinished(error.to_string()), None),
        }
    }
    let key = KeyRef::both(&action.key_id, &action.uuid);
    let call_error = match api.reset_traffic(&key).await {
        Ok(_) => None,
        Err(error) if nothing_to_reset(&error) => return (Verdict::NothingToReset, None),
        Err(error) if error.is_not_found() => return (Verdict::KeyGone, None),
        // A timeout may hide a reset that happened: the read-back decides.
        Err(error) => Some(error.to_string()),
    };
    match (
        read_counter(api, &action.key_id, &action.uuid).await,
        call_error,
    ) {
        (Ok(after), _) if ledger::reset_applied(baseline, after) => (Verdict::Applied, Some(after)),
        (Ok(after), None) => (Verdict::NotApplied, Some(after)),
        (Ok(after), Some(error)) => (Verdict::Failed(error), Some(after)),
        // Neither the reset nor the read got through (the server is away): the next run
        // reads the counter first and resets only if it did not drop.
        (Err(_), Some(error)) => (Verdict::Unfinished(error), None),
        (Err(error), None) => (Verdict::Unverified(error.to_string()), None),
    }
}

async fn delete(api: &ServerApi, action: &Action) -> Verdict {
    match api
        .delete_key(&KeyRef::both(&action.key_id, &action.uuid))
        .await
    {
        Ok(DeleteOutcome::Deleted) => Verdict::Deleted,
        Ok(DeleteOutcome::AlreadyGone) => Verdict::AlreadyGone,
        Err(error) => Verdict::DeleteFailed(error.to_string()),
    }
}

/// Apply a batch's outcomes to the ledger, store them with the intents, audit each.
async fn settle(
    ctx: &JobContext<'_>,
    outcomes: Vec<Outcome>,
    ledger: &mut HashMap<String, Entry>,
    finished: &mut Finished,
) -> Result<(), StoreError> {
    let now = ctx.clock.now();
    let mut stored = Vec::with_capacity(outcomes.len());
    let mut changed = Vec::new();
    for outcome in outcomes {
        let Some(done) = outcome.verdict.finished(outcome.intent.id) else {
            finished.unfinished += 1;
            continue;
        };
        if let Some(entry) = ledger.get_mut(&outcome.intent.action.uuid) {
            apply(entry, &outcome, now);
            changed.push(entry.clone());
        }
        audit(ctx, &outcome, &done, now).await;
        count(&outcome, finished);
        finished
            .outcomes
            .push((outcome.intent.action.kind, done.outcome));
        stored.push(done);
    }
    ctx.store
        .quota()
        .finish(&ctx.server.name, &stored, &changed, now)
        .await?;
    finished.changed.extend(changed);
    Ok(())
}

/// What an outcome does to the key's ledger entry.
fn apply(entry: &mut Entry, outcome: &Outcome, now: DateTime<Utc>) {
    match &outcome.verdict {
        Verdict::KeyGone | Verdict::Deleted | Verdict::AlreadyGone => entry.gone_at = Some(now),
        _ => {
            if let Some(after) = outcome.read_back {
                // A reset was sent: the read-back is a reading across it (an uncertain
                // one grew: only its growth counts, as for any reading).
                entry.expect_drop = true;
                let action = &outcome.intent.action;
                let key = KeyInfo {
                    id: &action.key_id,
                    uuid: &action.uuid,
                    name: &action.name,
                };
                let reading = Reading::Counter {
                    bytes: after,
                    connections: None,
                };
                ledger::account(entry, &key, reading, None, now);
            }
        }
    }
}

fn count(outcome: &Outcome, finished: &mut Finished) {
    let action = outcome.intent.action.clone();
    let not_applied = |error: Option<String>| NotApplied {
        action: action.clone(),
        before: outcome.baseline,
        after: outcome.read_back,
        error,
    };
    match &outcome.verdict {
        Verdict::Applied => finished.applied += 1,
        Verdict::NotApplied => finished.not_applied.push(not_applied(None)),
        Verdict::Failed(error) => finished.not_applied.push(not_applied(Some(error.clone()))),
        Verdict::NothingToReset => finished.nothing_to_reset += 1,
        Verdict::Unverified(_) => finished.unverified += 1,
        Verdict::Uncertain => finished.uncertain.push(not_applied(None)),
        Verdict::Deleted => finished.deleted.push((action, false)),
        Verdict::AlreadyGone => finished.deleted.push((action, true)),
        Verdict::DeleteFailed(error) => finished.failed_deletes.push((action, error.clone())),
        Verdict::KeyGone | Verdict::Unfinished(_) => {}
    }
}

async fn audit(ctx: &JobContext<'_>, outcome: &Outcome, done: &FinishedIntent, now: DateTime<Utc>) {
    let action = &outcome.intent.action;
    let figures = match (outcome.baseline, outcome.read_back) {
        (Some(before), Some(after)) => format!("; counter {before} -> {after}"),
        _ => String::new(),
    };
    let entry = AuditEntry {
        at: now,
        server: ctx.server.name.clone(),
        action: match action.kind {
            ActionKind::Reset => AuditAction::QuotaReset,
            ActionKind::Delete => AuditAction::QuotaDelete,
        },
        target: action.uuid.clone(),
        result: done.outcome.into(),
        detail: format!(
            "{}; {}; {}{figures}{}",
            action.name,
            action.reason.as_str(),
            action.intent_key(),
            done.error
                .as_ref()
                .map_or(String::new(), |why| format!("; {why}"))
        ),
    };
    if let Err(error) = ctx.store.audit().append(&entry).await {
        tracing::error!(server = %ctx.server.name, %error, "quota: cannot write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn an_interrupted_reset_is_settled_by_the_next_reading() {
        use Interrupted::{Happened, SendAgain, Uncertain};
        #[rustfmt::skip]
        let table = [
            ("dropped below the reading before", Some(11 * MIB), 2 * MIB, Happened),
            ("dropped to zero", Some(11 * MIB), 0, Happened),
            ("within the reset slack", Some(500 * MIB), 4 * MIB, Happened),
            ("did not move: send it again", Some(11 * MIB), 11 * MIB, SendAgain),
            ("grew: cannot tell", Some(11 * MIB), 15 * MIB, Uncertain),
            ("grew by a byte: cannot tell", Some(11 * MIB), 11 * MIB + 1, Uncertain),
            ("no reading before, small now", None, MIB / 2, Happened),
            ("no reading before, large now", None, 40 * MIB, Uncertain),
        ];
        for (name, before, now, expected) in table {
            assert_eq!(settle_interrupted(before, now), expected, "{name}");
        }
    }
}
