//! `[alerts]`, `[[alerts.email]]` and `[[alerts.webhook]]`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use toml::Spanned;

use super::ctx::SecretFields;
use super::{Ctx, at, defaults, span_of};
use crate::config::alerts::{
    AlertsConfig, EmailSinkConfig, SecretUrl, Severity, SmtpSecurity, WebhookFormat,
    WebhookSinkConfig,
};
use crate::config::raw::{NumOrStr, RawAlerts, RawEmail, RawWebhook};
use crate::secret::Secret;

const SEVERITIES: &[(&str, Severity)] = &[
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
    );
    let group_wait = ctx.duration(
        raw.and_then(|r| r.group_wait.as_ref()),
        &at(p, "group_wait"),
        Duration::from_secs(defaults::GROUP_WAIT_SECS),
        false,
    );
    let max_age = ctx.duration(
        raw.and_then(|r| r.max_age.as_ref()),
        &at(p, "max_age"),
        Duration::from_secs(defaults::MAX_AGE_SECS),
        true,
    );
    let heartbeat_url = match raw.and_then(|r| r.heartbeat_url.as_ref()) {
        Some(field) if field.get_ref().trim().is_empty() => None,
        Some(field) => http_url(ctx, field, &at(p, "heartbeat_url")).map(SecretUrl::new),
        None => None,
    };
    // Sink names are unique across both kinds: alerts and metrics name the sink alone.
    let mut names: HashMap<String, usize> = HashMap::new();
    let email = raw
        .and_then(|r| r.email.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, sink)| {
            email(
                ctx,
                sink,
                &format!("alerts.email[{index}]"),
                min_severity,
                &mut names,
            )
        })
        .collect();
    let webhook = raw
        .and_then(|r| r.webhook.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, sink)| {
            webhook(
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
        email,
        webhook,
    }
}

