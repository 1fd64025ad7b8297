//! Leadership as the rest of the agent sees it (issue 13), without PostgreSQL: a shared
//! `Leadership` driven by hand through its `Publisher`, as the leader task drives it.
//! The runner acts only on servers it leads (a skipped tick writes nothing), a run is
//! stopped when its server's lock goes, the outbox is delivered only by the dispatcher's
//! leader, and /healthz tells a disconnected agent from a standby.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keywarden::alert::{Dispatcher, SinkOptions};
use keywarden::config::{JobKind, Severity};
use keywarden::http::HttpState;
use keywarden::jobs::RunMode;
use keywarden::jobs::runner::{RunOptions, Runner};
use keywarden::lead::{Leadership, Mode, Snapshot};
use keywarden::metrics::Metrics;
use keywarden::model::{FindingKind, RunOutcome};
use keywarden::store::Store;
use keywarden_sim::{ApiGeneration, Fault, Route};
use support::agent::{clock, config, server_block};
use support::alerts::{Harness, eventually, finding};
use support::hooks::Receiver;
use support::{sim, within};

const OPTIONS: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: true,
};

fn holding(servers: &[&str], dispatcher: bool) -> Snapshot {
    Snapshot {
        mode: Mode::Shared,
        agent: "agent-a".into(),
        connected: true,
        servers: servers.iter().map(|s| s.to_string()).collect(),
        dispatcher,
        agents_live: vec!["agent-a".into(), "agent-b".into()],
    }
}

fn skipped_not_leading(metrics: &Metrics, server: &str) -> u64 {
    let text = metrics.encode();
    let needle = format!(
        "keywarden_job_skipped_total{{server=\"{server}\",job=\"health\",outcome=\"not_leading\"}} "
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&needle))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_runner_acts_only_on_servers_it_leads_and_writes_nothing_for_the_others() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}",
        server_block("fra-1", &server.base_url(), ""),
        server_block("fra-2", &server.base_url(), "")
    );
    let config = config(dir.path(), &body);
    let metrics = Arc::new(Metrics::new(false));
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    let (leadership, publisher) = Leadership::shared("agent-a");
    let runner = Runner::new(
        store.clone(),
        Arc::new(clock()),
        Arc::new(keywarden::jobs::LogSink),
        4,
    )
    .with_metrics(metrics.clone())
    .with_leadership(leadership);
    let targets = keywarden::app::targets(&config, None).unwrap();
    let (fra1, fra2) = (&targets[0], &targets[1]);
    publisher.publish(holding(&["fra-1"], false));

    let report = runner.run(fra2, JobKind::Health, OPTIONS).await;
    assert_eq!(report.outcome, RunOutcome::Skipped);
    assert!(report.error.unwrap().contains("another agent leads"));
    assert!(
        server.handle().requests().is_empty(),
        "fra-2 was not called"
    );
    assert!(
        store.runs().last_runs().await.unwrap().is_empty(),
        "nothing recorded"
    );
    assert_eq!(skipped_not_leading(&metrics, "fra-2"), 1);

    let report = runner.run(fra1, JobKind::Health, OPTIONS).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{report:?}");
    let recorded: BTreeSet<String> = store
        .runs()
        .last_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.server)
        .collect();
    assert_eq!(recorded, BTreeSet::from(["fra-1".to_string()]));

    // Disconnected: every lock is gone, nothing runs, nothing is written.
    publisher.disconnected();
    server.handle().clear_requests();
    let report = runner.run(fra1, JobKind::Health, OPTIONS).await;
    assert_eq!(report.outcome, RunOutcome::Skipped);
    assert!(server.handle().requests().is_empty());
    assert_eq!(
        store
            .runs()
            .recent("fra-1", JobKind::Health, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(runner.stats().skipped_not_leading, 2);
}

#[tokio::test]
async fn a_run_is_stopped_when_its_server_s_lock_goes() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    let (leadership, publisher) = Leadership::shared("agent-a");
    let runner = Arc::new(
        Runner::new(
            store.clone(),
            Arc::new(clock()),
            Arc::new(keywarden::jobs::LogSink),
            4,
        )
        .with_leadership(leadership),
    );
    let target = keywarden::app::targets(&config, None).unwrap().remove(0);
    publisher.publish(holding(&["fra-1"], false));
    // The server answers only after 1.9 s (the client's timeout is 2 s).
    server
        .handle()
        .fail_next(Route::Any, 10, Fault::Delay(Duration::from_millis(1900)));
    let run = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(&target, JobKind::Health, OPTIONS).await }
    });
    // The health check's first call is in flight by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished());
    publisher.disconnected();
    let report = tokio::time::timeout(Duration::from_millis(800), run)
        .await
        .expect("the run stops as soon as the lock goes, not when the server answers")
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Skipped);
    assert!(report.error.unwrap().contains("leadership lost mid-run"));
    assert_eq!(runner.stats().stopped_not_leading, 1);
    assert!(
        store.runs().last_runs().await.unwrap().is_empty(),
        "the new leader's runs are the record"
    );
}

