//! Typed alert settings: severities, routing knobs and the notification sinks.
//! Webhook URLs and header values may carry tokens, so they are held in redacting types.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::types::SecretSource;
use crate::secret::Secret;

/// How bad an alert is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URL that may carry a token in its path or query (Telegram bot URLs, Slack hooks,
/// heartbeat pings). Debug and Display show only `scheme://host[:port]/[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn new(url: Url) -> Self {
        SecretUrl(url)
    }

    /// The full URL, for the one place that sends the request.
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never userinfo, path or query: any of them may hold the token.
        write!(f, "{}://", self.0.scheme())?;
        match self.0.host_str() {
            Some(host) => f.write_str(host)?,
            None => f.write_str("?")?,
        }
        if let Some(port) = self.0.port() {
            write!(f, ":{port}")?;
        }
        f.write_str("/[redacted]")
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// `[alerts]`
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Alerts below this severity are not sent anywhere.
    pub min_severity: Severity,
    /// A still-firing alert is sent again after this long.
    pub repeat_interval: Duration,
    /// Whether a resolved alert is notified.
    pub send_resolved: bool,
    /// How long new alerts are collected before the first notification.
    pub group_wait: Duration,
    /// Undelivered notifications older than this are dropped (and counted).
    pub max_age: Duration,
    /// Pinged (GET) after every complete cycle: a dead man's switch. Redacted like
    /// webhook URLs because ping URLs (healthchecks.io and the like) embed their token.
    pub heartbeat_url: Option<SecretUrl>,
    /// `[[alerts.email]]`
    pub email: Vec<EmailSinkConfig>,
    /// `[[alerts.webhook]]`
    pub webhook: Vec<WebhookSinkConfig>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No encryption: only for loopback relays.
    None,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }
}

/// `[[alerts.email]]`
#[derive(Debug, Clone, PartialEq)]
pub struct EmailSinkConfig {
    /// Sink name, unique across all sinks.
    pub name: String,
    /// SMTP relay host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// Connection security.
    pub security: SmtpSecurity,
    /// SMTP AUTH user (always together with `password`).
    pub username: Option<String>,
    /// SMTP AUTH password.
    pub password: Option<Secret>,
    /// Where `password` came from (for summaries).
    pub password_source: Option<SecretSource>,
    /// Sender mailbox, e.g. `keywarden <alerts@example.net>`.
    pub from: String,
    /// Recipients, at least one.
    pub to: Vec<String>,
    /// Least severity sent to this sink.
    pub min_severity: Severity,
    /// Timeout of one delivery.
    pub timeout: Duration,
    /// Messages per minute at most; beyond it, pending alerts are merged into one digest.
    pub rate_limit_per_minute: u32,
}

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// keywarden's own JSON document, optionally HMAC-signed.
    Json,
    /// A Slack incoming-webhook message.
    Slack,
    /// A Telegram Bot API sendMessage call.
    Telegram,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Telegram => "telegram",
        }
    }
}

/// `[[alerts.webhook]]`
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSinkConfig {
    /// Sink name, unique across all sinks.
    pub name: String,
    /// Target URL (may hold a token: redacted when printed).
    pub url: SecretUrl,
    /// Body format.
    pub format: WebhookFormat,
    /// Telegram chat id (set exactly when `format` is telegram).
    pub chat_id: Option<String>,
    /// HMAC signing secret (json format only).
    pub secret: Option<Secret>,
    /// Where `secret` came from (for summaries).
    pub secret_source: Option<SecretSource>,
    /// Extra headers, names validated, values redacted when printed.
    pub headers: Vec<(String, Secret)>,
    /// Least severity sent to this sink.
    pub min_severity: Severity,
    /// Timeout of one delivery.
    pub timeout: Duration,
    /// Messages per minute at most; beyond it, pending alerts are merged into one digest.
    pub rate_limit_per_minute: u32,
    /// Slack only: a bot token and channel, so reports can upload their charts (an
    /// incoming webhook can post text but not files).
    pub slack_upload: Option<SlackUpload>,
}

/// A Slack bot token (`files:write`) and the channel charts are uploaded to.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackUpload {
    pub token: Secret,
    /// Where `token` came from (for summaries).
    pub token_source: SecretSource,
    /// Channel id, e.g. `C0123456789`.
    pub channel: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Info < Severity::Warning);
        assert!(Severity::Warning < Severity::Critical);
        assert_eq!(Severity::Critical.as_str(), "critical");
    }

    #[test]
    fn secret_url_hides_path_query_and_userinfo() {
        let url = Url::parse("https://user:pw@api.telegram.org:8443/bot123:ABC/sendMessage?x=tok")
            .expect("valid url");
        let secret = SecretUrl::new(url.clone());
        for shown in [format!("{secret}"), format!("{secret:?}")] {
            assert!(
                shown.contains("https://api.telegram.org:8443/[redacted]"),
                "{shown}"
            );
            for hidden in ["123:ABC", "tok", "pw", "user", "sendMessage"] {
                assert!(!shown.contains(hidden), "{shown} shows {hidden}");
            }
        }
        assert_eq!(secret.expose(), &url);
    }
}
