//! reality on 2.x: read-only per inbound (never verify-reality on the stock layout),
//! found -> confirmed -> fix-reality-keys -> repaired -> resolved; a fix that does not
//! help is not repeated; layouts without the API inbound also use verify-reality.

use keywarden::config::{JobKind, Severity};
use keywarden::model::FindingKind;
use keywarden::model::RunOutcome;
use keywarden_sim::{ApiGeneration, Fault, Route};

use super::{DRY, Rig, kinds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_layout_is_quiet_and_verify_reality_is_never_called() {
    let rig = Rig::new(ApiGeneration::V2, 3, "", "").await;
    for _ in 0..2 {
        let report = rig.run(JobKind::Reality).await;
        assert_eq!(
            (report.outcome, kinds(&report)),
            (RunOutcome::Ok, vec![]),
            "{:?}",
            report.plan
        );
    }
    assert_eq!(rig.requests_to("POST", "/verify-reality"), 0);
    assert!(rig.requests_to("GET", "/system/xray/inbounds") >= 2);
    assert!(rig.requests_to("GET", "/system/xray/config-status") >= 2);
}

/// Found (warning, 1 of 2), fixed on the confirming read (reality_repaired), resolved.
async fn found_fixed_resolved(rig: &Rig, names: &[&str]) {
    let found = rig.run(JobKind::Reality).await;
    assert_eq!(
        kinds(&found),
        [(FindingKind::RealityInvalid, Severity::Warning)]
    );
    for name in names {
        assert!(
            found.findings[0].details.contains(name),
            "{name} in {}",
            found.findings[0].details
        );
    }
    assert_eq!(
        rig.sim().fix_count(),
        0,
        "one invalid read is not confirmed yet"
    );
    let fixed = rig.run(JobKind::Reality).await;
    assert_eq!(
        kinds(&fixed),
        [(FindingKind::RealityRepaired, Severity::Warning)]
    );
    assert_eq!(rig.sim().fix_count(), 1);
    let audit = rig.store().audit().recent(Some("fra-1"), 10).await.unwrap();
    let fix: Vec<&str> = audit
        .iter()
        .filter(|a| a.action.as_str() == "reality_fix")
        .map(|a| a.result.as_str())
        .collect();
    assert_eq!(fix, ["ok", "started"]);
    let quiet = rig.run(JobKind::Reality).await;
    assert_eq!(kinds(&quiet), vec![]);
    assert!(
        rig.open_kinds().await.is_empty(),
        "{:?}",
        rig.open_kinds().await
    );
    assert_eq!(rig.requests_to("POST", "/verify-reality"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_short_id_is_found_fixed_and_resolved() {
    let rig = Rig::new(ApiGeneration::V2, 3, "", "").await;
    let key = rig.sim().keys()[1].clone();
    rig.sim().corrupt_short_id(&key.uuid);
    let short_id = key.short_id.clone().unwrap();
    found_fixed_resolved(&rig, &[&key.uuid, &short_id, "inbound"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_dest_is_found_fixed_and_resolved() {
    let rig = Rig::new(ApiGeneration::V2, 3, "", "").await;
    let key = rig.sim().keys()[0].clone();
    rig.sim().set_inbound_dest(&key.id, "");
    found_fixed_resolved(&rig, &["dest is empty", &key.uuid]).await;
    assert!(
        rig.sim()
            .inbound_reality()
            .iter()
            .all(|(_, dest, _, _)| !dest.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_that_does_not_help_is_not_repeated_and_dry_run_only_reports() {
    let rig = Rig::new(ApiGeneration::V2, 2, "", "").await;
    let key = rig.sim().keys()[0].clone();
    rig.sim().set_inbound_dest(&key.id, "");
    rig.run(JobKind::Reality).await;
    rig.sim().fail_next(
        Route::FixRealityKeys,
        1,
        Fault::Status {
            status: 500,
            detail: "Failed to fix Reality keys".into(),
        },
    );
    let persists = rig.run(JobKind::Reality).await;
    assert_eq!(
        kinds(&persists),
        [(FindingKind::RealityInvalid, Severity::Critical)]
    );
    assert!(
        persists.findings[0].details.contains("still shows"),
        "{}",
        persists.findings[0].details
    );
    let again = rig.run(JobKind::Reality).await;
    assert_eq!(
        kinds(&again),
        [(FindingKind::RealityInvalid, Severity::Critical)]
    );
    assert!(
        again.findings[0].details.contains("not repeated"),
        "{}",
        again.findings[0].details
    );
    assert_eq!(
        rig.requests_to("POST", "/fix-reality-keys"),
        1,
        "one fix, not one per run"
    );

    let dry = Rig::new(ApiGeneration::V2, 2, "", "").await;
    let key = dry.sim().keys()[0].clone();
    dry.sim().set_inbound_dest(&key.id, "");
    dry.run_with(JobKind::Reality, DRY).await;
    let report = dry.run_with(JobKind::Reality, DRY).await;
    assert_eq!(
        kinds(&report),
        [(FindingKind::RealityInvalid, Severity::Critical)]
    );
    assert!(report.findings[0].details.contains("dry run"));
    assert!(dry.sim().requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_without_the_api_inbound_also_uses_verify_reality() {
    let rig = Rig::new(ApiGeneration::V2, 2, "", "").await;
    rig.sim().set_verify_reality_broken(false);
    let report = rig.run(JobKind::Reality).await;
    assert_eq!(kinds(&report), vec![]);
    assert_eq!(rig.requests_to("POST", "/verify-reality"), 1);
    // A problem only verify-reality sees there (the private key is not listed).
    rig.sim()
        .break_reality(keywarden_sim::RealityField::PrivateKey);
    let report = rig.run(JobKind::Reality).await;
    assert_eq!(
        kinds(&report),
        [(FindingKind::RealityInvalid, Severity::Critical)]
    );
    assert!(!report.findings[0].details.contains("skip_jobs"));
}

/// The same for fix-reality-keys (it restarts Xray): no fix on an unknown budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fix_on_a_budget_the_store_cannot_read() {
    let rig = Rig::new(ApiGeneration::V2, 3, "", "").await;
    let key = rig.sim().keys()[1].clone();
    rig.sim().corrupt_short_id(&key.uuid);
    let found = rig.run(JobKind::Reality).await;
    assert_eq!(
        kinds(&found),
        [(FindingKind::RealityInvalid, Severity::Warning)]
    );
    rig.corrupt_the_budget();
    let second = rig.run(JobKind::Reality).await;
    assert_eq!(second.outcome, RunOutcome::Error, "{second:#?}");
    let error = second.error.clone().unwrap_or_default();
    assert!(error.contains("reality not run"), "{error}");
    assert!(error.contains("unreadable value"), "{error}");
    assert_eq!(rig.sim().fix_count(), 0, "no fix on an unknown budget");
}
