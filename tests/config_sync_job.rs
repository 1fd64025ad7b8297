//! The config_sync job against the simulated server over real HTTP, both generations, with
//! a real store in a temporary directory and a manual clock: drift found, confirmed,
//! repaired (and the next plan empty), the hourly budget, 429/500/timeouts/proxy pages,
//! the 2.x stale cache and misreports, dry runs, check mode, restarts, Reality after a sync.

mod support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use keywarden::clock::{Clock, ManualClock};
use keywarden::config::{Config, JobKind, Severity};
use keywarden::jobs::config_sync::{self, Blocker, Plan};
use keywarden::jobs::{Fact, JobContext, JobResult, RunMode, SyncResult};
use keywarden::model::AuditEntry;
use keywarden::model::{Finding, FindingKind};
use keywarden::server_api::{ClientSettings, RetryPolicy, ServerApi};
use keywarden::store::Store;
use keywarden_sim::{ApiGeneration, ClientPlacement, Fault, Route, SimHandle, SimServer};
use support::{TEST_API_KEY, sim, within};
use tempfile::TempDir;

/// A uuid that is no key.
const STRANGER: &str = "5a1e0b7c-9d2f-4e3a-8b6c-0d1e2f3a4b5c";

/// What differs between the tests' configurations.
#[derive(Clone)]
struct Setup {
    generation: ApiGeneration,
    confirmations: u32,
    max_syncs_per_hour: u32,
    auto_sync: bool,
    verify_reality: bool,
    skip_reality: bool,
    timeout: &'static str,
    api_key: &'static str,
}

impl Setup {
    fn new(generation: ApiGeneration) -> Setup {
        Setup {
            generation,
            confirmations: 1,
            max_syncs_per_hour: 4,
            auto_sync: true,
            verify_reality: false,
            skip_reality: false,
            timeout: "2s",
            api_key: TEST_API_KEY,
        }
    }

    fn confirmations(mut self, n: u32) -> Setup {
        self.confirmations = n;
        self
    }

    fn config_text(&self, url: &str, state_dir: &Path) -> String {
        let skip = if self.skip_reality { "\"reality\"" } else { "" };
        format!(
            r#"
[agent]
state_dir = "{state_dir}"

[[servers]]
name = "fra-1"
url = "{url}"
api_key_env = "FRA1_API_KEY"
timeout = "{timeout}"
action_timeout = "3s"
skip_jobs = [{skip}]

[jobs.config_sync]
auto_sync = {auto_sync}
confirmations = {confirmations}
max_syncs_per_hour = {max}
verify_reality_after_sync = {verify}
"#,
            state_dir = state_dir.display(),
            timeout = self.timeout,
            auto_sync = self.auto_sync,
            confirmations = self.confirmations,
            max = self.max_syncs_per_hour,
            verify = self.verify_reality,
        )
    }
}

/// A simulated server, the configuration pointing at it, a client, a store and a clock.
struct Rig {
    sim: SimServer,
    config: Config,
    api: ServerApi,
    prober: std::sync::Arc<keywarden::jobs::dataplane::Prober>,
    store: Option<Store>,
    dir: TempDir,
    clock: ManualClock,
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

impl Rig {
    async fn new(setup: Setup) -> Rig {
        let sim = sim(setup.generation, 3).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let text = setup.config_text(&sim.base_url(), dir.path());
        let key = setup.api_key;
        let loaded =
            keywarden::config::from_str_with_env(&text, &dir.path().join("agent.toml"), &|_| {
                Some(key.to_string())
            })
            .unwrap_or_else(|errors| panic!("test config: {errors}"));
        let mut settings = ClientSettings::from_config(&loaded.config.servers[0]).expect("client");
        settings.retry = RetryPolicy {
            get_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(30),
        };
        Rig {
            sim,
            api: ServerApi::new(settings).expect("client"),
            prober: std::sync::Arc::new(keywarden::jobs::dataplane::Prober::new(Vec::new())),
            config: loaded.config,
            store: Some(Store::open(dir.path()).expect("store")),
            dir,
            clock: ManualClock::new(start_time()),
        }
    }

    fn handle(&self) -> SimHandle {
        self.sim.handle()
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store open")
    }

    fn ctx(&self, mode: RunMode, dry_run: bool) -> JobContext<'_> {
        JobContext {
            config: &self.config,
            server: &self.config.servers[0],
            api: &self.api,
            store: self.store(),
            clock: &self.clock,
            dry_run,
            mode,
            prober: &self.prober,
        }
    }

