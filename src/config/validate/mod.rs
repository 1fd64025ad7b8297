//! Pure validation: a `RawConfig` becomes a typed `Config`, or every problem found.
//! The only IO is what `run` will need anyway: reading `*_file` secrets and `ca_file`, and
//! looking up `*_env` variables (through an injectable lookup).

mod alerts;
mod ctx;
mod email;
mod quotas;
mod reports;
mod retention;
mod servers;
mod store;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono_tz::Tz;

use super::error::Issue;
use super::raw::{RawAgent, RawConfig, RawJobs};
use super::types::{
    AgentConfig, Config, ConfigSyncJobConfig, DataplaneJobConfig, HealthJobConfig, JobsConfig,
    QuotaJobConfig, RealityJobConfig,
};
use crate::logging::LogFormat;

pub use ctx::EnvLookup;
pub(crate) use ctx::{Ctx, at, span_of};

/// Defaults, in one place (docs/configuration.md repeats them; a test checks the example).
pub mod defaults {
    pub const STATE_DIR: &str = "/var/lib/keywarden";
    pub const LISTEN: &str = "127.0.0.1:9477";
    pub const HEALTH_SCHEDULE: &str = "*/30 * * * * *";
    pub const CONFIG_SYNC_SCHEDULE: &str = "0 */5 * * * *";
    pub const REALITY_SCHEDULE: &str = "0 7 * * * *";
    pub const QUOTA_SCHEDULE: &str = "0 */10 * * * *";
    /// Half a minute after config_sync's default, so a sync's Xray restart (a few
    /// seconds) is not probed as an outage.
    pub const DATAPLANE_SCHEDULE: &str = "30 */5 * * * *";
    pub const XRAY_CONFIRMATIONS: u32 = 2;
    pub const REALITY_CONFIRMATIONS: u32 = 2;
    pub const MAX_PORTS_PER_RUN: usize = 256;
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 5;
    pub const DATAPLANE_CONCURRENCY: usize = 16;
    pub const FAILURES_BEFORE_ALERT: u32 = 3;
    pub const CONFIRMATIONS: u32 = 2;
    pub const MAX_SYNCS_PER_HOUR: u32 = 4;
    pub const SERVER_TIMEOUT_SECS: u64 = 15;
    pub const SERVER_ACTION_TIMEOUT_SECS: u64 = 60;
    pub const SERVER_CONCURRENCY: usize = 8;
    /// The largest answer read from a server: a key list of 200 000 keys is about
    /// 50 MB (2.x, long names), so 64 MiB holds it with room to spare.
    pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
    pub const QUOTA_GRACE_SECS: u64 = 24 * 3600;
    pub const WARN_AT: [u8; 2] = [80, 95];
    pub const REPEAT_INTERVAL_SECS: u64 = 4 * 3600;
    pub const GROUP_WAIT_SECS: u64 = 10;
    pub const MAX_AGE_SECS: u64 = 24 * 3600;
    pub const SMTP_PORT: u16 = 587;
    pub const EMAIL_TIMEOUT_SECS: u64 = 30;
    pub const WEBHOOK_TIMEOUT_SECS: u64 = 10;
    pub const RATE_LIMIT_PER_MINUTE: u32 = 20;
    /// Mondays at 09:00 in the agent's time zone.
    pub const REPORT_SCHEDULE: &str = "0 0 9 * * Mon";
    pub const REPORT_TOP_KEYS: usize = 10;
    /// `[retention]`, in days.
    pub const RETAIN_AUDIT_DAYS: u64 = 400;
    pub const RETAIN_AUDIT_MIN_DAYS: u64 = 30;
    pub const RETAIN_JOB_RUNS_DAYS: u64 = 30;
    pub const RETAIN_FINDINGS_DAYS: u64 = 90;
    pub const RETAIN_QUOTA_HISTORY_DAYS: u64 = 800;
    /// Daily at 04:17:00 in the agent's time zone (off the hour, when little else runs).
    pub const MAINTENANCE_SCHEDULE: &str = "0 17 4 * * *";

    /// Runs are mostly waiting on the network, so a few per core: 4 x the CPU cores the
    /// process may use, at least 16 (what a small machine managed before it was an
    /// option) and at most 128 (beyond that the store and the servers' rate limits are
    /// the bottleneck, not the CPU).
    pub fn max_concurrent_runs() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_mul(4).clamp(16, 128)
    }
}

/// A valid configuration with its warnings and the key paths of inline secrets.
pub(crate) struct Validated {
    pub config: Config,
    pub warnings: Vec<Issue>,
    pub inline_secrets: Vec<String>,
}

