//! The demo's scenario, in process: every step completes, and each left its trace in
//! the state store (audit log, findings) and at the webhook receiver. The demo runs
//! the real scheduler on second-level schedules, so this takes about 15-20 s.

use keywarden::demo::Demo;
use keywarden::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario_happens_in_the_store_and_at_the_receiver() {
    keywarden::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path()).await.expect("demo starts");
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(150), demo.play())
        .await
        .expect("the scenario ends by itself");
    let received = demo.receiver.received();
    let lines = demo.timeline.lines();
    demo.stop().await;
    assert!(
        outcome.all_passed(),
        "{}\n{}",
        outcome.summary(),
        lines.join("\n")
    );
    assert_eq!(
        (outcome.syncs, outcome.resets, outcome.xray_restarts),
        (1, 1, 1),
        "one sync, one reset, one restart of the stopped Xray"
    );

    let store = Store::open_read_only(&dir.path().join(keywarden::store::DB_FILE)).unwrap();
    let audit = store.recent_audit(Some("demo-1"), 1000).unwrap();
    let done = |action: &str, result: &str| {
        audit
            .iter()
            .any(|a| a.action == action && a.result == result)
    };
    assert!(
        done("sync", "ok"),
        "the sync is in the audit log: {audit:?}"
    );
    assert!(done("verify_reality", "ok"));
    let resets: Vec<_> = audit
        .iter()
        .filter(|a| a.action.contains("reset"))
        .collect();
    assert!(
        !resets.is_empty(),
        "the quota reset is in the audit log: {audit:?}"
    );

    // The alerts as the receiver got them, by kind and status.
    let seen: Vec<(String, String)> = received
        .iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|alert| {
            (
                alert["kind"].as_str().unwrap_or("").to_string(),
                alert["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for expected in [
        ("config_drift_repaired", "firing"),
        ("xray_restarted", "firing"),
        ("xray_restarted", "resolved"),
        ("quota_warning", "firing"),
        ("quota_exceeded", "firing"),
        ("server_unreachable", "firing"),
        ("server_unreachable", "resolved"),
    ] {
        assert!(
            seen.contains(&(expected.0.to_string(), expected.1.to_string())),
            "missing {expected:?} in {seen:?}"
        );
    }
    assert!(
        !seen
            .iter()
            .any(|(kind, status)| kind == "quota_warning" && status == "resolved"),
        "no resolved notice for one-shot kinds"
    );
    // The Xray step on the 2.x server: intent and audit, then resolved.
    let audit2 = store.recent_audit(Some("demo-2"), 100).unwrap();
    let restarts: Vec<&str> = audit2
        .iter()
        .filter(|a| a.action == "xray_restart")
        .map(|a| a.result.as_str())
        .collect();
    assert_eq!(restarts, ["ok", "started"], "{audit2:?}");
    let open2 = store.open_findings(Some("demo-2")).unwrap();
    assert!(open2.is_empty(), "{open2:?}");
    // Nothing is left open once the scenario is over.
    let open = store.open_findings(Some("demo-1")).unwrap();
    assert!(
        open.iter()
            .all(|f| f.kind != "server_unreachable" && f.kind != "config_drift"),
        "{open:?}"
    );
}
