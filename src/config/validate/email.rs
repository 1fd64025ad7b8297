//! `[[alerts.email]]`: SMTP relay, AUTH, sender and recipients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use toml::Spanned;

use super::alerts::{sink_name, sink_severity};
use super::ctx::SecretFields;
use super::{Ctx, at, defaults, span_of};
use crate::config::alerts::{EmailSinkConfig, Severity, SmtpSecurity};
use crate::config::raw::RawEmail;

pub(super) fn email(
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
            super::ctx::MAX_TIMEOUT,
        ),
        rate_limit_per_minute: ctx.int_in(
            raw.rate_limit_per_minute.as_ref(),
            &at(prefix, "rate_limit_per_minute"),
            1..=10_000,
            defaults::RATE_LIMIT_PER_MINUTE,
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
