//! The quota tables: the ledger round-trips, a commit is atomic with its intents, an
//! intent happens at most once per key, notices once per period, a sync note survives.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::quota::ledger::{KeyInfo, Reading, adopt};
use crate::quota::plan::{ActionKind, Reason};
use crate::store::IntentState;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn entry(n: u32) -> Entry {
    let (id, uuid, name) = (format!("id-{n}"), format!("uuid-{n}"), format!("key {n}"));
    let key = KeyInfo {
        id: &id,
        uuid: &uuid,
        name: &name,
    };
    let mut entry = adopt(
        &key,
        Reading::Counter {
            bytes: 5_000_000_000_000,
            connections: None,
        },
        at(0),
        at(1),
    )
    .unwrap();
    entry.exceeded_at = Some(at(2));
    entry.warned = 95;
    entry
}

fn action(n: u32, intent_key: &str) -> Action {
    Action {
        kind: ActionKind::Reset,
        reason: Reason::Boundary,
        uuid: format!("uuid-{n}"),
        key_id: format!("id-{n}"),
        name: format!("key {n}"),
        intent_key: intent_key.into(),
        counter_before: Some(42),
        call_server: true,
    }
}

fn commit(
    store: &Store,
    entries: &[Entry],
    intents: &[Action],
    memory: &ServerMemory,
    now: DateTime<Utc>,
) {
    store
        .quota_commit(
            "fra-1",
            &QuotaCommit {
                entries,
                history: &[],
                intents,
                memory,
                api_version: "1.0.0",
                now,
                daily: &[],
            },
        )
        .unwrap();
}

#[test]
fn ledger_and_memory_round_trip() {
    let (_dir, store) = store();
    assert_eq!(
        store.quota_memory("fra-1").unwrap(),
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
    commit(&store, &[entry(1), gone.clone()], &[], &memory, at(1));
    let mut ledger = store.quota_ledger("fra-1").unwrap();
    ledger.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    assert_eq!(ledger, vec![entry(1), gone]);
    assert_eq!(store.quota_memory("fra-1").unwrap(), memory);
    let usage = store.quota_usage(None).unwrap();
    assert_eq!(
        usage,
        vec![("fra-1".to_string(), entry(1))],
        "gone keys are not listed"
    );
    assert!(store.quota_usage(Some("ams-2")).unwrap().is_empty());
    assert!(store.quota_ledger("ams-2").unwrap().is_empty());
}

#[test]
fn an_intent_happens_once_per_key_and_a_failed_one_is_armed_again() {
    let (_dir, store) = store();
    let memory = ServerMemory::default();
    commit(
        &store,
        &[],
        &[action(1, "period A"), action(2, "period A")],
        &memory,
        at(1),
    );
    let open = store.quota_open_intents("fra-1").unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].action, action(1, "period A"));
    assert_eq!(open[0].state, IntentState::Pending);
    store.quota_mark_sending(&[open[0].id], at(2)).unwrap();
    assert_eq!(
        store.quota_open_intents("fra-1").unwrap()[0].state,
        IntentState::Sending
    );
    store
        .quota_finish(
            "fra-1",
            &[
                (open[0].id, IntentState::Done, "applied".into()),
                (open[1].id, IntentState::Failed, "failed".into()),
            ],
            &[entry(1)],
            at(3),
        )
        .unwrap();
    assert!(store.quota_open_intents("fra-1").unwrap().is_empty());
    assert_eq!(
        store.quota_ledger("fra-1").unwrap(),
        vec![entry(1)],
        "written with the outcome"
    );
    // Planned again: the done one stays done, the failed one is pending again.
    commit(
        &store,
        &[],
        &[action(1, "period A"), action(2, "period A")],
        &memory,
        at(4),
    );
    let open = store.quota_open_intents("fra-1").unwrap();
    assert_eq!(
        open.iter()
            .map(|i| i.action.uuid.as_str())
            .collect::<Vec<_>>(),
        ["uuid-2"]
    );
    let all = store.quota_intents("fra-1", Some("uuid-1")).unwrap();
    assert_eq!((all.len(), all[0].outcome.as_str()), (1, "applied"));
}

#[test]
fn notices_once_per_period_and_a_sync_note_survives_commits() {
    let (_dir, store) = store();
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(
        store
            .quota_notice_once("fra-1", "reset_not_applied", &keys(&["P1"]), at(1))
            .unwrap()
    );
    assert!(
        !store
            .quota_notice_once("fra-1", "reset_not_applied", &keys(&["P1"]), at(2))
            .unwrap()
    );
    assert!(
        store
            .quota_notice_once("fra-1", "reset_not_applied", &keys(&["P1", "P2"]), at(3))
            .unwrap()
    );
    assert!(
        store
            .quota_notice_once("ams-2", "reset_not_applied", &keys(&["P1"]), at(3))
            .unwrap()
    );
    store.quota_note_sync("fra-1", at(5)).unwrap();
    commit(&store, &[], &[], &ServerMemory::default(), at(6));
    assert_eq!(
        store.quota_memory("fra-1").unwrap().sync_noted_at,
        Some(at(5))
    );
}
