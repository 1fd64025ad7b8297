//! The health and reality jobs and the runner, against the simulator over real HTTP
//! with a real store and a manual clock.

mod support;

use std::time::Duration;

use keywarden::config::{JobKind, Severity};
use keywarden::jobs::RunMode;
use keywarden::jobs::runner::RunOptions;
use keywarden::model::FindingKind;
use keywarden::model::RunOutcome;
use keywarden_sim::{ApiGeneration, Fault, RealityField, Route};
use support::agent::{clock, config, runner, server_block, targets};
use support::{sim, within};

const DAEMON: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: true,
};

fn kinds(report: &keywarden::jobs::runner::RunReport) -> Vec<(FindingKind, Severity)> {
    report
        .findings
        .iter()
        .map(|f| (f.kind, f.severity))
        .collect()
}

#[tokio::test]
async fn health_counts_failures_raises_unreachable_and_resolves() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &format!(
            "[jobs.health]\nfailures_before_alert = 2\n{}",
            server_block("fra-1", &server.base_url(), "")
        ),
    );
    let clock = clock();
    let runner = runner(&config, &clock);
    let target = &targets(&config)[0];

    let up = within("health up", runner.run(target, JobKind::Health, DAEMON)).await;
    assert_eq!((up.outcome, kinds(&up)), (RunOutcome::Ok, vec![]));
    assert!(up.plan[0].contains("API 1.0.0"), "{:?}", up.plan);

    server.handle().set_down_and_wait(true).await;
    let first = within("first failure", runner.run(target, JobKind::Health, DAEMON)).await;
    assert_eq!(
        (first.outcome, kinds(&first)),
        (RunOutcome::Error, vec![]),
        "one failure is not an outage yet"
    );
    let second = within(
        "second failure",
        runner.run(target, JobKind::Health, DAEMON),
    )
    .await;
    assert_eq!(
        kinds(&second),
        [(FindingKind::ServerUnreachable, Severity::Critical)]
    );
    assert_eq!(second.outcome, RunOutcome::Critical);
    let open = runner.store().findings().open(Some("fra-1")).await.unwrap();
    assert_eq!(open.len(), 1);

    server.handle().set_down_and_wait(false).await;
    let back = within("back", runner.run(target, JobKind::Health, DAEMON)).await;
    assert_eq!(back.outcome, RunOutcome::Ok);
    let open = runner.store().findings().open(Some("fra-1")).await.unwrap();
    assert!(open.is_empty(), "the outage resolved: {open:?}");
    let state = &runner.store().servers().states().await.unwrap()[0];
    assert_eq!(
        (state.version.as_deref(), state.consecutive_failures),
        (Some("1.0.0"), 0)
    );
}

#[tokio::test]
async fn health_reports_auth_failures_at_once_and_the_monitor() {
    let server = sim(ApiGeneration::V1, 2).await;
    server.handle().set_precise_monitor_available(false);
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let clock = clock();
    let runner = runner(&good, &clock);
    let report = within(
        "monitor",
        runner.run(&targets(&good)[0], JobKind::Health, DAEMON),
    )
    .await;
    assert_eq!(
        kinds(&report),
        [(FindingKind::TrafficMonitorUnavailable, Severity::Warning)]
    );

    // Same server, wrong key: 401 on the first authenticated read.
    let text = format!(
        "[agent]\nstate_dir = \"{}\"\n[[servers]]\nname = \"fra-1\"\nurl = \"{}\"\napi_key = \"wrong-key\"\n",
        dir.path().join("state").display(),
        server.base_url()
    );
    let bad = std::sync::Arc::new(
        keywarden::config::from_str(&text, &dir.path().join("agent.toml"))
            .unwrap()
            .config,
    );
    let report = within(
        "401",
        runner.run(&targets(&bad)[0], JobKind::Health, DAEMON),
    )
    .await;
    assert_eq!(
        kinds(&report),
        [(FindingKind::AuthFailed, Severity::Critical)]
    );
}

