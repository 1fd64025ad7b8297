//! `keywarden store migrate --to postgres`, the real binary, end to end: a SQLite store
//! filled through the real repositories is copied into an empty PostgreSQL schema, read
//! back through the PostgreSQL backend and compared; the ids continue after the copied
//! ones; a second copy into the now non-empty schema is refused (exit 2). The commands'
//! output never holds the database password, also when the password is wrong.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use keywarden::model::alert::{Alert, AlertState, AlertStatus, Notice, Reason as NoticeReason};
use keywarden::model::dataplane::{PortRecord, PortState, StoredLink, XrayMemory, XrayState};
use keywarden::model::quota::{Action, ActionKind, Entry, Reason, ServerMemory};
use keywarden::model::report::{AvailabilitySample, AvailabilitySeries, DailyUsage};
use keywarden::model::{
    AttemptKind, AuditAction, AuditEntry, AuditResult, DriftMemory, Finding, FindingKind, JobKind,
    Lease, RunOutcome, RunRecord, ServerState, Severity,
};
use keywarden::store::{DataplaneCommit, LeaseGrant, QuotaCommit, Store};
use support::pg::{PG_PASSWORD, skip_without_pg};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn write_config(dir: &Path) -> PathBuf {
    let text = format!(
        "[agent]\nstate_dir = {:?}\nstore = \"postgres\"\n\n[store.postgres]\nurl_env = \"KW_TEST_DATABASE_URL\"\nagent_name = \"migrator\"\n\n\
         [[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key_env = \"KW_TEST_API_KEY\"\n",
        dir.join("state").display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the binary off the async runtime.
async fn keywarden(config: &Path, url: &str, words: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    args.extend(["-c".to_owned(), config.display().to_string()]);
    let url = url.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env("KW_TEST_DATABASE_URL", url)
            .env("KW_TEST_API_KEY", "kw-migrate-test-key")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run keywarden")
    })
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Something in every repository.
async fn fill(store: &Store) {
    for (minute, outcome) in [(0, RunOutcome::Ok), (1, RunOutcome::Critical)] {
        let run = RunRecord {
            server: "fra-1".into(),
            job: JobKind::Health,
            started_at: at(minute),
            duration_ms: 7,
            outcome,
            detail: "refused".into(),
        };
        store.runs().record(&run).await.unwrap();
    }
    let drift = DriftMemory {
        confirmations: 1,
        first_seen: Some(at(2)),
        signature: "missing:a".into(),
    };
    store
        .sync()
        .save_drift("fra-1", &drift, at(2))
        .await
        .unwrap();
    let attempt = store
        .sync()
        .record_attempt("fra-1", AttemptKind::Sync, at(3))
        .await
        .unwrap();
    store
        .sync()
        .finish_attempt(attempt, keywarden::model::SyncAttemptOutcome::Completed)
        .await
        .unwrap();
    for result in [AuditResult::Started, AuditResult::Ok] {
        let entry = AuditEntry {
            at: at(3),
            server: "fra-1".into(),
            action: AuditAction::Sync,
            target: "config.json".into(),
            result,
            detail: "2 missing".into(),
        };
        store.audit().append(&entry).await.unwrap();
    }
    let finding = Finding {
        server: "fra-1".into(),
        job: JobKind::ConfigSync,
        kind: FindingKind::ConfigDrift,
        subject: "config.json".into(),
        severity: Severity::Warning,
        summary: "drift".into(),
        details: String::new(),
    };
    store
        .findings()
        .record("fra-1", JobKind::ConfigSync, &[finding], at(4))
        .await
        .unwrap();
    let state = ServerState {
        server: "fra-1".into(),
        version: Some("2.1.0".into()),
        last_up_at: Some(at(4)),
        last_down_at: None,
        consecutive_failures: 0,
        last_error: None,
    };
    store.servers().save(&state, at(4)).await.unwrap();
    let xray = XrayMemory {
        state: Some(XrayState::Running),
        stopped_reads: 0,
        first_stopped_at: None,
        checked_at: Some(at(4)),
    };
    store
        .servers()
        .save_xray("fra-1", &xray, at(4))
        .await
        .unwrap();
    let entry = Entry {
        uuid: "u1".into(),
        key_id: "1".into(),
        name: "alice".into(),
        counter: Some(5_000_000_000),
        used: 5_000_000_000,
        period_total: 6_000_000_000,
        period_start: at(0),
        adopted: true,
        warned: 80,
        exceeded_at: None,
        exceed_resets: 0,
        delete_due: None,
        expect_drop: false,
        last_reset: None,
        first_seen: at(0),
        read_at: Some(at(5)),
        changed_at: Some(at(5)),
        gone_at: None,
    };
    let reset = Action {
        kind: ActionKind::Reset,
        reason: Reason::Boundary,
        uuid: "u1".into(),
        key_id: "1".into(),
        name: "alice".into(),
        period_start: at(0),
        allowance: 0,
        counter_before: Some(42),
        call_server: true,
    };
    let commit = QuotaCommit {
        entries: vec![entry],
        history: Vec::new(),
        intents: vec![reset],
        memory: ServerMemory {
            first_run_at: Some(at(0)),
            ..ServerMemory::default()
        },
        api_version: "2.1.0".into(),
        now: at(5),
        read_at: None,
        reread: Vec::new(),
        daily: vec![DailyUsage {
            day: NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            uuid: "u1".into(),
            key_id: "1".into(),
            name: "alice".into(),
            bytes: 1234,
        }],
    };
    store.quota().commit("fra-1", commit).await.unwrap();
    let alert = Alert {
        fingerprint: "fra-1/config_drift/config.json".into(),
        server: "fra-1".into(),
        kind: "config_drift".into(),
        subject: "config.json".into(),
        severity: Severity::Warning,
        status: AlertStatus::Firing,
        summary: "drift".into(),
        details: "Seen: a".into(),
        started_at: at(4),
        ended_at: None,
    };
    let alert_state = AlertState {
        alert: alert.clone(),
        last_notified_at: Some(at(4)),
        last_notified_severity: Some(Severity::Warning),
        max_notified_severity: Some(Severity::Warning),
        held: false,
    };
    let notice = Notice {
        sink: "mail".into(),
        reason: NoticeReason::New,
        alert,
        due_at: at(5),
    };
    store
        .alerts()
        .save_plan(&[alert_state], &[notice], at(4))
        .await
        .unwrap();
    let sample = AvailabilitySample {
        series: AvailabilitySeries::Api,
        up: true,
    };
    store
        .report()
        .record_availability("fra-1", at(4), &[sample])
        .await
        .unwrap();
    let link = StoredLink {
        key_id: "1".into(),
        key_sig: "u1|10001|ab|1".into(),
        host: "127.0.0.1".into(),
        port: 10001,
        sni: Some("www.example.com".into()),
        fetched_at: at(4),
    };
    let port = PortRecord {
        endpoint: "127.0.0.1:10001".into(),
        state: PortState::Open,
        detail: String::new(),
        latency_ms: Some(3),
        probed_at: at(4),
    };
    let dataplane = DataplaneCommit {
        fetched: vec![link],
        forgotten: Vec::new(),
        probed: vec![port],
        endpoints: vec!["127.0.0.1:10001".into()],
        cursor: Some("127.0.0.1:10001".into()),
        now: at(4),
    };
    store.dataplane().commit("fra-1", dataplane).await.unwrap();
}

/// What the repositories read back, as text to compare.
async fn read_all(store: &Store) -> Vec<String> {
    let day = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    vec![
        format!(
            "{:?}",
            store
                .runs()
                .recent("fra-1", JobKind::Health, 10)
                .await
                .unwrap()
        ),
        format!("{:?}", store.sync().drift("fra-1").await.unwrap()),
        format!(
            "{:?}",
            store.sync().attempts_since("fra-1", at(0)).await.unwrap()
        ),
        format!("{:?}", store.audit().recent(None, 10).await.unwrap()),
        format!("{:?}", store.findings().open(None).await.unwrap()),
        format!("{:?}", store.servers().states().await.unwrap()),
        format!("{:?}", store.servers().xray("fra-1").await.unwrap()),
        format!("{:?}", store.quota().ledger("fra-1").await.unwrap()),
        format!("{:?}", store.quota().intents("fra-1", None).await.unwrap()),
        format!("{:?}", store.quota().memory("fra-1").await.unwrap()),
        format!("{:?}", store.alerts().states("fra-1").await.unwrap()),
        format!("{:?}", store.alerts().pending("mail").await.unwrap()),
        format!("{:?}", store.report().daily_usage(day, day).await.unwrap()),
        format!(
            "{:?}",
            store.report().availability(at(0), at(60)).await.unwrap()
        ),
        format!("{:?}", store.dataplane().links("fra-1").await.unwrap()),
        format!("{:?}", store.dataplane().ports("fra-1").await.unwrap()),
        format!("{:?}", store.dataplane().memory("fra-1").await.unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_is_copied_into_an_empty_schema_and_reads_back_the_same() {
    let Some(pg) =
        skip_without_pg("a_sqlite_store_is_copied_into_an_empty_schema_and_reads_back_the_same")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let sqlite = Store::open(&dir.path().join("state")).unwrap();
    fill(&sqlite).await;
    let expected = read_all(&sqlite).await;
    // A lease of the SQLite daemon that stopped: process state, not copied.
    let lease = |holder: &str, until: i64| Lease {
        server: "fra-1".into(),
        job: JobKind::Health,
        holder: holder.into(),
        acquired_at: at(0),
        expires_at: at(until),
    };
    let granted = sqlite
        .leases()
        .acquire(&lease("sqlite daemon", 10_000))
        .await
        .unwrap();
    assert!(matches!(granted, LeaseGrant::Granted));
    drop(sqlite);

    let database = pg.database().await;
    let url = pg.url(&database);
    let (code, out, err) =
        keywarden(&config, &url, &["store", "migrate", "--to", "postgres"]).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    for line in [
        "audit_log",
        "job_runs",
        "quota_intents",
        "alert_outbox",
        "vless_ports",
    ] {
        assert!(out.contains(line), "{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["audit_log", "2"]),
        "{out}"
    );
    assert!(!out.contains(PG_PASSWORD) && !err.contains(PG_PASSWORD));

    let copied = Store::open_postgres(&pg.config(&database, "reader"))
        .await
        .unwrap();
    assert_eq!(
        read_all(&copied).await,
        expected,
        "PostgreSQL reads what SQLite held"
    );
    let granted = copied
        .leases()
        .acquire(&lease("postgres agent", 1))
        .await
        .unwrap();
    assert!(
        matches!(granted, LeaseGrant::Granted),
        "the SQLite daemon's lease stayed behind: {granted:?}"
    );
    // New rows continue after the copied ids.
    let id = copied
        .sync()
        .record_attempt("fra-1", AttemptKind::XrayRestart, at(9))
        .await
        .unwrap();
    assert_eq!(id, 2, "the copied attempt was id 1");
    let entry = AuditEntry {
        at: at(9),
        server: "fra-1".into(),
        action: AuditAction::Sync,
        target: "config.json".into(),
        result: AuditResult::Ok,
        detail: String::new(),
    };
    copied.audit().append(&entry).await.unwrap();
    assert_eq!(copied.audit().recent(None, 10).await.unwrap().len(), 3);

    // Again, into the schema that now holds data: refused, nothing changes.
    let (code, out, err) =
        keywarden(&config, &url, &["store", "migrate", "--to", "postgres"]).await;
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(copied.audit().recent(None, 10).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_copy_is_exit_2() {
    let Some(pg) = skip_without_pg("nothing_to_copy_is_exit_2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let database = pg.database().await;
    let (code, _, err) = keywarden(
        &config,
        &pg.url(&database),
        &["store", "migrate", "--to", "postgres"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no SQLite store"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_a_closed_port_never_shows_the_password() {
    let Some(pg) = skip_without_pg("a_wrong_password_or_a_closed_port_never_shows_the_password")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let database = pg.database().await;
    let wrong = "wrong-db-pass-51c4e0a9";
    let bad_password = pg.url(&database).replace(PG_PASSWORD, wrong);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad_port = pg
        .url(&database)
        .replace(&format!(":{}/", pg.port), &format!(":{closed}/"));

    // Something to copy, so that `store migrate` gets as far as connecting.
    drop(Store::open(&dir.path().join("state")).unwrap());
    // validate: the summary names where the URL comes from, never the URL.
    let (code, out, err) = keywarden(&config, &pg.url(&database), &["validate"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("env KW_TEST_DATABASE_URL [redacted]"), "{out}");
    assert!(
        !out.contains(PG_PASSWORD) && !out.contains("postgres://"),
        "{out}"
    );

    for (url, secret, says) in [
        (&bad_password, wrong, "password authentication failed"),
        (&bad_port, PG_PASSWORD, "error connecting to server"),
    ] {
        for words in [
            &["status"][..],
            &["run"][..],
            &["store", "migrate", "--to", "postgres"][..],
        ] {
            let (code, out, err) = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                keywarden(&config, url, words),
            )
            .await
            .unwrap_or_else(|_| panic!("{words:?} did not give up on the database"));
            assert_ne!(code, 0, "{words:?}: {out}{err}");
            let all = format!("{out}{err}");
            assert!(all.contains(says), "{words:?}: {all}");
            assert!(!all.contains(secret), "{words:?} shows the password: {all}");
            assert!(
                !all.contains("postgres://"),
                "{words:?} shows the URL: {all}"
            );
        }
    }
}
