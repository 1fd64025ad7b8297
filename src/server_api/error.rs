//! Errors of the API client. Every error knows whether it is transient (worth trying
//! again later: connect, timeout, 408, 429, 5xx, a garbled answer from a proxy) or
//! permanent (401, 404, other 4xx, an answer of the wrong shape). Messages name the
//! endpoint and never contain the API key.

use std::time::Duration;

use crate::redact::Redactor;

/// What went wrong, without where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiErrorKind {
    #[error("unreachable: {reason}")]
    Unreachable { reason: String },
    #[error("no answer within {}", humantime::format_duration(*after))]
    Timeout { after: Duration },
    #[error(
        "unauthorized (401): the server rejected the API key; check the server's api_key setting"
    )]
    Unauthorized,
    #[error("not found (404): {detail}")]
    NotFound { detail: String },
    #[error("key is not active (400): {detail}")]
    KeyInactive { detail: String },
    #[error("rate limited (429){}: {detail}", retry_after_text(retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    #[error("server error ({status}): {detail}")]
    ServerError { status: u16, detail: String },
    #[error("request rejected ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("not a valid API answer (HTTP {status}): {reason}; the answer began with {snippet:?}")]
    Protocol {
        status: u16,
        reason: String,
        snippet: String,
    },
    #[error("unexpected answer: {reason}")]
    Decode { reason: String },
    #[error("answer larger than the {limit_bytes}-byte limit")]
    BodyTooLarge { limit_bytes: usize },
    #[error("the server answered 200 without confirming the action: {snippet:?}")]
    Unconfirmed { snippet: String },
    #[error("client setup failed: {reason}")]
    Setup { reason: String },
    #[error(
        "not sent: {value:?} names several keys on this server (a shared id or uuid), so the call could reach the wrong key"
    )]
    AmbiguousKey { value: String },
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(after) => format!(", retry after {}", humantime::format_duration(*after)),
        None => String::new(),
    }
}

impl ApiErrorKind {
    /// Worth trying again later (a GET now, a POST on the next run).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiErrorKind::Unreachable { .. }
            | ApiErrorKind::Timeout { .. }
            | ApiErrorKind::RateLimited { .. }
            | ApiErrorKind::ServerError { .. } => true,
            // An HTML page from a proxy or a cut-off body: the network or proxy, not the API.
            ApiErrorKind::Protocol { status, .. } => {
                *status >= 500 || *status == 408 || *status == 200
            }
            ApiErrorKind::Rejected { status, .. } => *status == 408,
            ApiErrorKind::Unauthorized
            | ApiErrorKind::NotFound { .. }
            | ApiErrorKind::KeyInactive { .. }
            | ApiErrorKind::Decode { .. }
            | ApiErrorKind::BodyTooLarge { .. }
            | ApiErrorKind::Unconfirmed { .. }
            | ApiErrorKind::Setup { .. }
            | ApiErrorKind::AmbiguousKey { .. } => false,
        }
    }

    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ApiErrorKind::Unreachable { .. } => "unreachable",
            ApiErrorKind::Timeout { .. } => "timeout",
            ApiErrorKind::Unauthorized => "unauthorized",
            ApiErrorKind::NotFound { .. } => "not_found",
            ApiErrorKind::KeyInactive { .. } => "key_inactive",
            ApiErrorKind::RateLimited { .. } => "rate_limited",
            ApiErrorKind::ServerError { .. } => "server_error",
            ApiErrorKind::Rejected { .. } => "rejected",
            ApiErrorKind::Protocol { .. } => "protocol",
            ApiErrorKind::Decode { .. } => "decode",
            ApiErrorKind::BodyTooLarge { .. } => "body_too_large",
            ApiErrorKind::Unconfirmed { .. } => "unconfirmed",
            ApiErrorKind::Setup { .. } => "setup",
            ApiErrorKind::AmbiguousKey { .. } => "ambiguous_key",
        }
    }
}

/// An error of one call: where (`GET /api/keys`) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {kind}")]
pub struct ApiError {
    /// Method and path, e.g. `POST /api/system/sync-config`.
    pub endpoint: String,
    pub kind: ApiErrorKind,
}

impl ApiError {
    pub fn new(endpoint: impl Into<String>, kind: ApiErrorKind) -> ApiError {
        ApiError {
            endpoint: endpoint.into(),
            kind,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ApiErrorKind::NotFound { .. })
    }

    /// The same error with every configured secret blotted out of each text in it
    /// (server details, body snippets, decode messages that quote a value).
    pub fn redacted(self, redactor: &Redactor) -> ApiError {
        if redactor.is_empty() {
            return self;
        }
        let clean = |text: String| redactor.clean(&text);
        let kind = match self.kind {
            ApiErrorKind::Unreachable { reason } => ApiErrorKind::Unreachable {
                reason: clean(reason),
            },
            ApiErrorKind::NotFound { detail } => ApiErrorKind::NotFound {
                detail: clean(detail),
            },
            ApiErrorKind::KeyInactive { detail } => ApiErrorKind::KeyInactive {
                detail: clean(detail),
            },
            ApiErrorKind::RateLimited {
                retry_after,
                detail,
            } => ApiErrorKind::RateLimited {
                retry_after,
                detail: clean(detail),
            },
            ApiErrorKind::ServerError { status, detail } => ApiErrorKind::ServerError {
                status,
                detail: clean(detail),
            },
            ApiErrorKind::Rejected { status, detail } => ApiErrorKind::Rejected {
                status,
                detail: clean(detail),
            },
            ApiErrorKind::Protocol {
                status,
                reason,
                snippet,
            } => ApiErrorKind::Protocol {
                status,
                reason: clean(reason),
                snippet: clean(snippet),
            },
            ApiErrorKind::Decode { reason } => ApiErrorKind::Decode {
                reason: clean(reason),
            },
            ApiErrorKind::Unconfirmed { snippet } => ApiErrorKind::Unconfirmed {
                snippet: clean(snippet),
            },
            ApiErrorKind::Setup { reason } => ApiErrorKind::Setup {
                reason: clean(reason),
            },
            ApiErrorKind::AmbiguousKey { value } => ApiErrorKind::AmbiguousKey {
                value: clean(value),
            },
            kind @ (ApiErrorKind::Timeout { .. }
            | ApiErrorKind::Unauthorized
            | ApiErrorKind::BodyTooLarge { .. }) => kind,
        };
        ApiError {
            endpoint: clean(self.endpoint),
            kind,
        }
    }

    /// The server's own text for a 5xx/4xx answer, when it gave one.
    pub fn server_detail(&self) -> Option<&str> {
        match &self.kind {
            ApiErrorKind::NotFound { detail }
            | ApiErrorKind::KeyInactive { detail }
            | ApiErrorKind::RateLimited { detail, .. }
            | ApiErrorKind::ServerError { detail, .. }
            | ApiErrorKind::Rejected { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

/// Shorthand for client results.
pub type ApiResult<T> = Result<T, ApiError>;