/// Validate everything; on failure, every problem found.
pub(crate) fn validate(
    raw: &RawConfig,
    text: &str,
    base_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Validated, Vec<Issue>> {
    let mut ctx = Ctx {
        lines: super::error::LineIndex::new(text),
        base_dir,
        env,
        problems: Vec::new(),
        warnings: Vec::new(),
        inline_secrets: Vec::new(),
    };
    let agent = agent(&mut ctx, raw.agent.as_ref().map(|a| a.get_ref()));
    let servers = servers::servers(&mut ctx, raw.servers.as_ref());
    let jobs = jobs(&mut ctx, raw.jobs.as_ref().map(|j| j.get_ref()));
    let server_names: Vec<&str> = servers.iter().map(|server| server.name.as_str()).collect();
    let quotas = quotas::quotas(
        &mut ctx,
        raw.quotas.as_ref().map(|q| q.get_ref()),
        &server_names,
        agent.allow_delete,
    );
    let alerts = alerts::alerts(&mut ctx, raw.alerts.as_ref().map(|a| a.get_ref()));
    let reports = reports::reports(&mut ctx, raw.reports.as_ref(), &alerts);
    let retention = retention::retention(&mut ctx, raw.retention.as_ref());
    let store = store::store(
        &mut ctx,
        raw.agent.as_ref().and_then(|a| a.get_ref().store.as_ref()),
        raw.store.as_ref(),
    );
    if !ctx.problems.is_empty() {
        return Err(ctx.problems);
    }
    Ok(Validated {
        config: Config {
            agent,
            servers,
            jobs,
            quotas,
            alerts,
            reports,
            retention,
            store,
        },
        warnings: ctx.warnings,
        inline_secrets: ctx.inline_secrets,
    })
}

fn agent(ctx: &mut Ctx<'_>, raw: Option<&RawAgent>) -> AgentConfig {
    let p = "agent";
    let state_dir = match raw.and_then(|r| r.state_dir.as_ref()) {
        Some(dir) if dir.get_ref().trim().is_empty() => {
            ctx.error(
                span_of(dir),
                at(p, "state_dir"),
                format!("must not be empty (default \"{}\")", defaults::STATE_DIR),
            );
            PathBuf::from(defaults::STATE_DIR)
        }
        Some(dir) => ctx.resolve(dir.get_ref()),
        None => PathBuf::from(defaults::STATE_DIR),
    };
    let timezone = match raw.and_then(|r| r.timezone.as_ref()) {
        Some(field) => Tz::from_str(field.get_ref()).unwrap_or_else(|_| {
            ctx.error(
                span_of(field),
                at(p, "timezone"),
                timezone_message(field.get_ref()),
            );
            Tz::UTC
        }),
        None => Tz::UTC,
    };
    let listen = match raw.and_then(|r| r.listen.as_ref()) {
        Some(field) if field.get_ref().is_empty() => None,
        Some(field) => listen(ctx, field),
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9477))),
    };
    let log_format = ctx.choice(
        raw.and_then(|r| r.log_format.as_ref()),
        &at(p, "log_format"),
        &[
            ("auto", LogFormat::Auto),
            ("text", LogFormat::Text),
            ("json", LogFormat::Json),
        ],
        LogFormat::Auto,
    );
    AgentConfig {
        state_dir,
        timezone,
        dry_run: raw.and_then(|r| r.dry_run).unwrap_or(false),
        allow_delete: raw.and_then(|r| r.allow_delete).unwrap_or(false),
        listen,
        log_format,
        metrics_per_key: raw.and_then(|r| r.metrics_per_key).unwrap_or(false),
        max_concurrent_runs: ctx.int_in(
            raw.and_then(|r| r.max_concurrent_runs.as_ref()),
            &at(p, "max_concurrent_runs"),
            1..=4096,
            defaults::max_concurrent_runs(),
        ),
    }
}

fn timezone_message(name: &str) -> String {
    let mut message = format!("unknown time zone \"{name}\"");
    // Most mistakes are case ("europe/berlin") or a missing region ("Berlin").
    let suggestion = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .find(|candidate| {
            candidate.eq_ignore_ascii_case(name)
                || candidate
                    .rsplit('/')
                    .next()
                    .is_some_and(|city| city.eq_ignore_ascii_case(name) && candidate.contains('/'))
        });
    if let Some(candidate) = suggestion {
        message.push_str(&format!(": did you mean \"{candidate}\"?"));
    }
    message.push_str(
        " (expected an IANA name such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\")",
    );
    message
}

