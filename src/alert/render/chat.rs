//! Chat bodies: a Slack incoming-webhook message (`text`, mrkdwn) and Telegram Bot API
//! `sendMessage` calls (HTML parse mode, split at Telegram's 4096-character limit).
//! Both escape `&`, `<` and `>`: alert texts quote servers and may contain anything.

use chrono_tz::Tz;
use serde_json::{Value, json};

use super::{headline, status_line, subject};
use crate::alert::model::{AlertStatus, Message};

/// Telegram's limit on one message's text.
pub const TELEGRAM_LIMIT: usize = 4096;

/// `&`, `<`, `>` as entities: what both Slack and Telegram's HTML mode require.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Styles of one line of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Bold,
    Italic,
    Plain,
}

/// The message as styled lines (shared by both formats).
fn lines(message: &Message, tz: Tz) -> Vec<(Style, String)> {
    let mut lines = Vec::new();
    if message.is_digest() {
        lines.push((Style::Bold, subject(message)));
        lines.push((Style::Plain, String::new()));
    }
    for item in &message.items {
        let title = if message.is_digest() {
            headline(item)
        } else {
            subject(message)
        };
        lines.push((Style::Bold, title));
        lines.push((Style::Plain, item.alert.summary.clone()));
        lines.push((Style::Italic, status_line(item, tz)));
        if item.alert.status == AlertStatus::Firing {
            for line in item.alert.details.lines() {
                lines.push((Style::Plain, line.to_string()));
            }
        }
        lines.push((Style::Plain, String::new()));
    }
    while lines.last().is_some_and(|(_, text)| text.is_empty()) {
        lines.pop();
    }
    lines
}

/// The Slack incoming-webhook body.
pub fn slack(message: &Message, tz: Tz) -> Value {
    let text: Vec<String> = lines(message, tz)
        .into_iter()
        .map(|(style, text)| match style {
            Style::Bold if !text.is_empty() => format!("*{}*", escape(&text)),
            Style::Italic if !text.is_empty() => format!("_{}_", escape(&text)),
            _ => escape(&text),
        })
        .collect();
    json!({ "text": text.join("\n") })
}

fn html(style: Style, text: &str) -> String {
    match style {
        Style::Bold => format!("<b>{}</b>", escape(text)),
        Style::Italic => format!("<i>{}</i>", escape(text)),
        Style::Plain => escape(text),
    }
}

/// Telegram counts UTF-16 code units; counting the HTML source is conservative.
fn units(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Cut one line's text into pieces whose HTML fits `limit`, never inside an entity.
fn cut(style: Style, text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let overhead = units(&html(style, ""));
    let mut size = overhead;
    for c in text.chars() {
        let add = units(&escape(c.encode_utf8(&mut [0; 4])));
        if size + add > limit && !current.is_empty() {
            pieces.push(html(style, &current));
            current.clear();
            size = overhead;
        }
        current.push(c);
        size += add;
    }
    pieces.push(html(style, &current));
    pieces
}

/// The texts of the Telegram messages: whole lines packed up to `limit`.
pub fn telegram_texts(message: &Message, tz: Tz, limit: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for (style, text) in lines(message, tz) {
        for piece in cut(style, &text, limit) {
            let needed = units(&piece) + usize::from(!current.is_empty());
            if units(&current) + needed > limit && !current.is_empty() {
                chunks.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(&piece);
        }
    }
    if !current.trim().is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The `sendMessage` bodies, in order.
pub fn telegram(message: &Message, tz: Tz, chat_id: &str) -> Vec<Value> {
    telegram_texts(message, tz, TELEGRAM_LIMIT)
        .into_iter()
        .map(|text| json!({ "chat_id": chat_id, "text": text, "parse_mode": "HTML" }))
        .collect()
}
