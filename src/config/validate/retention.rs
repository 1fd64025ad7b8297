//! `[retention]`: durations with a floor each, and the maintenance schedule.

use toml::Spanned;

use super::ctx::{MAX_RETENTION, days};
use super::{Ctx, at, defaults, span_of};
use crate::config::raw::{NumOrStr, RawRetention};
use crate::config::retention::RetentionConfig;

pub(super) fn retention(
    ctx: &mut Ctx<'_>,
    spanned: Option<&Spanned<RawRetention>>,
) -> RetentionConfig {
    let p = "retention";
    let raw = spanned.map(|r| r.get_ref());
    let mut keep = |field: Option<&Spanned<NumOrStr>>, key: &str, default: u64, floor: u64| {
        let path = at(p, key);
        let kept = ctx.duration(field, &path, days(default), true, MAX_RETENTION);
        match field {
            Some(field) if kept < days(floor) => {
                ctx.error(
                    span_of(field),
                    path,
                    format!("must be at least {floor}d (e.g. \"{default}d\")"),
                );
                days(default)
            }
            _ => kept,
        }
    };
    let audit = keep(
        raw.and_then(|r| r.audit.as_ref()),
        "audit",
        defaults::RETAIN_AUDIT_DAYS,
        defaults::RETAIN_AUDIT_MIN_DAYS,
    );
    let job_runs = keep(
        raw.and_then(|r| r.job_runs.as_ref()),
        "job_runs",
        defaults::RETAIN_JOB_RUNS_DAYS,
        1,
    );
    let findings = keep(
        raw.and_then(|r| r.findings.as_ref()),
        "findings",
        defaults::RETAIN_FINDINGS_DAYS,
        1,
    );
    let quota_history = keep(
        raw.and_then(|r| r.quota_history.as_ref()),
        "quota_history",
        defaults::RETAIN_QUOTA_HISTORY_DAYS,
        1,
    );
    let schedule = ctx.schedule(
        raw.and_then(|r| r.schedule.as_ref()),
        &at(p, "schedule"),
        defaults::MAINTENANCE_SCHEDULE,
    );
    RetentionConfig {
        audit,
        job_runs,
        findings,
        quota_history,
        schedule,
    }
}
