//! A state store written by the release before the typed persistence layer (schema
//! version 4, `tests/fixtures/store-v4/`) opens with today's `Store`, migrates to the
//! latest schema, and keeps what it held: the ledger, the intents (their old outcome
//! text split into a typed outcome and an error, their period read out of the key),
//! the alert states and outbox, the audit log, and the sync attempts (a deferral known
//! before only from the audit log).

use chrono::{DateTime, TimeZone, Utc};
use keywarden::model::quota::{Action, IntentOutcome, IntentState, Reason};
use keywarden::model::{
    AttemptKind, AuditAction, AuditResult, FindingKind, JobKind, RunOutcome, SyncAttempt,
    SyncAttemptOutcome,
};
use keywarden::store::{DB_FILE, QuotaCommit, Store, latest_schema_version};

const ALICE: &str = "3a8afaf0-39b5-45a9-a1f2-04efe2444231";
const BOB: &str = "6e3fcaf2-e0a8-4980-b3d4-bb49d39eade3";
const KEY_003: &str = "bdf1828b-edd3-4aab-8e28-0e0dae0632d3";

fn utc(month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, minute, 0)
        .unwrap()
}

/// The fixture loaded into a fresh state directory, as the old release left it.
fn old_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sql = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v4/state.sql"),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute_batch(&sql).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 4, "the fixture is a version 4 store");
    dir
}