    async fn run_as(&self, mode: RunMode, dry_run: bool) -> JobResult {
        let ctx = self.ctx(mode, dry_run);
        within("config_sync run", config_sync::run(&ctx)).await
    }

    /// One scheduled run, five minutes after the previous one.
    async fn run(&self) -> JobResult {
        self.clock.advance(TimeDelta::minutes(5));
        self.run_as(RunMode::Daemon, false).await
    }

    /// What a run would plan now (observe + plan, no side effects).
    async fn plan(&self) -> Plan {
        let ctx = self.ctx(RunMode::Daemon, false);
        let observed = within("observe", config_sync::observe(&ctx))
            .await
            .expect("observe");
        let settings = &self.config.jobs.config_sync;
        config_sync::plan(&observed, settings, false, self.clock.now())
    }

    /// Close the store and open it again from the same directory (a restart).
    fn reopen_store(&mut self) {
        drop(self.store.take());
        self.store = Some(Store::open(self.dir.path()).expect("reopen store"));
    }

    async fn sync_audit(&self) -> Vec<AuditEntry> {
        let mut entries = self
            .store()
            .audit()
            .recent(Some("fra-1"), 100)
            .await
            .expect("audit");
        entries.retain(|e| e.action.as_str() == "sync");
        entries.reverse();
        entries
    }

    fn sync_posts(&self) -> usize {
        self.requests_to("POST", "/system/sync-config")
    }

    fn requests_to(&self, method: &str, path_end: &str) -> usize {
        self.handle()
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(path_end))
            .count()
    }
}

fn kinds(result: &JobResult) -> Vec<FindingKind> {
    result.findings.iter().map(|f| f.kind).collect()
}

fn only(result: &JobResult, kind: FindingKind) -> &Finding {
    assert_eq!(kinds(result), [kind], "{result:#?}");
    &result.findings[0]
}

fn results(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.result.as_str()).collect()
}

#[tokio::test]
async fn drift_of_both_kinds_is_confirmed_repaired_and_then_left_alone() {
    for generation in [ApiGeneration::V1, ApiGeneration::V2] {
        let rig = Rig::new(Setup::new(generation).confirmations(2)).await;
        let handle = rig.handle();
        let baseline = rig.run().await;
        assert!(
            baseline.findings.is_empty(),
            "{generation:?}: {baseline:#?}"
        );
        let missing = handle.keys()[1].uuid.clone();
        handle.remove_config_client(&missing);
        handle.add_config_client(STRANGER);

        let first = rig.run().await;
        let finding = only(&first, FindingKind::ConfigDrift);
        assert_eq!(finding.severity, Severity::Warning);
        assert_eq!(finding.subject, "config.json");
        assert_eq!(
            finding.summary,
            "config drift on fra-1: 1 uuid missing from config.json, 1 extra (confirmation 1 of 2)"
        );
        assert_eq!(
            rig.sync_posts(),
            0,
            "{generation:?}: no sync before confirmation"
        );

        let second = rig.run().await;
        let repaired = only(&second, FindingKind::ConfigDriftRepaired);
        assert_eq!(repaired.severity, Severity::Warning);
        assert_eq!(
            repaired.summary,
            "config drift repaired on fra-1: 1 uuid was missing from config.json, 1 extra"
        );
        assert!(repaired.details.contains(&missing) && repaired.details.contains(STRANGER));
        assert_eq!(rig.sync_posts(), 1, "{generation:?}");
        // What the run tells the metrics.
        assert_eq!(first.facts, [Fact::SyncBudgetLeft(4), Fact::DriftDetected]);
        assert_eq!(
            second.facts,
            [
                Fact::Sync(SyncResult::Repaired),
                Fact::SyncBudgetLeft(3),
                Fact::DriftDetected
            ]
        );
        assert_eq!(results(&rig.sync_audit().await), ["started", "ok"]);
        assert!(rig.sync_audit().await[0].detail.contains(&missing));

        assert_eq!(rig.plan().await, Plan::InSync, "{generation:?}");
        let third = rig.run().await;
        assert!(third.findings.is_empty(), "{generation:?}: {third:#?}");
        assert_eq!(rig.sync_posts(), 1, "{generation:?}: converged");
    }
}

