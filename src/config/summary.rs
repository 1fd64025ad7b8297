//! The human summary `keywarden validate` prints: pure (config + now -> text). Secrets
//! appear only as where they come from and `[redacted]`; URLs that may carry tokens only
//! as scheme://host/[redacted].
//!
//! Longer than 400 lines on purpose (about 150 of them tests): one section of text per
//! configuration section, in the order `validate` prints them.

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::units::{format_duration, format_size};
use super::{
    AlertsConfig, Config, EmailSinkConfig, JobKind, Period, QuotaPolicy, Schedule, SecretSource,
    ServerConfig, WebhookSinkConfig,
};

/// How many upcoming runs are shown per schedule.
const NEXT_RUNS: usize = 3;

/// Width of the key column, so values line up.
const KEY_WIDTH: usize = 30;

struct Out(String);

impl Out {
    fn line(&mut self, indent: usize, text: &str) {
        self.0.push_str(&" ".repeat(indent));
        self.0.push_str(text);
        self.0.push('\n');
    }

    fn kv(&mut self, indent: usize, key: &str, value: impl std::fmt::Display) {
        let width = KEY_WIDTH.saturating_sub(indent);
        self.line(indent, &format!("{key:<width$} {value}"));
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }
}

/// Render the summary of a valid configuration loaded from `origin`, with schedules'
/// next runs computed after `now`.
pub fn render(config: &Config, origin: &Path, now: DateTime<Utc>) -> String {
    let mut out = Out(String::new());
    out.line(0, &format!("configuration: {} (valid)", origin.display()));
    out.blank();
    agent(&mut out, config);
    out.blank();
    out.line(0, &format!("[[servers]] ({})", config.servers.len()));
    for server in &config.servers {
        self::server(&mut out, server);
    }
    out.blank();
    jobs(&mut out, config, now);
    out.blank();
    quotas(&mut out, config, now);
    out.blank();
    alerts(&mut out, &config.alerts);
    out.blank();
    reports(&mut out, config, now);
    out.blank();
    retention(&mut out, config, now);
    out.0
}

fn reports(out: &mut Out, config: &Config, now: DateTime<Utc>) {
    let reports = &config.reports;
    out.line(0, "[reports]");
    if reports.sinks.is_empty() {
        out.kv(
            2,
            "sinks",
            "none (no scheduled report; `keywarden report` still works)",
        );
    } else {
        out.kv(2, "sinks", reports.sinks.join(", "));
        out.kv(
            2,
            "schedule",
            format!(
                "{} (next: {})",
                reports.schedule,
                next_runs(&reports.schedule, config.agent.timezone, now)
            ),
        );
    }
    out.kv(2, "period", reports.period.as_str());
    out.kv(2, "top_keys", reports.top_keys);
}

fn retention(out: &mut Out, config: &Config, now: DateTime<Utc>) {
    let retention = &config.retention;
    out.line(0, "[retention]");
    out.kv(2, "audit", format_duration(retention.audit));
    out.kv(2, "job_runs", format_duration(retention.job_runs));
    out.kv(2, "findings", format_duration(retention.findings));
    out.kv(2, "quota_history", format_duration(retention.quota_history));
    out.kv(
        2,
        "schedule",
        format!(
            "{} (next: {})",
            retention.schedule,
            next_runs(&retention.schedule, config.agent.timezone, now)
        ),
    );
}

fn agent(out: &mut Out, config: &Config) {
    let agent = &config.agent;
    out.line(0, "[agent]");
    out.kv(2, "state_dir", agent.state_dir.display());
    out.kv(2, "timezone", agent.timezone.name());
    out.kv(2, "dry_run", agent.dry_run);
    out.kv(2, "allow_delete", agent.allow_delete);
    match agent.listen {
        Some(addr) => out.kv(2, "listen", format!("{addr} (/metrics, /healthz)")),
        None => out.kv(2, "listen", "disabled"),
    }
    out.kv(
        2,
        "log_format",
        format!("{:?}", agent.log_format).to_lowercase(),
    );
    out.kv(2, "metrics_per_key", agent.metrics_per_key);
    out.kv(2, "max_concurrent_runs", agent.max_concurrent_runs);
    out.kv(2, "store", config.store.name());
    if let Some(pg) = config.store.postgres() {
        // The URL is a secret: only where it comes from.
        out.line(0, "[store.postgres]");
        out.kv(2, "url", secret_line(&pg.url_source));
        out.kv(2, "schema", &pg.schema);
        out.kv(2, "pool_size", pg.pool_size);
        let tls = match (&pg.tls, &pg.ca_file) {
            (false, _) => "disabled (sslmode=disable)".to_owned(),
            (true, None) => "verify-full (system roots)".to_owned(),
            (true, Some(ca)) => format!("verify-full (system roots + {})", ca.display()),
        };
        out.kv(2, "tls", tls);
        out.kv(2, "agent_name", &pg.agent_name);
        out.kv(
            2,
            "renew_interval",
            crate::config::units::format_duration(pg.renew_interval),
        );
    }
}

