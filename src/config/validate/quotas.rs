//! `[quotas]` and `[[quotas.rules]]`: the default policy, then each rule's overrides merged
//! over it, so consumers never merge anything themselves.

use std::time::Duration;

use toml::Spanned;

use super::{Ctx, at, defaults, span_of};
use crate::config::quota::{
    AdoptMode, KeyMatcher, OnExceed, Period, QuotaPolicy, QuotaRule, QuotasConfig,
};
use crate::config::raw::{NumOrStr, RawQuotas, RawRule};
use crate::config::schedule::Schedule;
use crate::config::units;

/// The policy fields, as written in `[quotas]` or in a rule.
struct Overrides<'r> {
    limit: Option<&'r Spanned<NumOrStr>>,
    period: Option<&'r Spanned<String>>,
    period_day: Option<&'r Spanned<i64>>,
    warn_at: Option<&'r Spanned<Vec<Spanned<i64>>>>,
    on_exceed: Option<&'r Spanned<String>>,
    grace: Option<&'r Spanned<NumOrStr>>,
}

fn builtin_policy() -> QuotaPolicy {
    QuotaPolicy {
        limit_bytes: None,
        period: Period::Monthly,
        period_day: 1,
        warn_at: defaults::WARN_AT.to_vec(),
        on_exceed: OnExceed::Alert,
        grace: Duration::from_secs(defaults::QUOTA_GRACE_SECS),
        allow_mass: false,
    }
}

pub(super) fn quotas(
    ctx: &mut Ctx<'_>,
    raw: Option<&RawQuotas>,
    servers: &[&str],
    allow_delete: bool,
) -> QuotasConfig {
    let Some(raw) = raw else {
        return QuotasConfig {
            defaults: builtin_policy(),
            rules: Vec::new(),
            adopt: AdoptMode::default(),
        };
    };
    let overrides = Overrides {
        limit: raw.limit.as_ref(),
        period: raw.period.as_ref(),
        period_day: raw.period_day.as_ref(),
        warn_at: raw.warn_at.as_ref(),
        on_exceed: raw.on_exceed.as_ref(),
        grace: raw.grace.as_ref(),
    };
    let defaults = policy(ctx, &builtin_policy(), &overrides, "quotas", allow_delete);
    let rules = raw
        .rules
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, rule)| {
            let prefix = format!("quotas.rules[{index}]");
            self::rule(ctx, rule, &prefix, &defaults, servers, allow_delete)
        })
        .collect();
    let adopt = ctx.choice(
        raw.adopt.as_ref(),
        "quotas.adopt",
        &[
            ("baseline", AdoptMode::Baseline),
            ("count", AdoptMode::Count),
        ],
        AdoptMode::default(),
    );
    QuotasConfig {
        defaults,
        rules,
        adopt,
    }
}

fn rule(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawRule>,
    prefix: &str,
    defaults: &QuotaPolicy,
    servers: &[&str],
    allow_delete: bool,
) -> Option<QuotaRule> {
    let raw = spanned.get_ref();
    let matcher = matcher(ctx, spanned, prefix);
    let server = raw.server.as_ref().and_then(|field| {
        let name = field.get_ref();
        if servers.contains(&name.as_str()) {
            Some(name.clone())
        } else {
            ctx.error(
                span_of(field),
                at(prefix, "server"),
                format!(
                    "no server named \"{name}\" (configured: {})",
                    servers.join(", ")
                ),
            );
            None
        }
    });
    let overrides = Overrides {
        limit: raw.limit.as_ref(),
        period: raw.period.as_ref(),
        period_day: raw.period_day.as_ref(),
        warn_at: raw.warn_at.as_ref(),
        on_exceed: raw.on_exceed.as_ref(),
        grace: raw.grace.as_ref(),
    };
    let mut policy = policy(ctx, defaults, &overrides, prefix, allow_delete);
    if let Some(field) = &raw.allow_mass {
        policy.allow_mass = *field.get_ref();
        if policy.allow_mass
            && (policy.on_exceed == OnExceed::Alert || policy.limit_bytes.is_none())
        {
            ctx.warn(
                span_of(field),
                at(prefix, "allow_mass"),
                "has no effect: the rule never resets or deletes keys (it needs a limit and on_exceed = \"reset\" or \"delete\")",
            );
        }
    }
    Some(QuotaRule {
        matcher: matcher?,
        server,
        policy,
    })
}

