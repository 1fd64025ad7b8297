//! The configuration file exactly as written: serde structs with every field optional and
//! spanned, so that `validate` can report missing or bad values with a line and column.
//! Nothing here interprets a value; defaults live in `validate.rs` (and docs/configuration.md).
//!
//! Longer than 400 lines on purpose: one plain struct per table of the file, field by
//! field, so the file's shape can be read in one place.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

/// Every key the file may contain, as `table.key` paths; `[]` marks an array of tables.
/// This list drives the unknown-key report (all unknown keys at once, with the allowed ones),
/// and the tests check it against the serde structs below and against docs/configuration.md.
pub const ALL_KEYS: &[&str] = &[
    "agent",
    "agent.state_dir",
    "agent.timezone",
    "agent.dry_run",
    "agent.allow_delete",
    "agent.listen",
    "agent.log_format",
    "agent.metrics_per_key",
    "agent.max_concurrent_runs",
    "agent.store",
    "servers",
    "servers[].name",
    "servers[].url",
    "servers[].api_key",
    "servers[].api_key_file",
    "servers[].api_key_env",
    "servers[].timeout",
    "servers[].action_timeout",
    "servers[].concurrency",
    "servers[].skip_jobs",
    "servers[].counter_resets",
    "servers[].ca_file",
    "servers[].vless_host",
    "servers[].reality_ca_file",
    "servers[].dataplane_concurrency",
    "servers[].max_response_size",
    "jobs",
    "jobs.health",
    "jobs.health.schedule",
    "jobs.health.failures_before_alert",
    "jobs.health.xray_confirmations",
    "jobs.health.restart_xray",
    "jobs.config_sync",
    "jobs.config_sync.schedule",
    "jobs.config_sync.auto_sync",
    "jobs.config_sync.confirmations",
    "jobs.config_sync.max_syncs_per_hour",
    "jobs.config_sync.verify_reality_after_sync",
    "jobs.reality",
    "jobs.reality.schedule",
    "jobs.reality.confirmations",
    "jobs.reality.auto_fix",
    "jobs.quota",
    "jobs.quota.schedule",
    "jobs.dataplane",
    "jobs.dataplane.schedule",
    "jobs.dataplane.max_ports_per_run",
    "jobs.dataplane.handshake_timeout",
    "quotas",
    "quotas.limit",
    "quotas.period",
    "quotas.period_day",
    "quotas.warn_at",
    "quotas.on_exceed",
    "quotas.grace",
    "quotas.adopt",
    "quotas.rules",
    "quotas.rules[].match_name",
    "quotas.rules[].match_uuid",
    "quotas.rules[].match_id",
    "quotas.rules[].server",
    "quotas.rules[].limit",
    "quotas.rules[].period",
    "quotas.rules[].period_day",
    "quotas.rules[].warn_at",
    "quotas.rules[].on_exceed",
    "quotas.rules[].grace",
    "quotas.rules[].allow_mass",
    "alerts",
    "alerts.min_severity",
    "alerts.repeat_interval",
    "alerts.send_resolved",
    "alerts.group_wait",
    "alerts.max_age",
    "alerts.heartbeat_url",
    "alerts.email",
    "alerts.email[].name",
    "alerts.email[].host",
    "alerts.email[].port",
    "alerts.email[].security",
    "alerts.email[].username",
    "alerts.email[].password",
    "alerts.email[].password_file",
    "alerts.email[].password_env",
    "alerts.email[].from",
    "alerts.email[].to",
    "alerts.email[].min_severity",
    "alerts.email[].timeout",
    "alerts.email[].rate_limit_per_minute",
    "alerts.webhook",
    "alerts.webhook[].name",
    "alerts.webhook[].url",
    "alerts.webhook[].format",
    "alerts.webhook[].chat_id",
    "alerts.webhook[].secret",
    "alerts.webhook[].secret_file",
    "alerts.webhook[].secret_env",
    "alerts.webhook[].headers",
    "alerts.webhook[].min_severity",
    "alerts.webhook[].timeout",
    "alerts.webhook[].rate_limit_per_minute",
    "alerts.webhook[].slack_token",
    "alerts.webhook[].slack_token_file",
    "alerts.webhook[].slack_token_env",
    "alerts.webhook[].slack_channel",
    "reports",
    "reports.schedule",
    "reports.period",
    "reports.sinks",
    "reports.top_keys",
    "retention",
    "retention.audit",
    "retention.job_runs",
    "retention.findings",
    "retention.quota_history",
    "retention.schedule",
    "store",
    "store.postgres",
    "store.postgres.url_env",
    "store.postgres.url_file",
    "store.postgres.schema",
    "store.postgres.pool_size",
    "store.postgres.ca_file",
    "store.postgres.agent_name",
    "store.postgres.renew_interval",
];

