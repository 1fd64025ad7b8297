//! `[[servers]]`: names, URLs, API keys, timeouts, CA files.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;
use toml::Spanned;

use super::ctx::{MAX_ACTION_TIMEOUT, MAX_TIMEOUT, SecretFields};
use super::{Ctx, at, defaults, span_of};
use crate::config::raw::RawServer;
use crate::config::types::{CounterResets, JobKind, ServerConfig};

pub(super) fn servers(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawServer>>>>,
) -> Vec<ServerConfig> {
    let list = match raw {
        Some(list) if !list.get_ref().is_empty() => list.get_ref(),
        other => {
            ctx.error(
                other.and_then(span_of),
                "servers",
                "at least one [[servers]] table is required (with name, url and api_key_env)",
            );
            return Vec::new();
        }
    };
    // name -> byte offset of its first definition, for the duplicate message.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut servers = Vec::new();
    for (index, raw) in list.iter().enumerate() {
        let prefix = format!("servers[{index}]");
        let server = server(ctx, raw, &prefix, &mut seen);
        servers.push(server);
    }
    servers
}

/// Longest server name: names go into metric labels, alert fingerprints, subjects and
/// file-like keys, where an endless one does harm.
pub const MAX_NAME_LEN: usize = 64;

fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn server(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawServer>,
    prefix: &str,
    seen: &mut HashMap<String, usize>,
) -> ServerConfig {
    let raw = spanned.get_ref();
    let table = span_of(spanned);
    let name = ctx.required_string(
        raw.name.as_ref(),
        table.clone(),
        &at(prefix, "name"),
        "a unique server name such as \"fra-1\"",
    );
    if let Some(field) = &raw.name {
        if !name.is_empty() && !name_is_valid(&name) {
            ctx.error(
                span_of(field),
                at(prefix, "name"),
                if name.len() > MAX_NAME_LEN {
                    format!("server name is {} characters long (at most {MAX_NAME_LEN})", name.chars().count())
                } else {
                    format!("invalid server name \"{name}\" (use only a-z, 0-9, '.', '_' and '-', e.g. \"fra-1\")")
                },
            );
        } else if let Some(&first) = seen.get(&name) {
            let line = ctx.line_of(first);
            ctx.error(
                span_of(field),
                at(prefix, "name"),
                format!("duplicate server name \"{name}\" (already used on line {line}); server names must be unique"),
            );
        } else if !name.is_empty() {
            seen.insert(name.clone(), field.span().start);
        }
    }
    let url = server_url(ctx, raw.url.as_ref(), table.clone(), prefix);
    let api_key = ctx.secret(
        SecretFields {
            base: "api_key",
            inline: raw.api_key.as_ref(),
            file: raw.api_key_file.as_ref(),
            env: raw.api_key_env.as_ref(),
        },
        table,
        prefix,
        true,
    );
    let timeout = ctx.duration(
        raw.timeout.as_ref(),
        &at(prefix, "timeout"),
        Duration::from_secs(defaults::SERVER_TIMEOUT_SECS),
        true,
        MAX_TIMEOUT,
    );
    let action_timeout = ctx.duration(
        raw.action_timeout.as_ref(),
        &at(prefix, "action_timeout"),
        Duration::from_secs(defaults::SERVER_ACTION_TIMEOUT_SECS),
        true,
        MAX_ACTION_TIMEOUT,
    );
    let concurrency = ctx.int_in(
        raw.concurrency.as_ref(),
        &at(prefix, "concurrency"),
        1..=64,
        defaults::SERVER_CONCURRENCY,
    );
    let skip_jobs = skip_jobs(ctx, raw.skip_jobs.as_deref(), prefix);
    let counter_resets = ctx.choice(
        raw.counter_resets.as_ref(),
        &at(prefix, "counter_resets"),
        &[
            ("auto", CounterResets::Auto),
            ("always", CounterResets::Always),
            ("never", CounterResets::Never),
        ],
        CounterResets::Auto,
    );
    let ca_file = raw
        .ca_file
        .as_ref()
        .and_then(|field| pem_file(ctx, field, prefix, "ca_file"));
    let reality_ca_file = raw
        .reality_ca_file
        .as_ref()
        .and_then(|field| pem_file(ctx, field, prefix, "reality_ca_file"));
    let vless_host = raw
        .vless_host
        .as_ref()
        .and_then(|field| vless_host(ctx, field, prefix));
    let dataplane_concurrency = ctx.int_in(
        raw.dataplane_concurrency.as_ref(),
        &at(prefix, "dataplane_concurrency"),
        1..=256,
        defaults::DATAPLANE_CONCURRENCY,
    );
    let max_response_bytes = max_response_size(ctx, raw.max_response_size.as_ref(), prefix);
    let (api_key, api_key_source) =
        api_key.unwrap_or_else(|| (Default::default(), crate::config::SecretSource::Inline));
    ServerConfig {
        name,
        // A placeholder only when a problem was recorded (the Config is then discarded).
        url: url.unwrap_or_else(|| Url::parse("http://invalid.invalid/api").expect("constant URL")),
        api_key,
        api_key_source,
        timeout,
        action_timeout,
        concurrency,
        skip_jobs,
        counter_resets,
        ca_file,
        vless_host,
        reality_ca_file,
        dataplane_concurrency,
        max_response_bytes,
    }
}