#[tokio::test]
async fn reality_verifies_fixes_max_time_diff_and_reports_failures() {
    let v1 = sim(ApiGeneration::V1, 1).await;
    let v2 = sim(ApiGeneration::V2, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}",
        server_block("fra-1", &v1.base_url(), ""),
        server_block("ams-2", &v2.base_url(), "")
    );
    let config = config(dir.path(), &body);
    let clock = clock();
    let runner = runner(&config, &clock);
    let all = targets(&config);

    v1.handle().set_max_time_diff(0);
    let ok = within("verify", runner.run(&all[0], JobKind::Reality, DAEMON)).await;
    assert_eq!((ok.outcome, kinds(&ok)), (RunOutcome::Ok, vec![]));
    assert_eq!(v1.handle().max_time_diff(), 600);

    v1.handle().break_reality(RealityField::PrivateKey);
    let broken = within("broken", runner.run(&all[0], JobKind::Reality, DAEMON)).await;
    assert_eq!(
        kinds(&broken),
        [(FindingKind::RealityInvalid, Severity::Critical)]
    );
    assert!(
        broken.findings[0]
            .details
            .contains("Failed to verify Reality settings"),
        "{}",
        broken.findings[0].details
    );

    // The usual 2.x layout (verify-reality fails on its API inbound): checked read-only
    // through the inbound listing instead, and quiet when all is well.
    let v2_report = within("2.x", runner.run(&all[1], JobKind::Reality, DAEMON)).await;
    assert_eq!(
        (v2_report.outcome, kinds(&v2_report)),
        (RunOutcome::Ok, vec![])
    );
    assert!(
        v2.handle()
            .requests()
            .iter()
            .all(|r| r.path != "/api/system/verify-reality"),
        "verify-reality is never called where api_inbound is true"
    );

    // Audit log: started + result for each verify.
    let audit = runner
        .store()
        .audit()
        .recent(Some("fra-1"), 10)
        .await
        .unwrap();
    let results: Vec<&str> = audit.iter().map(|a| a.result.as_str()).collect();
    assert_eq!(results, ["failed", "started", "ok", "started"]);
}