/// Keys whose value is a free-form table (any key allowed inside).
pub const FREE_FORM_TABLES: &[&str] = &["alerts.webhook[].headers"];

/// A value that may be written as a number or as a string: sizes (`100` or `"100 GiB"`),
/// durations (a bare number is accepted here only to be rejected with a hint), key ids.
#[derive(Debug, Clone, PartialEq)]
pub enum NumOrStr {
    Int(i64),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumOrStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrStr, E> {
                i64::try_from(v)
                    .map(NumOrStr::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Str(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[agent]`: process-wide settings.
    pub agent: Option<Spanned<RawAgent>>,
    /// `[[servers]]`: the VPN servers to watch (at least one).
    pub servers: Option<Spanned<Vec<Spanned<RawServer>>>>,
    /// `[jobs]`: schedules and knobs of the periodic jobs.
    pub jobs: Option<Spanned<RawJobs>>,
    /// `[quotas]`: traffic quota defaults and per-key rules.
    pub quotas: Option<Spanned<RawQuotas>>,
    /// `[alerts]`: alert routing and the notification sinks.
    pub alerts: Option<Spanned<RawAlerts>>,
    /// `[reports]`: the periodic usage report.
    pub reports: Option<Spanned<RawReports>>,
    /// `[retention]`: how long the state store keeps its history.
    pub retention: Option<Spanned<RawRetention>>,
    /// `[store]`: settings of the state store's backends.
    pub store: Option<Spanned<RawStore>>,
}

/// `[retention]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Audit log entries, at least "30d". Default "400d".
    pub audit: Option<Spanned<NumOrStr>>,
    /// Job runs (the latest of each server and job is kept). Default "30d".
    pub job_runs: Option<Spanned<NumOrStr>>,
    /// Findings resolved longer ago. Default "90d".
    pub findings: Option<Spanned<NumOrStr>>,
    /// Finished quota periods, from their end. Default "800d".
    pub quota_history: Option<Spanned<NumOrStr>>,
    /// Cron with seconds: when the maintenance runs. Default "0 17 4 * * *".
    pub schedule: Option<Spanned<String>>,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `[store.postgres]`: required with `[agent] store = "postgres"`.
    pub postgres: Option<Spanned<RawPostgres>>,
}

/// `[store.postgres]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// Environment variable holding the connection URL (a secret).
    pub url_env: Option<Spanned<String>>,
    /// File holding the connection URL (a secret; trailing newline trimmed).
    pub url_file: Option<Spanned<String>>,
    /// Schema of keywarden's tables, a plain identifier. Default "keywarden".
    pub schema: Option<Spanned<String>>,
    /// Pooled connections at most, 1..=64. Default 8.
    pub pool_size: Option<Spanned<i64>>,
    /// Extra root CA (PEM) trusted for the server's certificate. Default none.
    pub ca_file: Option<Spanned<String>>,
    /// This agent's name as other agents see it. Default: the host name.
    pub agent_name: Option<Spanned<String>>,
    /// How often this agent renews its row and rebalances its leadership locks,
    /// 100ms..=15s. Default "10s".
    pub renew_interval: Option<Spanned<NumOrStr>>,
}

/// `[reports]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReports {
    /// Cron with seconds, in the agent's time zone. Default "0 0 9 * * Mon".
    pub schedule: Option<Spanned<String>>,
    /// last-week | last-month: what a scheduled report covers. Default "last-week".
    pub period: Option<Spanned<String>>,
    /// Names of email and webhook sinks the scheduled report goes to. Default [] (none).
    pub sinks: Option<Spanned<Vec<Spanned<String>>>>,
    /// Keys listed in "top keys", 1..=100. Default 10.
    pub top_keys: Option<Spanned<i64>>,
}

/// `[agent]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Directory of the state store. Default "/var/lib/keywarden".
    pub state_dir: Option<Spanned<String>>,
    /// IANA time zone for cron schedules and quota periods. Default "UTC".
    pub timezone: Option<Spanned<String>>,
    /// Detect and alert only, never change a server. Default false.
    pub dry_run: Option<bool>,
    /// Must be true before any quota rule may delete keys. Default false.
    pub allow_delete: Option<bool>,
    /// Address of /metrics and /healthz; "" disables. Default "127.0.0.1:9477".
    pub listen: Option<Spanned<String>>,
    /// auto | text | json. Default "auto".
    pub log_format: Option<Spanned<String>>,
    /// Export per-key series (used bytes, quota ratio) on /metrics. Default false.
    pub metrics_per_key: Option<bool>,
    /// Job runs in flight across all servers at most, 1..=4096. Default 4 x CPU cores,
    /// at least 16 and at most 128.
    pub max_concurrent_runs: Option<Spanned<i64>>,
    /// sqlite | postgres: where the state lives. Default "sqlite".
    pub store: Option<Spanned<String>>,
}