fn listen(ctx: &mut Ctx<'_>, field: &toml::Spanned<String>) -> Option<SocketAddr> {
    match field.get_ref().parse::<SocketAddr>() {
        Ok(addr) => {
            if !addr.ip().is_loopback() {
                ctx.warn(
                    span_of(field),
                    "agent.listen",
                    format!("{addr} is reachable from other hosts: /metrics and /healthz have no authentication"),
                );
            }
            Some(addr)
        }
        Err(_) => {
            ctx.error(
                span_of(field),
                "agent.listen",
                format!(
                    "invalid address \"{}\" (expected ip:port such as \"{}\" or \"[::1]:9477\", or \"\" to disable /metrics and /healthz)",
                    field.get_ref(),
                    defaults::LISTEN
                ),
            );
            None
        }
    }
}

fn jobs(ctx: &mut Ctx<'_>, raw: Option<&RawJobs>) -> JobsConfig {
    let health = raw.and_then(|r| r.health.as_ref()).map(|h| h.get_ref());
    let sync = raw
        .and_then(|r| r.config_sync.as_ref())
        .map(|s| s.get_ref());
    let reality = raw.and_then(|r| r.reality.as_ref()).map(|r| r.get_ref());
    let quota = raw.and_then(|r| r.quota.as_ref()).map(|q| q.get_ref());
    let dataplane = raw.and_then(|r| r.dataplane.as_ref()).map(|d| d.get_ref());
    let at_least_one = 1..=i64::from(u32::MAX);
    JobsConfig {
        health: HealthJobConfig {
            schedule: ctx.schedule(
                health.and_then(|h| h.schedule.as_ref()),
                "jobs.health.schedule",
                defaults::HEALTH_SCHEDULE,
            ),
            failures_before_alert: ctx.int_in(
                health.and_then(|h| h.failures_before_alert.as_ref()),
                "jobs.health.failures_before_alert",
                at_least_one.clone(),
                defaults::FAILURES_BEFORE_ALERT,
            ),
            xray_confirmations: ctx.int_in(
                health.and_then(|h| h.xray_confirmations.as_ref()),
                "jobs.health.xray_confirmations",
                at_least_one.clone(),
                defaults::XRAY_CONFIRMATIONS,
            ),
            restart_xray: health.and_then(|h| h.restart_xray).unwrap_or(true),
        },
        config_sync: ConfigSyncJobConfig {
            schedule: ctx.schedule(
                sync.and_then(|s| s.schedule.as_ref()),
                "jobs.config_sync.schedule",
                defaults::CONFIG_SYNC_SCHEDULE,
            ),
            auto_sync: sync.and_then(|s| s.auto_sync).unwrap_or(true),
            confirmations: ctx.int_in(
                sync.and_then(|s| s.confirmations.as_ref()),
                "jobs.config_sync.confirmations",
                at_least_one.clone(),
                defaults::CONFIRMATIONS,
            ),
            max_syncs_per_hour: ctx.int_in(
                sync.and_then(|s| s.max_syncs_per_hour.as_ref()),
                "jobs.config_sync.max_syncs_per_hour",
                at_least_one.clone(),
                defaults::MAX_SYNCS_PER_HOUR,
            ),
            verify_reality_after_sync: sync
                .and_then(|s| s.verify_reality_after_sync)
                .unwrap_or(true),
        },
        reality: RealityJobConfig {
            schedule: ctx.schedule(
                reality.and_then(|r| r.schedule.as_ref()),
                "jobs.reality.schedule",
                defaults::REALITY_SCHEDULE,
            ),
            confirmations: ctx.int_in(
                reality.and_then(|r| r.confirmations.as_ref()),
                "jobs.reality.confirmations",
                at_least_one,
                defaults::REALITY_CONFIRMATIONS,
            ),
            auto_fix: reality.and_then(|r| r.auto_fix).unwrap_or(true),
        },
        quota: QuotaJobConfig {
            schedule: ctx.schedule(
                quota.and_then(|q| q.schedule.as_ref()),
                "jobs.quota.schedule",
                defaults::QUOTA_SCHEDULE,
            ),
        },
        dataplane: DataplaneJobConfig {
            schedule: ctx.schedule(
                dataplane.and_then(|d| d.schedule.as_ref()),
                "jobs.dataplane.schedule",
                defaults::DATAPLANE_SCHEDULE,
            ),
            max_ports_per_run: ctx.int_in(
                dataplane.and_then(|d| d.max_ports_per_run.as_ref()),
                "jobs.dataplane.max_ports_per_run",
                1..=100_000,
                defaults::MAX_PORTS_PER_RUN,
            ),
            handshake_timeout: ctx.duration(
                dataplane.and_then(|d| d.handshake_timeout.as_ref()),
                "jobs.dataplane.handshake_timeout",
                std::time::Duration::from_secs(defaults::HANDSHAKE_TIMEOUT_SECS),
                true,
                ctx::MAX_TIMEOUT,
            ),
        },
    }
}
