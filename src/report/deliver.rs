//! Sending a rendered report to sinks. Bodies are built here (pure); the sinks' small
//! report methods do the IO. Per sink format:
//! - email: HTML with the charts inline (multipart/related, `cid:`), plus a text part;
//! - json webhook: one document with the numbers, the text and each chart as base64
//!   with its MIME type, signed like alerts;
//! - telegram: `sendPhoto` per chart (a plain caption within Telegram's 1024 characters),
//!   then the text as `sendMessage` calls of at most 4096 characters;
//! - slack: a Block Kit message to the incoming webhook (numbers), and the charts uploaded
//!   as files when the sink has a bot token and channel (an incoming webhook cannot carry
//!   files, and image blocks need a public URL).
//!
//! A failing sink never stops the others.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Rendered;
use super::render::{escape, summary};
use crate::alert::Sink;
use crate::alert::sink::SendError;
use crate::alert::sink::email::InlineImage;
use crate::alert::sink::webhook::WebhookSink;
use crate::config::WebhookFormat;

/// Telegram's limit on a photo caption, and on a message.
pub const CAPTION_LIMIT: usize = 1024;
pub const MESSAGE_LIMIT: usize = 4096;
/// Slack's limit on a section's text.
const SLACK_SECTION_LIMIT: usize = 3000;

/// Where Slack's Web API is; tests point it at a loopback receiver.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub slack_api: reqwest::Url,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            slack_api: reqwest::Url::parse(crate::alert::sink::webhook::SLACK_API)
                .expect("constant URL"),
        }
    }
}

/// How sending to one sink went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub sink: String,
    pub result: Result<(), SendError>,
}

/// Text cut to `limit` UTF-16 units (what Telegram counts), with an ellipsis if cut.
pub fn clip(text: &str, limit: usize) -> String {
    if text.encode_utf16().count() <= limit {
        return text.to_string();
    }
    let mut out = String::new();
    let mut units = 1; // the ellipsis
    for c in text.chars() {
        units += c.len_utf16();
        if units > limit {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// The JSON webhook document.
pub fn json_document(rendered: &Rendered) -> Value {
    let charts: Vec<Value> = rendered
        .charts
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "title": c.title,
                "mime_type": super::Chart::MIME_TYPE,
                "data_base64": base64::engine::general_purpose::STANDARD.encode(&c.png),
            })
        })
        .collect();
    json!({
        "kind": "usage_report",
        "version": 1,
        "subject": rendered.subject,
        "report": rendered.report,
        "text": rendered.text,
        "charts": charts,
    })
}

/// Telegram captions: the summary on the first chart, the chart's title on the others.
pub fn telegram_captions(rendered: &Rendered) -> Vec<String> {
    rendered
        .charts
        .iter()
        .enumerate()
        .map(|(i, chart)| match i {
            0 => clip(
                &format!("{}\n{}", rendered.subject, summary(&rendered.report)),
                CAPTION_LIMIT,
            ),
            _ => clip(&chart.title, CAPTION_LIMIT),
        })
        .collect()
}

/// The text as `<pre>` blocks of whole lines, each message within Telegram's limit.
pub fn telegram_texts(text: &str) -> Vec<String> {
    const WRAP: usize = "<pre></pre>".len();
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = clip(&escape(line), MESSAGE_LIMIT - WRAP - 1);
        let size = |s: &str| s.encode_utf16().count();
        if size(&current) + size(&line) + 1 + WRAP > MESSAGE_LIMIT && !current.is_empty() {
            chunks.push(format!("<pre>{}</pre>", std::mem::take(&mut current)));
        }
        current.push_str(&line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        chunks.push(format!("<pre>{}</pre>", current.trim_end()));
    }
    chunks
}

/// The Slack incoming-webhook message (Block Kit, with `text` as the fallback).
pub fn slack_message(rendered: &Rendered, with_charts: bool) -> Value {
    let escape_slack = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let title = rendered.subject.trim_start_matches("[keywarden] ");
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&escape_slack(&summary(&rendered.report)), SLACK_SECTION_LIMIT)}}),
    ];
    let details = format!("```{}```", escape_slack(&rendered.text));
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
        "text": clip(&details, SLACK_SECTION_LIMIT)}}));
    let note = if with_charts {
        "Charts follow as files."
    } else {
        "Charts: give this sink slack_token and slack_channel to receive them."
    };
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}));
    json!({ "text": clip(title, 3000), "blocks": blocks })
}