/// `[[servers]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Unique name, `[a-z0-9._-]+`. Required.
    pub name: Option<Spanned<String>>,
    /// Base URL of the VPN Key Management API (http or https). Required.
    pub url: Option<Spanned<String>>,
    /// API key written inline (discouraged).
    pub api_key: Option<Spanned<String>>,
    /// File holding the API key (read at load, trailing newline trimmed).
    pub api_key_file: Option<Spanned<String>>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<Spanned<String>>,
    /// Timeout of read requests. Default "15s".
    pub timeout: Option<Spanned<NumOrStr>>,
    /// Timeout of sync, delete and reset requests. Default "60s".
    pub action_timeout: Option<Spanned<NumOrStr>>,
    /// Parallel per-key requests to this server, 1..=64. Default 8.
    pub concurrency: Option<Spanned<i64>>,
    /// Jobs not to run against this server. Default [].
    pub skip_jobs: Option<Vec<Spanned<String>>>,
    /// auto | always | never: whether quota resets also reset the server's counter. Default "auto".
    pub counter_resets: Option<Spanned<String>>,
    /// Extra root CA (PEM) trusted for this server. Default none.
    pub ca_file: Option<Spanned<String>>,
    /// Host the dataplane job connects to instead of the one in the keys' vless:// links.
    /// Default none (the links' host).
    pub vless_host: Option<Spanned<String>>,
    /// Extra root CA (PEM) the dataplane job trusts for the VLESS ports' certificates.
    /// Default none (system roots, plus ca_file).
    pub reality_ca_file: Option<Spanned<String>>,
    /// TLS handshakes in flight to this server's VLESS ports at most, 1..=256. Default 16.
    pub dataplane_concurrency: Option<Spanned<i64>>,
    /// Largest answer read from this server (size). Default "64 MiB".
    pub max_response_size: Option<Spanned<NumOrStr>>,
}

/// `[jobs]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobs {
    /// `[jobs.health]`
    pub health: Option<Spanned<RawHealthJob>>,
    /// `[jobs.config_sync]`
    pub config_sync: Option<Spanned<RawConfigSyncJob>>,
    /// `[jobs.reality]`
    pub reality: Option<Spanned<RawRealityJob>>,
    /// `[jobs.quota]`
    pub quota: Option<Spanned<RawScheduleOnly>>,
    /// `[jobs.dataplane]`
    pub dataplane: Option<Spanned<RawDataplaneJob>>,
}

