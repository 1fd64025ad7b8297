//! The validated configuration: typed values other modules use. Built only by `validate`,
//! so holding a `Config` means every value here was checked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::alerts::AlertsConfig;
use super::quota::QuotasConfig;
use super::reports::ReportsConfig;
use super::retention::RetentionConfig;
use super::schedule::Schedule;
use super::store::StoreChoice;
use crate::logging::LogFormat;
pub use crate::model::JobKind;
use crate::secret::Secret;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[agent]`: process-wide settings.
    pub agent: AgentConfig,
    /// `[[servers]]`: at least one, names unique.
    pub servers: Vec<ServerConfig>,
    /// `[jobs]`: schedules and knobs of the periodic jobs.
    pub jobs: JobsConfig,
    /// `[quotas]`: default policy and rules.
    pub quotas: QuotasConfig,
    /// `[alerts]`: routing and sinks.
    pub alerts: AlertsConfig,
    /// `[reports]`: the periodic usage report.
    pub reports: ReportsConfig,
    /// `[retention]`: how long the state store keeps its history.
    pub retention: RetentionConfig,
    /// `[agent] store` with `[store.postgres]`: where the state lives.
    pub store: StoreChoice,
}

impl Config {
    /// The server called `name`, if configured.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|server| server.name == name)
    }
}

/// `[agent]`
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Directory of the state store (relative paths resolved against the config file's directory).
    pub state_dir: PathBuf,
    /// Time zone of cron schedules and quota periods.
    pub timezone: chrono_tz::Tz,
    /// Detect and alert, never change a server.
    pub dry_run: bool,
    /// Whether quota rules may delete keys (validation already refused `delete` without it).
    pub allow_delete: bool,
    /// Address of /metrics and /healthz; `None` when disabled.
    pub listen: Option<SocketAddr>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Export per-key series on /metrics (one series per key and metric).
    pub metrics_per_key: bool,
    /// Job runs in flight across all servers at most (the runner's global cap).
    pub max_concurrent_runs: usize,
}

/// Where a secret was read from; printed by `validate` instead of the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the configuration file.
    Inline,
    /// Read from this file at load.
    File(PathBuf),
    /// Read from this environment variable at load.
    Env(String),
}

impl SecretSource {
    /// "inline", "file /path" or "env NAME", for summaries.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Inline => "inline".to_owned(),
            SecretSource::File(path) => format!("file {}", path.display()),
            SecretSource::Env(name) => format!("env {name}"),
        }
    }
}

/// `[[servers]]`
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Unique name, `[a-z0-9._-]+`.
    pub name: String,
    /// Base URL of the API, without a trailing slash.
    pub url: Url,
    /// The API key sent in X-API-Key.
    pub api_key: Secret,
    /// Where `api_key` came from (for summaries).
    pub api_key_source: SecretSource,
    /// Timeout of read requests.
    pub timeout: Duration,
    /// Timeout of sync, delete and reset requests (a sync restarts Xray).
    pub action_timeout: Duration,
    /// Parallel per-key requests to this server (1..=64).
    pub concurrency: usize,
    /// Jobs not run against this server.
    pub skip_jobs: Vec<JobKind>,
    /// Whether quota resets also reset the server's traffic counter.
    pub counter_resets: CounterResets,
    /// Extra root CA (PEM), checked readable at load.
    pub ca_file: Option<PathBuf>,
    /// The dataplane job connects here instead of to the host of the keys' vless:// links.
    pub vless_host: Option<String>,
    /// Extra root CA (PEM) for the VLESS ports' certificates, checked readable at load.
    pub reality_ca_file: Option<PathBuf>,
    /// TLS handshakes in flight to this server's VLESS ports at most (1..=256).
    pub dataplane_concurrency: usize,
    /// Answers larger than this are refused (`max_response_size`).
    pub max_response_bytes: usize,
}

impl ServerConfig {
    /// Whether `job` runs against this server.
    pub fn runs(&self, job: JobKind) -> bool {
        !self.skip_jobs.contains(&job)
    }
}

/// Whether a quota reset also resets the server's own traffic counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResets {
    /// keywarden decides from what the server's API supports.
    #[default]
    Auto,
    /// Every quota reset also resets the server's counter.
    Always,
    /// Leave the server's counter alone (keywarden's own ledger still starts a new period).
    Never,
}

impl CounterResets {
    pub fn as_str(self) -> &'static str {
        match self {
            CounterResets::Auto => "auto",
            CounterResets::Always => "always",
            CounterResets::Never => "never",
        }
    }
}

/// `[jobs]`
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// `[jobs.health]`
    pub health: HealthJobConfig,
    /// `[jobs.config_sync]`
    pub config_sync: ConfigSyncJobConfig,
    /// `[jobs.reality]`
    pub reality: RealityJobConfig,
    /// `[jobs.quota]`
    pub quota: QuotaJobConfig,
    /// `[jobs.dataplane]`
    pub dataplane: DataplaneJobConfig,
}

impl JobsConfig {
    /// The schedule of `job`.
    pub fn schedule(&self, job: JobKind) -> &Schedule {
        match job {
            JobKind::Health => &self.health.schedule,
            JobKind::ConfigSync => &self.config_sync.schedule,
            JobKind::Reality => &self.reality.schedule,
            JobKind::Quota => &self.quota.schedule,
            JobKind::Dataplane => &self.dataplane.schedule,
        }
    }
}

/// `[jobs.health]`
#[derive(Debug, Clone, PartialEq)]
pub struct HealthJobConfig {
    /// When the health check runs.
    pub schedule: Schedule,
    /// Consecutive failed checks before an alert fires (>= 1).
    pub failures_before_alert: u32,
    /// 2.x: consecutive reads of a stopped Xray before `xray_down` (>= 1).
    pub xray_confirmations: u32,
    /// Restart a stopped Xray through sync-config (within the sync budget).
    pub restart_xray: bool,
}

/// `[jobs.config_sync]`
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSyncJobConfig {
    /// When the drift check runs.
    pub schedule: Schedule,
    /// Sync a drifted server automatically (else only alert).
    pub auto_sync: bool,
    /// Consecutive drifted reads before a sync (>= 1).
    pub confirmations: u32,
    /// Upper bound of syncs per server and hour (>= 1).
    pub max_syncs_per_hour: u32,
    /// Check Reality right after a sync.
    pub verify_reality_after_sync: bool,
}

/// `[jobs.reality]`
#[derive(Debug, Clone, PartialEq)]
pub struct RealityJobConfig {
    /// When the Reality check runs.
    pub schedule: Schedule,
    /// 2.x: consecutive invalid reads before fix-reality-keys (>= 1).
    pub confirmations: u32,
    /// 2.x: repair invalid Reality settings with fix-reality-keys (within the sync budget).
    pub auto_fix: bool,
}

/// `[jobs.quota]`
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaJobConfig {
    /// When traffic is read and quotas enforced.
    pub schedule: Schedule,
}

/// `[jobs.dataplane]`
#[derive(Debug, Clone, PartialEq)]
pub struct DataplaneJobConfig {
    /// When the VLESS ports are probed.
    pub schedule: Schedule,
    /// Distinct host:port pairs probed per server and run at most (>= 1); the rest are
    /// probed in the following runs, in turn.
    pub max_ports_per_run: usize,
    /// Time allowed for connecting and completing one TLS handshake.
    pub handshake_timeout: Duration,
}
