//! The webhook sink: POST a json (optionally HMAC-signed), Slack or Telegram body.
//! 2xx is delivered; 408, 429 (honouring Retry-After) and 5xx are transient; other
//! statuses are permanent. Redirects are not followed (they would carry our headers
//! elsewhere). Error texts never contain the URL (Slack and Telegram put tokens there).
//!
//! Longer than 400 lines on purpose (about 40 of them tests): the four body formats share
//! one sender, its retry classification and its redaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::{SendError, SinkError};
use crate::alert::model::Message;
use crate::alert::render::{chat, json};
use crate::config::{WebhookFormat, WebhookSinkConfig};
use crate::redact::Redactor;
use crate::server_api::HttpClients;

/// The most a Retry-After is honoured for (a receiver asking for a day is broken).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct WebhookSink {
    pub config: WebhookSinkConfig,
    client: reqwest::Client,
    headers: HeaderMap,
    tz: Tz,
    /// Texts that must not appear in errors: URL path segments and query values,
    /// header values, the signing secret.
    redactor: Redactor,
}

impl WebhookSink {
    /// A sink posting through `clients`' notification client (shared by every webhook
    /// sink and the heartbeat: one root store, one connection pool).
    pub fn new(
        config: &WebhookSinkConfig,
        tz: Tz,
        clients: &HttpClients,
    ) -> Result<WebhookSink, SinkError> {
        let fail = |reason: String| SinkError {
            sink: config.name.clone(),
            reason,
        };
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| fail(format!("invalid header name {name:?}")))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| fail(format!("invalid value of header {name}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        for (_, value) in &config.headers {
            // "Bearer <token>": the token alone too.
            secrets.push(value.expose().to_string());
            secrets.extend(value.expose().split_whitespace().map(str::to_string));
        }
        secrets.extend(config.secret.iter().map(|s| s.expose().to_string()));
        let url = config.url.expose();
        secrets.extend(
            url.path_segments()
                .into_iter()
                .flatten()
                .map(str::to_string),
        );
        secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        secrets.extend(url.password().map(str::to_string));
        secrets.extend(
            config
                .slack_upload
                .iter()
                .map(|u| u.token.expose().to_string()),
        );
        let redactor = Redactor::new(secrets.iter().map(String::as_str));
        let client = clients
            .notifications()
            .map_err(|error| fail(format!("HTTP client: {error}")))?;
        Ok(WebhookSink {
            config: config.clone(),
            client,
            headers,
            tz,
            redactor,
        })
    }

    /// How many calls a message takes (Telegram splits long ones).
    pub fn calls(&self, message: &Message) -> u32 {
        match self.config.format {
            WebhookFormat::Telegram => {
                chat::telegram_texts(message, self.tz, chat::TELEGRAM_LIMIT).len() as u32
            }
            _ => 1,
        }
        .max(1)
    }

    /// The bodies to POST, in order, each with its extra headers.
    pub fn bodies(&self, message: &Message, sent_at: DateTime<Utc>) -> Vec<(Vec<u8>, HeaderMap)> {
        match self.config.format {
            WebhookFormat::Json => {
                let body = json::to_bytes(message, sent_at);
                let mut headers = HeaderMap::new();
                if let Some(secret) = &self.config.secret {
                    let timestamp = sent_at.timestamp();
                    let signature = json::signature(secret.expose().as_bytes(), timestamp, &body);
                    headers.insert("x-keywarden-timestamp", HeaderValue::from(timestamp));
                    if let Ok(value) = HeaderValue::from_str(&signature) {
                        headers.insert("x-keywarden-signature", value);
                    }
                }
                vec![(body, headers)]
            }
            WebhookFormat::Slack => vec![(
                serde_json::to_vec(&chat::slack(message, self.tz)).unwrap_or_default(),
                HeaderMap::new(),
            )],
            WebhookFormat::Telegram => {
                let chat_id = self.config.chat_id.as_deref().unwrap_or_default();
                chat::telegram(message, self.tz, chat_id)
                    .iter()
                    .map(|body| {
                        (
                            serde_json::to_vec(body).unwrap_or_default(),
                            HeaderMap::new(),
                        )
                    })
                    .collect()
            }
        }
    }

    /// A POST bounded by the sink's timeout (the shared client has none of its own).
    fn post_to(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.client.post(url).timeout(self.config.timeout)
    }

    pub async fn send(&self, message: &Message, sent_at: DateTime<Utc>) -> Result<(), SendError> {
        for (body, extra) in self.bodies(message, sent_at) {
            self.post(body, extra).await?;
        }
        Ok(())
    }

    async fn post(&self, body: Vec<u8>, extra: HeaderMap) -> Result<(), SendError> {
        let response = self
            .post_to(self.config.url.expose().clone())
            .header(CONTENT_TYPE, "application/json")
            .headers(self.headers.clone())
            .headers(extra)
            .body(body)
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        // Only the status: a response body may quote what we sent (tokens, headers).
        let error = self.redactor.clean(&format!("HTTP {status}"));
        Err(classify(status, error, retry_after))
    }

    fn transport_error(&self, error: reqwest::Error) -> SendError {
        let permanent = error.is_builder();
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let text = self.redactor.clean(&format!("http: {text}"));
        if permanent {
            SendError::permanent(text)
        } else {
            SendError::transient(text)
        }
    }
}

/// Where Slack's Web API is (tests point it at a loopback receiver).
pub const SLACK_API: &str = "https://slack.com/api/";