/// `[jobs.health]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthJob {
    /// Cron with seconds. Default "*/30 * * * * *".
    pub schedule: Option<Spanned<String>>,
    /// Consecutive failed checks before an alert. Default 3.
    pub failures_before_alert: Option<Spanned<i64>>,
    /// 2.x: consecutive reads of a stopped Xray before `xray_down`. Default 2.
    pub xray_confirmations: Option<Spanned<i64>>,
    /// Restart a stopped Xray (through sync-config). Default true.
    pub restart_xray: Option<bool>,
}

/// `[jobs.config_sync]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfigSyncJob {
    /// Cron with seconds. Default "0 */5 * * * *".
    pub schedule: Option<Spanned<String>>,
    /// Sync a drifted server automatically (else only alert). Default true.
    pub auto_sync: Option<bool>,
    /// Consecutive drifted reads before a sync. Default 2.
    pub confirmations: Option<Spanned<i64>>,
    /// Upper bound of syncs per server and hour. Default 4.
    pub max_syncs_per_hour: Option<Spanned<i64>>,
    /// Check Reality right after a sync. Default true.
    pub verify_reality_after_sync: Option<bool>,
}

/// `[jobs.quota]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduleOnly {
    /// Cron with seconds. Default "0 */10 * * * *".
    pub schedule: Option<Spanned<String>>,
}

/// `[jobs.reality]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRealityJob {
    /// Cron with seconds. Default "0 7 * * * *".
    pub schedule: Option<Spanned<String>>,
    /// 2.x: consecutive invalid reads before fix-reality-keys. Default 2.
    pub confirmations: Option<Spanned<i64>>,
    /// 2.x: repair invalid Reality settings with fix-reality-keys. Default true.
    pub auto_fix: Option<bool>,
}

/// `[jobs.dataplane]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataplaneJob {
    /// Cron with seconds. Default "30 */5 * * * *".
    pub schedule: Option<Spanned<String>>,
    /// Distinct VLESS ports probed per server and run at most (rotating). Default 256.
    pub max_ports_per_run: Option<Spanned<i64>>,
    /// Time allowed for connecting and completing one TLS handshake. Default "5s".
    pub handshake_timeout: Option<Spanned<NumOrStr>>,
}

/// `[quotas]`: the default policy and the rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuotas {
    /// Traffic limit per period (size); omitted: account only. "unlimited" also means none.
    pub limit: Option<Spanned<NumOrStr>>,
    /// daily | weekly | monthly | never | a cron schedule. Default "monthly".
    pub period: Option<Spanned<String>>,
    /// Monthly periods start on this day (1..=31, clamped). Default 1.
    pub period_day: Option<Spanned<i64>>,
    /// Percentages of the limit that raise a warning. Default [80, 95].
    pub warn_at: Option<Spanned<Vec<Spanned<i64>>>>,
    /// alert | reset | delete. Default "alert".
    pub on_exceed: Option<Spanned<String>>,
    /// With delete: time over the limit before deletion. Default "24h".
    pub grace: Option<Spanned<NumOrStr>>,
    /// baseline | count: what a key's counter at first sight counts for. Default "baseline".
    pub adopt: Option<Spanned<String>>,
    /// `[[quotas.rules]]`, first match wins.
    pub rules: Option<Vec<Spanned<RawRule>>>,
}

/// `[[quotas.rules]]`: a matcher plus overrides of the default policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Glob (`*`, `?`) on the key name.
    pub match_name: Option<Spanned<String>>,
    /// The key's UUID (case-insensitive).
    pub match_uuid: Option<Spanned<String>>,
    /// The key's id on the server.
    pub match_id: Option<Spanned<NumOrStr>>,
    /// Only keys of this server.
    pub server: Option<Spanned<String>>,
    /// Overrides `quotas.limit`.
    pub limit: Option<Spanned<NumOrStr>>,
    /// Overrides `quotas.period`.
    pub period: Option<Spanned<String>>,
    /// Overrides `quotas.period_day`.
    pub period_day: Option<Spanned<i64>>,
    /// Overrides `quotas.warn_at`.
    pub warn_at: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Overrides `quotas.on_exceed`.
    pub on_exceed: Option<Spanned<String>>,
    /// Overrides `quotas.grace`.
    pub grace: Option<Spanned<NumOrStr>>,
    /// Lets this rule's resets and deletes pass the blast-radius guard. Default false.
    pub allow_mass: Option<Spanned<bool>>,
}

