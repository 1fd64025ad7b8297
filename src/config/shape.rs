//! The type of every key, checked on the spanned TOML tree before serde: serde stops at
//! the first value of the wrong type, this reports all of them at once (with line and
//! column), in one linear walk. Messages name the key and the expected type and never
//! the value found: the value may be a secret typed in the wrong place
//! (`api_key = 987654321012`).

use toml::de::{DeTable, DeValue};

use super::error::Issue;
use super::raw::FREE_FORM_TABLES;

/// What a key's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Bool,
    /// A number or a string (sizes, durations, ids).
    NumOrStr,
    Table,
    ArrayOfTables,
    ArrayOfStr,
    ArrayOfInt,
    /// A table of strings (`headers`).
    TableOfStr,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "a whole number",
            Kind::Bool => "true or false",
            Kind::NumOrStr => "a number or a string",
            Kind::Table => "a table",
            Kind::ArrayOfTables => "an array of tables ([[...]])",
            Kind::ArrayOfStr => "an array of strings",
            Kind::ArrayOfInt => "an array of whole numbers",
            Kind::TableOfStr => "a table of strings",
        }
    }
}

/// The kind of every key of `raw::ALL_KEYS` (a test checks they match).
pub(crate) const KEY_KINDS: &[(&str, Kind)] = &[
    ("agent", Kind::Table),
    ("agent.state_dir", Kind::Str),
    ("agent.timezone", Kind::Str),
    ("agent.dry_run", Kind::Bool),
    ("agent.allow_delete", Kind::Bool),
    ("agent.listen", Kind::Str),
    ("agent.log_format", Kind::Str),
    ("agent.metrics_per_key", Kind::Bool),
    ("agent.max_concurrent_runs", Kind::Int),
    ("agent.store", Kind::Str),
    ("store", Kind::Table),
    ("store.postgres", Kind::Table),
    ("store.postgres.url_env", Kind::Str),
    ("store.postgres.url_file", Kind::Str),
    ("store.postgres.schema", Kind::Str),
    ("store.postgres.pool_size", Kind::Int),
    ("store.postgres.ca_file", Kind::Str),
    ("store.postgres.agent_name", Kind::Str),
    ("store.postgres.renew_interval", Kind::Str),
    ("servers", Kind::ArrayOfTables),
    ("servers[].name", Kind::Str),
    ("servers[].url", Kind::Str),
    ("servers[].api_key", Kind::Str),
    ("servers[].api_key_file", Kind::Str),
    ("servers[].api_key_env", Kind::Str),
    ("servers[].timeout", Kind::NumOrStr),
    ("servers[].action_timeout", Kind::NumOrStr),
    ("servers[].concurrency", Kind::Int),
    ("servers[].skip_jobs", Kind::ArrayOfStr),
    ("servers[].counter_resets", Kind::Str),
    ("servers[].ca_file", Kind::Str),
    ("servers[].vless_host", Kind::Str),
    ("servers[].reality_ca_file", Kind::Str),
    ("servers[].dataplane_concurrency", Kind::Int),
    ("servers[].max_response_size", Kind::NumOrStr),
    ("jobs", Kind::Table),
    ("jobs.health", Kind::Table),
    ("jobs.health.schedule", Kind::Str),
    ("jobs.health.failures_before_alert", Kind::Int),
    ("jobs.health.xray_confirmations", Kind::Int),
    ("jobs.health.restart_xray", Kind::Bool),
    ("jobs.config_sync", Kind::Table),
    ("jobs.config_sync.schedule", Kind::Str),
    ("jobs.config_sync.auto_sync", Kind::Bool),
    ("jobs.config_sync.confirmations", Kind::Int),
    ("jobs.config_sync.max_syncs_per_hour", Kind::Int),
    ("jobs.config_sync.verify_reality_after_sync", Kind::Bool),
    ("jobs.reality", Kind::Table),
    ("jobs.reality.schedule", Kind::Str),
    ("jobs.reality.confirmations", Kind::Int),
    ("jobs.reality.auto_fix", Kind::Bool),
    ("jobs.quota", Kind::Table),
    ("jobs.quota.schedule", Kind::Str),
    ("jobs.dataplane", Kind::Table),
    ("jobs.dataplane.schedule", Kind::Str),
    ("jobs.dataplane.max_ports_per_run", Kind::Int),
    ("jobs.dataplane.handshake_timeout", Kind::NumOrStr),
    ("quotas", Kind::Table),
    ("quotas.limit", Kind::NumOrStr),
    ("quotas.period", Kind::Str),
    ("quotas.period_day", Kind::Int),
    ("quotas.warn_at", Kind::ArrayOfInt),
    ("quotas.on_exceed", Kind::Str),
    ("quotas.grace", Kind::NumOrStr),
    ("quotas.adopt", Kind::Str),
    ("quotas.rules", Kind::ArrayOfTables),
    ("quotas.rules[].match_name", Kind::Str),
    ("quotas.rules[].match_uuid", Kind::Str),
    ("quotas.rules[].match_id", Kind::NumOrStr),
    ("quotas.rules[].server", Kind::Str),
    ("quotas.rules[].limit", Kind::NumOrStr),
    ("quotas.rules[].period", Kind::Str),
    ("quotas.rules[].period_day", Kind::Int),
    ("quotas.rules[].warn_at", Kind::ArrayOfInt),
    ("quotas.rules[].on_exceed", Kind::Str),
    ("quotas.rules[].grace", Kind::NumOrStr),
    ("quotas.rules[].allow_mass", Kind::Bool),
    ("alerts", Kind::Table),
    ("alerts.min_severity", Kind::Str),
    ("alerts.repeat_interval", Kind::NumOrStr),
    ("alerts.send_resolved", Kind::Bool),
    ("alerts.group_wait", Kind::NumOrStr),
    ("alerts.max_age", Kind::NumOrStr),
    ("alerts.heartbeat_url", Kind::Str),
    ("alerts.email", Kind::ArrayOfTables),
    ("alerts.email[].name", Kind::Str),
    ("alerts.email[].host", Kind::Str),
    ("alerts.email[].port", Kind::Int),
    ("alerts.email[].security", Kind::Str),
    ("alerts.email[].username", Kind::Str),
    ("alerts.email[].password", Kind::Str),
    ("alerts.email[].password_file", Kind::Str),
    ("alerts.email[].password_env", Kind::Str),
    ("alerts.email[].from", Kind::Str),
    ("alerts.email[].to", Kind::ArrayOfStr),
    ("alerts.email[].min_severity", Kind::Str),
    ("alerts.email[].timeout", Kind::NumOrStr),
    ("alerts.email[].rate_limit_per_minute", Kind::Int),
    ("alerts.webhook", Kind::ArrayOfTables),
    ("alerts.webhook[].name", Kind::Str),
    ("alerts.webhook[].url", Kind::Str),
    ("alerts.webhook[].format", Kind::Str),
    ("alerts.webhook[].chat_id", Kind::NumOrStr),
    ("alerts.webhook[].secret", Kind::Str),
    ("alerts.webhook[].secret_file", Kind::Str),
    ("alerts.webhook[].secret_env", Kind::Str),
    ("alerts.webhook[].headers", Kind::TableOfStr),
    ("alerts.webhook[].min_severity", Kind::Str),
    ("alerts.webhook[].timeout", Kind::NumOrStr),
    ("alerts.webhook[].rate_limit_per_minute", Kind::Int),
    ("alerts.webhook[].slack_token", Kind::Str),
    ("alerts.webhook[].slack_token_file", Kind::Str),
    ("alerts.webhook[].slack_token_env", Kind::Str),
    ("alerts.webhook[].slack_channel", Kind::Str),
    ("reports", Kind::Table),
    ("reports.schedule", Kind::Str),
    ("reports.period", Kind::Str),
    ("reports.sinks", Kind::ArrayOfStr),
    ("reports.top_keys", Kind::Int),
    ("retention", Kind::Table),
    ("retention.audit", Kind::NumOrStr),
    ("retention.job_runs", Kind::NumOrStr),
    ("retention.findings", Kind::NumOrStr),
    ("retention.quota_history", Kind::NumOrStr),
    ("retention.schedule", Kind::Str),
];

