//! health on 2.x: Xray stopped -> confirmed -> restarted through sync-config (intent,
//! budget, audit) -> resolved; what is only reported; restarts that do not help.

use keywarden::clock::Clock;
use keywarden::config::{JobKind, Severity};
use keywarden::model::FindingKind;
use keywarden::model::dataplane::XrayState;
use keywarden::model::{AttemptKind, RunOutcome, SyncAttemptOutcome};
use keywarden_sim::{ApiGeneration, Fault, Route};

use super::{DRY, Rig, kinds};

/// Attempts of fra-1's hourly budget since `since` that the server did not defer.
async fn budget_spent(rig: &Rig, since: chrono::DateTime<chrono::Utc>) -> usize {
    let sync = rig.store().sync();
    let attempts = sync.attempts_since("fra-1", since).await.unwrap();
    attempts
        .iter()
        .filter(|a| a.outcome != SyncAttemptOutcome::Deferred)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_xray_is_confirmed_restarted_and_resolved() {
    let rig = Rig::new(ApiGeneration::V2, 3, "", "").await;
    let sim = rig.sim();
    let up = rig.run(JobKind::Health).await;
    assert_eq!((up.outcome, kinds(&up)), (RunOutcome::Ok, vec![]));
    assert!(
        up.plan.iter().any(|l| l.contains("Xray is running")),
        "{:?}",
        up.plan
    );

    sim.stop_xray().await;
    assert!(sim.listening().is_empty());
    let first = rig.run(JobKind::Health).await;
    assert_eq!(
        kinds(&first),
        vec![],
        "one stopped read is not confirmed yet"
    );
    assert!(
        first.plan.iter().any(|l| l.contains("1 of 2")),
        "{:?}",
        first.plan
    );
    assert_eq!(sim.sync_count(), 0);

    let second = rig.run(JobKind::Health).await;
    assert_eq!(
        kinds(&second),
        [(FindingKind::XrayRestarted, Severity::Warning)]
    );
    let details = &second.findings[0].details;
    assert!(details.contains("journalctl -u xray"), "{details}");
    assert!(details.contains("2 reads in a row"), "{details}");
    assert_eq!(sim.sync_count(), 1, "restarted through sync-config");
    assert!(sim.xray_running());
    assert_eq!(sim.listening().len(), 3, "every port listens again");
    // Intent and audit, in the shared budget.
    let audit = rig.store().audit().recent(Some("fra-1"), 10).await.unwrap();
    let restart: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.action.as_str() == "xray_restart")
        .map(|a| (a.target.as_str(), a.result.as_str()))
        .collect();
    assert_eq!(restart, [("xray", "ok"), ("xray", "started")]);
    let window = rig.clock.now() - chrono::Duration::hours(1);
    assert_eq!(budget_spent(&rig, window).await, 1);
    assert_eq!(
        rig.store().servers().xray("fra-1").await.unwrap().state,
        Some(XrayState::Running)
    );
    let text = rig.metrics.encode();
    assert!(
        text.contains("keywarden_xray_up{server=\"fra-1\"} 1"),
        "{text}"
    );

    let after = rig.run(JobKind::Health).await;
    assert_eq!((after.outcome, kinds(&after)), (RunOutcome::Ok, vec![]));
    assert!(
        rig.open_kinds().await.is_empty(),
        "resolved: {:?}",
        rig.open_kinds().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_off_dry_run_and_a_spent_budget_only_report() {
    // restart_xray = false
    let rig = Rig::new(
        ApiGeneration::V2,
        2,
        "[jobs.health]\nrestart_xray = false\n",
        "",
    )
    .await;
    rig.sim().stop_xray().await;
    rig.run(JobKind::Health).await;
    let down = rig.run(JobKind::Health).await;
    assert_eq!(kinds(&down), [(FindingKind::XrayDown, Severity::Critical)]);
    assert!(down.findings[0].summary.contains("nobody can connect"));
    assert!(down.findings[0].details.contains("restart_xray is false"));
    assert!(
        rig.metrics
            .encode()
            .contains("keywarden_xray_up{server=\"fra-1\"} 0"),
        "{}",
        rig.metrics.encode()
    );
    assert_eq!(rig.requests_to("POST", "/sync-config"), 0);

    // Dry run: reported, audited as dry_run, nothing posted.
    let dry = Rig::new(ApiGeneration::V2, 2, "", "").await;
    dry.sim().stop_xray().await;
    dry.run_with(JobKind::Health, DRY).await;
    let report = dry.run_with(JobKind::Health, DRY).await;
    assert_eq!(
        kinds(&report),
        [(FindingKind::XrayDown, Severity::Critical)]
    );
    assert!(report.findings[0].details.contains("dry run"));
    assert!(dry.sim().requests().iter().all(|r| r.method == "GET"));
    let audit = dry.store().audit().recent(Some("fra-1"), 5).await.unwrap();
    assert_eq!(
        (audit[0].action.as_str(), audit[0].result.as_str()),
        ("xray_restart", "dry_run")
    );

    // The budget is shared with config_sync: two syncs this hour spend a budget of 2.
    let spent = Rig::new(
        ApiGeneration::V2,
        2,
        "[jobs.config_sync]\nmax_syncs_per_hour = 2\n",
        "",
    )
    .await;
    let now = spent.clock.now();
    for minutes in [20, 10] {
        spent
            .store()
            .sync()
            .record_attempt(
                "fra-1",
                AttemptKind::Sync,
                now - chrono::Duration::minutes(minutes),
            )
            .await
            .unwrap();
    }
    spent.sim().stop_xray().await;
    spent.run(JobKind::Health).await;
    let report = spent.run(JobKind::Health).await;
    assert_eq!(
        kinds(&report),
        [(FindingKind::XrayDown, Severity::Critical)]
    );
    assert!(
        report.findings[0]
            .details
            .contains("shared with config_sync"),
        "{}",
        report.findings[0].details
    );
    assert_eq!(spent.requests_to("POST", "/sync-config"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_does_not_help_persists_and_a_429_defers() {
    let rig = Rig::new(ApiGeneration::V2, 2, "", "").await;
    let sim = rig.sim();
    sim.stop_xray().await;
    rig.run(JobKind::Health).await;
    sim.fail_next(
        Route::SyncConfig,
        1,
        Fault::Status {
            status: 500,
            detail: "Failed to restart Xray".into(),
        },
    );
    let persists = rig.run(JobKind::Health).await;
    assert_eq!(
        kinds(&persists),
        [(FindingKind::XrayDownPersists, Severity::Critical)]
    );
    assert!(
        persists.findings[0]
            .details
            .contains("Failed to restart Xray")
    );
    assert!(!sim.xray_running());

    // The next run tries again; the server refuses with 429: deferred, no budget spent.
    sim.fail_next(
        Route::SyncConfig,
        1,
        Fault::RateLimited { retry_after: None },
    );
    let deferred = rig.run(JobKind::Health).await;
    assert_eq!(
        kinds(&deferred),
        [(FindingKind::XrayDown, Severity::Critical)]
    );
    assert!(
        deferred.findings[0].details.contains("429"),
        "{}",
        deferred.findings[0].details
    );
    let window = rig.clock.now() - chrono::Duration::hours(1);
    assert_eq!(
        budget_spent(&rig, window).await,
        1,
        "the deferred attempt does not count"
    );

    // And then it works.
    let restarted = rig.run(JobKind::Health).await;
    assert_eq!(
        kinds(&restarted),
        [(FindingKind::XrayRestarted, Severity::Warning)]
    );
    assert!(sim.xray_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1x_server_has_no_xray_state_to_read() {
    let rig = Rig::new(ApiGeneration::V1, 2, "", "").await;
    rig.sim().stop_xray().await;
    for _ in 0..3 {
        let report = rig.run(JobKind::Health).await;
        assert_eq!(kinds(&report), vec![]);
    }
    assert_eq!(rig.requests_to("GET", "/health"), 0, "1.x has no /health");
    assert_eq!(rig.requests_to("POST", "/sync-config"), 0);
}

/// A sync budget the store cannot read once made a restart on "no attempts": an unknown
/// budget is an error of the run, and Xray is not restarted on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_restart_on_a_budget_the_store_cannot_read() {
    let rig = Rig::new(ApiGeneration::V2, 3, "", "").await;
    let sim = rig.sim();
    rig.run(JobKind::Health).await;
    sim.stop_xray().await;
    let first = rig.run(JobKind::Health).await;
    assert!(
        first.plan.iter().any(|l| l.contains("1 of 2")),
        "{:?}",
        first.plan
    );
    rig.corrupt_the_budget();
    let second = rig.run(JobKind::Health).await;
    assert_eq!(second.outcome, RunOutcome::Error, "{second:#?}");
    let error = second.error.clone().unwrap_or_default();
    assert!(error.contains("Xray check not run"), "{error}");
    assert!(error.contains("unreadable value"), "{error}");
    assert_eq!(sim.sync_count(), 0, "no restart on an unknown budget");
    assert!(!sim.xray_running());
}