/// `[alerts]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// info | warning | critical. Default "warning".
    pub min_severity: Option<Spanned<String>>,
    /// Re-send a firing alert this often. Default "4h".
    pub repeat_interval: Option<Spanned<NumOrStr>>,
    /// Notify when an alert resolves. Default true.
    pub send_resolved: Option<bool>,
    /// Collect alerts this long before the first notification. Default "10s".
    pub group_wait: Option<Spanned<NumOrStr>>,
    /// Drop undelivered notifications older than this. Default "24h".
    pub max_age: Option<Spanned<NumOrStr>>,
    /// GET after every complete cycle; "" or omitted: none.
    pub heartbeat_url: Option<Spanned<String>>,
    /// `[[alerts.email]]`
    pub email: Option<Vec<Spanned<RawEmail>>>,
    /// `[[alerts.webhook]]`
    pub webhook: Option<Vec<Spanned<RawWebhook>>>,
}

/// `[[alerts.email]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// Sink name, unique across all sinks. Required.
    pub name: Option<Spanned<String>>,
    /// SMTP relay host. Required.
    pub host: Option<Spanned<String>>,
    /// SMTP port. Default 587.
    pub port: Option<Spanned<i64>>,
    /// starttls | tls | none. Default "starttls".
    pub security: Option<Spanned<String>>,
    /// SMTP AUTH user. Default none.
    pub username: Option<Spanned<String>>,
    /// SMTP password written inline (discouraged).
    pub password: Option<Spanned<String>>,
    /// File holding the SMTP password.
    pub password_file: Option<Spanned<String>>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<Spanned<String>>,
    /// Sender mailbox. Required.
    pub from: Option<Spanned<String>>,
    /// Recipients (at least one). Required.
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    /// Least severity sent here. Default alerts.min_severity.
    pub min_severity: Option<Spanned<String>>,
    /// SMTP timeout. Default "30s".
    pub timeout: Option<Spanned<NumOrStr>>,
    /// Messages per minute at most; beyond, pending alerts merge into a digest. Default 20.
    pub rate_limit_per_minute: Option<Spanned<i64>>,
}

/// `[[alerts.webhook]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Sink name, unique across all sinks. Required.
    pub name: Option<Spanned<String>>,
    /// Target URL (http or https); treated as a secret. Required.
    pub url: Option<Spanned<String>>,
    /// json | slack | telegram. Default "json".
    pub format: Option<Spanned<String>>,
    /// Telegram chat id (telegram only, required there).
    pub chat_id: Option<Spanned<NumOrStr>>,
    /// HMAC signing secret written inline (json only).
    pub secret: Option<Spanned<String>>,
    /// File holding the HMAC signing secret.
    pub secret_file: Option<Spanned<String>>,
    /// Environment variable holding the HMAC signing secret.
    pub secret_env: Option<Spanned<String>>,
    /// Extra HTTP headers; values are treated as secrets. Default {}.
    pub headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Least severity sent here. Default alerts.min_severity.
    pub min_severity: Option<Spanned<String>>,
    /// HTTP timeout. Default "10s".
    pub timeout: Option<Spanned<NumOrStr>>,
    /// Messages per minute at most; beyond, pending alerts merge into a digest. Default 20.
    pub rate_limit_per_minute: Option<Spanned<i64>>,
    /// Slack bot token (slack only, with slack_channel): lets reports upload their charts.
    pub slack_token: Option<Spanned<String>>,
    /// File holding the Slack bot token.
    pub slack_token_file: Option<Spanned<String>>,
    /// Environment variable holding the Slack bot token.
    pub slack_token_env: Option<Spanned<String>>,
    /// Slack channel id the charts are uploaded to (slack only, with a token).
    pub slack_channel: Option<Spanned<String>>,
}