fn kind_of(pattern: &str) -> Option<Kind> {
    KEY_KINDS
        .iter()
        .find(|(key, _)| *key == pattern)
        .map(|&(_, kind)| kind)
}

/// Every value of the wrong type, in one walk. Keys the schema does not know are left
/// to the unknown-key report.
pub(crate) fn type_errors(doc: &DeTable<'_>) -> Vec<Issue> {
    let mut issues = Vec::new();
    check_table(doc, "", "", &mut issues);
    issues
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_table(table: &DeTable<'_>, real: &str, pattern: &str, issues: &mut Vec<Issue>) {
    for (key, value) in table.iter() {
        let child_real = join(real, key.get_ref());
        let child_pattern = join(pattern, key.get_ref());
        let Some(kind) = kind_of(&child_pattern) else {
            continue;
        };
        let wrong = |span: std::ops::Range<usize>, path: String, found: &str| {
            Issue::new(
                Some(span),
                path,
                format!("invalid type: expected {}, found {found}", kind.describe()),
            )
        };
        match (kind, value.get_ref()) {
            (Kind::Table, DeValue::Table(inner)) => {
                check_table(inner, &child_real, &child_pattern, issues);
            }
            (Kind::ArrayOfTables, DeValue::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let item_real = format!("{child_real}[{index}]");
                    match item.get_ref() {
                        DeValue::Table(inner) => {
                            check_table(inner, &item_real, &format!("{child_pattern}[]"), issues)
                        }
                        other => issues.push(wrong(item.span(), item_real, name(other))),
                    }
                }
            }
            (Kind::ArrayOfStr | Kind::ArrayOfInt, DeValue::Array(items)) => {
                let element = if kind == Kind::ArrayOfStr {
                    Kind::Str
                } else {
                    Kind::Int
                };
                for (index, item) in items.iter().enumerate() {
                    if let Some(found) = mismatch(element, item.get_ref()) {
                        issues.push(Issue::new(
                            Some(item.span()),
                            format!("{child_real}[{index}]"),
                            format!(
                                "invalid type: expected {} (in {}), found {found}",
                                element.describe(),
                                kind.describe()
                            ),
                        ));
                    }
                }
            }
            (Kind::TableOfStr, DeValue::Table(inner)) => {
                debug_assert!(FREE_FORM_TABLES.contains(&child_pattern.as_str()));
                for (name_key, item) in inner.iter() {
                    if let Some(found) = mismatch(Kind::Str, item.get_ref()) {
                        issues.push(Issue::new(
                            Some(item.span()),
                            format!("{child_real}.{}", name_key.get_ref()),
                            format!("invalid type: expected a string, found {found}"),
                        ));
                    }
                }
            }
            (kind, other) => {
                if let Some(found) = mismatch(kind, other) {
                    issues.push(wrong(value.span(), child_real, found));
                }
            }
        }
    }
}

