//! The quota tables: the ledger round-trips, a commit is atomic with its intents, an
//! intent happens at most once per key, notices once per period, failures are counted.

use chrono::{DateTime, TimeZone, Utc};

use crate::model::FindingKind;
use crate::model::quota::{
    Action, ActionKind, Entry, FinishedIntent, IntentOutcome, IntentState, Reason, ServerMemory,
};
use crate::store::{QuotaCommit, Store};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
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
        daily: Vec::new(),
    };
    store.quota().commit("fra-1", commit).await.unwrap();
}

#[tokio::test]
async fn ledger_and_memory_round_trip() {
    let (_dir, store) = store();
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
    commit(&store, &[entry(1), gone.clone()], &[], &memory, at(1)).await;
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

#[tokio::test]
async fn an_intent_happens_once_per_key_and_a_failed_one_is_armed_again() {
    let (_dir, store) = store();
    let quota = store.quota();
    let memory = ServerMemory::default();
    let planned = [action(1, 0), action(2, 0)];
    commit(&store, &[], &planned, &memory, at(1)).await;
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
    commit(&store, &[], &planned, &memory, at(4)).await;
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
    commit(&store, &[], &[action(1, 30)], &memory, at(31)).await;
    assert_eq!(quota.open_intents("fra-1").await.unwrap().len(), 2);
}

#[tokio::test]
async fn notices_are_recorded_once_per_server_kind_and_period() {
    let (_dir, store) = store();
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

#[tokio::test]
async fn failures_are_counted_without_touching_the_rest_of_the_memory() {
    let (_dir, store) = store();
    let quota = store.quota();
    quota.save_failures("fra-1", 1, at(1)).await.unwrap();
    assert_eq!(quota.memory("fra-1").await.unwrap().consecutive_failures, 1);
    let memory = ServerMemory {
        first_run_at: Some(at(2)),
        resets_suspended_version: Some("2.3.6".into()),
        ..ServerMemory::default()
    };
    commit(&store, &[], &[], &memory, at(2)).await;
    quota.save_failures("fra-1", 2, at(3)).await.unwrap();
    assert_eq!(
        quota.memory("fra-1").await.unwrap(),
        ServerMemory {
            consecutive_failures: 2,
            ..memory
        }
    );
}

/// Counts the ledger rows SQLite writes, through triggers added on a second connection.
fn count_ledger_writes(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE test_ledger_writes (n INTEGER NOT NULL);
         INSERT INTO test_ledger_writes VALUES (0);
         CREATE TRIGGER test_count_update AFTER UPDATE ON quota_ledger
             BEGIN UPDATE test_ledger_writes SET n = n + 1; END;
         CREATE TRIGGER test_count_insert AFTER INSERT ON quota_ledger
             BEGIN UPDATE test_ledger_writes SET n = n + 1; END;",
    )
    .unwrap();
    conn
}

fn ledger_writes(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT n FROM test_ledger_writes", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_run_that_only_read_writes_no_ledger_row_and_reading_times_stay_exact() {
    let (dir, store) = store();
    let memory = ServerMemory::default();
    let entries: Vec<Entry> = (1..=50).map(entry).collect();
    commit(&store, &entries, &[], &memory, at(1)).await;
    let counter = count_ledger_writes(&dir.path().join(crate::store::DB_FILE));

    // Run 2 at minute 10 reads every key; nothing else moved. Key 3's read failed (it
    // keeps minute 1), key 4 is left out of the commit (as a commit before a restart
    // leaves a dropped key), key 5's counter moved.
    let mut next: Vec<Entry> = entries.clone();
    for e in &mut next {
        e.read_at = Some(at(10));
    }
    next[2].read_at = Some(at(1));
    next[4].counter = Some(5_000_000_000_001);
    next[4].changed_at = Some(at(10));
    next.remove(3);
    commit(&store, &next, &[], &memory, at(10)).await;
    // Key 3 got its own time (it was stored as "read at the server's last reading"),
    // key 4 likewise, key 5 its new figures: three rows, not fifty.
    assert_eq!(ledger_writes(&counter), 3);

    let mut ledger = store.quota().ledger("fra-1").await.unwrap();
    ledger.sort_by_key(|e| e.uuid.trim_start_matches("uuid-").parse::<u32>().unwrap());
    for e in &ledger {
        let expected = match e.uuid.as_str() {
            "uuid-3" | "uuid-4" => at(1),
            _ => at(10),
        };
        assert_eq!(e.read_at, Some(expected), "{}", e.uuid);
    }
    assert_eq!(ledger[4].counter, Some(5_000_000_000_001));
    let usage = store.quota().usage(Some("fra-1")).await.unwrap();
    assert!(usage.iter().all(|(_, e)| e.read_at.is_some()));

    // Run 3 at minute 20: the same again writes only key 3 and key 4 back to "read at
    // the last reading" once they are read.
    let mut third: Vec<Entry> = ledger.clone();
    for e in &mut third {
        e.read_at = Some(at(20));
    }
    commit(&store, &third, &[], &memory, at(20)).await;
    assert_eq!(ledger_writes(&counter), 5);
    commit(
        &store,
        &third
            .clone()
            .into_iter()
            .map(|mut e| {
                e.read_at = Some(at(30));
                e
            })
            .collect::<Vec<_>>(),
        &[],
        &memory,
        at(30),
    )
    .await;
    assert_eq!(
        ledger_writes(&counter),
        5,
        "a run that only read writes nothing"
    );
    let ledger = store.quota().ledger("fra-1").await.unwrap();
    assert!(ledger.iter().all(|e| e.read_at == Some(at(30))));
}

#[tokio::test]
async fn finishing_intents_keeps_the_servers_reading_time() {
    let (_dir, store) = store();
    let memory = ServerMemory::default();
    let entries: Vec<Entry> = (1..=3).map(entry).collect();
    commit(&store, &entries, &[], &memory, at(1)).await;
    let mut changed = entries[1].clone();
    changed.expect_drop = false;
    changed.counter = Some(0);
    store
        .quota()
        .finish("fra-1", &[], &[changed.clone()], at(2))
        .await
        .unwrap();
    let ledger = store.quota().ledger("fra-1").await.unwrap();
    let got = ledger.iter().find(|e| e.uuid == changed.uuid).unwrap();
    assert_eq!(got, &changed);
    assert!(ledger.iter().all(|e| e.read_at == Some(at(1))));
}

#[test]
fn the_page_cache_follows_the_ledger_within_bounds() {
    use super::super::cache_kib;
    assert_eq!(cache_kib(0), 2 * 1024);
    assert_eq!(cache_kib(10_000), 10_000 * 640 / 1024);
    assert!(cache_kib(45_000) > 2 * 1024 * 10);
    assert_eq!(cache_kib(10_000_000), 64 * 1024);
}
