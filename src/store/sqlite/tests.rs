//! What only the SQLite backend has: its file, its migrations and their refusals, a store
//! deleted or replaced under it. The repositories' behaviour (round trips, pruning,
//! ordering, unknown stored names as errors, leases) is tested once for both backends in
//! tests/store_contract.rs.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;

use super::*;
use crate::model::{AuditAction, AuditEntry, AuditResult};
use crate::store::Store;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    (dir, store)
}

fn audit(server: &str, minute: u32, result: AuditResult) -> AuditEntry {
    AuditEntry {
        at: at(minute),
        server: server.into(),
        action: AuditAction::Sync,
        target: "config.json".into(),
        result,
        detail: String::new(),
    }
}

#[tokio::test]
async fn creates_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nested/state");
    let store = Store::open(&state).unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        schema::current_version()
    );
    assert!(state.join(DB_FILE).exists());
    store
        .audit()
        .append(&audit("a", 0, AuditResult::Ok))
        .await
        .unwrap();
    drop(store);
    let again = Store::open(&state).unwrap();
    assert_eq!(
        again.audit().recent(None, 10).await.unwrap().len(),
        1,
        "reopening keeps the data"
    );
    let journal: String = Connection::open(state.join(DB_FILE))
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Store::open_file(&path).unwrap_err();
    assert!(error.to_string().contains("schema version 99"), "{error}");
}

#[cfg(unix)]
#[test]
fn unwritable_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    // root ignores permissions; the check is meaningful only for other users.
    let probe = std::fs::write(locked.join("x"), b"x");
    if probe.is_ok() {
        return;
    }
    let error = Store::open(&locked).unwrap_err().to_string();
    assert!(
        error.contains("not writable") && error.contains("state_dir"),
        "{error}"
    );
}

#[test]
fn a_file_where_the_directory_should_be_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let error = Store::open(&file).unwrap_err().to_string();
    assert!(
        error.contains("cannot use the state directory") && error.contains("state_dir"),
        "{error}"
    );
}

#[tokio::test]
async fn a_deleted_or_replaced_file_is_lost() {
    let (dir, store) = store();
    store.check_intact().await.unwrap();
    store.check_writable().await.unwrap();
    let path = dir.path().join("state").join(DB_FILE);
    std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
    let error = store.check_intact().await.unwrap_err();
    assert!(error.is_lost(), "{error}");
    assert!(error.to_string().contains("was deleted"), "{error}");
    std::fs::write(&path, b"").unwrap();
    let error = store.check_writable().await.unwrap_err();
    assert!(error.to_string().contains("was replaced"), "{error}");
    // A store in memory has no file to lose.
    let memory = Store::open_file(std::path::Path::new(":memory:")).unwrap();
    memory.check_intact().await.unwrap();
}