/// What was found instead of `kind`, if it does not fit.
fn mismatch(kind: Kind, value: &DeValue<'_>) -> Option<&'static str> {
    let fits = match (kind, value) {
        (Kind::Str, DeValue::String(_)) => true,
        (Kind::Int, DeValue::Integer(integer)) => return integer_problem(integer),
        (Kind::Bool, DeValue::Boolean(_)) => true,
        (Kind::NumOrStr, DeValue::String(_) | DeValue::Float(_)) => true,
        (Kind::NumOrStr, DeValue::Integer(integer)) => return integer_problem(integer),
        (Kind::Table | Kind::TableOfStr, DeValue::Table(_)) => true,
        (Kind::ArrayOfTables | Kind::ArrayOfStr | Kind::ArrayOfInt, DeValue::Array(_)) => true,
        _ => false,
    };
    (!fits).then(|| name(value))
}

/// A TOML integer beyond what keywarden reads (i64).
fn integer_problem(integer: &toml::de::DeInteger<'_>) -> Option<&'static str> {
    let digits = integer.as_str().replace('_', "");
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0o"))
        .or_else(|| digits.strip_prefix("0b"))
        .unwrap_or(&digits);
    match i64::from_str_radix(digits, integer.radix()) {
        Ok(_) => None,
        Err(_) => Some("a number too large (more than 2^63 - 1)"),
    }
}

fn name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::ALL_KEYS;

    #[test]
    fn every_key_has_a_kind_and_every_kind_a_key() {
        for key in ALL_KEYS {
            assert!(kind_of(key).is_some(), "{key} has no kind in KEY_KINDS");
        }
        for (key, _) in KEY_KINDS {
            assert!(ALL_KEYS.contains(key), "{key} is not in ALL_KEYS");
        }
    }

    #[test]
    fn every_wrong_type_is_reported_without_its_value() {
        let text = "[agent]\ndry_run = \"yes\"\nlisten = 9477\n[[servers]]\nname = 1\napi_key = 987654321012\nconcurrency = \"8\"\nskip_jobs = [\"health\", 3]\n[quotas]\nwarn_at = [80, \"95\"]\n[[alerts.webhook]]\nheaders = { A = 5 }\n";
        let doc = crate::config::document::parse(text).expect("syntax ok");
        let mut issues = type_errors(doc.get_ref());
        issues.sort_by_key(|issue| issue.span.clone().map(|span| span.start));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "agent.dry_run",
                "agent.listen",
                "servers[0].name",
                "servers[0].api_key",
                "servers[0].concurrency",
                "servers[0].skip_jobs[1]",
                "quotas.warn_at[1]",
                "alerts.webhook[0].headers.A"
            ]
        );
        let secret = &issues[3].message;
        assert_eq!(secret, "invalid type: expected a string, found an integer");
        assert!(issues.iter().all(|i| !i.message.contains("987654321012")));
    }

    #[test]
    fn integers_beyond_i64_are_type_errors() {
        let doc = crate::config::document::parse(
            "[agent]\n[[servers]]\nconcurrency = 99999999999999999999\n",
        )
        .expect("syntax ok");
        let issues = type_errors(doc.get_ref());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].message.contains("too large"));
    }
}