#[tokio::test]
async fn only_the_dispatcher_s_leader_delivers_the_outbox() {
    let hook = Receiver::start().await;
    let h = Harness::new(&format!(
        "[alerts]\ngroup_wait = \"0s\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
        hook.url("/hook")
    ));
    let (leadership, publisher) = Leadership::shared("agent-a");
    publisher.publish(holding(&["fra-1"], false));
    let dispatcher = Dispatcher::start_led(
        h.pipeline.clone(),
        h.sinks(&SinkOptions::default()),
        support::alerts::options(),
        leadership,
    );
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    )
    .await;
    // Queued, but another agent leads the dispatcher: a while, and nothing is sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        hook.requests().is_empty(),
        "sent without the dispatcher lock"
    );
    assert_eq!(h.store.alerts().pending("hook").await.unwrap().len(), 1);
    publisher.publish(holding(&["fra-1"], true));
    within(
        "delivery once leading",
        eventually("one request", || hook.requests().len() == 1),
    )
    .await;
    assert!(h.store.alerts().pending("hook").await.unwrap().is_empty());
    assert!(dispatcher.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn healthz_tells_a_disconnected_agent_from_a_standby() {
    keywarden::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let state = HttpState {
        metrics: Arc::new(Metrics::new(false)),
        store: Arc::new(Store::open(dir.path()).unwrap()),
        scheduler_alive: Arc::new(AtomicBool::new(true)),
    };
    let (leadership, publisher) = Leadership::shared("agent-a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(keywarden::http::serve_led(
        listener,
        state,
        leadership,
        stop.clone(),
    ));
    let get = || async {
        let response = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let (status, body) = get().await;
    assert_eq!(status, 503);
    assert!(body.starts_with("not leading any server"), "{body}");
    publisher.publish(holding(&[], false));
    let (status, body) = get().await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ok: standby (connected, leading no server)\n")
    );
    publisher.publish(holding(&["fra-1"], true));
    assert_eq!(get().await, (200, "ok\n".to_string()));
    publisher.disconnected();
    assert_eq!(get().await.0, 503);
    stop.cancel();
    within("the endpoint stops", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_leader_takes_over_a_lease_left_by_another_agent_but_not_a_check_s() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    let clock = clock();
    let (leadership, publisher) = Leadership::shared("agent-a");
    let runner = Runner::new(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(keywarden::jobs::LogSink),
        4,
    )
    .with_holder(&Runner::shared_daemon_role("agent-a"))
    .with_leadership(leadership);
    let target = keywarden::app::targets(&config, None).unwrap().remove(0);
    publisher.publish(holding(&["fra-1"], false));
    let now = keywarden::clock::Clock::now(&clock);
    let lease = |holder: &str| keywarden::model::Lease {
        server: "fra-1".into(),
        job: JobKind::Health,
        holder: holder.into(),
        acquired_at: now,
        expires_at: now + chrono::Duration::seconds(90),
    };
    // A check beside the daemon holds it: respected.
    let check = lease("keywarden check, pid 7, runner 1");
    store.leases().acquire(&check).await.unwrap();
    let report = runner.run(&target, JobKind::Health, OPTIONS).await;
    assert_eq!(report.outcome, RunOutcome::Skipped);
    assert!(report.error.unwrap().contains("keywarden check"));
    store
        .leases()
        .release("fra-1", JobKind::Health, &check.holder)
        .await
        .unwrap();
    // agent-b's daemon held it when it crashed; agent-a leads fra-1 now: taken over.
    let crashed = lease(&format!(
        "{}, pid 9, runner 1",
        Runner::shared_daemon_role("agent-b")
    ));
    store.leases().acquire(&crashed).await.unwrap();
    let report = runner.run(&target, JobKind::Health, OPTIONS).await;
    assert_eq!(report.outcome, RunOutcome::Ok, "{report:?}");
}
