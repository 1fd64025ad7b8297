//! `[alerts]`: routing knobs, then each sink (email.rs, webhook.rs); helpers shared by sinks.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;
use toml::Spanned;

use super::ctx::{MAX_ALERT_INTERVAL, MAX_GROUP_WAIT};
use super::{Ctx, at, defaults, email, span_of, webhook};
use crate::config::alerts::{AlertsConfig, SecretUrl, Severity};
use crate::config::raw::RawAlerts;

pub(super) const SEVERITIES: &[(&str, Severity)] = &[
    ("info", Severity::Info),
    ("warning", Severity::Warning),
    ("critical", Severity::Critical),
];

pub(super) fn alerts(ctx: &mut Ctx<'_>, raw: Option<&RawAlerts>) -> AlertsConfig {
    let p = "alerts";
    let min_severity = ctx.choice(
        raw.and_then(|r| r.min_severity.as_ref()),
        &at(p, "min_severity"),
        SEVERITIES,
        Severity::Warning,
    );
    let repeat_interval = ctx.duration(
        raw.and_then(|r| r.repeat_interval.as_ref()),
        &at(p, "repeat_interval"),
        Duration::from_secs(defaults::REPEAT_INTERVAL_SECS),
        true,
        MAX_ALERT_INTERVAL,
    );
    let group_wait = ctx.duration(
        raw.and_then(|r| r.group_wait.as_ref()),
        &at(p, "group_wait"),
        Duration::from_secs(defaults::GROUP_WAIT_SECS),
        false,
        MAX_GROUP_WAIT,
    );
    let max_age = ctx.duration(
        raw.and_then(|r| r.max_age.as_ref()),
        &at(p, "max_age"),
        Duration::from_secs(defaults::MAX_AGE_SECS),
        true,
        MAX_ALERT_INTERVAL,
    );
    let heartbeat_url = match raw.and_then(|r| r.heartbeat_url.as_ref()) {
        Some(field) if field.get_ref().trim().is_empty() => None,
        Some(field) => http_url(ctx, field, &at(p, "heartbeat_url")).map(SecretUrl::new),
        None => None,
    };
    // Sink names are unique across both kinds: alerts and metrics name the sink alone.
    let mut names: HashMap<String, usize> = HashMap::new();
    let emails = raw
        .and_then(|r| r.email.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, sink)| {
            email::email(
                ctx,
                sink,
                &format!("alerts.email[{index}]"),
                min_severity,
                &mut names,
            )
        })
        .collect();
    let webhooks = raw
        .and_then(|r| r.webhook.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, sink)| {
            webhook::webhook(
                ctx,
                sink,
                &format!("alerts.webhook[{index}]"),
                min_severity,
                &mut names,
            )
        })
        .collect();
    AlertsConfig {
        min_severity,
        repeat_interval,
        send_resolved: raw.and_then(|r| r.send_resolved).unwrap_or(true),
        group_wait,
        max_age,
        heartbeat_url,
        email: emails,
        webhook: webhooks,
    }
}

pub(super) fn http_url(ctx: &mut Ctx<'_>, field: &Spanned<String>, path: &str) -> Option<Url> {
    // Never echo the value: webhook and heartbeat URLs may hold tokens.
    match Url::parse(field.get_ref().trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
        Ok(url) => {
            ctx.error(
                span_of(field),
                path,
                format!(
                    "scheme \"{}\" is not supported (expected an http:// or https:// URL)",
                    url.scheme()
                ),
            );
            None
        }
        Err(err) => {
            ctx.error(
                span_of(field),
                path,
                format!("invalid URL: {err} (expected an http:// or https:// URL)"),
            );
            None
        }
    }
}

pub(super) fn sink_name(
    ctx: &mut Ctx<'_>,
    field: Option<&Spanned<String>>,
    table: Option<std::ops::Range<usize>>,
    prefix: &str,
    names: &mut HashMap<String, usize>,
) -> String {
    let name = ctx.required_string(
        field,
        table,
        &at(prefix, "name"),
        "a sink name such as \"ops-mail\"",
    );
    if let Some(field) = field
        && !name.is_empty()
    {
        if let Some(&first) = names.get(&name) {
            let line = ctx.line_of(first);
            ctx.error(
                span_of(field),
                at(prefix, "name"),
                format!("duplicate sink name \"{name}\" (already used on line {line}); names must be unique across email and webhook sinks"),
            );
        } else {
            names.insert(name.clone(), field.span().start);
        }
    }
    name
}

pub(super) fn sink_severity(
    ctx: &mut Ctx<'_>,
    field: Option<&Spanned<String>>,
    prefix: &str,
    global: Severity,
) -> Severity {
    // alerts.min_severity is only the default: a sink may ask for more (info) or less.
    ctx.choice(field, &at(prefix, "min_severity"), SEVERITIES, global)
}
