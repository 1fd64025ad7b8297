//! The data plane against the simulator over real HTTP and real TLS on loopback: Xray's
//! state and its restart (health, 2.x), Reality read-only per inbound and its repair
//! (reality, 2.x), every VLESS port seen from outside (dataplane), the counters read in
//! before every restart, and the CLI end to end. Real store, manual clock.

#[path = "data_plane/cli.rs"]
mod cli;
#[path = "data_plane/counters.rs"]
mod counters;
#[path = "data_plane/ports.rs"]
mod ports;
#[path = "data_plane/reality.rs"]
mod reality;
#[path = "data_plane/xray.rs"]
mod xray;

mod support;

use std::sync::Arc;

use keywarden::clock::ManualClock;
use keywarden::config::{Config, JobKind, Severity};
use keywarden::jobs::runner::{RunOptions, RunReport, Runner, Target};
use keywarden::jobs::{LogSink, RunMode};
use keywarden::metrics::Metrics;
use keywarden::model::FindingKind;
use keywarden::store::Store;
use keywarden_sim::{ApiGeneration, SimHandle, SimServer};
use support::agent::{clock, config, server_block};
use support::{ca_file, sim, within};

pub const RUN: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: false,
};

pub const DRY: RunOptions = RunOptions {
    dry_run: true,
    mode: RunMode::Daemon,
    respect_backoff: false,
};

/// One simulated server, a config trusting its test CA, a runner with metrics.
pub struct Rig {
    pub server: SimServer,
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub clock: ManualClock,
    pub runner: Arc<Runner>,
    pub target: Target,
    pub metrics: Arc<Metrics>,
}

impl Rig {
    /// `jobs`: extra top-level TOML (e.g. `[jobs.health]` tables); `server_extra`: lines
    /// of the `[[servers]]` table.
    pub async fn new(
        generation: ApiGeneration,
        keys: usize,
        jobs: &str,
        server_extra: &str,
    ) -> Rig {
        let server = sim(generation, keys).await;
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(dir.path(), &server);
        let extra = format!(
            "reality_ca_file = {:?}\n{server_extra}",
            ca.display().to_string()
        );
        let body = format!(
            "{jobs}\n{}",
            server_block("fra-1", &server.base_url(), &extra)
        );
        let config = config(dir.path(), &body);
        let clock = clock();
        let metrics = Arc::new(Metrics::new(false));
        let store = Arc::new(Store::open(&config.agent.state_dir).expect("store"));
        let runner = Arc::new(
            Runner::new(store, Arc::new(clock.clone()), Arc::new(LogSink), 4)
                .with_metrics(metrics.clone()),
        );
        let target = keywarden::app::targets(&config, None)
            .expect("targets")
            .remove(0);
        Rig {
            server,
            dir,
            config,
            clock,
            runner,
            target,
            metrics,
        }
    }

    pub fn sim(&self) -> SimHandle {
        self.server.handle()
    }

    pub fn store(&self) -> &Store {
        self.runner.store()
    }

    /// One run of `job`, a minute after the previous one.
    pub async fn run(&self, job: JobKind) -> RunReport {
        self.run_with(job, RUN).await
    }

    pub async fn run_with(&self, job: JobKind, options: RunOptions) -> RunReport {
        self.clock.advance(chrono::Duration::minutes(1));
        within(job.as_str(), self.runner.run(&self.target, job, options)).await
    }

    /// Make fra-1's sync budget unreadable (a store failing under the job): an attempt
    /// of a kind this build does not know, within the hour. Writes still work.
    pub fn corrupt_the_budget(&self) {
        let db = self.config.agent.state_dir.join(keywarden::store::DB_FILE);
        let conn = rusqlite::Connection::open(db).unwrap();
        let now = keywarden::clock::Clock::now(&self.clock);
        let at = keywarden::model::stamp(now - chrono::Duration::minutes(5));
        conn.execute(
            "INSERT INTO sync_attempts (server, at, kind, outcome) VALUES ('fra-1', ?1, 'bogus', 'completed')",
            [at],
        )
        .unwrap();
    }

    /// Requests the simulator answered with this method and path ending.
    pub fn requests_to(&self, method: &str, path_end: &str) -> usize {
        self.sim()
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(path_end))
            .count()
    }

    pub async fn open_kinds(&self) -> Vec<FindingKind> {
        let findings = self.store().findings();
        let open = findings.open(Some("fra-1")).await.unwrap();
        open.into_iter().map(|f| f.kind).collect()
    }
}

pub fn kinds(report: &RunReport) -> Vec<(FindingKind, Severity)> {
    report
        .findings
        .iter()
        .map(|f| (f.kind, f.severity))
        .collect()
}
