//! An alert pipeline for tests: a config with the given `[alerts]` text, a store in a
//! temp dir, a manual clock, the dispatcher with short real-time polling, and a way
//! to feed a run's findings exactly as the runner does.

use std::sync::Arc;
use std::time::Duration;

use keywarden::alert::{DispatchOptions, Dispatcher, Pipeline, Sink, SinkOptions};
use keywarden::clock::ManualClock;
use keywarden::config::{Config, JobKind, Severity};
use keywarden::jobs::runner::RunReport;
use keywarden::jobs::{AlertSink, FindingSink};
use keywarden::model::{Finding, FindingKind, RunOutcome};
use keywarden::store::Store;

pub fn options() -> DispatchOptions {
    DispatchOptions {
        backoff_base: Duration::from_secs(2),
        backoff_max: Duration::from_secs(60),
        max_age: Duration::from_secs(3600),
        max_idle: Duration::from_millis(20),
    }
}

pub fn finding(server: &str, kind: FindingKind, severity: Severity) -> Finding {
    Finding {
        server: server.into(),
        job: JobKind::ConfigSync,
        kind,
        subject: String::new(),
        severity,
        summary: format!("{} on {server}", kind.as_str()),
        details: "Seen: something.\nDone: nothing yet.\nNext: look at it.".into(),
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub pipeline: Arc<Pipeline>,
    pub dispatcher: Option<Dispatcher>,
}

impl Harness {
    /// `alerts`: the `[alerts]` section and sinks.
    pub fn new(alerts: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::in_dir(dir, alerts)
    }

    pub fn in_dir(dir: tempfile::TempDir, alerts: &str) -> Harness {
        keywarden::tls::install_crypto_provider();
        let body = format!(
            "{}\n{alerts}",
            super::agent::server_block("fra-1", "http://127.0.0.1:9/api", "")
        );
        let config = super::agent::config(dir.path(), &body);
        let clock = super::agent::clock();
        let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
        let pipeline = Arc::new(Pipeline::new(
            store.clone(),
            Arc::new(clock.clone()),
            &config.alerts,
        ));
        Harness {
            dir,
            clock,
            config,
            store,
            pipeline,
            dispatcher: None,
        }
    }

    pub fn sinks(&self, options: &SinkOptions) -> Vec<Sink> {
        Sink::build_all(&self.config.alerts, self.config.agent.timezone, options).unwrap()
    }

    pub fn start(&mut self, options: &SinkOptions) {
        let sinks = self.sinks(options);
        self.dispatcher = Some(Dispatcher::start(
            self.pipeline.clone(),
            sinks,
            options_now(),
        ));
    }

    pub async fn stop(&mut self) {
        if let Some(dispatcher) = self.dispatcher.take() {
            assert!(dispatcher.shutdown(Duration::from_secs(5)).await);
        }
    }

    /// One run of `job` on `server` that found `findings` (recorded, then handed to
    /// the alert pipeline, like the runner does).
    pub async fn run(&self, server: &str, job: JobKind, findings: Vec<Finding>) {
        self.run_through(&self.pipeline, server, job, findings)
            .await;
    }

    /// [`Harness::run`] handed to `pipeline` (another process's on the same store).
    pub async fn run_through(
        &self,
        pipeline: &Arc<Pipeline>,
        server: &str,
        job: JobKind,
        mut findings: Vec<Finding>,
    ) {
        for finding in &mut findings {
            finding.job = job;
        }
        let now = keywarden::clock::Clock::now(&self.clock);
        let changes = self
            .store
            .findings()
            .record(server, job, &findings, now)
            .await
            .unwrap();
        let report = RunReport {
            server: server.into(),
            job,
            started_at: now,
            duration_ms: 1,
            outcome: RunOutcome::Ok,
            findings,
            plan: vec![],
            error: None,
            facts: vec![],
        };
        AlertSink(pipeline.clone()).deliver(&report, &changes).await;
    }

    /// Move the manual clock and wake the sinks.
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
        self.pipeline.wake_all();
    }
}

fn options_now() -> DispatchOptions {
    options()
}

/// Poll `condition` every 10 ms for at most 10 s; panic with `what` otherwise.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    eventually_async(what, || std::future::ready(condition())).await
}

/// `eventually`, for a condition that awaits (reads the store).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    let started = std::time::Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Let the dispatcher run a few passes (real time) so that "nothing more arrives"
/// can be asserted.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}
