//! Configuration: raw TOML structs, pure validation into a typed `Config`, secrets.
//! Loading happens in three passes so that an operator sees every problem at once:
//! the spanned TOML tree (all syntax errors, all unknown keys), serde into `raw` (type
//! errors, with the key path recovered from the span), then `validate` (all semantic errors).
//! This module never decides what a job does; it only guarantees the values are sane.

mod alerts;
mod document;
mod error;
mod quota;
pub mod raw;
mod reports;
mod retention;
mod schedule;
mod shape;
mod store;
pub mod summary;
mod types;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};

pub use alerts::{
    AlertsConfig, EmailSinkConfig, SecretUrl, Severity, SlackUpload, SmtpSecurity, WebhookFormat,
    WebhookSinkConfig,
};
pub use error::{ConfigErrors, ConfigProblem};
pub use quota::{AdoptMode, KeyMatcher, OnExceed, Period, QuotaPolicy, QuotaRule, QuotasConfig};
pub use reports::{ReportPeriodKind, ReportsConfig};
pub use retention::RetentionConfig;
pub use schedule::Schedule;
pub use store::{PgConfig, SslMode, StoreChoice, check_url, default_agent_name};
pub use types::{
    AgentConfig, Config, ConfigSyncJobConfig, CounterResets, DataplaneJobConfig, HealthJobConfig,
    JobKind, JobsConfig, QuotaJobConfig, RealityJobConfig, SecretSource, ServerConfig,
};
pub use validate::EnvLookup;
pub use validate::defaults;

use error::{Issue, Locator};

/// A valid configuration and the warnings found while checking it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Each formatted like a problem: `file:line:column: key.path: message`.
    pub warnings: Vec<String>,
}

/// The largest configuration file read (a real one is a few KiB; `-c /dev/urandom`
/// must not grow the process to gigabytes).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Read, parse and validate the file at `path`, with secrets from the real environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = read_text(path)?;
    let env = |name: &str| std::env::var(name).ok();
    let (mut loaded, inline_secrets) = load_text(&text, path, &env)?;
    if let Some(warning) = file_mode_warning(path, &inline_secrets) {
        loaded.warnings.push(warning);
    }
    Ok(loaded)
}

/// The file's text: at most `MAX_CONFIG_BYTES`, and UTF-8 (the problem says where not).
pub fn read_text(path: &Path) -> Result<String, ConfigErrors> {
    use std::io::Read;

    let problem = |line: Option<(usize, usize)>, message: String| ConfigErrors {
        problems: vec![ConfigProblem {
            file: path.to_path_buf(),
            line: line.map(|(line, _)| line),
            column: line.map(|(_, column)| column),
            path: String::new(),
            message,
        }],
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|err| {
            problem(
                None,
                format!(
                    "cannot read the configuration file: {err} (point at another file with -c/--config or KEYWARDEN_CONFIG)"
                ),
            )
        })?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(problem(
            None,
            format!(
                "the file is larger than {} KiB: not a keywarden configuration (a real one is a few KiB)",
                MAX_CONFIG_BYTES >> 10
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = err.utf8_error().valid_up_to();
        let bytes = err.as_bytes();
        let text = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let place = error::LineIndex::new(text).line_column(valid);
        problem(
            Some(place),
            format!(
                "not UTF-8: byte 0x{:02x} cannot start a character here (save the file as UTF-8)",
                bytes[valid]
            ),
        )
    })
}

/// Parse and validate `text` as if read from `origin` (used in messages and to resolve
/// relative `*_file` paths), with secrets from the real environment.
pub fn from_str(text: &str, origin: &Path) -> Result<Loaded, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    from_str_with_env(text, origin, &env)
}

/// Like [`from_str`], with `*_env` variables looked up through `env` (tests pass a map, so
/// they never touch the process environment, which parallel tests share).
pub fn from_str_with_env(
    text: &str,
    origin: &Path,
    env: EnvLookup<'_>,
) -> Result<Loaded, ConfigErrors> {
    load_text(text, origin, env).map(|(loaded, _)| loaded)
}

fn load_text(
    text: &str,
    origin: &Path,
    env: EnvLookup<'_>,
) -> Result<(Loaded, Vec<String>), ConfigErrors> {
    let locator = Locator::new(text, origin);
    let doc = document::parse(text).map_err(|issues| locator.errors(issues))?;
    // Unknown keys and values of the wrong type, all at once (serde stops at the first).
    let mut issues = document::unknown_keys(doc.get_ref());
    issues.extend(shape::type_errors(doc.get_ref()));
    if !issues.is_empty() {
        return Err(locator.errors(issues));
    }
    let raw: raw::RawConfig = toml::from_str(text).map_err(|err| {
        let path = err
            .span()
            .map(|span| document::path_at(doc.get_ref(), span.start))
            .unwrap_or_default();
        locator.errors(vec![Issue::new(
            err.span(),
            path,
            toml_words(&without_values(err.message())),
        )])
    })?;
    let base_dir = base_dir(origin);
    let validated =
        validate::validate(&raw, text, &base_dir, env).map_err(|issues| locator.errors(issues))?;
    let mut warnings = validated.warnings;
    warnings.sort_by_key(|issue| issue.span.as_ref().map_or(usize::MAX, |span| span.start));
    let warnings = warnings
        .into_iter()
        .map(|issue| locator.problem(issue).to_string())
        .collect();
    let loaded = Loaded {
        config: validated.config,
        warnings,
    };
    Ok((loaded, validated.inline_secrets))
}

/// serde quotes the value it refused (`invalid type: integer `987654321012``), which
/// may be a secret in the wrong place: keep the words, drop the value. (The type pass
/// above catches wrong types first; this covers whatever serde still refuses.)
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    // Odd parts are quoted values.
    for (index, part) in parts.enumerate() {
        if index % 2 == 1 {
            out.push_str(part);
        }
    }
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
}

/// serde speaks Rust ("i64", "sequence", "map"); operators read TOML.
fn toml_words(message: &str) -> String {
    message
        .replace("expected i64", "expected a whole number")
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
}

/// Directory that relative paths in the file are relative to.
fn base_dir(origin: &Path) -> PathBuf {
    let dir = origin.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A file holding secrets should not be readable by anyone but its owner.
#[cfg(unix)]
fn file_mode_warning(path: &Path, inline_secrets: &[String]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;

    if inline_secrets.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    // Keys, passwords and signing secrets have *_env alternatives; URLs and headers do not.
    let movable = inline_secrets.iter().any(|key| {
        [".api_key", ".password", ".secret"]
            .iter()
            .any(|end| key.ends_with(end))
    });
    let alternative = if movable {
        ", or move api_key/password/secret values to *_env variables"
    } else {
        ""
    };
    Some(format!(
        "{}: holds secrets inline ({}) and is readable by group or others (mode {mode:04o}): run `chmod 600 {}`{alternative}",
        path.display(),
        inline_secrets.join(", "),
        path.display()
    ))
}

#[cfg(not(unix))]
fn file_mode_warning(_path: &Path, _inline_secrets: &[String]) -> Option<String> {
    None
}