fn secret_line(source: &SecretSource) -> String {
    format!("{} [redacted]", source.describe())
}

fn server(out: &mut Out, server: &ServerConfig) {
    out.line(2, &server.name);
    out.kv(4, "url", &server.url);
    out.kv(4, "api_key", secret_line(&server.api_key_source));
    out.kv(4, "timeout", format_duration(server.timeout));
    out.kv(4, "action_timeout", format_duration(server.action_timeout));
    out.kv(4, "concurrency", server.concurrency);
    let skipped: Vec<&str> = server.skip_jobs.iter().map(|job| job.as_str()).collect();
    out.kv(
        4,
        "skip_jobs",
        if skipped.is_empty() {
            "none".to_owned()
        } else {
            skipped.join(", ")
        },
    );
    out.kv(4, "counter_resets", server.counter_resets.as_str());
    match &server.ca_file {
        Some(path) => out.kv(4, "ca_file", path.display()),
        None => out.kv(4, "ca_file", "none (system roots)"),
    }
    if let Some(host) = &server.vless_host {
        out.kv(4, "vless_host", host);
    }
    if let Some(path) = &server.reality_ca_file {
        out.kv(4, "reality_ca_file", path.display());
    }
    out.kv(4, "dataplane_concurrency", server.dataplane_concurrency);
}

fn next_runs(schedule: &Schedule, tz: Tz, now: DateTime<Utc>) -> String {
    let runs: Vec<String> = schedule
        .next_runs(tz, now, NEXT_RUNS)
        .iter()
        .map(|run| run.format("%Y-%m-%d %H:%M:%S %Z").to_string())
        .collect();
    if runs.is_empty() {
        "none".to_owned()
    } else {
        runs.join(", ")
    }
}

fn jobs(out: &mut Out, config: &Config, now: DateTime<Utc>) {
    let tz = config.agent.timezone;
    let jobs = &config.jobs;
    out.line(0, &format!("[jobs] (times in {})", tz.name()));
    for job in JobKind::ALL {
        let schedule = jobs.schedule(job);
        out.line(2, job.as_str());
        out.kv(4, "schedule", &schedule.expr);
        out.kv(4, "next runs", next_runs(schedule, tz, now));
        let skipped_by: Vec<&str> = config
            .servers
            .iter()
            .filter(|server| !server.runs(job))
            .map(|server| server.name.as_str())
            .collect();
        if !skipped_by.is_empty() {
            out.kv(4, "skipped on", skipped_by.join(", "));
        }
        match job {
            JobKind::Health => {
                let health = &jobs.health;
                out.kv(4, "failures_before_alert", health.failures_before_alert);
                out.kv(4, "xray_confirmations", health.xray_confirmations);
                out.kv(4, "restart_xray", health.restart_xray);
            }
            JobKind::ConfigSync => {
                let sync = &jobs.config_sync;
                out.kv(4, "auto_sync", sync.auto_sync);
                out.kv(4, "confirmations", sync.confirmations);
                out.kv(4, "max_syncs_per_hour", sync.max_syncs_per_hour);
                out.kv(
                    4,
                    "verify_reality_after_sync",
                    sync.verify_reality_after_sync,
                );
            }
            JobKind::Reality => {
                out.kv(4, "confirmations", jobs.reality.confirmations);
                out.kv(4, "auto_fix", jobs.reality.auto_fix);
            }
            JobKind::Dataplane => {
                let dataplane = &jobs.dataplane;
                out.kv(4, "max_ports_per_run", dataplane.max_ports_per_run);
                out.kv(
                    4,
                    "handshake_timeout",
                    format_duration(dataplane.handshake_timeout),
                );
            }
            JobKind::Quota => {}
        }
    }
}

