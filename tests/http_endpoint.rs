//! /metrics and /healthz served from an ephemeral loopback port: the exposition parses
//! with a Prometheus text parser, and /healthz says 503 when it should.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keywarden::config::JobKind;
use keywarden::http::{HttpState, serve};
use keywarden::jobs::RunMode;
use keywarden::jobs::runner::{RunOptions, Runner};
use keywarden::metrics::Metrics;
use keywarden::store::Store;
use keywarden_sim::ApiGeneration;
use support::agent::{clock, config, server_block};
use support::{sim, within};
use tokio_util::sync::CancellationToken;

struct Endpoint {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve_state(state: HttpState) -> Endpoint {
    keywarden::tls::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, stop.clone()));
    Endpoint { addr, stop, task }
}

impl Endpoint {
    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn stop(self) {
        self.stop.cancel();
        within("the endpoint stops", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn metrics_after_real_runs_parse_as_prometheus_text() {
    let server = sim(ApiGeneration::V1, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server_block("fra-1", &server.base_url(), ""));
    let metrics = Arc::new(Metrics::new(false));
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    let clock = clock();
    let runner = Runner::new(
        store.clone(),
        Arc::new(clock),
        Arc::new(keywarden::jobs::LogSink),
        4,
    )
    .with_metrics(metrics.clone());
    let target = keywarden::app::targets_with_metrics(&config, None, Some(metrics.clone()))
        .unwrap()
        .remove(0);
    let options = RunOptions {
        dry_run: false,
        mode: RunMode::Daemon,
        respect_backoff: true,
    };
    for job in [JobKind::Health, JobKind::ConfigSync, JobKind::Reality] {
        within("run", runner.run(&target, job, options)).await;
    }
    let endpoint = serve_state(HttpState {
        metrics,
        store,
        scheduler_alive: Arc::new(AtomicBool::new(true)),
    })
    .await;
    let (status, content_type, text) = endpoint.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("a valid exposition");
    let value = |name: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| s.value.clone())
    };
    assert!(
        matches!(value("keywarden_server_up", ("server", "fra-1")), Some(prometheus_parse::Value::Gauge(v)) if v == 1.0)
    );
    let runs: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "keywarden_job_runs_total")
        .collect();
    assert_eq!(runs.len(), 3, "one series per job: {runs:?}");
    assert!(scrape.samples.iter().any(|s| {
        s.metric == "keywarden_api_request_duration_seconds"
            || s.metric
                .starts_with("keywarden_api_request_duration_seconds")
    }));
    assert!(
        matches!(value("keywarden_sync_budget_left", ("server", "fra-1")), Some(prometheus_parse::Value::Gauge(v)) if v == 4.0)
    );
    endpoint.stop().await;
}

#[tokio::test]
async fn healthz_follows_the_scheduler_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let writable = Arc::new(Store::open(dir.path()).unwrap());
    let alive = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(Metrics::new(false));
    let endpoint = serve_state(HttpState {
        metrics: metrics.clone(),
        store: writable,
        scheduler_alive: alive.clone(),
    })
    .await;
    let (status, _, body) = endpoint.get("/healthz").await;
    assert_eq!(
        (status, body.contains("scheduler is not running")),
        (503, true),
        "{body}"
    );
    alive.store(true, Ordering::Relaxed);
    assert_eq!(endpoint.get("/healthz").await.0, 200);
    endpoint.stop().await;

    // The same database, read-only: /healthz must say the store cannot be written.
    let read_only =
        Arc::new(Store::open_read_only(&dir.path().join(keywarden::store::DB_FILE)).unwrap());
    let endpoint = serve_state(HttpState {
        metrics,
        store: read_only,
        scheduler_alive: alive,
    })
    .await;
    let (status, _, body) = endpoint.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("state store is not writable"), "{body}");
    endpoint.stop().await;
}

/// The store file deleted, or replaced by another, under a running endpoint: 503 and why.
#[tokio::test]
async fn healthz_says_503_when_the_store_file_is_deleted_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let endpoint = serve_state(HttpState {
        metrics: Arc::new(Metrics::new(false)),
        store: store.clone(),
        scheduler_alive: Arc::new(AtomicBool::new(true)),
    })
    .await;
    assert_eq!(endpoint.get("/healthz").await.0, 200);
    let db = dir.path().join(keywarden::store::DB_FILE);
    std::fs::remove_file(&db).unwrap();
    let (status, _, body) = endpoint.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("state store lost"), "{body}");
    assert!(body.contains("was deleted"), "{body}");
    // Another file in its place (a restore over a running daemon) is no better.
    std::fs::write(&db, b"").unwrap();
    let (status, _, body) = endpoint.get("/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("was replaced by another file"), "{body}");
    endpoint.stop().await;
}