#[tokio::test]
async fn returning_drift_spends_the_budget_then_suspends_until_the_window_frees() {
    let mut setup = Setup::new(ApiGeneration::V1);
    setup.max_syncs_per_hour = 2;
    let rig = Rig::new(setup).await;
    let handle = rig.handle();
    handle.remove_config_client(&handle.keys()[0].uuid);
    handle.set_drift_returns(true);
    let first_sync_at = rig.clock.now() + TimeDelta::minutes(5);

    for expected_posts in [1, 2] {
        let result = rig.run().await;
        let persists = only(&result, FindingKind::ConfigDriftPersists);
        assert_eq!(persists.severity, Severity::Critical);
        assert_eq!(rig.sync_posts(), expected_posts);
    }
    let mut fingerprints = Vec::new();
    for _ in 0..3 {
        let result = rig.run().await;
        let suspended = only(&result, FindingKind::AutoSyncSuspended);
        assert_eq!(suspended.severity, Severity::Critical);
        assert_eq!(rig.sync_posts(), 2, "no sync while the budget is spent");
        let changes = rig
            .store()
            .findings()
            .record(
                "fra-1",
                JobKind::ConfigSync,
                &result.findings,
                rig.clock.now(),
            )
            .await
            .expect("record");
        fingerprints.push((suspended.fingerprint(), changes.opened.len()));
    }
    assert_eq!(
        fingerprints,
        [
            ("fra-1/auto_sync_suspended/config.json".to_string(), 1),
            ("fra-1/auto_sync_suspended/config.json".to_string(), 0),
            ("fra-1/auto_sync_suspended/config.json".to_string(), 0),
        ],
        "raised once, then continuing"
    );
    let Plan::Blocked {
        reason: Blocker::BudgetSpent { frees_at, .. },
        ..
    } = rig.plan().await
    else {
        panic!("expected the budget to block");
    };
    assert_eq!(frees_at, first_sync_at + TimeDelta::hours(1));

    rig.clock.set(frees_at - TimeDelta::minutes(5));
    let resumed = rig.run().await;
    assert_eq!(kinds(&resumed), [FindingKind::ConfigDriftPersists]);
    assert_eq!(rig.sync_posts(), 3, "the window freed: syncing resumed");
}

#[tokio::test]
async fn a_sync_that_changes_nothing_is_critical() {
    for generation in [ApiGeneration::V1, ApiGeneration::V2] {
        let rig = Rig::new(Setup::new(generation)).await;
        let handle = rig.handle();
        rig.run().await;
        let missing = handle.keys()[2].uuid.clone();
        handle.remove_config_client(&missing);
        handle.set_sync_noop(true);
        let result = rig.run().await;
        let persists = only(&result, FindingKind::ConfigDriftPersists);
        assert_eq!(persists.severity, Severity::Critical);
        assert!(persists.details.contains(&missing), "{}", persists.details);
        assert_eq!(results(&rig.sync_audit().await), ["started", "persists"]);
    }
}

#[tokio::test]
async fn rate_limited_syncs_are_deferred_without_spending_the_budget() {
    let mut setup = Setup::new(ApiGeneration::V1);
    setup.max_syncs_per_hour = 1;
    let rig = Rig::new(setup).await;
    let handle = rig.handle();
    handle.remove_config_client(&handle.keys()[0].uuid);
    handle.fail_next(
        Route::SyncConfig,
        2,
        Fault::RateLimited { retry_after: None },
    );

    let first = rig.run().await;
    let drift = only(&first, FindingKind::ConfigDrift);
    assert_eq!(
        drift.severity,
        Severity::Warning,
        "no alert on a first deferral"
    );
    assert!(drift.summary.ends_with("(sync deferred: rate limited)"));

    let second = rig.run().await;
    assert_eq!(
        kinds(&second),
        [FindingKind::ConfigDrift, FindingKind::SyncFailed]
    );
    assert_eq!(second.findings[1].severity, Severity::Warning);
    assert_eq!(handle.sync_count(), 0);
    assert_eq!(
        second.facts,
        [
            Fact::SyncBudgetLeft(1),
            Fact::Sync(SyncResult::Failed),
            Fact::DriftDetected
        ],
        "refused twice: counted as a failed sync, the budget untouched"
    );

    let third = rig.run().await;
    only(&third, FindingKind::ConfigDriftRepaired);
    assert_eq!(
        handle.sync_count(),
        1,
        "two 429s did not spend the budget of 1"
    );
    assert_eq!(
        results(&rig.sync_audit().await),
        [
            "started", "deferred", "started", "deferred", "started", "ok"
        ]
    );
}

