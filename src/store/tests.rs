use chrono::TimeZone;

use super::*;
use crate::config::JobKind;
use crate::model::{Finding, FindingKind};

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

#[test]
fn creates_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("nested/state");
    let store = Store::open(&state).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::current_version());
    assert!(state.join(DB_FILE).exists());
    store
        .append_audit(&AuditEntry {
            at: at(0),
            server: "a".into(),
            action: "sync".into(),
            target: "config.json".into(),
            result: "ok".into(),
            detail: String::new(),
        })
        .unwrap();
    drop(store);
    let again = Store::open(&state).unwrap();
    assert_eq!(
        again.recent_audit(None, 10).unwrap().len(),
        1,
        "reopening keeps the data"
    );
    let journal: String = again
        .with(|c| c.pragma_query_value(None, "journal_mode", |r| r.get(0)))
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

#[test]
fn runs_keep_the_latest_per_job_and_prune() {
    let (_dir, store) = store();
    for (minute, outcome) in [
        (0, RunOutcome::Ok),
        (1, RunOutcome::Critical),
        (2, RunOutcome::Skipped),
    ] {
        store
            .record_run(&RunRecord {
                server: "fra-1".into(),
                job: "health".into(),
                started_at: at(minute),
                duration_ms: 12,
                outcome,
                detail: String::new(),
            })
            .unwrap();
    }
    let last = store.last_runs().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        last[0].outcome,
        RunOutcome::Critical,
        "skipped ticks are not the last run"
    );
    for i in 0..(RUNS_KEPT_PER_JOB + 20) {
        store
            .record_run(&RunRecord {
                server: "fra-1".into(),
                job: "reality".into(),
                started_at: at(3) + chrono::Duration::seconds(i),
                duration_ms: 1,
                outcome: RunOutcome::Ok,
                detail: String::new(),
            })
            .unwrap();
    }
    assert_eq!(
        store
            .recent_runs("fra-1", JobKind::Reality, 10_000)
            .unwrap()
            .len() as i64,
        RUNS_KEPT_PER_JOB
    );
    assert_eq!(
        store
            .recent_runs("fra-1", JobKind::Health, 10)
            .unwrap()
            .len(),
        3,
        "other jobs untouched"
    );
}

#[test]
fn drift_memory_round_trips() {
    let (_dir, store) = store();
    assert_eq!(store.drift("fra-1").unwrap(), DriftMemory::default());
    let memory = DriftMemory {
        confirmations: 2,
        first_seen: Some(at(5)),
        signature: "missing:a".into(),
    };
    store.save_drift("fra-1", &memory, at(6)).unwrap();
    assert_eq!(store.drift("fra-1").unwrap(), memory);
    store
        .save_drift("fra-1", &DriftMemory::default(), at(7))
        .unwrap();
    assert_eq!(store.drift("fra-1").unwrap(), DriftMemory::default());
}

#[test]
fn sync_window_counts_attempts_since() {
    let (_dir, store) = store();
    for minute in [0, 10, 20, 50] {
        store.record_sync_attempt("fra-1", at(minute)).unwrap();
    }
    store.record_sync_attempt("ams-2", at(30)).unwrap();
    assert_eq!(
        store.sync_attempts_since("fra-1", at(10)).unwrap(),
        vec![at(10), at(20), at(50)]
    );
    assert_eq!(store.sync_attempts_since("ams-2", at(0)).unwrap().len(), 1);
}

#[test]
fn audit_log_is_append_only() {
    let (_dir, store) = store();
    for result in ["started", "ok"] {
        store
            .append_audit(&AuditEntry {
                at: at(1),
                server: "fra-1".into(),
                action: "sync".into(),
                target: "config.json".into(),
                result: result.into(),
                detail: "2 missing".into(),
            })
            .unwrap();
    }
    let recent = store.recent_audit(Some("fra-1"), 10).unwrap();
    assert_eq!(
        recent.iter().map(|e| e.result.as_str()).collect::<Vec<_>>(),
        ["ok", "started"]
    );
    assert!(
        store
            .with(|c| c.execute("DELETE FROM audit_log", []))
            .is_err()
    );
    assert!(
        store
            .with(|c| c.execute("UPDATE audit_log SET result = 'x'", []))
            .is_err()
    );
    assert_eq!(store.recent_audit(None, 10).unwrap().len(), 2);
}

