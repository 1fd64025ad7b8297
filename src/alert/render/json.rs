//! The `json` webhook body, version 1 (documented in docs/alerts.md; changing a field
//! is a new version):
//! `{"version": 1, "status", "server", "alerts": [{"fingerprint", "kind", "severity",
//! "status", "summary", "details", "started_at", "ended_at"}], "sent_at"}`.
//! `server` is null only for a digest spanning several servers (rate limiting).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::alert::model::Message;
use crate::config::Severity;

pub const VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Body<'a> {
    pub version: u32,
    pub status: &'static str,
    pub server: Option<&'a str>,
    pub alerts: Vec<AlertV1<'a>>,
    pub sent_at: String,
}

#[derive(Debug, Serialize)]
pub struct AlertV1<'a> {
    pub fingerprint: &'a str,
    pub kind: &'a str,
    pub severity: Severity,
    pub status: &'static str,
    pub summary: &'a str,
    pub details: &'a str,
    pub started_at: String,
    pub ended_at: Option<String>,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn body(message: &Message, sent_at: DateTime<Utc>) -> Body<'_> {
    Body {
        version: VERSION,
        status: message.status().as_str(),
        server: message.server(),
        alerts: message
            .items
            .iter()
            .map(|item| AlertV1 {
                fingerprint: &item.alert.fingerprint,
                kind: &item.alert.kind,
                severity: item.alert.severity,
                status: item.alert.status.as_str(),
                summary: &item.alert.summary,
                details: &item.alert.details,
                started_at: rfc3339(item.alert.started_at),
                ended_at: item.alert.ended_at.map(rfc3339),
            })
            .collect(),
        sent_at: rfc3339(sent_at),
    }
}

/// The body as sent (compact JSON bytes; the signature covers exactly these).
pub fn to_bytes(message: &Message, sent_at: DateTime<Utc>) -> Vec<u8> {
    // Strings, numbers and options only: serializing cannot fail.
    serde_json::to_vec(&body(message, sent_at)).unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
