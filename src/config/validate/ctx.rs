//! The validation context: collects problems and warnings (never stops at the first) and
//! turns raw spanned fields into typed values, falling back to defaults after an error so
//! the rest of the file is still checked.
//!
//! Longer than 400 lines on purpose: one checker per kind of value (sizes, durations,
//! schedules, URLs, secrets, bounds), sharing the problem list and the spans.

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::super::error::{Issue, LineIndex};
use super::super::raw::NumOrStr;
use super::super::schedule::Schedule;
use super::super::types::SecretSource;
use super::super::units;
use crate::secret::Secret;

/// Reads an environment variable; injectable so tests never touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Ctx<'a> {
    /// The file's lines, to name the line of an earlier definition in messages.
    pub lines: LineIndex<'a>,
    /// Relative `*_file`, `ca_file` and `state_dir` paths are relative to this directory.
    pub base_dir: &'a Path,
    pub env: EnvLookup<'a>,
    pub problems: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Key paths of secrets written in the file itself (for the file-mode warning).
    pub inline_secrets: Vec<String>,
}

/// `prefix.key`, or `key` at the top level.
pub(crate) fn at(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(crate) fn span_of<T>(field: &Spanned<T>) -> Option<Range<usize>> {
    Some(field.span())
}

/// The longest value a duration may have: a longer one is a typo, and past a point it
/// overflows the time arithmetic (a grace of 10^14 days wrapped to "now").
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxDuration {
    pub max: Duration,
    /// How the limit is written in messages and docs.
    pub shown: &'static str,
}

pub(crate) const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// Timeouts of reads and of sink deliveries.
pub(crate) const MAX_TIMEOUT: MaxDuration = MaxDuration {
    max: Duration::from_secs(300),
    shown: "5m",
};
/// Timeouts of sync, reset and delete calls (a sync restarts Xray).
pub(crate) const MAX_ACTION_TIMEOUT: MaxDuration = MaxDuration {
    max: Duration::from_secs(1800),
    shown: "30m",
};
/// How long new alerts are collected before they go out.
pub(crate) const MAX_GROUP_WAIT: MaxDuration = MaxDuration {
    max: Duration::from_secs(3600),
    shown: "1h",
};
/// Repeat intervals and the outbox's max_age.
pub(crate) const MAX_ALERT_INTERVAL: MaxDuration = MaxDuration {
    max: days(365),
    shown: "365d",
};
/// How long the store keeps its history.
pub(crate) const MAX_RETENTION: MaxDuration = MaxDuration {
    max: days(36_500),
    shown: "36500d (100 years)",
};
/// The quota grace before a delete.
pub(crate) const MAX_GRACE: MaxDuration = MaxDuration {
    max: days(36_500),
    shown: "36500d (100 years)",
};

/// The three ways of giving one secret: inline, `*_file`, `*_env`.
pub(crate) struct SecretFields<'r> {
    /// Base key name: `api_key`, `password`, `secret`.
    pub base: &'static str,
    pub inline: Option<&'r Spanned<String>>,
    pub file: Option<&'r Spanned<String>>,
    pub env: Option<&'r Spanned<String>>,
}