/// Smallest and largest answer caps accepted.
const MIN_RESPONSE_BYTES: u64 = 64 << 10;
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

fn max_response_size(
    ctx: &mut Ctx<'_>,
    field: Option<&Spanned<crate::config::raw::NumOrStr>>,
    prefix: &str,
) -> usize {
    let default = defaults::MAX_RESPONSE_BYTES;
    let Some(field) = field else {
        return default;
    };
    let path = at(prefix, "max_response_size");
    match crate::config::units::parse_size(field.get_ref()) {
        Ok(bytes) if (MIN_RESPONSE_BYTES..=MAX_RESPONSE_BYTES).contains(&bytes) => {
            usize::try_from(bytes).unwrap_or(default)
        }
        Ok(_) => {
            ctx.error(
                span_of(field),
                path,
                "must be between 64 KiB and 1 GiB (the default, 64 MiB, holds about 200 000 keys)",
            );
            default
        }
        Err(message) => {
            ctx.error(span_of(field), path, message);
            default
        }
    }
}

/// A host name or IP address (IPv6 with or without brackets), without scheme or port.
fn vless_host(ctx: &mut Ctx<'_>, field: &Spanned<String>, prefix: &str) -> Option<String> {
    let text = field.get_ref().trim();
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text);
    let is_ip = unbracketed.parse::<std::net::IpAddr>().is_ok();
    let is_name = !unbracketed.is_empty()
        && unbracketed.len() <= 253
        && unbracketed.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_ip || is_name {
        return Some(unbracketed.to_ascii_lowercase());
    }
    ctx.error(
        span_of(field),
        at(prefix, "vless_host"),
        format!("\"{text}\" is not a host name or IP address (expected e.g. \"10.0.0.5\" or \"fra-1.internal\", without scheme or port)"),
    );
    None
}

fn server_url(
    ctx: &mut Ctx<'_>,
    field: Option<&Spanned<String>>,
    table: Option<std::ops::Range<usize>>,
    prefix: &str,
) -> Option<Url> {
    let path = at(prefix, "url");
    let Some(field) = field else {
        ctx.error(
            table,
            path,
            "missing: the API base URL, e.g. \"https://fra-1.example.net/api\"",
        );
        return None;
    };
    let text = field.get_ref();
    let span = span_of(field);
    let mut url = match Url::parse(text) {
        Ok(url) => url,
        Err(err) => {
            ctx.error(span, path, format!("invalid URL \"{text}\": {err} (expected e.g. \"https://fra-1.example.net/api\")"));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        ctx.error(span, path, format!("\"{text}\" is not an http or https URL (expected e.g. \"https://fra-1.example.net/api\")"));
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        ctx.error(span, path, "must not have a query or fragment: give the API base, e.g. \"https://fra-1.example.net/api\"");
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        ctx.error(
            span,
            path,
            "must not contain credentials: put the API key in api_key_env (or api_key_file)",
        );
        return None;
    }
    // "…/api/" and "…/api" are the same base; keep one spelling so joins are predictable.
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    if !trimmed.ends_with("/api") {
        ctx.warn(
            span,
            at(prefix, "url"),
            format!(
                "path \"{}\" does not end in /api, where the VPN Key Management API usually lives",
                url.path()
            ),
        );
    }
    Some(url)
}

fn skip_jobs(ctx: &mut Ctx<'_>, raw: Option<&[Spanned<String>]>, prefix: &str) -> Vec<JobKind> {
    let mut jobs = Vec::new();
    for (index, field) in raw.unwrap_or_default().iter().enumerate() {
        let path = format!("{}[{index}]", at(prefix, "skip_jobs"));
        match JobKind::ALL
            .iter()
            .find(|job| job.as_str() == field.get_ref())
        {
            Some(job) if jobs.contains(job) => {
                ctx.warn(
                    span_of(field),
                    path,
                    format!("\"{}\" is listed twice", job.as_str()),
                );
            }
            Some(job) => jobs.push(*job),
            None => {
                let names: Vec<String> = JobKind::ALL
                    .iter()
                    .map(|job| format!("\"{}\"", job.as_str()))
                    .collect();
                ctx.error(
                    span_of(field),
                    path,
                    format!(
                        "unknown job \"{}\" (expected one of {})",
                        field.get_ref(),
                        names.join(", ")
                    ),
                );
            }
        }
    }
    jobs
}

pub(super) fn pem_file(
    ctx: &mut Ctx<'_>,
    field: &Spanned<String>,
    prefix: &str,
    key: &str,
) -> Option<std::path::PathBuf> {
    let path = ctx.resolve(field.get_ref());
    match std::fs::read(&path) {
        Ok(bytes)
            if bytes
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----") =>
        {
            Some(path)
        }
        Ok(_) => {
            ctx.error(
                span_of(field),
                at(prefix, key),
                format!("{} is not a PEM certificate (expected a \"-----BEGIN CERTIFICATE-----\" block)", path.display()),
            );
            None
        }
        Err(err) => {
            ctx.error(
                span_of(field),
                at(prefix, key),
                format!("cannot read CA file {}: {err}", path.display()),
            );
            None
        }
    }
}
