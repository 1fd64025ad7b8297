//! The quota tables: the ledger round-trips, a commit is atomic with its intents, an
//! intent happens at most once per key, notices once per period, failures are counted.

use chrono::{DateTime, TimeZone, Utc};

use keywarden::model::FindingKind;
use keywarden::model::quota::{
    Action, ActionKind, Entry, FinishedIntent, IntentOutcome, IntentState, Reason, ServerMemory,
};
use keywarden::store::{QuotaCommit, Store};

use super::Ctx;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
}

/// A key's ledger entry with every field set.
fn entry(n: u32) -> Entry {
    Entry {
        uuid: format!("uuid-{n}"),
        key_id: format!("id-{n}"),
        name: format!("key {n}"),
        counter: Some(5_000_000_000_000),
        used: 5_000_000_000_000,
        period_total: 5_000_000_000_000,
        period_start: at(0),
        adopted: true,
        warned: 95,
        exceeded_at: Some(at(2)),
        exceed_resets: 1,
        delete_due: Some(at(3)),
        expect_drop: true,
        last_reset: Some(at(0)),
        first_seen: at(1),
        read_at: Some(at(1)),
        changed_at: Some(at(1)),
        gone_at: None,
    }
}

/// A boundary reset of key `n` for the period that starts at minute `period`.
fn action(n: u32, period: u32) -> Action {
    Action {
        kind: ActionKind::Reset,
        reason: Reason::Boundary,
        uuid: format!("uuid-{n}"),
        key_id: format!("id-{n}"),
        name: format!("key {n}"),
        period_start: at(period),
        allowance: 0,
        counter_before: Some(42),
        call_server: true,
    }
}

async fn commit(
    store: &Store,
    entries: &[Entry],
    intents: &[Action],
    memory: &ServerMemory,
    now: DateTime<Utc>,
) {
    let commit = QuotaCommit {
        entries: entries.to_vec(),
        history: Vec::new(),
        intents: intents.to_vec(),
        memory: memory.clone(),
        api_version: "1.0.0".into(),
        now,
        read_at: Some(now),
        reread: Vec::new(),
        daily: Vec::new(),
    };
    store.quota().commit("fra-1", commit).await.unwrap();
}

pub async fn ledger_and_memory_round_trip(ctx: &Ctx) {
    let store = &ctx.store;
    let quota = store.quota();
    assert_eq!(
        quota.memory("fra-1").await.unwrap(),
        ServerMemory::default()
    );
    let mut gone = entry(2);
    gone.gone_at = Some(at(3));
    let memory = ServerMemory {
        first_run_at: Some(at(1)),
        consecutive_failures: 2,
        traffic_changed_at: Some(at(1)),
        sync_noted_at: None,
        resets_suspended_version: Some("2.3.6".into()),
    };
    commit(store, &[entry(1), gone.clone()], &[], &memory, at(1)).await;
    let mut ledger = quota.ledger("fra-1").await.unwrap();
    ledger.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    assert_eq!(ledger, vec![entry(1), gone]);
    assert_eq!(quota.memory("fra-1").await.unwrap(), memory);
    let usage = quota.usage(None).await.unwrap();
    assert_eq!(
        usage,
        vec![("fra-1".to_string(), entry(1))],
        "gone keys are not listed"
    );
    assert!(quota.usage(Some("ams-2")).await.unwrap().is_empty());
    assert!(quota.ledger("ams-2").await.unwrap().is_empty());
}

async fn sorted_ledger(store: &Store) -> Vec<Entry> {
    let mut ledger = store.quota().ledger("fra-1").await.unwrap();
    ledger.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    ledger
}

/// A commit with `reread` uuids: those keys' reading time moves to the commit's, their
/// other columns stay; keys neither written nor reread keep the time they were read at.
pub async fn a_reread_key_moves_only_its_reading_time(ctx: &Ctx) {
    let store = &ctx.store;
    let quota = store.quota();
    let memory = ServerMemory::default();
    commit(store, &[entry(1), entry(2), entry(3)], &[], &memory, at(1)).await;
    let mut moved = entry(2);
    moved.counter = Some(5_000_000_000_100);
    moved.read_at = Some(at(2));
    let with_reread = |entries: Vec<Entry>, reread: &[&str], now| QuotaCommit {
        entries,
        history: Vec::new(),
        intents: Vec::new(),
        memory: memory.clone(),
        api_version: "1.0.0".into(),
        now,
        read_at: Some(now),
        reread: reread.iter().map(|u| u.to_string()).collect(),
        daily: Vec::new(),
    };
    let run = with_reread(vec![moved.clone()], &["uuid-1"], at(2));
    quota.commit("fra-1", run).await.unwrap();
    let read_at = |e: &Entry| e.read_at;
    let after = sorted_ledger(store).await;
    assert_eq!(
        after.iter().map(read_at).collect::<Vec<_>>(),
        vec![Some(at(2)), Some(at(2)), Some(at(1))],
        "reread and written keys were read at 2, the key left out at 1"
    );
    let mut reread = entry(1);
    reread.read_at = Some(at(2));
    assert_eq!(after[0], reread, "nothing but the reading time moved");
    assert_eq!(after[1], moved);
    assert_eq!(after[2], entry(3));

    // Key 3 had kept its own (older) reading time; read again now, it takes this one.
    let run = with_reread(Vec::new(), &["uuid-3"], at(3));
    quota.commit("fra-1", run).await.unwrap();
    let after = sorted_ledger(store).await;
    assert_eq!(
        after.iter().map(read_at).collect::<Vec<_>>(),
        vec![Some(at(2)), Some(at(2)), Some(at(3))]
    );
    let mut three = entry(3);
    three.read_at = Some(at(3));
    assert_eq!(after[2], three);

    // And again a run later: every reading time stays exact.
    let run = with_reread(Vec::new(), &["uuid-1", "uuid-3"], at(4));
    quota.commit("fra-1", run).await.unwrap();
    let after = sorted_ledger(store).await;
    assert_eq!(
        after.iter().map(read_at).collect::<Vec<_>>(),
        vec![Some(at(4)), Some(at(2)), Some(at(4))]
    );
}