#[tokio::test]
async fn a_store_of_the_previous_release_migrates_and_keeps_its_state() {
    let dir = old_store();
    let store = Store::open(dir.path()).expect("the old store opens");
    assert_eq!(
        store.schema_version().await.unwrap(),
        latest_schema_version()
    );

    // The ledger and the finished period.
    let quota = store.quota();
    let mut ledger = quota.ledger("fra-1").await.unwrap();
    ledger.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = ledger.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Alice iPhone",
            "Bob laptop",
            "key-003",
            "key-004",
            "key-005"
        ]
    );
    assert!(ledger.iter().all(|e| e.period_start == utc(12, 1, 0, 0)));
    let key_003 = ledger.iter().find(|e| e.uuid == KEY_003).unwrap();
    assert_eq!(
        (key_003.period_total, key_003.exceed_resets),
        (125_829_120, 1)
    );
    let history = quota.history("fra-1", Some(ALICE)).await.unwrap();
    assert_eq!(
        (history.len(), history[0].total, history[0].period_end),
        (1, 120_586_240, utc(12, 1, 0, 0))
    );
    let memory = quota.memory("fra-1").await.unwrap();
    assert_eq!(memory.first_run_at, Some(utc(11, 20, 12, 0)));
    let digests = quota
        .notices("fra-1", FindingKind::ResetNotApplied)
        .await
        .unwrap();
    assert_eq!(
        digests,
        ["2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"],
        "the reset digests raised"
    );
    assert_eq!(
        store.sync().last_sync("fra-1").await.unwrap(),
        Some(utc(11, 20, 12, 15)),
        "the quota job learns of the last sync from the attempts"
    );

    // Intents: the outcome text became a typed outcome and an error.
    let intents = quota.intents("fra-1", None).await.unwrap();
    assert_eq!(intents.len(), 8);
    let summary: Vec<(IntentState, Option<IntentOutcome>)> =
        intents.iter().map(|i| (i.state, i.outcome)).collect();
    use IntentOutcome::{Applied, Failed, NotApplied};
    use IntentState::{Done, Pending};
    assert_eq!(
        summary,
        [
            (Done, Some(Applied)),
            (Done, Some(Failed)),
            (Done, Some(Applied)),
            (Done, Some(NotApplied)),
            (Done, Some(NotApplied)),
            (Done, Some(NotApplied)),
            (Done, Some(NotApplied)),
            (Pending, None),
        ]
    );
    let failed = &intents[1];
    assert_eq!(failed.action.uuid, BOB);
    assert_eq!(
        failed.error.as_deref(),
        Some(
            "POST /api/keys/9c5384e5-faed-45c3-a8c9-a94f5887cd1e/traffic/reset: server error (500): Failed to reset traffic"
        )
    );
    assert!(
        intents
            .iter()
            .filter(|i| i.action.uuid != BOB)
            .all(|i| i.error.is_none())
    );
    // The period and the allowance were read out of the old keys, and give them back.
    assert_eq!(
        (
            failed.action.reason,
            failed.action.period_start,
            failed.action.allowance
        ),
        (Reason::Exceeded, utc(11, 1, 0, 0), 1)
    );
    assert_eq!(
        failed.action.intent_key(),
        "exceeded 2026-11-01T00:00:00.000Z #1"
    );
    assert_eq!(
        intents[2].action.intent_key(),
        "period 2026-12-01T00:00:00.000Z"
    );
    let open = quota.open_intents("fra-1").await.unwrap();
    assert_eq!(open.len(), 1, "the intent the old process left pending");
    assert_eq!(
        (open[0].action.uuid.as_str(), open[0].action.allowance),
        (KEY_003, 1)
    );

    // Planning an intent again that the old release finished does nothing: at most once
    // holds across the upgrade.
    let again: Action = intents[2].action.clone();
    let commit = QuotaCommit {
        entries: Vec::new(),
        history: Vec::new(),
        intents: vec![again],
        memory,
        api_version: "1.0.0".into(),
        now: utc(12, 1, 1, 0),
        read_at: None,
        reread: Vec::new(),
        daily: Vec::new(),
    };
    quota.commit("fra-1", commit).await.unwrap();
    assert_eq!(quota.open_intents("fra-1").await.unwrap().len(), 1);

    // The sync attempts: the deferral came from the audit log, once, at migration.
    let attempts = store
        .sync()
        .attempts_since("fra-1", utc(11, 20, 0, 0))
        .await
        .unwrap();
    let attempt = |at, outcome| SyncAttempt {
        at,
        kind: AttemptKind::Sync,
        outcome,
    };
    assert_eq!(
        attempts,
        [
            attempt(utc(11, 20, 12, 10), SyncAttemptOutcome::Deferred),
            attempt(utc(11, 20, 12, 15), SyncAttemptOutcome::Completed),
        ]
    );

    // The audit log, typed.
    let audit = store.audit().recent(Some("fra-1"), 100).await.unwrap();
    assert_eq!(audit.len(), 15);
    let count = |action, result| {
        audit
            .iter()
            .filter(|e| e.action == action && e.result == result)
            .count()
    };
    assert_eq!(count(AuditAction::Sync, AuditResult::Deferred), 1);
    assert_eq!(count(AuditAction::Sync, AuditResult::Ok), 1);
    assert_eq!(count(AuditAction::VerifyReality, AuditResult::Ok), 2);
    assert_eq!(count(AuditAction::QuotaReset, AuditResult::NotApplied), 4);
    assert_eq!(count(AuditAction::QuotaReset, AuditResult::Failed), 1);

    // Alert states, the outbox and sink health.
    let states = store.alerts().states("fra-1").await.unwrap();
    assert_eq!(states.len(), 10);
    let firing: Vec<&str> = states
        .iter()
        .filter(|s| s.alert.status == keywarden::model::alert::AlertStatus::Firing)
        .map(|s| s.alert.kind.as_str())
        .collect();
    assert_eq!(
        firing,
        [
            "config_drift_repaired",
            "reset_not_applied",
            "traffic_data_stale"
        ]
    );
    let pending = store.alerts().pending("ops-hook").await.unwrap();
    assert_eq!(pending.len(), 12);
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].last_error.as_deref(), Some("connection refused"));
    let health = store.alerts().sink_health("ops-hook").await.unwrap();
    assert!(health.failing && health.consecutive_failures == 3);

    // Findings, runs and the server's state.
    let open: Vec<FindingKind> = store
        .findings()
        .open(Some("fra-1"))
        .await
        .unwrap()
        .iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(
        open,
        [
            FindingKind::ConfigDriftRepaired,
            FindingKind::ResetNotApplied,
            FindingKind::TrafficDataStale
        ]
    );
    let runs = store.runs().last_runs().await.unwrap();
    let last: Vec<(JobKind, RunOutcome)> = runs.iter().map(|r| (r.job, r.outcome)).collect();
    assert_eq!(
        last,
        [
            (JobKind::ConfigSync, RunOutcome::Warning),
            (JobKind::Health, RunOutcome::Error),
            (JobKind::Quota, RunOutcome::Warning),
            (JobKind::Reality, RunOutcome::Ok),
        ]
    );
    let server = &store.servers().states().await.unwrap()[0];
    assert_eq!(
        (server.version.as_deref(), server.consecutive_failures),
        (Some("1.0.0"), 1)
    );

    // Reopening the migrated store migrates nothing more.
    drop(store);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(
        again.schema_version().await.unwrap(),
        latest_schema_version()
    );
    assert_eq!(again.quota().intents("fra-1", None).await.unwrap().len(), 8);
}
