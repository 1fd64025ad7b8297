//! One HTTP exchange with a server: timeouts, the body size cap, status mapping and the
//! retry policy. Everything above this layer sees a successful answer's bytes (checked to
//! be JSON, not yet decoded) or typed `ApiError`s.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use super::error::{ApiError, ApiErrorKind, ApiResult};
use super::wire;
use crate::redact::Redactor;
use crate::secret::Secret;

/// How often and how patiently calls are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts for a GET that fails transiently (1 = no retry).
    pub get_attempts: u32,
    /// First backoff; doubles per attempt, with ±50 % jitter.
    pub base_delay: Duration,
    /// Ceiling for one backoff.
    pub max_delay: Duration,
    /// A 429 whose Retry-After is at most this is waited out and retried once, even for
    /// POST/DELETE; longer waits are left to the next run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            get_attempts: 3,
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(3),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Jittered exponential backoff before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exponential.min(self.max_delay);
        capped.mul_f64(0.5 + fastrand::f64())
    }

    /// The wait before trying again after `error`, or None to give up now.
    pub fn wait_before_retry(
        &self,
        error: &ApiErrorKind,
        idempotent: bool,
        attempt: u32,
    ) -> Option<Duration> {
        match error {
            // The real 2.x limiter sends no Retry-After and counts per minute: retrying
            // at once only spends more of the budget, so leave it to the next run.
            ApiErrorKind::RateLimited {
                retry_after: Some(after),
                ..
            } => {
                let limit = if idempotent { self.get_attempts } else { 2 };
                (*after <= self.max_retry_after && attempt < limit).then_some(*after)
            }
            ApiErrorKind::RateLimited {
                retry_after: None, ..
            } => None,
            kind if idempotent && kind.is_transient() && attempt < self.get_attempts => {
                Some(self.backoff(attempt))
            }
            _ => None,
        }
    }
}

/// What one exchange needs to know beyond method and URL.
pub struct Exchange<'a> {
    pub client: &'a reqwest::Client,
    pub api_key: &'a Secret,
    /// Blots every configured secret out of what the server answers.
    pub redactor: &'a Redactor,
    pub timeout: Duration,
    pub max_body_bytes: usize,
}

/// The successful answer of one exchange.
pub struct Answer {
    /// The body, checked to be well-formed JSON. Decoded by the caller straight into the
    /// type it needs (no generic JSON tree in between), then dropped.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first bytes of the body, secret-free, for "unconfirmed" reports. Made only
    /// when asked: most answers are decoded and dropped, and redacting every one of them
    /// cost a few percent of a per-key read.
    pub fn snippet(&self, redactor: &Redactor) -> String {
        snippet(&self.body, redactor)
    }
}

/// Perform one request, without retries.
pub async fn exchange(
    ex: &Exchange<'_>,
    method: Method,
    url: &reqwest::Url,
    endpoint: &str,
    body: Option<&Value>,
) -> ApiResult<Answer> {
    let fail = |kind| ApiError::new(endpoint, kind);
    let mut request = ex
        .client
        .request(method, url.clone())
        .timeout(ex.timeout)
        .header("X-API-Key", ex.api_key.expose())
        .header("Accept", "application/json");
    if let Some(body) = body {
        request = request.json(body);
    }
    let started = Instant::now();
    let response = request
        .send()
        .await
        .map_err(|err| fail(transport_kind(&err, ex.timeout)).redacted(ex.redactor))?;
    let status = response.status();
    let retry_after = retry_after(&response);
    let bytes = read_capped(response, ex.max_body_bytes)
        .await
        .map_err(|kind| fail(kind_for_body_error(kind, ex.timeout)).redacted(ex.redactor))?;
    tracing::debug!(
        endpoint,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        bytes = bytes.len(),
        "api call"
    );
    if status.is_success() {
        // A syntax check that allocates nothing: a garbled answer (proxy page, truncated
        // JSON) is a transient protocol error here, and the typed decoders above only meet
        // well-formed JSON, so anything they refuse is a permanent decode error.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => Ok(Answer { body: bytes }),
            Err(err) => {
                let snippet = snippet(&bytes, ex.redactor);
                Err(fail(protocol(status, &bytes, &err, snippet)).redacted(ex.redactor))
            }
        };
    }
    let snippet = snippet(&bytes, ex.redactor);
    let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
    // The server's own words may quote the request (a FastAPI validation error echoes
    // the headers it saw): redacted, on one line, and not endless.
    let detail = parsed
        .as_ref()
        .ok()
        .and_then(wire::error_detail)
        .map(|detail| one_line(&ex.redactor.redact(&detail), DETAIL_CHARS));
    let code = status.as_u16();
    let kind = match status {
        StatusCode::UNAUTHORIZED => ApiErrorKind::Unauthorized,
        StatusCode::TOO_MANY_REQUESTS => ApiErrorKind::RateLimited {
            retry_after,
            detail: detail.unwrap_or_else(|| "rate limit exceeded".into()),
        },
        StatusCode::NOT_FOUND => ApiErrorKind::NotFound {
            detail: detail.unwrap_or_else(|| "Not Found".into()),
        },
        _ => match (parsed, detail) {
            (Ok(_), Some(detail))
                if code == 400 && detail.to_ascii_lowercase().contains("not active") =>
            {
                ApiErrorKind::KeyInactive { detail }
            }
            (Ok(_), detail) => {
                let detail = detail.unwrap_or_else(|| snippet.clone());
                if status.is_server_error() {
                    ApiErrorKind::ServerError {
                        status: code,
                        detail,
                    }
                } else {
                    ApiErrorKind::Rejected {
                        status: code,
                        detail,
                    }
                }
            }
            (Err(err), _) => protocol(status, &bytes, &err, snippet),
        },
    };
    Err(fail(kind).redacted(ex.redactor))
}

