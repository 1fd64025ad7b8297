//! The one place that blots configured secrets out of text that came from outside: a
//! server's error answer (JSON `detail`, an HTML page, a serde message quoting a value),
//! an SMTP reply, a receiver's error. Servers and proxies echo requests back, sometimes
//! encoded, so each secret is matched in every form it travels in: as written, base64
//! (standard and URL-safe, padded or not, at any byte offset inside a longer encoded
//! blob, which covers `AUTH PLAIN`'s `\0user\0password`), percent-encoded (either hex
//! case, `+` for spaces), JSON- and HTML-escaped.
//!
//! The API client runs every error text through its `Redactor` before the error leaves
//! the client, and the alert sinks do the same with what SMTP servers and webhook
//! receivers answer; everything downstream (logs, `job_runs`, findings, the audit log,
//! alert states and bodies, the outbox, command output) only ever sees redacted text.
//! Nothing here decides anything; it only rewrites text.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::config::Config;
use crate::secret::Secret;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not matched: replacing every "abc" in an error
/// message would shred it, and no real API key, password or token is that short.
pub const MIN_SECRET_LEN: usize = 4;

/// Base64 fragments shorter than this are not matched (too many false hits).
const MIN_FRAGMENT_LEN: usize = 8;

/// Blots secrets out of text. Cheap to clone behind an `Arc`; empty redacts nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Every form of every secret, longest first, so a whole encoding is replaced
    /// before any shorter form inside it.
    patterns: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} patterns)", self.patterns.len())
    }
}

impl Redactor {
    /// A redactor for these secret values.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut redactor = Redactor::default();
        redactor.extend(secrets);
        redactor
    }

    /// Add more secret values.
    pub fn extend<'a>(&mut self, secrets: impl IntoIterator<Item = &'a str>) {
        for secret in secrets {
            if secret.chars().count() >= MIN_SECRET_LEN {
                self.patterns.extend(forms(secret));
            }
        }
        self.patterns
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.patterns.dedup();
    }

    /// Every secret of the configuration: API keys, SMTP passwords, signing secrets,
    /// header values, Slack bot tokens, and the token-like parts of webhook and
    /// heartbeat URLs.
    pub fn from_config(config: &Config) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        let mut add = |secret: &Secret| secrets.push(secret.expose().to_owned());
        for server in &config.servers {
            add(&server.api_key);
        }
        let alerts = &config.alerts;
        for sink in &alerts.email {
            if let Some(password) = &sink.password {
                add(password);
            }
        }
        for sink in &alerts.webhook {
            if let Some(secret) = &sink.secret {
                add(secret);
            }
            for (_, value) in &sink.headers {
                add(value);
            }
            if let Some(upload) = &sink.slack_upload {
                add(&upload.token);
            }
        }
        for sink in &alerts.webhook {
            for (_, value) in &sink.headers {
                // "Bearer <token>": the token alone too.
                secrets.extend(value.expose().split_whitespace().map(str::to_owned));
            }
            secrets.extend(url_tokens(sink.url.expose()));
        }
        if let Some(url) = &alerts.heartbeat_url {
            secrets.extend(url_tokens(url.expose()));
        }
        if let Some(pg) = config.store.postgres() {
            secrets.extend(pg.secrets());
        }
        Redactor::new(secrets.iter().map(String::as_str))
    }

    /// The text with every form of every secret replaced by `[redacted]`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for pattern in &self.patterns {
            if out.contains(pattern.as_str()) {
                out = Cow::Owned(out.replace(pattern.as_str(), REDACTED));
            }
        }
        out
    }

    /// `redact`, owned.
    pub fn clean(&self, text: &str) -> String {
        self.redact(text).into_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Path segments and query values of a URL that look like tokens (Telegram's
/// `bot123:ABC`, Slack's `T0000/B0000/XXXX`, a heartbeat uuid): at least 8 characters
/// with a digit. Plain words such as `api` or `sendMessage` are left, or every
/// `GET /api/keys` in an error would turn to mush.
fn url_tokens(url: &reqwest::Url) -> Vec<String> {
    let token_like =
        |part: &str| part.chars().count() >= 8 && part.chars().any(|c| c.is_ascii_digit());
    let mut tokens: Vec<String> = url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|segment| token_like(segment))
        .map(str::to_owned)
        .collect();
    tokens.extend(
        url.query_pairs()
            .map(|(_, value)| value.into_owned())
            .filter(|value| token_like(value)),
    );
    tokens.extend(url.password().map(str::to_owned));
    tokens
}

/// Every form a secret may be echoed in.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    out.extend(percent_forms(secret));
    if let Ok(json) = serde_json::to_string(secret) {
        out.push(json[1..json.len() - 1].to_owned());
    }
    out.push(html_escape(secret));
    out.extend(base64_forms(secret.as_bytes()));
    out.retain(|form| !form.is_empty());
    out
}