/// Send `rendered` to each sink in `names` (unknown names are reported as failures).
pub async fn deliver(
    rendered: &Rendered,
    sinks: &[Sink],
    names: &[String],
    options: &DeliveryOptions,
    sent_at: DateTime<Utc>,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for name in names {
        let result = match sinks.iter().find(|s| s.name() == name) {
            None => Err(SendError::permanent(format!("no sink named {name}"))),
            Some(sink) => send(rendered, sink, options, sent_at).await,
        };
        out.push(Delivery {
            sink: name.clone(),
            result,
        });
    }
    out
}

/// One sink, bounded by its timeout for each call it makes.
pub async fn send(
    rendered: &Rendered,
    sink: &Sink,
    options: &DeliveryOptions,
    sent_at: DateTime<Utc>,
) -> Result<(), SendError> {
    let (timeout, calls) = match sink {
        Sink::Email(email) => (email.config.timeout, 2),
        Sink::Webhook(hook) => (hook.config.timeout, 3 * rendered.charts.len() as u32 + 4),
    };
    let limit = timeout.saturating_mul(calls);
    let work = async {
        match sink {
            Sink::Email(email) => {
                let images: Vec<InlineImage<'_>> = rendered
                    .charts
                    .iter()
                    .map(|c| InlineImage {
                        content_id: c.name,
                        mime_type: super::Chart::MIME_TYPE,
                        bytes: &c.png,
                    })
                    .collect();
                email
                    .send_html(&rendered.subject, &rendered.text, &rendered.html, &images)
                    .await
            }
            Sink::Webhook(hook) => webhook(rendered, hook, options, sent_at).await,
        }
    };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(SendError::transient(format!(
            "timed out after {}",
            humantime::format_duration(limit)
        )))
    })
}

async fn webhook(
    rendered: &Rendered,
    hook: &WebhookSink,
    options: &DeliveryOptions,
    sent_at: DateTime<Utc>,
) -> Result<(), SendError> {
    match hook.config.format {
        WebhookFormat::Json => {
            let body = serde_json::to_vec(&json_document(rendered)).unwrap_or_default();
            hook.post_document(body, sent_at).await
        }
        WebhookFormat::Telegram => {
            let chat_id = hook.config.chat_id.clone().unwrap_or_default();
            for (chart, caption) in rendered.charts.iter().zip(telegram_captions(rendered)) {
                hook.telegram_photo(
                    chart.name,
                    super::Chart::MIME_TYPE,
                    chart.png.clone(),
                    &caption,
                )
                .await?;
            }
            for text in telegram_texts(&rendered.text) {
                let body = json!({"chat_id": chat_id, "text": text, "parse_mode": "HTML"});
                hook.post_document(serde_json::to_vec(&body).unwrap_or_default(), sent_at)
                    .await?;
            }
            Ok(())
        }
        WebhookFormat::Slack => {
            let with_charts = hook.config.slack_upload.is_some();
            let body =
                serde_json::to_vec(&slack_message(rendered, with_charts)).unwrap_or_default();
            hook.post_document(body, sent_at).await?;
            if with_charts {
                for chart in &rendered.charts {
                    hook.slack_upload(
                        &options.slack_api,
                        chart.name,
                        chart.png.clone(),
                        &chart.title,
                        &chart.title,
                    )
                    .await?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_utf16_and_marks_the_cut() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(2000);
        let cut = clip(&long, CAPTION_LIMIT);
        assert_eq!(cut.encode_utf16().count(), CAPTION_LIMIT);
        assert!(cut.ends_with('…'));
        let emoji = "😀".repeat(600);
        assert!(clip(&emoji, CAPTION_LIMIT).encode_utf16().count() <= CAPTION_LIMIT);
    }

    #[test]
    fn telegram_texts_are_escaped_whole_lines_within_the_limit() {
        let text: String = (0..800).map(|i| format!("line {i} <b>&\n")).collect();
        let chunks = telegram_texts(&text);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            assert!(chunk.encode_utf16().count() <= MESSAGE_LIMIT);
            assert!(chunk.starts_with("<pre>") && chunk.ends_with("</pre>"));
            assert!(!chunk.contains("<b>"));
        }
        let joined = chunks.join("\n");
        assert!(joined.contains("line 799 &lt;b&gt;&amp;"));
    }
}