fn policy(out: &mut Out, indent: usize, policy: &QuotaPolicy, tz: Tz, now: DateTime<Utc>) {
    match policy.limit_bytes {
        Some(bytes) => out.kv(indent, "limit", format_size(bytes)),
        None => out.kv(indent, "limit", "none (account only)"),
    }
    match &policy.period {
        Period::Monthly => out.kv(
            indent,
            "period",
            format!("monthly, from day {}", policy.period_day),
        ),
        Period::Cron(schedule) => {
            out.kv(indent, "period", format!("cron {}", schedule.expr));
            out.kv(indent, "next resets", next_runs(schedule, tz, now));
        }
        other => out.kv(indent, "period", other.as_str()),
    }
    let warn: Vec<String> = policy
        .warn_at
        .iter()
        .map(|percent| format!("{percent}%"))
        .collect();
    out.kv(
        indent,
        "warn_at",
        if warn.is_empty() {
            "never".to_owned()
        } else {
            warn.join(", ")
        },
    );
    let on_exceed = match policy.on_exceed {
        super::OnExceed::Delete => format!("delete after {}", format_duration(policy.grace)),
        other => other.as_str().to_owned(),
    };
    out.kv(indent, "on_exceed", on_exceed);
    if policy.allow_mass {
        out.kv(
            indent,
            "allow_mass",
            "yes (exempt from the blast-radius guard)",
        );
    }
}

fn quotas(out: &mut Out, config: &Config, now: DateTime<Utc>) {
    let tz = config.agent.timezone;
    out.line(0, "[quotas]");
    out.line(2, "defaults");
    policy(out, 4, &config.quotas.defaults, tz, now);
    for (index, rule) in config.quotas.rules.iter().enumerate() {
        let scope = match &rule.server {
            Some(server) => format!(" on {server}"),
            None => String::new(),
        };
        out.line(
            2,
            &format!("rule {}: {}{scope}", index + 1, rule.matcher.describe()),
        );
        policy(out, 4, &rule.policy, tz, now);
    }
    if !config.quotas.rules.is_empty() {
        out.line(2, "(rules in order, first match wins)");
    }
}

fn alerts(out: &mut Out, alerts: &AlertsConfig) {
    out.line(0, "[alerts]");
    out.kv(2, "min_severity", alerts.min_severity);
    out.kv(
        2,
        "repeat_interval",
        format_duration(alerts.repeat_interval),
    );
    out.kv(2, "send_resolved", alerts.send_resolved);
    out.kv(2, "group_wait", format_duration(alerts.group_wait));
    out.kv(2, "max_age", format_duration(alerts.max_age));
    match &alerts.heartbeat_url {
        Some(url) => out.kv(2, "heartbeat_url", url),
        None => out.kv(2, "heartbeat_url", "none"),
    }
    if alerts.email.is_empty() && alerts.webhook.is_empty() {
        out.line(2, "no sinks configured");
    }
    for sink in &alerts.email {
        email(out, sink);
    }
    for sink in &alerts.webhook {
        webhook(out, sink);
    }
}

fn email(out: &mut Out, sink: &EmailSinkConfig) {
    out.line(2, &format!("email {}", sink.name));
    out.kv(
        4,
        "server",
        format!("{}:{} {}", sink.host, sink.port, sink.security.as_str()),
    );
    match (&sink.username, &sink.password_source) {
        (Some(user), Some(source)) => out.kv(
            4,
            "auth",
            format!("{user}, password {}", secret_line(source)),
        ),
        _ => out.kv(4, "auth", "none"),
    }
    out.kv(4, "from", &sink.from);
    out.kv(4, "to", sink.to.join(", "));
    out.kv(4, "min_severity", sink.min_severity);
    out.kv(4, "timeout", format_duration(sink.timeout));
    out.kv(
        4,
        "rate_limit",
        format!("{} per minute", sink.rate_limit_per_minute),
    );
}