pub async fn an_intent_happens_once_per_key_and_a_failed_one_is_armed_again(ctx: &Ctx) {
    let store = &ctx.store;
    let quota = store.quota();
    let memory = ServerMemory::default();
    let planned = [action(1, 0), action(2, 0)];
    commit(store, &[], &planned, &memory, at(1)).await;
    let open = quota.open_intents("fra-1").await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].action, action(1, 0));
    assert_eq!((open[0].outcome, open[0].error.as_deref()), (None, None));
    assert_eq!(open[0].state, IntentState::Pending);
    quota.mark_sending(&[open[0].id], at(2)).await.unwrap();
    assert_eq!(
        quota.open_intents("fra-1").await.unwrap()[0].state,
        IntentState::Sending
    );
    let finished = [
        FinishedIntent {
            id: open[0].id,
            state: IntentState::Done,
            outcome: IntentOutcome::Applied,
            error: None,
        },
        FinishedIntent {
            id: open[1].id,
            state: IntentState::Failed,
            outcome: IntentOutcome::Failed,
            error: Some("timeout".into()),
        },
    ];
    quota
        .finish("fra-1", &finished, &[entry(1)], at(3))
        .await
        .unwrap();
    assert!(quota.open_intents("fra-1").await.unwrap().is_empty());
    assert_eq!(
        quota.ledger("fra-1").await.unwrap(),
        vec![entry(1)],
        "written with the outcome"
    );
    // Planned again: the done one stays done, the failed one is pending again.
    commit(store, &[], &planned, &memory, at(4)).await;
    let open = quota.open_intents("fra-1").await.unwrap();
    assert_eq!(
        open.iter()
            .map(|i| i.action.uuid.as_str())
            .collect::<Vec<_>>(),
        ["uuid-2"]
    );
    let all = quota.intents("fra-1", Some("uuid-1")).await.unwrap();
    assert_eq!(
        (all.len(), all[0].outcome),
        (1, Some(IntentOutcome::Applied))
    );
    let rearmed = &quota.intents("fra-1", Some("uuid-2")).await.unwrap()[0];
    assert_eq!(
        (rearmed.state, rearmed.outcome, rearmed.error.as_deref()),
        (IntentState::Pending, None, None),
        "armed again, its old outcome cleared"
    );
    // The next period is another intent.
    commit(store, &[], &[action(1, 30)], &memory, at(31)).await;
    assert_eq!(quota.open_intents("fra-1").await.unwrap().len(), 2);
}

pub async fn notices_are_recorded_once_per_server_kind_and_period(ctx: &Ctx) {
    let store = &ctx.store;
    let quota = store.quota();
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let kind = FindingKind::ResetNotApplied;
    assert!(quota.notices("fra-1", kind).await.unwrap().is_empty());
    quota
        .record_notices("fra-1", kind, &keys(&["P1"]), at(1))
        .await
        .unwrap();
    quota
        .record_notices("fra-1", kind, &keys(&["P1", "P2"]), at(2))
        .await
        .unwrap();
    quota
        .record_notices("ams-2", kind, &keys(&["P3"]), at(3))
        .await
        .unwrap();
    assert_eq!(
        quota.notices("fra-1", kind).await.unwrap(),
        keys(&["P1", "P2"])
    );
    assert!(
        quota
            .notices("fra-1", FindingKind::QuotaWarning)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn failures_are_counted_without_touching_the_rest_of_the_memory(ctx: &Ctx) {
    let store = &ctx.store;
    let quota = store.quota();
    quota.save_failures("fra-1", 1, at(1)).await.unwrap();
    assert_eq!(quota.memory("fra-1").await.unwrap().consecutive_failures, 1);
    let memory = ServerMemory {
        first_run_at: Some(at(2)),
        resets_suspended_version: Some("2.3.6".into()),
        ..ServerMemory::default()
    };
    commit(store, &[], &[], &memory, at(2)).await;
    quota.save_failures("fra-1", 2, at(3)).await.unwrap();
    assert_eq!(
        quota.memory("fra-1").await.unwrap(),
        ServerMemory {
            consecutive_failures: 2,
            ..memory
        }
    );
}