impl Ctx<'_> {
    pub fn error(
        &mut self,
        span: Option<Range<usize>>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Issue::new(span, path, message));
    }

    pub fn warn(
        &mut self,
        span: Option<Range<usize>>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.warnings.push(Issue::new(span, path, message));
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.lines.line_column(offset).0
    }

    /// A path from the file, relative ones taken from the config file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(
        &mut self,
        field: Option<&Spanned<String>>,
        path: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(field) = field else { return default };
        let value = field.get_ref();
        if let Some(&(_, choice)) = options.iter().find(|(name, _)| *name == value) {
            return choice;
        }
        let names: Vec<String> = options
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        self.error(
            span_of(field),
            path,
            format!(
                "invalid value \"{value}\" (expected one of {})",
                names.join(", ")
            ),
        );
        default
    }

    /// An integer within `range`.
    pub fn int_in<T: TryFrom<i64>>(
        &mut self,
        field: Option<&Spanned<i64>>,
        path: &str,
        range: RangeInclusive<i64>,
        default: T,
    ) -> T {
        let Some(field) = field else { return default };
        let value = *field.get_ref();
        match T::try_from(value) {
            Ok(typed) if range.contains(&value) => typed,
            _ => {
                self.error(
                    span_of(field),
                    path,
                    format!(
                        "{value} is out of range (expected {} to {})",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    /// A duration of at most `limit`; `positive` refuses zero (timeouts, intervals).
    pub fn duration(
        &mut self,
        field: Option<&Spanned<NumOrStr>>,
        path: &str,
        default: Duration,
        positive: bool,
        limit: MaxDuration,
    ) -> Duration {
        let Some(field) = field else { return default };
        match units::parse_duration(field.get_ref()) {
            Ok(duration) if duration > limit.max => {
                self.error(
                    span_of(field),
                    path,
                    format!(
                        "{} is too long (at most {})",
                        units::format_duration(duration),
                        limit.shown
                    ),
                );
                default
            }
            Ok(duration) if positive && duration.is_zero() => {
                self.error(
                    span_of(field),
                    path,
                    "must be more than zero (e.g. \"30s\")",
                );
                default
            }
            Ok(duration) => duration,
            Err(message) => {
                self.error(span_of(field), path, message);
                default
            }
        }
    }

    /// A cron schedule, or the built-in default expression.
    pub fn schedule(
        &mut self,
        field: Option<&Spanned<String>>,
        path: &str,
        default: &str,
    ) -> Schedule {
        if let Some(field) = field {
            match Schedule::parse(field.get_ref()) {
                Ok(schedule) => return schedule,
                Err(message) => self.error(span_of(field), path, message),
            }
        }
        default_schedule(default)
    }

    /// A required non-empty string; reports a missing one against the enclosing table.
    pub fn required_string(
        &mut self,
        field: Option<&Spanned<String>>,
        table_span: Option<Range<usize>>,
        path: &str,
        what: &str,
    ) -> String {
        match field {
            None => {
                self.error(table_span, path, format!("missing: {what}"));
                String::new()
            }
            Some(field) if field.get_ref().trim().is_empty() => {
                self.error(span_of(field), path, format!("must not be empty: {what}"));
                String::new()
            }
            Some(field) => field.get_ref().clone(),
        }
    }

    /// A secret given inline, as `*_file` or as `*_env` (at most one; `required` wants one).
    /// Files are read and variables looked up now, so `validate` catches what `run` would.
    pub fn secret(
        &mut self,
        fields: SecretFields<'_>,
        table_span: Option<Range<usize>>,
        prefix: &str,
        required: bool,
    ) -> Option<(Secret, SecretSource)> {
        let base = fields.base;
        let names = [
            base.to_owned(),
            format!("{base}_file"),
            format!("{base}_env"),
        ];
        let given: Vec<(&String, &Spanned<String>)> = names
            .iter()
            .zip([fields.inline, fields.file, fields.env])
            .filter_map(|(name, field)| field.map(|field| (name, field)))
            .collect();
        let choices = format!("{}, {} or {}", names[2], names[1], names[0]);
        match given.as_slice() {
            [] if required => {
                self.error(
                    table_span,
                    prefix,
                    format!(
                        "missing {base}: set exactly one of {choices} ({} is recommended)",
                        names[2]
                    ),
                );
                None
            }
            [] => None,
            [(name, field)] => self.read_secret(base, name, field, prefix),
            [first, rest @ ..] => {
                for (name, field) in rest {
                    self.error(
                        span_of(field),
                        at(prefix, name),
                        format!(
                            "{name} conflicts with {}: set only one of {choices}",
                            first.0
                        ),
                    );
                }
                None
            }
        }
    }

    fn read_secret(
        &mut self,
        base: &str,
        name: &str,
        field: &Spanned<String>,
        prefix: &str,
    ) -> Option<(Secret, SecretSource)> {
        let path = at(prefix, name);
        let value = field.get_ref();
        let span = span_of(field);
        if value.is_empty() {
            self.error(
                span,
                path,
                format!("must not be empty (set one of {base}_env, {base}_file or {base})"),
            );
            return None;
        }
        if name == base {
            self.inline_secrets.push(path);
            return Some((Secret::new(value.clone()), SecretSource::Inline));
        }
        if name.ends_with("_file") {
            let file = self.resolve(value);
            return match std::fs::read_to_string(&file) {
                Ok(text) => {
                    // Editors and `echo` add a final newline that is not part of the secret.
                    let secret = text.strip_suffix('\n').unwrap_or(&text);
                    let secret = secret.strip_suffix('\r').unwrap_or(secret);
                    if secret.is_empty() {
                        self.error(
                            span,
                            path,
                            format!("secret file {} is empty", file.display()),
                        );
                        return None;
                    }
                    if let Some(mode) = shared_mode(&file) {
                        self.warn(
                            span.clone(),
                            path.clone(),
                            format!(
                                "secret file {} is readable by group or others (mode {mode:04o}): run `chmod 600 {}`",
                                file.display(),
                                file.display()
                            ),
                        );
                    }
                    Some((Secret::new(secret), SecretSource::File(file)))
                }
                Err(err) => {
                    self.error(
                        span,
                        path,
                        format!("cannot read secret file {}: {err}", file.display()),
                    );
                    None
                }
            };
        }
        match (self.env)(value) {
            Some(secret) if !secret.is_empty() => {
                Some((Secret::new(secret), SecretSource::Env(value.clone())))
            }
            Some(_) => {
                self.error(span, path, format!("environment variable {value} is empty"));
                None
            }
            None => {
                self.error(
                    span,
                    path,
                    format!(
                        "environment variable {value} is not set (export it, or use {base}_file)"
                    ),
                );
                None
            }
        }
    }
}

/// The permission bits of a file that group or others may read, if so.
#[cfg(unix)]
fn shared_mode(file: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn shared_mode(_file: &Path) -> Option<u32> {
    None
}

/// Built-in default schedules are constants covered by tests; failing to parse one is a bug.
pub(crate) fn default_schedule(expr: &str) -> Schedule {
    Schedule::parse(expr)
        .unwrap_or_else(|err| panic!("built-in schedule {expr:?} is invalid: {err}"))
}
