//! The email: subject and plain-text body. The body says, per alert, what was seen,
//! what keywarden already did and what the admin should do next (the finding's
//! details carry those three), with times in the agent's time zone.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{headline, local, status_line};
use crate::alert::model::{AlertStatus, Message};

/// The subject line.
pub fn subject(message: &Message) -> String {
    super::subject(message)
}

/// The plain-text body.
pub fn body(message: &Message, tz: Tz, sent_at: DateTime<Utc>) -> String {
    let mut out = String::new();
    if message.is_digest() {
        let firing = message
            .items
            .iter()
            .filter(|i| i.alert.status == AlertStatus::Firing)
            .count();
        let _ = writeln!(
            out,
            "{} alerts: {firing} firing, {} resolved.\n",
            message.items.len(),
            message.items.len() - firing
        );
    }
    for item in &message.items {
        let alert = &item.alert;
        let _ = writeln!(out, "{}", headline(item));
        let _ = writeln!(out, "{}", alert.summary);
        let _ = writeln!(out, "{}", status_line(item, tz));
        if alert.status == AlertStatus::Firing && !alert.details.is_empty() {
            out.push('\n');
            for line in alert.details.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        let _ = writeln!(out, "\nFingerprint: {}", alert.fingerprint);
        out.push_str("\n----------------------------------------\n\n");
    }
    let _ = writeln!(
        out,
        "Sent by keywarden at {}. Times are in {}.",
        local(sent_at, tz),
        tz.name()
    );
    out
}
