//! The SQLite backend through the repository interface: round trips, pruning, ordering,
//! unknown stored names as errors, and the migrations. Longer than 400 lines on purpose:
//! a test file, a few tests per repository.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;

use super::*;
use crate::model::{
    AttemptKind, AuditAction, AuditEntry, AuditResult, DriftMemory, Finding, FindingKind, JobKind,
    RunOutcome, RunRecord, ServerState, Severity, SyncAttempt, SyncAttemptOutcome,
};
use crate::store::{PRUNE_BATCH, RUNS_KEPT_PER_JOB, Store};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    (dir, store)
}

fn finding(kind: FindingKind, subject: &str, severity: Severity) -> Finding {
    Finding {
        server: "fra-1".into(),
        job: JobKind::ConfigSync,
        kind,
        subject: subject.into(),
        severity,
        summary: format!("{} {subject}", kind.as_str()),
        details: String::new(),
    }
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

/// A second connection to the store's file, for what the interface does not offer.
fn raw(dir: &tempfile::TempDir) -> Connection {
    Connection::open(dir.path().join("state").join(DB_FILE)).unwrap()
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
async fn runs_keep_the_latest_per_job_and_prune() {
    let (_dir, store) = store();
    let run = |job, started_at, outcome| RunRecord {
        server: "fra-1".into(),
        job,
        started_at,
        duration_ms: 12,
        outcome,
        detail: String::new(),
    };
    for (minute, outcome) in [
        (0, RunOutcome::Ok),
        (1, RunOutcome::Critical),
        (2, RunOutcome::Skipped),
    ] {
        let record = run(JobKind::Health, at(minute), outcome);
        store.runs().record(&record).await.unwrap();
    }
    let last = store.runs().last_runs().await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        last[0].outcome,
        RunOutcome::Critical,
        "skipped ticks are not the last run"
    );
    for i in 0..(RUNS_KEPT_PER_JOB + PRUNE_BATCH) as i64 {
        let started = at(3) + chrono::Duration::seconds(i);
        let record = run(JobKind::Reality, started, RunOutcome::Ok);
        store.runs().record(&record).await.unwrap();
    }
    let runs = store.runs();
    let reality = runs
        .recent("fra-1", JobKind::Reality, 10_000)
        .await
        .unwrap();
    // The batch past the cap went at once, down to the cap.
    assert_eq!(reality.len(), RUNS_KEPT_PER_JOB);
    assert_eq!(
        reality[0].started_at,
        at(3) + chrono::Duration::seconds((RUNS_KEPT_PER_JOB + PRUNE_BATCH) as i64 - 1)
    );
    for i in 0..(PRUNE_BATCH as i64 - 1) {
        let started = at(20) + chrono::Duration::seconds(i);
        let record = run(JobKind::Reality, started, RunOutcome::Ok);
        store.runs().record(&record).await.unwrap();
    }
    let reality = runs
        .recent("fra-1", JobKind::Reality, 10_000)
        .await
        .unwrap();
    assert_eq!(
        reality.len(),
        RUNS_KEPT_PER_JOB + PRUNE_BATCH - 1,
        "not one row per run"
    );
    let health = runs.recent("fra-1", JobKind::Health, 10).await.unwrap();
    assert_eq!(health.len(), 3, "other jobs untouched");
}

#[tokio::test]
async fn drift_memory_round_trips() {
    let (_dir, store) = store();
    let sync = store.sync();
    assert_eq!(sync.drift("fra-1").await.unwrap(), DriftMemory::default());
    let memory = DriftMemory {
        confirmations: 2,
        first_seen: Some(at(5)),
        signature: "missing:a".into(),
    };
    sync.save_drift("fra-1", &memory, at(6)).await.unwrap();
    assert_eq!(sync.drift("fra-1").await.unwrap(), memory);
    sync.save_drift("fra-1", &DriftMemory::default(), at(7))
        .await
        .unwrap();
    assert_eq!(sync.drift("fra-1").await.unwrap(), DriftMemory::default());
}

#[tokio::test]
async fn sync_window_counts_attempts_since() {
    use AttemptKind::{Sync, XrayRestart};
    let (_dir, store) = store();
    let sync = store.sync();
    let mut ids = Vec::new();
    for minute in [0, 10, 20, 50] {
        ids.push(
            sync.record_attempt("fra-1", Sync, at(minute))
                .await
                .unwrap(),
        );
    }
    sync.record_attempt("ams-2", Sync, at(30)).await.unwrap();
    sync.finish_attempt(ids[1], SyncAttemptOutcome::Deferred)
        .await
        .unwrap();
    sync.finish_attempt(ids[2], SyncAttemptOutcome::Completed)
        .await
        .unwrap();
    let xray = sync
        .record_attempt("fra-1", XrayRestart, at(55))
        .await
        .unwrap();
    sync.finish_attempt(xray, SyncAttemptOutcome::Deferred)
        .await
        .unwrap();
    let attempt = |minute, kind, outcome| SyncAttempt {
        at: at(minute),
        kind,
        outcome,
    };
    assert_eq!(
        sync.attempts_since("fra-1", at(10)).await.unwrap(),
        vec![
            attempt(10, Sync, SyncAttemptOutcome::Deferred),
            attempt(20, Sync, SyncAttemptOutcome::Completed),
            attempt(50, Sync, SyncAttemptOutcome::Started),
            attempt(55, XrayRestart, SyncAttemptOutcome::Deferred)
        ]
    );
    assert_eq!(sync.attempts_since("ams-2", at(0)).await.unwrap().len(), 1);
    assert_eq!(sync.last_sync("fra-1").await.unwrap(), Some(at(50)));
    sync.finish_attempt(ids[3], SyncAttemptOutcome::Deferred)
        .await
        .unwrap();
    assert_eq!(
        sync.last_sync("fra-1").await.unwrap(),
        Some(at(20)),
        "a deferred attempt did not sync"
    );
    assert_eq!(sync.last_sync("nowhere").await.unwrap(), None);
}

#[tokio::test]
async fn old_attempts_are_pruned_but_each_servers_latest_is_kept() {
    use AttemptKind::{RealityFix, Sync};
    let (_dir, store) = store();
    let sync = store.sync();
    let day_later = at(0) + chrono::Duration::days(1) + chrono::Duration::minutes(5);
    sync.record_attempt("ams-2", Sync, at(0)).await.unwrap();
    sync.record_attempt("fra-1", Sync, at(0)).await.unwrap();
    sync.record_attempt("fra-1", RealityFix, at(1))
        .await
        .unwrap();
    sync.record_attempt("fra-1", Sync, day_later).await.unwrap();
    let fra = sync.attempts_since("fra-1", at(0)).await.unwrap();
    assert_eq!(fra.iter().map(|a| a.at).collect::<Vec<_>>(), [day_later]);
    let ams = sync.attempts_since("ams-2", at(0)).await.unwrap();
    assert_eq!(ams.len(), 1, "the latest of a server is kept however old");
}

#[tokio::test]
async fn audit_log_is_append_only() {
    let (dir, store) = store();
    for result in [AuditResult::Started, AuditResult::Ok] {
        let mut entry = audit("fra-1", 1, result);
        entry.detail = "2 missing".into();
        store.audit().append(&entry).await.unwrap();
    }
    let recent = store.audit().recent(Some("fra-1"), 10).await.unwrap();
    assert_eq!(
        recent.iter().map(|e| e.result.as_str()).collect::<Vec<_>>(),
        ["ok", "started"]
    );
    let conn = raw(&dir);
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    assert!(
        conn.execute("UPDATE audit_log SET result = 'x'", [])
            .is_err()
    );
    assert_eq!(store.audit().recent(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn findings_open_continue_and_resolve() {
    let (_dir, store) = store();
    let findings = store.findings();
    let drift = finding(FindingKind::ConfigDrift, "config.json", Severity::Warning);
    let persists = finding(
        FindingKind::ConfigDriftPersists,
        "config.json",
        Severity::Critical,
    );
    let changes = findings
        .record(
            "fra-1",
            JobKind::ConfigSync,
            std::slice::from_ref(&drift),
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(changes.opened, [drift.fingerprint()]);
    assert_eq!((changes.open.warning, changes.open.critical), (1, 0));
    let both = [drift.clone(), persists.clone()];
    let changes = findings
        .record("fra-1", JobKind::ConfigSync, &both, at(5))
        .await
        .unwrap();
    assert_eq!(changes.continuing, [drift.fingerprint()]);
    assert_eq!(changes.opened, [persists.fingerprint()]);
    assert_eq!((changes.open.warning, changes.open.critical), (1, 1));
    let open = findings.open(Some("fra-1")).await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].severity, Severity::Critical, "most severe first");
    let kept = open
        .iter()
        .find(|f| f.kind == FindingKind::ConfigDrift)
        .unwrap();
    assert_eq!((kept.first_seen, kept.last_seen), (at(0), at(5)));
    // Another job's findings on the same server are left alone.
    let reality = Finding {
        job: JobKind::Reality,
        ..finding(FindingKind::RealityInvalid, "reality", Severity::Critical)
    };
    findings
        .record("fra-1", JobKind::Reality, &[reality], at(6))
        .await
        .unwrap();
    let changes = findings
        .record("fra-1", JobKind::ConfigSync, &[], at(10))
        .await
        .unwrap();
    assert_eq!(changes.resolved.len(), 2);
    assert!(
        changes
            .resolved
            .iter()
            .all(|f| f.resolved_at == Some(at(10)))
    );
    assert_eq!(changes.resolved[0].fingerprint(), drift.fingerprint());
    let open = findings.open(None).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].kind, FindingKind::RealityInvalid);
    // The same drift coming back later is a new finding.
    let changes = findings
        .record(
            "fra-1",
            JobKind::ConfigSync,
            std::slice::from_ref(&drift),
            at(20),
        )
        .await
        .unwrap();
    assert_eq!(changes.opened, [drift.fingerprint()]);
}

#[tokio::test]
async fn server_state_round_trips() {
    let (_dir, store) = store();
    let servers = store.servers();
    assert_eq!(servers.state("fra-1").await.unwrap(), None);
    let state = ServerState {
        server: "fra-1".into(),
        version: Some("1.0.0".into()),
        last_up_at: Some(at(2)),
        last_down_at: Some(at(3)),
        consecutive_failures: 2,
        last_error: Some("refused".into()),
    };
    servers.save(&state, at(3)).await.unwrap();
    assert_eq!(servers.state("fra-1").await.unwrap(), Some(state.clone()));
    let cleared = ServerState {
        consecutive_failures: 0,
        last_error: None,
        ..state
    };
    servers.save(&cleared, at(4)).await.unwrap();
    assert_eq!(servers.states().await.unwrap(), vec![cleared]);
    store.check_writable().await.unwrap();
}

#[tokio::test]
async fn unknown_stored_names_are_errors_not_defaults() {
    let (dir, store) = store();
    let record = RunRecord {
        server: "fra-1".into(),
        job: JobKind::Health,
        started_at: at(0),
        duration_ms: 1,
        outcome: RunOutcome::Ok,
        detail: String::new(),
    };
    store.runs().record(&record).await.unwrap();
    let drift = finding(FindingKind::ConfigDrift, "config.json", Severity::Warning);
    store
        .findings()
        .record("fra-1", JobKind::ConfigSync, &[drift], at(0))
        .await
        .unwrap();
    let conn = raw(&dir);
    conn.execute("UPDATE job_runs SET outcome = 'meh'", [])
        .unwrap();
    conn.execute("UPDATE findings SET severity = 'fatal'", [])
        .unwrap();
    let error = store.runs().last_runs().await.unwrap_err();
    assert!(
        error.to_string().contains("\"meh\" is no RunOutcome"),
        "{error}"
    );
    let error = store.findings().open(None).await.unwrap_err();
    assert!(
        error.to_string().contains("\"fatal\" is no Severity"),
        "{error}"
    );
}

#[tokio::test]
async fn leases_keep_processes_apart_and_expire() {
    use crate::model::Lease;
    use crate::store::LeaseGrant;
    let (dir, first) = store();
    // A second handle on the same file: another process.
    let second = Store::open(&dir.path().join("state")).unwrap();
    let lease = |holder: &str, minute: u32, until: u32| Lease {
        server: "fra-1".into(),
        job: JobKind::Quota,
        holder: holder.into(),
        acquired_at: at(minute),
        expires_at: at(until),
    };
    let grant = |store: &Store, wanted: Lease| {
        let store = store.clone();
        async move { store.leases().acquire(&wanted).await.unwrap() }
    };
    assert_eq!(grant(&first, lease("a", 0, 2)).await, LeaseGrant::Granted);
    let LeaseGrant::HeldBy(held) = grant(&second, lease("b", 1, 3)).await else {
        panic!("b must not get a's lease");
    };
    assert_eq!((held.holder.as_str(), held.expires_at), ("a", at(2)));
    // Other jobs and servers are free.
    let other = Lease {
        job: JobKind::Health,
        ..lease("b", 1, 3)
    };
    assert_eq!(grant(&second, other).await, LeaseGrant::Granted);
    // The holder renews it; its first taking stays.
    assert_eq!(grant(&first, lease("a", 1, 4)).await, LeaseGrant::Granted);
    let LeaseGrant::HeldBy(held) = grant(&second, lease("b", 3, 5)).await else {
        panic!("renewed until minute 4");
    };
    assert_eq!((held.acquired_at, held.expires_at), (at(0), at(4)));
    // Expired (the holder died): taken over; the old holder's release leaves it alone.
    assert_eq!(grant(&second, lease("b", 4, 6)).await, LeaseGrant::Granted);
    first
        .leases()
        .release("fra-1", JobKind::Quota, "a")
        .await
        .unwrap();
    assert!(matches!(
        grant(&first, lease("a", 5, 7)).await,
        LeaseGrant::HeldBy(Lease { ref holder, .. }) if holder == "b"
    ));
    second
        .leases()
        .release("fra-1", JobKind::Quota, "b")
        .await
        .unwrap();
    assert_eq!(grant(&first, lease("a", 5, 7)).await, LeaseGrant::Granted);
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