fn matcher(ctx: &mut Ctx<'_>, spanned: &Spanned<RawRule>, prefix: &str) -> Option<KeyMatcher> {
    let raw = spanned.get_ref();
    let mut given: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    if let Some(field) = &raw.match_name {
        given.push(("match_name", field.span()));
    }
    if let Some(field) = &raw.match_uuid {
        given.push(("match_uuid", field.span()));
    }
    if let Some(field) = &raw.match_id {
        given.push(("match_id", field.span()));
    }
    match given.as_slice() {
        [] => {
            ctx.error(
                span_of(spanned),
                prefix,
                "a rule needs exactly one of match_name (a glob such as \"vip-*\"), match_uuid or match_id",
            );
            return None;
        }
        [_] => {}
        [(first, _), rest @ ..] => {
            for (name, span) in rest {
                ctx.error(
                    Some(span.clone()),
                    at(prefix, name),
                    format!("{name} conflicts with {first}: a rule matches by exactly one of match_name, match_uuid or match_id"),
                );
            }
            return None;
        }
    }
    if let Some(field) = &raw.match_name {
        if field.get_ref().is_empty() {
            ctx.error(
                span_of(field),
                at(prefix, "match_name"),
                "must not be empty (a glob such as \"vip-*\"; \"*\" matches every key)",
            );
            return None;
        }
        return Some(KeyMatcher::NameGlob(field.get_ref().clone()));
    }
    if let Some(field) = &raw.match_uuid {
        let uuid = field.get_ref().trim();
        if !is_uuid(uuid) {
            ctx.error(
                span_of(field),
                at(prefix, "match_uuid"),
                format!("\"{uuid}\" is not a UUID (expected 8-4-4-4-12 hex digits, e.g. \"0f8e1c2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b\")"),
            );
            return None;
        }
        return Some(KeyMatcher::Uuid(uuid.to_ascii_lowercase()));
    }
    let field = raw.match_id.as_ref()?;
    match field.get_ref() {
        NumOrStr::Int(id) => Some(KeyMatcher::Id(id.to_string())),
        NumOrStr::Str(id) if !id.trim().is_empty() => Some(KeyMatcher::Id(id.trim().to_owned())),
        _ => {
            ctx.error(
                span_of(field),
                at(prefix, "match_id"),
                "expected the key's id as a string or whole number, e.g. \"42\"",
            );
            None
        }
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `base` with the fields given in `overrides` replaced.
fn policy(
    ctx: &mut Ctx<'_>,
    base: &QuotaPolicy,
    overrides: &Overrides<'_>,
    prefix: &str,
    allow_delete: bool,
) -> QuotaPolicy {
    let limit_bytes = match overrides.limit {
        Some(field) => limit(ctx, field, prefix),
        None => base.limit_bytes,
    };
    let period = match overrides.period {
        Some(field) => period(ctx, field, prefix).unwrap_or_else(|| base.period.clone()),
        None => base.period.clone(),
    };
    let period_day = ctx.int_in(
        overrides.period_day,
        &at(prefix, "period_day"),
        1..=31,
        base.period_day,
    );
    if let Some(field) = overrides.period_day
        && period != Period::Monthly
    {
        ctx.warn(
            span_of(field),
            at(prefix, "period_day"),
            format!(
                "has no effect: period is \"{}\", and period_day only applies to \"monthly\"",
                period.as_str()
            ),
        );
    }
    let warn_at = match overrides.warn_at {
        Some(field) => warn_at(ctx, field, prefix),
        None => base.warn_at.clone(),
    };
    let on_exceed = ctx.choice(
        overrides.on_exceed,
        &at(prefix, "on_exceed"),
        &[
            ("alert", OnExceed::Alert),
            ("reset", OnExceed::Reset),
            ("delete", OnExceed::Delete),
        ],
        base.on_exceed,
    );
    if let Some(field) = overrides.on_exceed {
        if on_exceed == OnExceed::Delete && !allow_delete {
            ctx.error(
                span_of(field),
                at(prefix, "on_exceed"),
                "\"delete\" needs agent.allow_delete = true (a safety switch against deleting keys by mistake); set it, or use \"alert\" or \"reset\"",
            );
        }
        if on_exceed != OnExceed::Alert && limit_bytes.is_none() {
            ctx.warn(
                span_of(field),
                at(prefix, "on_exceed"),
                format!("\"{}\" has no effect without a limit", on_exceed.as_str()),
            );
        }
    }
    let grace = ctx.duration(
        overrides.grace,
        &at(prefix, "grace"),
        base.grace,
        false,
        super::ctx::MAX_GRACE,
    );
    QuotaPolicy {
        limit_bytes,
        period,
        period_day,
        warn_at,
        on_exceed,
        grace,
        // Only a rule may lift the guard (set by `rule`), never the defaults.
        allow_mass: false,
    }
}

fn limit(ctx: &mut Ctx<'_>, field: &Spanned<NumOrStr>, prefix: &str) -> Option<u64> {
    // "unlimited" lets a rule lift a default limit (omitting `limit` would inherit it).
    if matches!(field.get_ref(), NumOrStr::Str(text) if text.trim() == "unlimited") {
        return None;
    }
    match units::parse_size(field.get_ref()) {
        Ok(0) => {
            ctx.error(
                span_of(field),
                at(prefix, "limit"),
                "must be more than 0 bytes (write \"unlimited\", or omit limit in [quotas], to only account traffic)",
            );
            None
        }
        Ok(bytes) => Some(bytes),
        Err(message) => {
            ctx.error(span_of(field), at(prefix, "limit"), message);
            None
        }
    }
}

fn period(ctx: &mut Ctx<'_>, field: &Spanned<String>, prefix: &str) -> Option<Period> {
    let text = field.get_ref().trim();
    let keyword = match text {
        "daily" => Some(Period::Daily),
        "weekly" => Some(Period::Weekly),
        "monthly" => Some(Period::Monthly),
        "never" => Some(Period::Never),
        _ => None,
    };
    if keyword.is_some() {
        return keyword;
    }
    let path = at(prefix, "period");
    // A single word is a misspelt keyword; anything with fields is meant as cron.
    if !text.contains(char::is_whitespace) {
        ctx.error(
            span_of(field),
            path,
            format!("invalid period \"{text}\" (expected \"daily\", \"weekly\", \"monthly\", \"never\" or a cron schedule with seconds such as \"0 0 0 * * MON\")"),
        );
        return None;
    }
    match Schedule::parse(text) {
        Ok(schedule) => Some(Period::Cron(schedule)),
        Err(message) => {
            ctx.error(
                span_of(field),
                path,
                format!("{message}; or use \"daily\", \"weekly\", \"monthly\" or \"never\""),
            );
            None
        }
    }
}

fn warn_at(ctx: &mut Ctx<'_>, field: &Spanned<Vec<Spanned<i64>>>, prefix: &str) -> Vec<u8> {
    let path = at(prefix, "warn_at");
    let mut values = Vec::new();
    let mut in_range = true;
    for (index, item) in field.get_ref().iter().enumerate() {
        match u8::try_from(*item.get_ref()) {
            Ok(percent) if (1..=100).contains(&percent) => values.push(percent),
            _ => {
                in_range = false;
                ctx.error(
                    span_of(item),
                    format!("{path}[{index}]"),
                    format!(
                        "{} is not a percentage between 1 and 100 (e.g. warn_at = [80, 95])",
                        item.get_ref()
                    ),
                );
            }
        }
    }
    if in_range && values.windows(2).any(|pair| pair[0] >= pair[1]) {
        let shown: Vec<String> = field
            .get_ref()
            .iter()
            .map(|item| item.get_ref().to_string())
            .collect();
        ctx.error(
            span_of(field),
            path,
            format!(
                "[{}] must be sorted ascending without repeats (e.g. [80, 95])",
                shown.join(", ")
            ),
        );
    }
    values
}