#[tokio::test]
async fn dry_run_reality_sends_no_post() {
    let server = sim(ApiGeneration::V1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let clock = clock();
    let runner = runner(&config, &clock);
    let options = RunOptions {
        dry_run: true,
        ..DAEMON
    };
    let report = within(
        "dry run",
        runner.run(&targets(&config)[0], JobKind::Reality, options),
    )
    .await;
    assert_eq!(report.plan, ["would verify Reality settings on fra-1"]);
    assert!(
        server.handle().requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        server.handle().requests()
    );
}

#[tokio::test]
async fn a_running_job_is_not_started_again_on_the_same_server() {
    let server = sim(ApiGeneration::V1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let clock = clock();
    let runner = runner(&config, &clock);
    let target = targets(&config).remove(0);
    server.handle().fail_next(
        Route::VerifyReality,
        1,
        Fault::Delay(Duration::from_millis(800)),
    );
    let slow = {
        let runner = runner.clone();
        let target = target.clone();
        tokio::spawn(async move { runner.run(&target, JobKind::Reality, DAEMON).await })
    };
    // Wait until the slow run is in flight (its audit entry is written before the POST).
    within("slow run starts", async {
        while runner
            .store()
            .audit()
            .recent(Some("fra-1"), 1)
            .await
            .unwrap()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let second = within(
        "overlapping tick",
        runner.run(&target, JobKind::Reality, DAEMON),
    )
    .await;
    assert_eq!(second.outcome, RunOutcome::Skipped);
    assert_eq!(runner.stats().skipped_overlap, 1);
    // Another job on the same server is not blocked.
    let health = within(
        "health meanwhile",
        runner.run(&target, JobKind::Health, DAEMON),
    )
    .await;
    assert_eq!(health.outcome, RunOutcome::Ok);
    let first = within("slow run ends", slow).await.unwrap();
    assert_eq!(first.outcome, RunOutcome::Ok);
    let posts = server
        .handle()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("verify-reality"))
        .count();
    assert_eq!(posts, 1, "the skipped tick sent nothing");
}

#[tokio::test]
async fn a_failing_server_is_backed_off_and_others_keep_running() {
    let dead = sim(ApiGeneration::V1, 1).await;
    let live = sim(ApiGeneration::V1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}",
        server_block("dead-1", &dead.base_url(), ""),
        server_block("live-1", &live.base_url(), "")
    );
    let config = config(dir.path(), &body);
    let clock = clock();
    let runner = runner(&config, &clock);
    let all = targets(&config);
    dead.handle()
        .fail_next(Route::VerifyReality, 10, Fault::Html { status: 502 });

    let failed = within("502", runner.run(&all[0], JobKind::Reality, DAEMON)).await;
    assert_eq!(failed.outcome, RunOutcome::Error);
    let skipped = within("backed off", runner.run(&all[0], JobKind::Reality, DAEMON)).await;
    assert_eq!(skipped.outcome, RunOutcome::Skipped);
    assert!(skipped.error.unwrap().contains("backing off"));
    let other = within(
        "other server",
        runner.run(&all[1], JobKind::Reality, DAEMON),
    )
    .await;
    assert_eq!(other.outcome, RunOutcome::Ok);
    // The backoff ends with the clock.
    clock.advance(chrono::Duration::seconds(6));
    let retried = within(
        "after backoff",
        runner.run(&all[0], JobKind::Reality, DAEMON),
    )
    .await;
    assert_eq!(retried.outcome, RunOutcome::Error);
    assert_eq!(runner.stats().skipped_backoff, 1);
}

/// Two runners over two handles of one store file (two processes, as `check` beside the
/// daemon): while one runs health on fra-1 the other skips it, naming the holder; once
/// the run ends and gives its lease back, the other runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_run_one_job_on_one_server_at_once() {
    use keywarden::clock::Clock;
    use keywarden::model::Lease;
    use keywarden::store::LeaseGrant;
    let server = sim(ApiGeneration::V1, 2).await;
    server
        .handle()
        .fail_next(Route::Root, 1, Fault::Delay(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let clock = clock();
    let (first, second) = (runner(&config, &clock), runner(&config, &clock));
    let target = targets(&config).remove(0);
    let slow = {
        let (first, target) = (first.clone(), target.clone());
        tokio::spawn(async move { first.run(&target, JobKind::Health, DAEMON).await })
    };
    // Wait until the first holds the lease (a probe of ours is refused).
    let probe = |now| Lease {
        server: "fra-1".into(),
        job: JobKind::Health,
        holder: "probe".into(),
        acquired_at: now,
        expires_at: now,
    };
    let store = second.store().clone();
    within("the first run takes its lease", async {
        while store.leases().acquire(&probe(clock.now())).await.unwrap() == LeaseGrant::Granted {
            store
                .leases()
                .release("fra-1", JobKind::Health, "probe")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let skipped = within("skipped", second.run(&target, JobKind::Health, DAEMON)).await;
    assert_eq!(skipped.outcome, RunOutcome::Skipped, "{skipped:#?}");
    let why = skipped.error.clone().unwrap_or_default();
    assert!(
        why.contains("fra-1 health is running in another process"),
        "{why}"
    );
    assert!(why.contains(first.holder()), "{why}");
    assert_eq!(second.stats().skipped_lease, 1);
    let ran = within("the first run", slow).await.unwrap();
    assert_eq!(ran.outcome, RunOutcome::Ok, "{ran:#?}");
    let after = within("after", second.run(&target, JobKind::Health, DAEMON)).await;
    assert_eq!(
        after.outcome,
        RunOutcome::Ok,
        "the lease was given back: {after:#?}"
    );
}
