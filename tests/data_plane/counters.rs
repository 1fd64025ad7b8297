//! Counters across restarts: every key's traffic is read into the ledger (the quota job's
//! own observe and account steps) before an action that restarts Xray; when that read
//! fails the action still goes ahead and says usage may be lost.

use keywarden::config::{JobKind, Severity};
use keywarden::finding::FindingKind;
use keywarden::sim::{ApiGeneration, Fault, Route};

use super::{Rig, kinds};

const MIB: u64 = 1024 * 1024;

fn used(rig: &Rig, uuid: &str) -> u64 {
    rig.store()
        .quota_ledger("fra-1")
        .unwrap()
        .into_iter()
        .find(|e| e.uuid == uuid)
        .map(|e| e.used)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_read_in_before_a_restart_zeroes_the_counters() {
    let rig = Rig::new(ApiGeneration::V2, 2, "", "").await;
    let sim = rig.sim();
    let key = sim.keys()[0].clone();
    sim.set_counter(&key.id, 10 * MIB);
    rig.run(JobKind::Quota).await;
    // Adopted with its counter as the baseline (quotas.adopt = "baseline"): usage 0.
    assert_eq!(used(&rig, &key.uuid), 0);

    // Traffic since the last quota run, then Xray stops; restarting it zeroes counters.
    sim.add_traffic(&key.id, 5 * MIB);
    sim.set_restart_zeroes_counters(true);
    sim.stop_xray().await;
    rig.run(JobKind::Health).await;
    let restarted = rig.run(JobKind::Health).await;
    assert_eq!(
        kinds(&restarted),
        [(FindingKind::XrayRestarted, Severity::Warning)]
    );
    assert_eq!(
        sim.keys()[0].total_bytes,
        0,
        "the restart zeroed the counter"
    );
    assert_eq!(used(&rig, &key.uuid), 5 * MIB, "read in before the restart");

    // The next quota run: nothing lost, nothing counted twice, no surprise drop.
    sim.add_traffic(&key.id, MIB);
    let quota = rig.run(JobKind::Quota).await;
    assert_eq!(used(&rig, &key.uuid), 6 * MIB);
    assert!(
        quota
            .findings
            .iter()
            .all(|f| f.kind != FindingKind::CounterResetSeen),
        "{:?}",
        quota.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reads_the_counters_in_first_too() {
    let rig = Rig::new(
        ApiGeneration::V2,
        2,
        "[jobs.config_sync]\nconfirmations = 1\n",
        "",
    )
    .await;
    let sim = rig.sim();
    let key = sim.keys()[1].clone();
    rig.run(JobKind::Quota).await;
    sim.add_traffic(&key.id, 7 * MIB);
    sim.set_restart_zeroes_counters(true);
    sim.remove_config_client(&sim.keys()[0].uuid);
    let report = rig.run(JobKind::ConfigSync).await;
    assert_eq!(kinds(&report)[0].0, FindingKind::ConfigDriftRepaired);
    assert_eq!(used(&rig, &key.uuid), 7 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_does_not_stop_the_restart_and_the_finding_says_so() {
    let rig = Rig::new(ApiGeneration::V2, 2, "", "").await;
    let sim = rig.sim();
    sim.stop_xray().await;
    rig.run(JobKind::Health).await;
    sim.fail_next(
        Route::KeyTraffic,
        100,
        Fault::Status {
            status: 503,
            detail: "stats unavailable".into(),
        },
    );
    let restarted = rig.run(JobKind::Health).await;
    sim.clear_faults();
    assert_eq!(
        kinds(&restarted),
        [(FindingKind::XrayRestarted, Severity::Warning)]
    );
    assert!(sim.xray_running(), "users come first");
    let details = &restarted.findings[0].details;
    assert!(
        details.contains("usage since the last quota run may be lost"),
        "{details}"
    );
}