impl WebhookSink {
    /// POST a JSON document to the configured URL, HMAC-signed like alerts when the sink
    /// has a secret (json format).
    pub async fn post_document(
        &self,
        body: Vec<u8>,
        sent_at: DateTime<Utc>,
    ) -> Result<(), SendError> {
        let mut headers = HeaderMap::new();
        if let Some(secret) = &self.config.secret {
            let timestamp = sent_at.timestamp();
            let signature = json::signature(secret.expose().as_bytes(), timestamp, &body);
            headers.insert("x-keywarden-timestamp", HeaderValue::from(timestamp));
            if let Ok(value) = HeaderValue::from_str(&signature) {
                headers.insert("x-keywarden-signature", value);
            }
        }
        self.post(body, headers).await
    }

    /// Telegram: `sendPhoto` beside the configured `sendMessage` URL (same bot), as
    /// multipart/form-data with the chat id, a plain-text caption and the image.
    pub async fn telegram_photo(
        &self,
        file_name: &str,
        mime_type: &str,
        bytes: Vec<u8>,
        caption: &str,
    ) -> Result<(), SendError> {
        let mut url = self.config.url.expose().clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop().push("sendPhoto");
        }
        let photo = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str(mime_type)
            .map_err(|e| SendError::permanent(format!("image type: {}", e.without_url())))?;
        let form = reqwest::multipart::Form::new()
            .text("chat_id", self.config.chat_id.clone().unwrap_or_default())
            .text("caption", caption.to_string())
            .part("photo", photo);
        let response = self
            .post_to(url)
            .headers(self.headers.clone())
            .multipart(form)
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        self.check(response).await.map(drop)
    }

    /// Slack: upload a file to `channel` with the bot token (files.getUploadURLExternal,
    /// the upload, files.completeUploadExternal). Slack answers 200 with `ok: false` on
    /// errors; those are permanent (a wrong token or channel does not heal).
    pub async fn slack_upload(
        &self,
        api: &reqwest::Url,
        file_name: &str,
        bytes: Vec<u8>,
        title: &str,
        comment: &str,
    ) -> Result<(), SendError> {
        let Some(upload) = &self.config.slack_upload else {
            return Err(SendError::permanent("no slack_token configured"));
        };
        let bearer = format!("Bearer {}", upload.token.expose());
        let mut auth = HeaderValue::from_str(&bearer)
            .map_err(|_| SendError::permanent("the Slack token is not a valid header value"))?;
        auth.set_sensitive(true);
        let endpoint = |method: &str| {
            api.join(method)
                .map_err(|e| SendError::permanent(format!("Slack API URL: {e}")))
        };
        // Slack takes a method's arguments in the query string as well as in a form body.
        let mut get_url = endpoint("files.getUploadURLExternal")?;
        get_url
            .query_pairs_mut()
            .append_pair("filename", file_name)
            .append_pair("length", &bytes.len().to_string());
        let response = self
            .post_to(get_url)
            .header(reqwest::header::AUTHORIZATION, auth.clone())
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        let answer = slack_ok(self.check(response).await?)?;
        let (Some(upload_url), Some(file_id)) =
            (answer["upload_url"].as_str(), answer["file_id"].as_str())
        else {
            return Err(SendError::permanent(
                "slack: no upload_url or file_id in the answer",
            ));
        };
        let response = self
            .post_to(upload_url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        self.check(response).await?;
        let complete = serde_json::json!({
            "files": [{ "id": file_id, "title": title }],
            "channel_id": upload.channel,
            "initial_comment": comment,
        });
        let response = self
            .post_to(endpoint("files.completeUploadExternal")?)
            .header(reqwest::header::AUTHORIZATION, auth)
            .json(&complete)
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        slack_ok(self.check(response).await?).map(drop)
    }

    /// A 2xx answer's body, or the error (status only, scrubbed).
    async fn check(&self, response: reqwest::Response) -> Result<Vec<u8>, SendError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        let error = self.redactor.clean(&format!("HTTP {status}"));
        Err(classify(status, error, retry_after))
    }
}

/// Slack's `{"ok": true, ...}`, or its error code as a permanent failure.
fn slack_ok(body: Vec<u8>) -> Result<serde_json::Value, SendError> {
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| SendError::transient("slack: the answer is not JSON"))?;
    if answer["ok"].as_bool() == Some(true) {
        return Ok(answer);
    }
    // Slack's error codes are fixed words (invalid_auth, channel_not_found): safe to show.
    let code: String = answer["error"]
        .as_str()
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(60)
        .collect();
    Err(SendError::permanent(format!("slack: {code}")))
}

/// 2xx aside: 408, 429 and 5xx are worth retrying, the rest is not.
pub fn classify(status: StatusCode, error: String, retry_after: Option<Duration>) -> SendError {
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        SendError::Transient { error, retry_after }
    } else {
        SendError::Permanent { error }
    }
}

/// Retry-After as seconds or an HTTP date, capped at `MAX_RETRY_AFTER`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value)
                .ok()?
                .with_timezone(&Utc);
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn statuses_and_retry_after() {
        let s = |code: u16| StatusCode::from_u16(code).unwrap();
        for code in [408, 429, 500, 502, 503] {
            assert!(matches!(
                classify(s(code), String::new(), None),
                SendError::Transient { .. }
            ));
        }
        for code in [301, 400, 401, 403, 404, 410, 413] {
            assert!(matches!(
                classify(s(code), String::new(), None),
                SendError::Permanent { .. }
            ));
        }
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_lose_the_url_tokens() {
        let redactor = Redactor::new(["bot123:ABC", "sendMessage"]);
        assert_eq!(
            redactor.clean("POST /bot123:ABC/sendMessage failed"),
            "POST /[redacted]/[redacted] failed"
        );
    }
}