fn webhook(out: &mut Out, sink: &WebhookSinkConfig) {
    out.line(2, &format!("webhook {}", sink.name));
    out.kv(4, "format", sink.format.as_str());
    out.kv(4, "url", &sink.url);
    if let Some(chat_id) = &sink.chat_id {
        out.kv(4, "chat_id", chat_id);
    }
    if let Some(source) = &sink.secret_source {
        out.kv(4, "secret (HMAC)", secret_line(source));
    }
    for (name, _) in &sink.headers {
        out.kv(4, &format!("header {name}"), "[redacted]");
    }
    if let Some(upload) = &sink.slack_upload {
        out.kv(4, "slack_token", secret_line(&upload.token_source));
        out.kv(4, "slack_channel", &upload.channel);
    }
    out.kv(4, "min_severity", sink.min_severity);
    out.kv(4, "timeout", format_duration(sink.timeout));
    out.kv(
        4,
        "rate_limit",
        format!("{} per minute", sink.rate_limit_per_minute),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const TEXT: &str = r#"
[agent]
timezone = "Europe/Berlin"
listen = ""
allow_delete = true

[[servers]]
name = "fra-1"
url = "https://fra-1.example.net/api/"
api_key_env = "FRA1_API_KEY"

[[servers]]
name = "ams-2"
url = "https://ams-2.example.net/api"
api_key = "INLINE-KEY"
skip_jobs = ["reality"]

[jobs.health]
schedule = "0 0 7 * * *"

[quotas]
limit = "100 GiB"

[[quotas.rules]]
match_name = "vip-*"
server = "fra-1"
limit = "1.5 TiB"
on_exceed = "delete"
grace = "2d"
period = "0 0 0 * * MON"

[alerts]
heartbeat_url = "https://hc-ping.com/HEARTBEAT-TOKEN"

[[alerts.email]]
name = "ops-mail"
host = "smtp.example.net"
username = "alerts@example.net"
password_env = "SMTP_PASSWORD"
from = "keywarden <alerts@example.net>"
to = ["admin@example.net", "oncall@example.net"]

[[alerts.webhook]]
name = "ops-telegram"
url = "https://api.telegram.org/bot123:TELEGRAM-TOKEN/sendMessage"
format = "telegram"
chat_id = "-1001234567890"

[[alerts.webhook]]
name = "ops-json"
url = "https://hooks.example.net/in?token=QUERY-TOKEN"
secret_env = "HOOK_SECRET"
headers = { Authorization = "Bearer HEADER-TOKEN" }
"#;

    fn rendered() -> String {
        let env = |name: &str| match name {
            "FRA1_API_KEY" => Some("ENV-KEY".to_owned()),
            "SMTP_PASSWORD" => Some("SMTP-PASSWORD".to_owned()),
            "HOOK_SECRET" => Some("HOOK-SECRET".to_owned()),
            _ => None,
        };
        let origin = Path::new("/etc/keywarden/agent.toml");
        let loaded = crate::config::from_str_with_env(TEXT, origin, &env).expect("valid");
        // Friday 2026-03-27 12:00 UTC: the next 07:00 Berlin runs straddle the DST change.
        let now = Utc
            .with_ymd_and_hms(2026, 3, 27, 12, 0, 0)
            .single()
            .expect("valid");
        render(&loaded.config, origin, now)
    }

    /// The text with runs of spaces collapsed, so expectations don't depend on alignment.
    fn squeezed(text: &str) -> String {
        text.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn summary_shows_settings_and_sources_but_no_secret() {
        let text = squeezed(&rendered());
        for secret in [
            "ENV-KEY",
            "INLINE-KEY",
            "SMTP-PASSWORD",
            "HOOK-SECRET",
            "TELEGRAM-TOKEN",
            "QUERY-TOKEN",
            "HEADER-TOKEN",
            "HEARTBEAT-TOKEN",
        ] {
            assert!(!text.contains(secret), "summary shows {secret}:\n{text}");
        }
        for expected in [
            "configuration: /etc/keywarden/agent.toml (valid)",
            "timezone Europe/Berlin",
            "listen disabled",
            "url https://fra-1.example.net/api\napi_key env FRA1_API_KEY",
            "api_key env FRA1_API_KEY [redacted]",
            "api_key inline [redacted]",
            "skip_jobs reality",
            "skipped on ams-2",
            "limit 100 GiB",
            "rule 1: name vip-* on fra-1",
            "limit 1.5 TiB",
            "on_exceed delete after 2days",
            "period cron 0 0 0 * * MON",
            "next resets 2026-03-30 00:00:00 CEST",
            "heartbeat_url https://hc-ping.com/[redacted]",
            "server smtp.example.net:587 starttls",
            "auth alerts@example.net, password env SMTP_PASSWORD [redacted]",
            "to admin@example.net, oncall@example.net",
            "url https://api.telegram.org/[redacted]",
            "chat_id -1001234567890",
            "secret (HMAC) env HOOK_SECRET [redacted]",
            "header Authorization [redacted]",
        ] {
            assert!(
                text.contains(expected),
                "summary lacks {expected:?}:\n{text}"
            );
        }
    }

    #[test]
    fn alignment_fits_the_longest_key() {
        let text = rendered();
        let line = text
            .lines()
            .find(|line| line.contains("verify_reality_after_sync"))
            .expect("present");
        assert!(
            line.ends_with(" true") && line.contains("sync  "),
            "{line:?}"
        );
    }

    #[test]
    fn next_runs_are_shown_in_the_agent_time_zone() {
        let text = squeezed(&rendered());
        assert!(
            text.contains("next runs 2026-03-28 07:00:00 CET, 2026-03-29 07:00:00 CEST, 2026-03-30 07:00:00 CEST"),
            "{text}"
        );
        assert!(text.contains("[jobs] (times in Europe/Berlin)"), "{text}");
    }
}
