//! A rig for quota job tests: a simulated server, a config with `[quotas]`, a real store
//! in a temp dir, a manual clock, and "restarts" (store reopened, a new client).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use keywarden::clock::{Clock, ManualClock};
use keywarden::config::Config;
use keywarden::finding::{Finding, FindingKind};
use keywarden::jobs::quota::{self, CrashPoint};
use keywarden::jobs::{JobContext, JobResult, RunMode};
use keywarden::quota::Entry;
use keywarden::server_api::{ClientSettings, RetryPolicy, ServerApi};
use keywarden::sim::{ApiGeneration, SimHandle, SimKey, SimServer};
use keywarden::store::Store;
use tempfile::TempDir;

use super::{TEST_API_KEY, sim, within};

pub const MIB: u64 = 1 << 20;

/// 2026-11-20 12:00 UTC: mid-month.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

pub fn utc(mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, mo, d, h, mi, 0).unwrap()
}

/// The parts of the configuration a test chooses.
#[derive(Clone, Default)]
pub struct Setup {
    /// Lines of `[quotas]` (and rules after it). Without an `adopt` line the rig adds
    /// `adopt = "count"`: most tests set a counter before the first run and follow that
    /// usage (the default, "baseline", has tests of its own).
    pub quotas: String,
    /// Extra lines of `[[servers]]`.
    pub server: String,
    /// Extra lines of `[agent]`.
    pub agent: String,
    /// `action_timeout` of the server ("2s" when empty).
    pub action_timeout: &'static str,
}

pub struct Rig {
    pub sim: SimServer,
    pub config: Config,
    pub api: ServerApi,
    pub prober: std::sync::Arc<keywarden::jobs::dataplane::Prober>,
    pub store: Option<Store>,
    pub dir: TempDir,
    pub clock: ManualClock,
    pub generation: ApiGeneration,
}

fn client(config: &Config) -> ServerApi {
    keywarden::tls::install_crypto_provider();
    let mut settings = ClientSettings::from_config(&config.servers[0]).expect("client");
    settings.retry = RetryPolicy {
        get_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(1),
    };
    // Tests add and remove keys between runs.
    settings.key_list_ttl = Duration::ZERO;
    ServerApi::new(settings).expect("client")
}

impl Rig {
    pub async fn new(generation: ApiGeneration, keys: usize, setup: &Setup) -> Rig {
        let sim = sim(generation, keys).await;
        // Many runs per test: lift the 2.x key-list limit.
        sim.handle()
            .set_keys_rate_limit(10_000, Duration::from_secs(60));
        let dir = tempfile::tempdir().expect("tempdir");
        let adopt = match setup.quotas.contains("adopt") {
            true => "",
            false => "adopt = \"count\"\n",
        };
        let text = format!(
            "[agent]\nstate_dir = {:?}\n{}\n[[servers]]\nname = \"fra-1\"\nurl = {:?}\napi_key_env = \"K\"\ntimeout = \"2s\"\naction_timeout = {:?}\n{}\n[quotas]\n{}{}\n",
            dir.path().display().to_string(),
            setup.agent,
            sim.base_url(),
            if setup.action_timeout.is_empty() {
                "2s"
            } else {
                setup.action_timeout
            },
            setup.server,
            adopt,
            setup.quotas
        );
        let loaded =
            keywarden::config::from_str_with_env(&text, &dir.path().join("agent.toml"), &|_| {
                Some(TEST_API_KEY.to_string())
            })
            .unwrap_or_else(|errors| panic!("test config: {errors}\n{text}"));
        let config = loaded.config;
        Rig {
            api: client(&config),
            prober: std::sync::Arc::new(keywarden::jobs::dataplane::Prober::new(Vec::new())),
            store: Some(Store::open(dir.path()).expect("store")),
            sim,
            config,
            dir,
            clock: ManualClock::new(start()),
            generation,
        }
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn handle(&self) -> SimHandle {
        self.sim.handle()
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("store open")
    }

    pub fn key(&self, index: usize) -> SimKey {
        self.handle().keys()[index].clone()
    }

    /// Set a key's counter; on 1.x also open a connection, so the bulk answer lists it.
    pub fn set_counter(&self, index: usize, bytes: u64) {
        let key = self.key(index);
        self.handle().set_counter(&key.id, bytes);
        if self.generation == ApiGeneration::V1 {
            self.handle().set_connections(&key.id, 1);
        }
    }

    pub fn ctx(&self, dry_run: bool) -> JobContext<'_> {
        JobContext {
            config: &self.config,
            server: &self.config.servers[0],
            api: &self.api,
            store: self.store(),
            clock: &self.clock,
            dry_run,
            mode: RunMode::Daemon,
            prober: &self.prober,
        }
    }

    /// One run at `at`.
    pub async fn run_at(&self, at: DateTime<Utc>) -> JobResult {
        self.clock.set(at);
        within("quota run", quota::run(&self.ctx(false))).await
    }

    /// One run ten minutes after the clock.
    pub async fn run(&self) -> JobResult {
        self.run_at(self.clock.now() + chrono::Duration::minutes(10))
            .await
    }

    pub async fn dry_run_at(&self, at: DateTime<Utc>) -> JobResult {
        self.clock.set(at);
        within("quota dry run", quota::run(&self.ctx(true))).await
    }

    /// A run that "dies" at `crash`.
    pub async fn run_crashing_at(&self, at: DateTime<Utc>, crash: CrashPoint) -> JobResult {
        self.clock.set(at);
        within(
            "quota run (crashing)",
            quota::run_with(&self.ctx(false), Some(crash)),
        )
        .await
    }

    /// A new process: the store reopened, a new client (nothing cached).
    pub fn restart(&mut self) {
        drop(self.store.take());
        self.store = Some(Store::open(self.dir.path()).expect("reopen store"));
        self.api = client(&self.config);
    }

    pub fn entry(&self, index: usize) -> Entry {
        let uuid = self.key(index).uuid;
        self.entry_of(&uuid)
    }

    pub fn entry_of(&self, uuid: &str) -> Entry {
        self.store()
            .quota_ledger("fra-1")
            .expect("ledger")
            .into_iter()
            .find(|e| e.uuid == uuid)
            .unwrap_or_else(|| panic!("no ledger entry for {uuid}"))
    }

    /// Reset calls the server answered 200 for this key (ignored ones included).
    pub fn resets_of(&self, key: &SimKey) -> usize {
        self.handle()
            .requests()
            .iter()
            .filter(|r| {
                r.method == "POST"
                    && r.path.ends_with("/traffic/reset")
                    && r.status == 200
                    && (r.path.contains(&key.id) || r.path.contains(&key.uuid))
            })
            .count()
    }

    pub fn reset_posts(&self) -> usize {
        self.handle()
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/traffic/reset"))
            .count()
    }
}

pub fn kinds(result: &JobResult) -> Vec<FindingKind> {
    result.findings.iter().map(|f| f.kind).collect()
}

pub fn of_kind(result: &JobResult, kind: FindingKind) -> Vec<&Finding> {
    result.findings.iter().filter(|f| f.kind == kind).collect()
}

/// The quota setup used by most tests: 100 MiB a month, warnings at 80 and 95%.
pub fn monthly(on_exceed: &str) -> Setup {
    Setup {
        quotas: format!("limit = \"100 MiB\"\nwarn_at = [80, 95]\non_exceed = \"{on_exceed}\"\n"),
        ..Setup::default()
    }
}