#[tokio::test]
async fn a_failed_sync_is_critical_with_the_servers_detail() {
    let rig = Rig::new(Setup::new(ApiGeneration::V1)).await;
    let handle = rig.handle();
    handle.remove_config_client(&handle.keys()[0].uuid);
    let detail = "Failed to restart Xray: exit status 1";
    handle.fail_next(
        Route::SyncConfig,
        1,
        Fault::Status {
            status: 500,
            detail: detail.into(),
        },
    );
    let result = rig.run().await;
    let failed = only(&result, FindingKind::SyncFailed);
    assert_eq!(failed.severity, Severity::Critical);
    assert!(failed.summary.contains(detail), "{}", failed.summary);
    assert!(failed.details.contains(detail));
    assert_eq!(results(&rig.sync_audit().await), ["started", "failed"]);
}

#[tokio::test]
async fn unreadable_status_is_a_transport_failure_or_an_api_error() {
    let mut setup = Setup::new(ApiGeneration::V1);
    setup.timeout = "300ms";
    let rig = Rig::new(setup).await;
    let handle = rig.handle();
    handle.fail_next(
        Route::ConfigStatus,
        3,
        Fault::Delay(Duration::from_millis(1500)),
    );
    let hung = rig.run().await;
    assert!(hung.findings.is_empty(), "{hung:#?}");
    let failure = hung
        .transport_failure
        .expect("timeout is a transport failure");
    assert!(failure.contains("no answer within"), "{failure}");

    handle.fail_next(Route::ConfigStatus, 3, Fault::Html { status: 502 });
    let proxied = rig.run().await;
    assert!(proxied.findings.is_empty(), "{proxied:#?}");
    assert!(proxied.transport_failure.expect("502 page").contains("502"));

    let mut wrong_key = Setup::new(ApiGeneration::V1);
    wrong_key.api_key = "not-the-key";
    let refused = Rig::new(wrong_key).await.run().await;
    assert_eq!(refused.transport_failure, None);
    assert_eq!(
        only(&refused, FindingKind::ApiError).severity,
        Severity::Warning
    );
}

#[tokio::test]
async fn v2_validate_sync_sees_drift_behind_a_stale_config_status() {
    let rig = Rig::new(Setup::new(ApiGeneration::V2)).await;
    let handle = rig.handle();
    rig.run().await; // warms the API's config cache
    let missing = handle.keys()[0].uuid.clone();
    handle.remove_config_client(&missing);
    let status = within("status", rig.api.config_status())
        .await
        .expect("status");
    assert!(status.synchronized, "the simulator's cache is stale");

    let Plan::Sync { drift, .. } = rig.plan().await else {
        panic!("validate-sync should show the drift");
    };
    assert!(drift.stale_status);
    assert_eq!(drift.missing_from_config, std::slice::from_ref(&missing));
    let result = rig.run().await;
    let repaired = only(&result, FindingKind::ConfigDriftRepaired);
    assert!(repaired.details.contains("stale"), "{}", repaired.details);
}

#[tokio::test]
async fn v2_sync_misreported_as_failed_is_rechecked_and_repaired() {
    let rig = Rig::new(Setup::new(ApiGeneration::V2)).await;
    let handle = rig.handle();
    // Drift before the API ever read config.json: its cache holds the drift, so the
    // sync's own check fails although the file is repaired.
    handle.remove_config_client(&handle.keys()[1].uuid);
    let result = rig.run().await;
    let repaired = only(&result, FindingKind::ConfigDriftRepaired);
    assert!(
        repaired.details.contains("misreported"),
        "{}",
        repaired.details
    );
    assert!(
        repaired
            .details
            .contains("Configuration sync verification failed")
    );
    assert_eq!(results(&rig.sync_audit().await), ["started", "misreported"]);
    assert!(
        rig.run().await.findings.is_empty(),
        "stale cache is no drift"
    );
}

#[tokio::test]
async fn v2_client_inside_an_existing_inbound_persists_after_a_synced_sync() {
    let rig = Rig::new(Setup::new(ApiGeneration::V2)).await;
    let handle = rig.handle();
    rig.run().await;
    handle.add_config_client_at(STRANGER, ClientPlacement::InsideExisting);
    let result = rig.run().await;
    let persists = only(&result, FindingKind::ConfigDriftPersists);
    assert_eq!(persists.severity, Severity::Critical);
    assert!(persists.details.contains(STRANGER));
    assert!(
        persists.details.contains("synced: false"),
        "{}",
        persists.details
    );
}