#[tokio::test]
async fn quota_runs_export_per_key_usage_and_reset_outcomes() {
    let server = sim(ApiGeneration::V1, 2).await;
    let handle = server.handle();
    let keys = handle.keys();
    for key in &keys {
        handle.set_counter(&key.id, 100 * 1024);
        handle.set_connections(&key.id, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\nstate_dir = \"{}\"\nmetrics_per_key = true\n[quotas]\nlimit = \"1 MiB\"\non_exceed = \"reset\"\nadopt = \"count\"\n{}",
        dir.path().join("state").display(),
        server_block("fra-1", &server.base_url(), "")
    );
    let env = |name: &str| (name == "TEST_KEY").then(|| support::TEST_API_KEY.to_string());
    let config = Arc::new(
        keywarden::config::from_str_with_env(&text, &dir.path().join("agent.toml"), &env)
            .unwrap()
            .config,
    );
    let metrics = Arc::new(Metrics::new(config.agent.metrics_per_key));
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    let runner = Runner::new(
        store,
        Arc::new(clock()),
        Arc::new(keywarden::jobs::LogSink),
        4,
    )
    .with_metrics(metrics.clone());
    let target = keywarden::app::targets_with_metrics(&config, None, Some(metrics.clone()))
        .unwrap()
        .remove(0);
    let options = RunOptions {
        dry_run: false,
        mode: RunMode::Daemon,
        respect_backoff: true,
    };
    within(
        "first quota run",
        runner.run(&target, JobKind::Quota, options),
    )
    .await;
    handle.add_traffic(&keys[0].id, 2 * 1024 * 1024);
    within(
        "second quota run",
        runner.run(&target, JobKind::Quota, options),
    )
    .await;

    let text = metrics.encode();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("a valid exposition");
    let sample = |name: &str, key: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("key") == Some(key))
            .map(|s| s.value.clone())
    };
    assert!(
        matches!(sample("keywarden_key_used_bytes", &keys[1].uuid), Some(prometheus_parse::Value::Gauge(v)) if v == 102_400.0),
        "{text}"
    );
    assert!(
        matches!(sample("keywarden_key_quota_ratio", &keys[1].uuid), Some(prometheus_parse::Value::Gauge(v)) if (v - 102_400.0 / 1_048_576.0).abs() < 1e-9),
        "{text}"
    );
    let resets: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "keywarden_resets_total")
        .collect();
    assert_eq!(resets.len(), 1, "{text}");
    assert_eq!(resets[0].labels.get("server"), Some("fra-1"));
}

#[tokio::test]
async fn the_heartbeat_goes_out_after_a_complete_cycle_and_never_names_its_url() {
    let server = sim(ApiGeneration::V1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &server_block("fra-1", &server.base_url(), "skip_jobs = [\"quota\"]"),
    );
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    let runner = Runner::new(
        store,
        Arc::new(clock()),
        Arc::new(keywarden::jobs::LogSink),
        4,
    );
    let target = keywarden::app::targets(&config, None).unwrap().remove(0);
    let expected: Vec<(String, JobKind)> = [JobKind::Health, JobKind::ConfigSync, JobKind::Reality]
        .into_iter()
        .map(|job| ("fra-1".to_string(), job))
        .collect();
    let options = RunOptions {
        dry_run: false,
        mode: RunMode::Daemon,
        respect_backoff: true,
    };
    within("health", runner.run(&target, JobKind::Health, options)).await;
    assert!(
        !runner.cycle().take_if_complete(&expected),
        "two jobs have not run yet"
    );
    within("sync", runner.run(&target, JobKind::ConfigSync, options)).await;
    within("reality", runner.run(&target, JobKind::Reality, options)).await;
    assert!(runner.cycle().take_if_complete(&expected));

    let monitor = support::hooks::Receiver::start().await;
    let url = keywarden::config::SecretUrl::new(monitor.url("/ping/tok-3141592").parse().unwrap());
    let client = reqwest::Client::new();
    keywarden::heartbeat::ping(&client, &url)
        .await
        .expect("the monitor answers 200");
    let seen = monitor.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/ping/tok-3141592");

    // A dead monitor: the error says what happened without the tokened URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = keywarden::config::SecretUrl::new(
        format!("http://127.0.0.1:{port}/ping/tok-3141592")
            .parse()
            .unwrap(),
    );
    let error = keywarden::heartbeat::ping(&client, &dead)
        .await
        .unwrap_err();
    assert!(!error.contains("tok-3141592"), "{error}");
}
