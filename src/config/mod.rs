//! Configuration: raw TOML structs, pure validation into a typed `Config`, secrets.

mod alerts;
mod quota;
pub mod raw;
mod schedule;
mod types;
pub mod units;

pub use alerts::{
    AlertsConfig, EmailSinkConfig, SecretUrl, Severity, SmtpSecurity, WebhookFormat,
    WebhookSinkConfig,
};
pub use quota::{KeyMatcher, OnExceed, Period, QuotaPolicy, QuotaRule, QuotasConfig};
pub use schedule::Schedule;
pub use types::{
    AgentConfig, Config, ConfigSyncJobConfig, CounterResets, HealthJobConfig, JobKind, JobsConfig,
    QuotaJobConfig, RealityJobConfig, SecretSource, ServerConfig,
};