#[tokio::test]
async fn v2_short_id_mismatch_counts_as_drift() {
    let rig = Rig::new(Setup::new(ApiGeneration::V2).confirmations(2)).await;
    let handle = rig.handle();
    rig.run().await;
    let uuid = handle.keys()[0].uuid.clone();
    handle.corrupt_short_id(&uuid);
    let first = rig.run().await;
    let drift = only(&first, FindingKind::ConfigDrift);
    assert!(
        drift.summary.contains("1 short_id mismatch"),
        "{}",
        drift.summary
    );
    assert!(drift.details.contains(&uuid));
    only(&rig.run().await, FindingKind::ConfigDriftRepaired);
    assert_eq!(rig.plan().await, Plan::InSync);
}

#[tokio::test]
async fn dry_run_plans_and_audits_but_never_changes_the_server() {
    let rig = Rig::new(Setup::new(ApiGeneration::V1)).await;
    let handle = rig.handle();
    handle.remove_config_client(&handle.keys()[0].uuid);
    handle.remove_config_client(&handle.keys()[1].uuid);
    handle.add_config_client(STRANGER);
    rig.clock.advance(TimeDelta::minutes(5));
    let result = rig.run_as(RunMode::Daemon, true).await;
    assert_eq!(
        result.plan,
        ["would sync fra-1: 2 uuids missing from config.json, 1 extra"]
    );
    assert_eq!(
        only(&result, FindingKind::ConfigDrift).severity,
        Severity::Warning
    );
    let changed: Vec<_> = handle
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" || r.method == "DELETE")
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    let audit = rig.sync_audit().await;
    assert_eq!(results(&audit), ["dry_run"]);
    assert!(audit[0].detail.contains(STRANGER));
}

#[tokio::test]
async fn auto_sync_off_and_an_empty_key_store_only_alert() {
    let mut off = Setup::new(ApiGeneration::V1);
    off.auto_sync = false;
    let rig = Rig::new(off).await;
    rig.handle().add_config_client(STRANGER);
    let result = rig.run().await;
    assert_eq!(
        only(&result, FindingKind::ConfigDrift).severity,
        Severity::Warning
    );
    assert_eq!(rig.sync_posts(), 0);

    let rig = Rig::new(Setup::new(ApiGeneration::V1)).await;
    let handle = rig.handle();
    for key in handle.keys() {
        handle.remove_key(&key.id);
    }
    handle.add_config_client(STRANGER);
    let result = rig.run().await;
    let refused = only(&result, FindingKind::ConfigDrift);
    assert_eq!(refused.severity, Severity::Critical);
    assert!(refused.summary.contains("key store is empty"));
    assert_eq!(rig.sync_posts(), 0);
}

