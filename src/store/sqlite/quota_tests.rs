//! SQLite's own quota writes: a run writes only the ledger rows that changed, reading
//! times stay exact, the page cache follows the ledger. The quota repository's behaviour
//! on both backends is in tests/store_contract/quota.rs.

use chrono::{DateTime, TimeZone, Utc};

use crate::model::quota::{Action, Entry, ServerMemory};
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
