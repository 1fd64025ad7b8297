//! Rendering: a `Message` (plain data) becomes an email, a JSON document, a Slack or a
//! Telegram body. Pure code: the time of sending and the time zone are arguments,
//! nothing here reads a clock or the configuration, and nothing here sees a secret.

pub mod chat;
pub mod email;
pub mod json;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::{Alert, AlertStatus, Item, Message, Reason};
use crate::config::Severity;

/// `config_drift_persists` -> `config drift persists`.
pub fn kind_words(kind: &str) -> String {
    kind.replace('_', " ")
}

/// A time in the agent's time zone, e.g. `2026-11-28 11:00:00 CET`.
pub fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `CRITICAL`, `WARNING`, `INFO`, or `RESOLVED`/`TEST` where that says more.
pub fn label(item: &Item) -> &'static str {
    match (item.reason, item.alert.status, item.alert.severity) {
        (Reason::Test, _, _) => "TEST",
        (_, AlertStatus::Resolved, _) => "RESOLVED",
        (_, _, Severity::Critical) => "CRITICAL",
        (_, _, Severity::Warning) => "WARNING",
        (_, _, Severity::Info) => "INFO",
    }
}

/// One line naming an alert: `CRITICAL fra-1: config drift persists`.
pub fn headline(item: &Item) -> String {
    format!(
        "{} {}: {}",
        label(item),
        item.alert.server,
        kind_words(&item.alert.kind)
    )
}

/// The subject of a message: one alert's headline, or a digest count.
pub fn subject(message: &Message) -> String {
    if let [item] = message.items.as_slice() {
        return format!("[keywarden] {}", headline(item));
    }
    let total = message.items.len();
    let mut notes = Vec::new();
    let critical = message.count(Severity::Critical);
    if critical > 0 {
        notes.push(format!("{critical} critical"));
    }
    let resolved = message
        .items
        .iter()
        .filter(|i| i.alert.status == AlertStatus::Resolved)
        .count();
    if resolved > 0 {
        notes.push(format!("{resolved} resolved"));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    let scope = match message.server() {
        Some(server) => server.to_string(),
        None => format!("{} servers", message.servers().len()),
    };
    format!("[keywarden] {scope}: {total} alerts{notes}")
}

/// What happened to the alert, in words: why this notice, and since when.
pub fn status_line(item: &Item, tz: Tz) -> String {
    let alert: &Alert = &item.alert;
    let since = local(alert.started_at, tz);
    match (item.reason, alert.ended_at) {
        (Reason::Test, _) => {
            "A test sent by `keywarden alert-test`: this sink works. Nothing to do.".to_string()
        }
        (_, Some(ended)) if alert.status == AlertStatus::Resolved => format!(
            "Resolved at {} (firing since {since}): the last run no longer found it. Nothing left to do.",
            local(ended, tz)
        ),
        (Reason::Repeat, _) => format!("Still firing since {since} (reminder)."),
        (Reason::Changed, _) => {
            format!("Firing since {since}; severity is now {}.", alert.severity)
        }
        (Reason::Released, _) => format!(
            "Firing since {since}; held back while the server was unreachable, sent now that it answers."
        ),
        _ => format!("Firing since {since}."),
    }
}

#[cfg(test)]
mod tests;