#[tokio::test]
async fn check_mode_confirms_within_one_run() {
    let rig = Rig::new(Setup::new(ApiGeneration::V1).confirmations(2)).await;
    let handle = rig.handle();
    handle.remove_config_client(&handle.keys()[0].uuid);
    let check = RunMode::Check {
        reread_interval: Duration::from_millis(10),
    };
    let result = rig.run_as(check, false).await;
    only(&result, FindingKind::ConfigDriftRepaired);
    let order: Vec<String> = handle
        .requests()
        .into_iter()
        // Capability detection probes validate-sync first (404 on 1.x).
        .filter(|r| r.path.contains("config"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        order,
        [
            "GET /api/system/config-status",
            "GET /api/system/config-status",
            "POST /api/system/sync-config",
            "GET /api/system/config-status",
        ]
    );
}

#[tokio::test]
async fn confirmations_survive_a_restart() {
    let mut rig = Rig::new(Setup::new(ApiGeneration::V1).confirmations(2)).await;
    let handle = rig.handle();
    handle.add_config_client(STRANGER);
    only(&rig.run().await, FindingKind::ConfigDrift);
    rig.reopen_store();
    only(&rig.run().await, FindingKind::ConfigDriftRepaired);
    assert_eq!(rig.sync_posts(), 1);
}

#[tokio::test]
async fn reality_is_verified_after_a_sync_unless_the_server_skips_it() {
    // (generation, skip_jobs has reality, the stock 2.x layout with the API inbound
    // first, verify-reality calls expected)
    for (generation, skip_reality, stock_layout, verifies) in [
        (ApiGeneration::V1, false, false, 1),
        (ApiGeneration::V1, true, false, 0),
        // Stock 2.x: verify-reality can only fail there; never called, no false alarm.
        (ApiGeneration::V2, false, true, 0),
        // A 2.x layout without the API inbound: verify-reality works and is used.
        (ApiGeneration::V2, false, false, 1),
    ] {
        let mut setup = Setup::new(generation);
        setup.verify_reality = true;
        setup.skip_reality = skip_reality;
        let rig = Rig::new(setup).await;
        if generation == ApiGeneration::V2 {
            rig.handle().set_verify_reality_broken(stock_layout);
        }
        rig.run().await;
        rig.handle().add_config_client(STRANGER);
        let result = rig.run().await;
        assert_eq!(rig.sync_posts(), 1);
        assert_eq!(
            rig.requests_to("POST", "/system/verify-reality"),
            verifies,
            "{generation:?} skip={skip_reality} stock={stock_layout}"
        );
        assert_eq!(
            kinds(&result),
            [FindingKind::ConfigDriftRepaired],
            "{generation:?} stock={stock_layout}: no Reality finding on a working setup"
        );
        if generation == ApiGeneration::V2 && !skip_reality {
            assert!(
                result
                    .plan
                    .iter()
                    .any(|l| l.contains("valid after the sync") || l.contains("verified Reality")),
                "{:?}",
                result.plan
            );
            assert!(rig.requests_to("GET", "/system/xray/inbounds") >= 1);
        }
    }
}

#[tokio::test]
async fn reality_broken_on_2x_is_found_after_a_sync_without_verify_reality() {
    let mut setup = Setup::new(ApiGeneration::V2);
    setup.verify_reality = true;
    let rig = Rig::new(setup).await;
    rig.run().await;
    let key = rig.handle().keys()[0].clone();
    rig.handle().set_inbound_dest(&key.id, "");
    rig.handle().add_config_client(STRANGER);
    let result = rig.run().await;
    assert_eq!(
        kinds(&result),
        [
            FindingKind::ConfigDriftRepaired,
            FindingKind::RealityInvalid
        ]
    );
    let reality = &result.findings[1];
    assert_eq!(
        (reality.severity, reality.subject.as_str()),
        (Severity::Critical, "reality (after sync)")
    );
    assert!(
        reality.details.contains("dest is empty"),
        "{}",
        reality.details
    );
    assert!(
        reality.details.contains(&key.uuid),
        "names the inbound: {}",
        reality.details
    );
    assert_eq!(rig.requests_to("POST", "/system/verify-reality"), 0);
}

/// kill -9 during a slow sync: the process dies with the attempt recorded (`started`,
/// written before the POST) and the server never finished it. After the restart the drift
/// is still there and the sync is made again (a repeat is safer than a missed sync;
/// docs/state-store.md, "Crash windows"); the interrupted attempt still counts against
/// the hourly budget.
#[tokio::test]
async fn a_sync_killed_in_flight_is_made_again_after_the_restart_within_the_budget() {
    use keywarden::model::{AttemptKind, SyncAttemptOutcome};
    let mut rig = Rig::new(Setup::new(ApiGeneration::V1)).await;
    assert!(rig.run().await.findings.is_empty());
    let missing = rig.handle().keys()[1].uuid.clone();
    rig.handle().remove_config_client(&missing);
    // What the killed run left in the store: its attempt, started, never finished.
    rig.clock.advance(TimeDelta::minutes(5));
    let killed_at = rig.clock.now();
    rig.store()
        .sync()
        .record_attempt("fra-1", AttemptKind::Sync, killed_at)
        .await
        .unwrap();
    rig.reopen_store();
    let again = rig.run().await;
    only(&again, FindingKind::ConfigDriftRepaired);
    assert_eq!(rig.sync_posts(), 1, "the repeat");
    let since = rig.clock.now() - TimeDelta::hours(1);
    let outcomes: Vec<SyncAttemptOutcome> = rig
        .store()
        .sync()
        .attempts_since("fra-1", since)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [SyncAttemptOutcome::Started, SyncAttemptOutcome::Completed],
        "the interrupted attempt stays in the budget"
    );
    // 4 an hour: the interrupted attempt and the repeat leave 2.
    assert!(
        again.facts.contains(&Fact::SyncBudgetLeft(2)),
        "{:?}",
        again.facts
    );
}