fn http_url(ctx: &mut Ctx<'_>, field: &Spanned<String>, path: &str) -> Option<Url> {
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

fn sink_name(
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

fn sink_severity(
    ctx: &mut Ctx<'_>,
    field: Option<&Spanned<String>>,
    prefix: &str,
    global: Severity,
) -> Severity {
    let severity = ctx.choice(field, &at(prefix, "min_severity"), SEVERITIES, global);
    if let Some(field) = field
        && severity < global
    {
        ctx.warn(
            span_of(field),
            at(prefix, "min_severity"),
            format!(
                "\"{severity}\" is below alerts.min_severity (\"{global}\"), which filters first"
            ),
        );
    }
    severity
}

fn email(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawEmail>,
    prefix: &str,
    global: Severity,
    names: &mut HashMap<String, usize>,
) -> EmailSinkConfig {
    let raw = spanned.get_ref();
    let table = span_of(spanned);
    let name = sink_name(ctx, raw.name.as_ref(), table.clone(), prefix, names);
    let host = ctx.required_string(
        raw.host.as_ref(),
        table.clone(),
        &at(prefix, "host"),
        "the SMTP relay host, e.g. \"smtp.example.net\"",
    );
    if let Some(field) = &raw.host
        && (host.contains("://") || host.contains(char::is_whitespace) || host.contains('/'))
    {
        ctx.error(
            span_of(field),
            at(prefix, "host"),
            format!("\"{host}\" is not a host name (write only the host, e.g. \"smtp.example.net\", and the port in `port`)"),
        );
    }
    let port = ctx.int_in(
        raw.port.as_ref(),
        &at(prefix, "port"),
        1..=65535,
        defaults::SMTP_PORT,
    );
    let security = ctx.choice(
        raw.security.as_ref(),
        &at(prefix, "security"),
        &[
            ("starttls", SmtpSecurity::Starttls),
            ("tls", SmtpSecurity::Tls),
            ("none", SmtpSecurity::None),
        ],
        SmtpSecurity::Starttls,
    );
    let password = ctx.secret(
        SecretFields {
            base: "password",
            inline: raw.password.as_ref(),
            file: raw.password_file.as_ref(),
            env: raw.password_env.as_ref(),
        },
        table.clone(),
        prefix,
        false,
    );
    let username = raw.username.as_ref().map(|field| field.get_ref().clone());
    let has_password_field =
        raw.password.is_some() || raw.password_file.is_some() || raw.password_env.is_some();
    match (&raw.username, has_password_field) {
        (Some(field), false) => ctx.error(
            span_of(field),
            at(prefix, "username"),
            "username without a password: add password_env (or password_file / password), or remove username",
        ),
        (None, true) => ctx.error(
            table.clone(),
            at(prefix, "username"),
            "a password is set but no username: SMTP AUTH needs both",
        ),
        _ => {}
    }
    if let Some(field) = &raw.username
        && field.get_ref().is_empty()
    {
        ctx.error(
            span_of(field),
            at(prefix, "username"),
            "must not be empty (omit it to send without AUTH)",
        );
    }
    email_warnings(ctx, raw, prefix, &host, port, security, password.is_some());
    let from = ctx.required_string(
        raw.from.as_ref(),
        table.clone(),
        &at(prefix, "from"),
        "the sender, e.g. \"keywarden <alerts@example.net>\"",
    );
    if let Some(field) = &raw.from
        && !from.is_empty()
        && !is_mailbox(&from)
    {
        ctx.error(
            span_of(field),
            at(prefix, "from"),
            format!("\"{from}\" is not a mail address (expected \"alerts@example.net\" or \"keywarden <alerts@example.net>\")"),
        );
    }
    let to = recipients(ctx, raw.to.as_ref(), table, prefix);
    let (password, password_source) = password.unzip();
    EmailSinkConfig {
        name,
        host,
        port,
        security,
        username,
        password,
        password_source,
        from,
        to,
        min_severity: sink_severity(ctx, raw.min_severity.as_ref(), prefix, global),
        timeout: ctx.duration(
            raw.timeout.as_ref(),
            &at(prefix, "timeout"),
            Duration::from_secs(defaults::EMAIL_TIMEOUT_SECS),
            true,
        ),
    }
}

fn email_warnings(
    ctx: &mut Ctx<'_>,
    raw: &RawEmail,
    prefix: &str,
    host: &str,
    port: u16,
    security: SmtpSecurity,
    has_password: bool,
) {
    let security_span = raw.security.as_ref().and_then(span_of);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if security == SmtpSecurity::None && has_password && !loopback {
        ctx.warn(
            security_span.clone(),
            at(prefix, "security"),
            format!("\"none\" sends the SMTP password to {host} in clear text; use \"starttls\" or \"tls\""),
        );
    }
    let expected = match (port, security) {
        (465, SmtpSecurity::Starttls) => Some("\"tls\" (port 465 is implicit TLS)"),
        (587, SmtpSecurity::Tls) => Some("\"starttls\" (port 587 expects STARTTLS)"),
        _ => None,
    };
    if let Some(expected) = expected {
        ctx.warn(
            security_span.or_else(|| raw.port.as_ref().and_then(span_of)),
            at(prefix, "security"),
            format!("port {port} usually needs security = {expected}"),
        );
    }
}

/// A bare address or `Name <address>`: lettre parses it for real when sending; this
/// catches the usual slips (missing '@', a name without brackets, spaces).
fn is_mailbox(text: &str) -> bool {
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text,
    };
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

fn recipients(
    ctx: &mut Ctx<'_>,
    field: Option<&Spanned<Vec<Spanned<String>>>>,
    table: Option<std::ops::Range<usize>>,
    prefix: &str,
) -> Vec<String> {
    let path = at(prefix, "to");
    let hint = "at least one recipient is required, e.g. to = [\"admin@example.net\"]";
    let Some(field) = field else {
        ctx.error(table, path, format!("missing: {hint}"));
        return Vec::new();
    };
    if field.get_ref().is_empty() {
        ctx.error(span_of(field), path, format!("no recipients: {hint}"));
        return Vec::new();
    }
    let mut to = Vec::new();
    for (index, item) in field.get_ref().iter().enumerate() {
        if is_mailbox(item.get_ref()) {
            to.push(item.get_ref().clone());
        } else {
            ctx.error(
                span_of(item),
                format!("{path}[{index}]"),
                format!(
                    "\"{}\" is not a mail address (expected e.g. \"admin@example.net\")",
                    item.get_ref()
                ),
            );
        }
    }
    to
}

fn webhook(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawWebhook>,
    prefix: &str,
    global: Severity,
    names: &mut HashMap<String, usize>,
) -> WebhookSinkConfig {
    let raw = spanned.get_ref();
    let table = span_of(spanned);
    let name = sink_name(ctx, raw.name.as_ref(), table.clone(), prefix, names);
    let format = ctx.choice(
        raw.format.as_ref(),
        &at(prefix, "format"),
        &[
            ("json", WebhookFormat::Json),
            ("slack", WebhookFormat::Slack),
            ("telegram", WebhookFormat::Telegram),
        ],
        WebhookFormat::Json,
    );
    let url = match &raw.url {
        Some(field) => http_url(ctx, field, &at(prefix, "url")),
        None => {
            ctx.error(
                table.clone(),
                at(prefix, "url"),
                "missing: the URL to POST to",
            );
            None
        }
    };
    if let (Some(url), Some(field)) = (&url, &raw.url)
        && format != WebhookFormat::Json
    {
        // Telegram and Slack put the token in the URL itself.
        ctx.inline_secrets.push(at(prefix, "url"));
        if format == WebhookFormat::Telegram && !url.path().ends_with("/sendMessage") {
            ctx.warn(
                span_of(field),
                at(prefix, "url"),
                "a Telegram URL usually ends in /sendMessage (https://api.telegram.org/bot<token>/sendMessage)",
            );
        }
    }
    let chat_id = chat_id(ctx, raw, &table, prefix, format);
    let secret = ctx.secret(
        SecretFields {
            base: "secret",
            inline: raw.secret.as_ref(),
            file: raw.secret_file.as_ref(),
            env: raw.secret_env.as_ref(),
        },
        table,
        prefix,
        false,
    );
    if format != WebhookFormat::Json
        && let Some(field) = raw
            .secret
            .as_ref()
            .or(raw.secret_file.as_ref())
            .or(raw.secret_env.as_ref())
    {
        ctx.error(
            span_of(field),
            prefix,
            format!("HMAC signing (secret, secret_file, secret_env) applies to format = \"json\" only, not \"{}\"", format.as_str()),
        );
    }
    let headers = headers(ctx, raw, prefix);
    let (secret, secret_source) = secret.unzip();
    WebhookSinkConfig {
        name,
        url: SecretUrl::new(
            url.unwrap_or_else(|| Url::parse("http://invalid.invalid/").expect("constant URL")),
        ),
        format,
        chat_id,
        secret,
        secret_source,
        headers,
        min_severity: sink_severity(ctx, raw.min_severity.as_ref(), prefix, global),
        timeout: ctx.duration(
            raw.timeout.as_ref(),
            &at(prefix, "timeout"),
            Duration::from_secs(defaults::WEBHOOK_TIMEOUT_SECS),
            true,
        ),
    }
}

fn chat_id(
    ctx: &mut Ctx<'_>,
    raw: &RawWebhook,
    table: &Option<std::ops::Range<usize>>,
    prefix: &str,
    format: WebhookFormat,
) -> Option<String> {
    let path = at(prefix, "chat_id");
    let value = raw.chat_id.as_ref().map(|field| match field.get_ref() {
        NumOrStr::Int(id) => id.to_string(),
        NumOrStr::Str(id) => id.trim().to_owned(),
        NumOrStr::Float(id) => id.to_string(),
    });
    match (format, &raw.chat_id, value) {
        (WebhookFormat::Telegram, None, _) => {
            ctx.error(
                table.clone(),
                path,
                "format = \"telegram\" needs chat_id (e.g. \"-1001234567890\" or \"@channel\")",
            );
            None
        }
        (WebhookFormat::Telegram, Some(field), Some(id))
            if id.is_empty() || matches!(field.get_ref(), NumOrStr::Float(_)) =>
        {
            ctx.error(
                span_of(field),
                path,
                "expected a Telegram chat id such as \"-1001234567890\" or \"@channel\"",
            );
            None
        }
        (WebhookFormat::Telegram, _, id) => id,
        (_, Some(field), _) => {
            ctx.error(
                span_of(field),
                path,
                format!(
                    "chat_id applies to format = \"telegram\" only, not \"{}\"",
                    format.as_str()
                ),
            );
            None
        }
        (_, None, _) => None,
    }
}

fn headers(ctx: &mut Ctx<'_>, raw: &RawWebhook, prefix: &str) -> Vec<(String, Secret)> {
    let mut headers = Vec::new();
    for (name, value) in raw.headers.iter().flat_map(|h| h.get_ref()) {
        let path = format!("{}.{name}", at(prefix, "headers"));
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            ctx.error(
                span_of(value),
                path,
                format!("\"{name}\" is not a valid HTTP header name (letters, digits and -, e.g. \"X-Api-Token\")"),
            );
            continue;
        }
        // Never echo the value: header values are where tokens go.
        if HeaderValue::from_str(value.get_ref()).is_err() {
            ctx.error(
                span_of(value),
                path,
                "not a valid HTTP header value (visible ASCII, no line breaks)",
            );
            continue;
        }
        ctx.inline_secrets.push(path);
        headers.push((name.clone(), Secret::new(value.get_ref().clone())));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::is_mailbox;

    #[test]
    fn mailboxes() {
        for good in [
            "a@b",
            "admin@example.net",
            "keywarden <alerts@example.net>",
            "<a@b.c>",
        ] {
            assert!(is_mailbox(good), "{good}");
        }
        for bad in [
            "",
            "admin",
            "@example.net",
            "admin@",
            "keywarden alerts@example.net",
            "a@b@c",
            "a b@c",
        ] {
            assert!(!is_mailbox(bad), "{bad}");
        }
    }
}
