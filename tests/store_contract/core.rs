//! Runs, sync attempts, the audit log, findings and server state through the repository
//! interface (from the SQLite backend's tests, run on both backends).

use chrono::{DateTime, TimeZone, Utc};
use keywarden::model::{
    AttemptKind, AuditAction, AuditEntry, AuditResult, DriftMemory, Finding, FindingKind, JobKind,
    RunOutcome, RunRecord, ServerState, Severity, SyncAttempt, SyncAttemptOutcome,
};
use keywarden::store::RUNS_KEPT_PER_JOB;

use super::Ctx;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
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

pub async fn runs_keep_the_latest_per_job_and_prune(ctx: &Ctx) {
    let store = &ctx.store;
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
    // A batch past the cap: SQLite prunes 64 at a time, down to the cap.
    for i in 0..(RUNS_KEPT_PER_JOB + keywarden::store::PRUNE_BATCH) as i64 {
        let started = at(3) + chrono::Duration::seconds(i);
        let record = run(JobKind::Reality, started, RunOutcome::Ok);
        store.runs().record(&record).await.unwrap();
    }
    let runs = store.runs();
    let reality = runs
        .recent("fra-1", JobKind::Reality, 10_000)
        .await
        .unwrap();
    assert_eq!(reality.len(), RUNS_KEPT_PER_JOB);
    let health = runs.recent("fra-1", JobKind::Health, 10).await.unwrap();
    assert_eq!(health.len(), 3, "other jobs untouched");
}

pub async fn drift_memory_round_trips(ctx: &Ctx) {
    let store = &ctx.store;
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

pub async fn sync_window_counts_attempts_since(ctx: &Ctx) {
    use AttemptKind::{Sync, XrayRestart};
    let store = &ctx.store;
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

pub async fn old_attempts_are_pruned_but_each_servers_latest_is_kept(ctx: &Ctx) {
    use AttemptKind::{RealityFix, Sync};
    let store = &ctx.store;
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

pub async fn audit_log_is_append_only(ctx: &Ctx) {
    let store = &ctx.store;
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
    assert!(ctx.exec("DELETE FROM audit_log").await.is_err());
    assert!(ctx.exec("UPDATE audit_log SET result = 'x'").await.is_err());
    assert_eq!(store.audit().recent(None, 10).await.unwrap().len(), 2);
}

pub async fn findings_open_continue_and_resolve(ctx: &Ctx) {
    let store = &ctx.store;
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

pub async fn server_state_round_trips(ctx: &Ctx) {
    let store = &ctx.store;
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

pub async fn unknown_stored_names_are_errors_not_defaults(ctx: &Ctx) {
    let store = &ctx.store;
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
    ctx.exec("UPDATE job_runs SET outcome = 'meh'")
        .await
        .unwrap();
    ctx.exec("UPDATE findings SET severity = 'fatal'")
        .await
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