#[test]
fn findings_open_continue_and_resolve() {
    let (_dir, store) = store();
    let drift = finding(FindingKind::ConfigDrift, "config.json", Severity::Warning);
    let persists = finding(
        FindingKind::ConfigDriftPersists,
        "config.json",
        Severity::Critical,
    );
    let changes = store
        .record_findings(
            "fra-1",
            JobKind::ConfigSync,
            std::slice::from_ref(&drift),
            at(0),
        )
        .unwrap();
    assert_eq!(changes.opened, [drift.fingerprint()]);
    let changes = store
        .record_findings(
            "fra-1",
            JobKind::ConfigSync,
            &[drift.clone(), persists.clone()],
            at(5),
        )
        .unwrap();
    assert_eq!(changes.continuing, [drift.fingerprint()]);
    assert_eq!(changes.opened, [persists.fingerprint()]);
    let open = store.open_findings(Some("fra-1")).unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].severity, "critical", "most severe first");
    let kept = open.iter().find(|f| f.kind == "config_drift").unwrap();
    assert_eq!((kept.first_seen, kept.last_seen), (at(0), at(5)));
    // Another job's findings on the same server are left alone.
    let reality = Finding {
        job: JobKind::Reality,
        ..finding(FindingKind::RealityInvalid, "reality", Severity::Critical)
    };
    store
        .record_findings("fra-1", JobKind::Reality, &[reality], at(6))
        .unwrap();
    let changes = store
        .record_findings("fra-1", JobKind::ConfigSync, &[], at(10))
        .unwrap();
    assert_eq!(changes.resolved.len(), 2);
    assert!(
        changes
            .resolved
            .iter()
            .all(|f| f.resolved_at == Some(at(10)))
    );
    let open = store.open_findings(None).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].kind, "reality_invalid");
    // The same drift coming back later is a new finding.
    let changes = store
        .record_findings(
            "fra-1",
            JobKind::ConfigSync,
            std::slice::from_ref(&drift),
            at(20),
        )
        .unwrap();
    assert_eq!(changes.opened, [drift.fingerprint()]);
}

#[test]
fn server_state_counts_failures_and_resets_on_success() {
    let (_dir, store) = store();
    assert_eq!(
        store.note_server_down("fra-1", "timeout", at(0)).unwrap(),
        1
    );
    assert_eq!(
        store.note_server_down("fra-1", "timeout", at(1)).unwrap(),
        2
    );
    store.note_server_up("fra-1", "1.0.0", at(2)).unwrap();
    assert_eq!(
        store.note_server_down("fra-1", "refused", at(3)).unwrap(),
        1
    );
    let states = store.server_states().unwrap();
    assert_eq!(states[0].version.as_deref(), Some("1.0.0"));
    assert_eq!(states[0].last_up_at, Some(at(2)));
    assert_eq!(states[0].last_error.as_deref(), Some("refused"));
    store.check_writable().unwrap();
}

#[test]
fn audit_since_reads_one_server_from_a_time_on() {
    let (_dir, store) = store();
    for (server, minute) in [("fra-1", 1), ("fra-1", 5), ("ams-2", 6), ("fra-1", 9)] {
        let entry = AuditEntry {
            at: at(minute),
            server: server.into(),
            action: "sync".into(),
            target: "config.json".into(),
            result: "ok".into(),
            detail: String::new(),
        };
        store.append_audit(&entry).unwrap();
    }
    let since: Vec<_> = store
        .audit_since("fra-1", at(5))
        .unwrap()
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(
        since,
        [at(9), at(5)],
        "newest first, the boundary included, other servers left out"
    );
    assert_eq!(store.schema_version().unwrap(), schema::current_version());
}