fn percent_forms(secret: &str) -> Vec<String> {
    // Everything but unreserved characters encoded (what a client does to a path
    // segment or a query value), and the looser form that leaves `:@!$'()*,;` alone.
    const ALL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    const LOOSE: &percent_encoding::AsciiSet = &ALL
        .remove(b':')
        .remove(b'@')
        .remove(b'!')
        .remove(b'$')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')')
        .remove(b'*')
        .remove(b',')
        .remove(b';');
    let mut out = Vec::new();
    // And the strictest, which encodes `-._~` too.
    for set in [ALL, LOOSE, percent_encoding::NON_ALPHANUMERIC] {
        let upper = percent_encoding::utf8_percent_encode(secret, set).to_string();
        out.push(lower_hex(&upper));
        out.push(upper.replace("%20", "+"));
        out.push(upper);
    }
    out
}

/// `%2F` -> `%2f`: some encoders write lower-case hex.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for hex in chars.by_ref().take(2) {
                out.push(hex.to_ascii_lowercase());
            }
        }
    }
    out
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The secret's base64 forms: whole (padded or not, both alphabets), and the part of
/// its encoding that does not depend on its neighbours when it sits at byte offset 0,
/// 1 or 2 (mod 3) inside a longer encoded blob (`Basic user:password`, `AUTH PLAIN`).
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        out.push(engine.encode(secret));
    }
    let bits = secret.len() * 8;
    for offset in 0..3usize {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(secret);
        let start_bit = offset * 8;
        // Characters whose six bits all come from the secret.
        let first = start_bit.div_ceil(6);
        let end = (start_bit + bits) / 6;
        if end <= first || end - first < MIN_FRAGMENT_LEN {
            continue;
        }
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            out.push(encoded[first..end].to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "kw-Secret/Key+42 with space";

    fn redacted(text: &str) -> String {
        Redactor::new([KEY]).clean(text)
    }

    #[test]
    fn plain_json_html_and_url_forms_are_blotted_out() {
        let json = serde_json::to_string(&format!("x{KEY}\"")).unwrap();
        let cases = [
            format!("detail: key={KEY}!"),
            format!("echo {json}"),
            format!("<p>{}</p>", html_escape(KEY)),
            format!(
                "GET /x?k={}",
                percent_encoding::utf8_percent_encode(KEY, percent_encoding::NON_ALPHANUMERIC)
            ),
            format!(
                "GET /x?k={}",
                lower_hex("kw-Secret%2FKey%2B42%20with%20space")
            ),
            "form k=kw-Secret%2FKey%2B42+with+space".to_owned(),
        ];
        for text in cases {
            let out = redacted(&text);
            assert!(out.contains(REDACTED), "{text} -> {out}");
            assert!(!out.contains("Secret"), "{text} -> {out}");
        }
    }

    #[test]
    fn base64_at_every_offset_in_a_longer_blob() {
        for prefix in ["", "u", "us", "use", "\0user\0"] {
            let blob = format!("{prefix}{KEY}tail");
            for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
                let encoded = engine.encode(blob.as_bytes());
                let text = format!("454 4.7.0 auth failed: {encoded}");
                let out = redacted(&text);
                assert!(out.contains(REDACTED), "{prefix:?}: {out}");
                // Left of the blob: the neighbours' characters and at most one
                // character at each edge that mixes their bits with the secret's.
                let left = out.len() - REDACTED.len() - "454 4.7.0 auth failed: ".len();
                let most =
                    (prefix.len() * 8).div_ceil(6) + 1 + ("tail".len() * 8).div_ceil(6) + 1 + 2;
                assert!(left <= most, "{prefix:?}: {left} characters left: {out}");
            }
        }
        let whole = STANDARD.encode(KEY);
        assert_eq!(redacted(&format!("b64={whole}")), "b64=[redacted]");
    }

    #[test]
    fn short_values_and_empty_redactors_change_nothing() {
        let redactor = Redactor::new(["abc", ""]);
        assert!(redactor.is_empty());
        assert_eq!(redactor.redact("abc abc"), "abc abc");
        assert!(matches!(
            Redactor::default().redact("anything"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn the_config_redactor_knows_every_secret_but_spares_plain_url_words() {
        let text = r#"
[[servers]]
name = "a"
url = "http://127.0.0.1:1/api"
api_key = "server-key-aaaa"
[[alerts.email]]
name = "m"
host = "127.0.0.1"
security = "none"
username = "u"
password = "smtp-pass-bbbb"
from = "a@example.net"
to = ["b@example.net"]
[[alerts.webhook]]
name = "t"
format = "telegram"
chat_id = "1"
url = "https://api.telegram.org/bot123456:tok-cccc/sendMessage"
[[alerts.webhook]]
name = "j"
url = "https://hooks.example.net/hook"
secret = "hmac-dddd"
headers = { Authorization = "Bearer hdr-token-eeee" }
[alerts]
heartbeat_url = "https://hc-ping.com/0f8e1c2a-5b6d-4e7f"
"#;
        let config = crate::config::from_str_with_env(text, "/t/a.toml".as_ref(), &|_| None)
            .expect("valid")
            .config;
        let redactor = Redactor::from_config(&config);
        for secret in [
            "server-key-aaaa",
            "smtp-pass-bbbb",
            "bot123456:tok-cccc",
            "hmac-dddd",
            "hdr-token-eeee",
            "0f8e1c2a-5b6d-4e7f",
        ] {
            assert_eq!(redactor.clean(&format!("<{secret}>")), "<[redacted]>");
        }
        assert_eq!(
            redactor.clean("GET /api/keys sendMessage hook"),
            "GET /api/keys sendMessage hook"
        );
    }
}
