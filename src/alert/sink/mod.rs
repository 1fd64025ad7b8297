//! Notification sinks: one module each (email, webhook). A sink turns a `Message` into
//! one delivery attempt and says how it went: delivered, a transient failure (retry,
//! maybe after Retry-After) or a permanent one (stop retrying). Errors never carry a
//! secret: no password, no signing secret, no header value, no webhook URL path.

pub mod email;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::model::Message;
use crate::config::AlertsConfig;
use crate::server_api::HttpClients;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (connection, timeout, 408, 429, 5xx, SMTP 4xx).
    #[error("{error}")]
    Transient {
        error: String,
        /// What the receiver asked for (429 Retry-After).
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (4xx, SMTP 5xx such as authentication refused).
    #[error("{error}")]
    Permanent { error: String },
}

impl SendError {
    pub fn transient(error: impl Into<String>) -> SendError {
        SendError::Transient {
            error: error.into(),
            retry_after: None,
        }
    }

    pub fn permanent(error: impl Into<String>) -> SendError {
        SendError::Permanent {
            error: error.into(),
        }
    }
}

/// A sink could not be set up (a mailbox lettre refuses, a bad header, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert sink {sink}: {reason}")]
pub struct SinkError {
    pub sink: String,
    pub reason: String,
}

/// Options that are not configuration (tests trust their own SMTP certificate).
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// An extra trusted root (PEM) for SMTP TLS; with it, only this root is trusted.
    pub smtp_root_pem: Option<Vec<u8>>,
    /// Where webhook sinks (and the daemon's heartbeat) take their HTTP client: one for
    /// all of them.
    pub http: Arc<HttpClients>,
}

/// One configured sink.
#[derive(Debug)]
pub enum Sink {
    Email(email::EmailSink),
    Webhook(webhook::WebhookSink),
}

impl Sink {
    /// Every configured sink, email first, in configuration order.
    pub fn build_all(
        config: &AlertsConfig,
        tz: Tz,
        options: &SinkOptions,
    ) -> Result<Vec<Sink>, SinkError> {
        let mut sinks = Vec::new();
        for sink in &config.email {
            sinks.push(Sink::Email(email::EmailSink::new(sink, tz, options)?));
        }
        for sink in &config.webhook {
            let built = webhook::WebhookSink::new(sink, tz, &options.http)?;
            sinks.push(Sink::Webhook(built));
        }
        Ok(sinks)
    }

    pub fn name(&self) -> &str {
        match self {
            Sink::Email(sink) => &sink.config.name,
            Sink::Webhook(sink) => &sink.config.name,
        }
    }

    pub fn rate_limit_per_minute(&self) -> u32 {
        match self {
            Sink::Email(sink) => sink.config.rate_limit_per_minute,
            Sink::Webhook(sink) => sink.config.rate_limit_per_minute,
        }
    }

    /// One delivery attempt, bounded by the sink's timeout.
    pub async fn send(&self, message: &Message, sent_at: DateTime<Utc>) -> Result<(), SendError> {
        let (timeout, result) = match self {
            Sink::Email(sink) => {
                let timeout = sink.config.timeout;
                (
                    timeout,
                    tokio::time::timeout(timeout, sink.send(message, sent_at)).await,
                )
            }
            Sink::Webhook(sink) => {
                // Telegram may need several calls; each has the timeout on its own.
                let timeout = sink.config.timeout.saturating_mul(sink.calls(message));
                (
                    timeout,
                    tokio::time::timeout(timeout, sink.send(message, sent_at)).await,
                )
            }
        };
        result.unwrap_or_else(|_| {
            Err(SendError::transient(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            )))
        })
    }
}