fn transport_kind(err: &reqwest::Error, timeout: Duration) -> ApiErrorKind {
    if err.is_timeout() {
        return ApiErrorKind::Timeout { after: timeout };
    }
    // `without_url` keeps the message short; the endpoint is named by the caller.
    let mut reason = err_chain(err);
    if err.is_connect() && reason.is_empty() {
        reason = "connection failed".into();
    }
    ApiErrorKind::Unreachable { reason }
}

fn err_chain(err: &reqwest::Error) -> String {
    use std::error::Error;
    let mut parts = Vec::new();
    let mut source: Option<&dyn Error> = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(if err.is_connect() {
            "connection failed".into()
        } else {
            "request failed".into()
        });
    }
    parts.dedup();
    parts.join(": ")
}

enum BodyError {
    TooLarge(usize),
    Transport(reqwest::Error),
}

fn kind_for_body_error(err: BodyError, timeout: Duration) -> ApiErrorKind {
    match err {
        BodyError::TooLarge(limit_bytes) => ApiErrorKind::BodyTooLarge { limit_bytes },
        BodyError::Transport(err) if err.is_timeout() => ApiErrorKind::Timeout { after: timeout },
        BodyError::Transport(err) => ApiErrorKind::Unreachable {
            reason: format!("reading the answer: {}", err_chain(&err)),
        },
    }
}

/// Read the body, refusing to hold more than `limit` bytes in memory.
async fn read_capped(mut response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge(limit));
    }
    // Sized once from Content-Length when the server sends one (both generations do), so
    // a large answer is not copied through a series of doublings.
    let expected = response.content_length().unwrap_or(0) as usize;
    let mut body = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Retry-After in seconds or as an HTTP date.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn protocol(
    status: StatusCode,
    bytes: &[u8],
    err: &serde_json::Error,
    snippet: String,
) -> ApiErrorKind {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let reason = if bytes.is_empty() {
        "empty answer".to_string()
    } else if text.trim_start().starts_with('<') || text.contains("<html") {
        "an HTML page instead of JSON (a reverse proxy answered?)".to_string()
    } else if err.is_eof() {
        "truncated JSON".to_string()
    } else {
        format!("not JSON ({err})")
    };
    ApiErrorKind::Protocol {
        status: status.as_u16(),
        reason,
        snippet,
    }
}

/// Longest server `detail` kept in an error (a 5 MB error page is not a message).
pub const DETAIL_CHARS: usize = 300;

/// At most 160 characters of the body, on one line, with every configured secret
/// blotted out (proxies and error pages echo request headers back). The cut comes
/// after redaction, so half a secret is never left at the edge.
pub fn snippet(bytes: &[u8], redactor: &Redactor) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]);
    one_line(&redactor.redact(&text), 160)
}

/// Control characters to spaces, runs of whitespace to one, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let collapsed = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = collapsed.chars().take(max).collect();
    if collapsed.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_blots_out_the_key_and_shortens() {
        let key = Secret::new("s3cr3t-key");
        let body = format!(
            "<html>\n<body>bad gateway, header X-API-Key: {} {}</body>",
            key.expose(),
            "x".repeat(400)
        );
        let cut = snippet(body.as_bytes(), &Redactor::new([key.expose()]));
        assert!(!cut.contains("s3cr3t-key"));
        assert!(cut.contains("[redacted]"));
        assert!(cut.starts_with("<html> <body>bad gateway"));
        assert!(cut.chars().count() <= 161);
    }

    #[test]
    fn retry_policy_decisions() {
        let policy = RetryPolicy::default();
        let timeout = ApiErrorKind::Timeout {
            after: Duration::from_secs(1),
        };
        assert!(policy.wait_before_retry(&timeout, true, 1).is_some());
        assert!(
            policy.wait_before_retry(&timeout, true, 3).is_none(),
            "bounded"
        );
        assert!(
            policy.wait_before_retry(&timeout, false, 1).is_none(),
            "POST is not retried"
        );
        let limited = |secs| ApiErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
            detail: String::new(),
        };
        assert_eq!(
            policy.wait_before_retry(&limited(5), false, 1),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            policy.wait_before_retry(&limited(5), false, 2),
            None,
            "POST retried once only"
        );
        assert_eq!(
            policy.wait_before_retry(&limited(31), true, 1),
            None,
            "too long a wait"
        );
        let no_hint = ApiErrorKind::RateLimited {
            retry_after: None,
            detail: String::new(),
        };
        assert_eq!(policy.wait_before_retry(&no_hint, true, 1), None);
        let unauthorized = ApiErrorKind::Unauthorized;
        assert_eq!(policy.wait_before_retry(&unauthorized, true, 1), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
            ..Default::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(150),
                "{first:?}"
            );
            let later = policy.backoff(10);
            assert!(later <= Duration::from_millis(375), "{later:?}");
        }
    }
}
