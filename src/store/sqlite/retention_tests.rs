//! Retention: rows past the horizons go, younger ones stay; the audit log still refuses
//! every update and every delete of an entry younger than the recorded horizon.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rusqlite::Connection;

use crate::model::quota::HistoryRow;
use crate::model::{
    AuditAction, AuditEntry, AuditResult, Finding, FindingKind, JobKind, RunOutcome, RunRecord,
    Severity,
};
use crate::store::{DB_FILE, Horizons, Store};

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap() + Duration::days(n)
}

fn audit(at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at,
        server: "fra-1".into(),
        action: AuditAction::Sync,
        target: "config.json".into(),
        result: AuditResult::Ok,
        detail: String::new(),
    }
}

fn run(job: JobKind, started_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        server: "fra-1".into(),
        job,
        started_at,
        duration_ms: 3,
        outcome: RunOutcome::Ok,
        detail: String::new(),
    }
}

fn finding(subject: &str) -> Finding {
    Finding {
        server: "fra-1".into(),
        job: JobKind::ConfigSync,
        kind: FindingKind::ConfigDrift,
        subject: subject.into(),
        severity: Severity::Warning,
        summary: subject.into(),
        details: String::new(),
    }
}

fn history(uuid: &str, end: DateTime<Utc>) -> HistoryRow {
    HistoryRow {
        uuid: uuid.into(),
        key_id: "1".into(),
        name: uuid.into(),
        period_start: end - Duration::days(30),
        period_end: end,
        total: 1,
        used: 1,
        adopted: false,
    }
}

fn horizons(at: DateTime<Utc>) -> Horizons {
    Horizons {
        audit: at,
        job_runs: at,
        findings: at,
        quota_history: at,
    }
}

#[tokio::test]
async fn rows_past_the_horizons_go_and_younger_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in [0, 10, 20, 30] {
        store.audit().append(&audit(day(n))).await.unwrap();
        store
            .runs()
            .record(&run(JobKind::Health, day(n)))
            .await
            .unwrap();
    }
    // A job that last ran long ago keeps its latest run.
    store
        .runs()
        .record(&run(JobKind::Reality, day(1)))
        .await
        .unwrap();
    // Findings: "old" resolved on day 5, "recent" on day 25, "open" never.
    let findings = store.findings();
    let all = [finding("old"), finding("recent"), finding("open")];
    findings
        .record("fra-1", JobKind::ConfigSync, &all, day(0))
        .await
        .unwrap();
    let later = [finding("recent"), finding("open")];
    findings
        .record("fra-1", JobKind::ConfigSync, &later, day(5))
        .await
        .unwrap();
    findings
        .record("fra-1", JobKind::ConfigSync, &[finding("open")], day(25))
        .await
        .unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let mut insert = conn
            .prepare(
                "INSERT INTO quota_history (server, uuid, key_id, name, period_start, period_end, total, used, adopted)
                 VALUES ('fra-1', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        for (uuid, end) in [("u-old", day(3)), ("u-new", day(28))] {
            let h = history(uuid, end);
            insert
                .execute(rusqlite::params![
                    h.uuid,
                    h.key_id,
                    h.name,
                    crate::model::stamp(h.period_start),
                    crate::model::stamp(h.period_end),
                    1,
                    1,
                    false
                ])
                .unwrap();
        }
    }

    let trimmed = store.retention().trim(&horizons(day(15))).await.unwrap();
    assert_eq!(trimmed.audit, 2);
    assert_eq!(
        trimmed.job_runs, 2,
        "health's days 0 and 10; reality's only run stays"
    );
    assert_eq!(trimmed.findings, 1);
    assert_eq!(trimmed.quota_history, 1);

    let kept: Vec<_> = store.audit().recent(None, 10).await.unwrap();
    assert_eq!(
        kept.iter().map(|e| e.at).collect::<Vec<_>>(),
        [day(30), day(20)]
    );
    let health = store
        .runs()
        .recent("fra-1", JobKind::Health, 10)
        .await
        .unwrap();
    assert_eq!(
        health.iter().map(|r| r.started_at).collect::<Vec<_>>(),
        [day(30), day(20)]
    );
    let reality = store
        .runs()
        .recent("fra-1", JobKind::Reality, 10)
        .await
        .unwrap();
    assert_eq!(reality.len(), 1);
    let subjects: Vec<String> = store
        .findings()
        .between(day(-1), day(40))
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.subject)
        .collect();
    assert_eq!(subjects, ["recent", "open"]);
    let history = store.quota().history("fra-1", None).await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.uuid.as_str()).collect::<Vec<_>>(),
        ["u-new"]
    );

    // Again: nothing more to do.
    let again = store.retention().trim(&horizons(day(15))).await.unwrap();
    assert_eq!(
        (
            again.audit,
            again.job_runs,
            again.findings,
            again.quota_history
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_young_deletes_after_a_trim() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in [0, 20] {
        store.audit().append(&audit(day(n))).await.unwrap();
    }
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    // No horizon recorded yet: nothing may be deleted.
    assert!(
        conn.execute("DELETE FROM audit_log WHERE at < '2025-01-05'", [])
            .is_err()
    );

    store.retention().trim(&horizons(day(10))).await.unwrap();
    assert_eq!(store.audit().recent(None, 10).await.unwrap().len(), 1);
    // The entry of day 20 is younger than the horizon: refused, by the database itself.
    let refused = conn.execute("DELETE FROM audit_log", []).unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    assert!(
        conn.execute("UPDATE audit_log SET result = 'x'", [])
            .is_err()
    );
    assert!(
        conn.execute("UPDATE audit_log SET at = '2000-01-01T00:00:00.000Z'", [])
            .is_err()
    );
    // Nor can the horizon be moved to yesterday to make room: the store's own clock
    // keeps 30 days however the setting is written.
    for sql in [
        "UPDATE store_settings SET value = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE name = 'audit_trim_before'",
        "INSERT OR REPLACE INTO store_settings (name, value) VALUES ('audit_trim_before', '9999-01-01T00:00:00.000Z')",
    ] {
        let refused = conn.execute(sql, []).unwrap_err();
        assert!(
            refused.to_string().contains("at least 30 days"),
            "{refused}"
        );
    }
    assert_eq!(store.audit().recent(None, 10).await.unwrap().len(), 1);
    // A horizon within the last 30 days, through the interface, is refused too.
    let too_young = horizons(Utc::now() - Duration::days(2));
    assert!(store.retention().trim(&too_young).await.is_err());
}

#[tokio::test]
async fn a_new_database_hands_free_pages_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let detail = "x".repeat(2_000);
    for n in 0..2_000 {
        let mut entry = audit(day(0) + Duration::seconds(n));
        entry.detail = detail.clone();
        store.audit().append(&entry).await.unwrap();
    }
    let trimmed = store.retention().trim(&horizons(day(1))).await.unwrap();
    assert_eq!(trimmed.audit, 2_000);
    assert!(trimmed.pages_released > 500, "{trimmed:?}");
    assert_eq!(trimmed.pages_free, 0);
}
