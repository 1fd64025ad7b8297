//! `[[alerts.webhook]]`: URL (a secret), format, Telegram chat, signing secret, headers.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use toml::Spanned;

use super::alerts::{http_url, sink_name, sink_severity};
use super::ctx::SecretFields;
use super::{Ctx, at, defaults, span_of};
use crate::config::alerts::{SecretUrl, Severity, SlackUpload, WebhookFormat, WebhookSinkConfig};
use crate::config::raw::{NumOrStr, RawWebhook};
use crate::secret::Secret;

pub(super) fn webhook(
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
        table.clone(),
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
    let slack_upload = slack_upload(ctx, raw, &table, prefix, format);
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
            super::ctx::MAX_TIMEOUT,
        ),
        rate_limit_per_minute: ctx.int_in(
            raw.rate_limit_per_minute.as_ref(),
            &at(prefix, "rate_limit_per_minute"),
            1..=10_000,
            defaults::RATE_LIMIT_PER_MINUTE,
        ),
        slack_upload,
    }
}

/// `slack_token*` with `slack_channel`: both or neither, slack only.
fn slack_upload(
    ctx: &mut Ctx<'_>,
    raw: &RawWebhook,
    table: &Option<std::ops::Range<usize>>,
    prefix: &str,
    format: WebhookFormat,
) -> Option<SlackUpload> {
    let token_field = raw
        .slack_token
        .as_ref()
        .or(raw.slack_token_file.as_ref())
        .or(raw.slack_token_env.as_ref());
    if format != WebhookFormat::Slack {
        if let Some(field) = token_field.or(raw.slack_channel.as_ref()) {
            ctx.error(
                span_of(field),
                prefix,
                format!(
                    "slack_token and slack_channel apply to format = \"slack\" only, not \"{}\"",
                    format.as_str()
                ),
            );
        }
        return None;
    }
    let token = ctx.secret(
        SecretFields {
            base: "slack_token",
            inline: raw.slack_token.as_ref(),
            file: raw.slack_token_file.as_ref(),
            env: raw.slack_token_env.as_ref(),
        },
        table.clone(),
        prefix,
        false,
    );
    let channel = raw
        .slack_channel
        .as_ref()
        .map(|c| c.get_ref().trim().to_owned());
    match (token, channel) {
        (Some((token, token_source)), Some(channel)) if !channel.is_empty() => Some(SlackUpload {
            token,
            token_source,
            channel,
        }),
        (None, None) => None,
        (Some(_), _) => {
            let span = raw
                .slack_channel
                .as_ref()
                .map(|c| c.span())
                .or(table.clone());
            ctx.error(
                span,
                at(prefix, "slack_channel"),
                "a Slack bot token needs slack_channel, the channel id charts are uploaded to (e.g. \"C0123456789\")",
            );
            None
        }
        (None, Some(_)) => {
            if token_field.is_none() {
                ctx.error(
                    raw.slack_channel.as_ref().map(|c| c.span()),
                    at(prefix, "slack_channel"),
                    "slack_channel needs a bot token: set slack_token_env, slack_token_file or slack_token",
                );
            }
            None
        }
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
