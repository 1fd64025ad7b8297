//! `[reports]`: schedule, period, sinks (names of configured email and webhook sinks),
//! top_keys.

use toml::Spanned;

use super::{Ctx, at, defaults, span_of};
use crate::config::alerts::AlertsConfig;
use crate::config::raw::RawReports;
use crate::config::reports::{ReportPeriodKind, ReportsConfig};

pub(super) fn reports(
    ctx: &mut Ctx<'_>,
    spanned: Option<&Spanned<RawReports>>,
    alerts: &AlertsConfig,
) -> ReportsConfig {
    let p = "reports";
    let raw = spanned.map(|r| r.get_ref());
    let schedule = ctx.schedule(
        raw.and_then(|r| r.schedule.as_ref()),
        &at(p, "schedule"),
        defaults::REPORT_SCHEDULE,
    );
    let period = ctx.choice(
        raw.and_then(|r| r.period.as_ref()),
        &at(p, "period"),
        &[
            ("last-week", ReportPeriodKind::LastWeek),
            ("last-month", ReportPeriodKind::LastMonth),
        ],
        ReportPeriodKind::LastWeek,
    );
    let top_keys = ctx.int_in(
        raw.and_then(|r| r.top_keys.as_ref()),
        &at(p, "top_keys"),
        1..=100,
        defaults::REPORT_TOP_KEYS,
    );
    let known: Vec<&str> = alerts
        .email
        .iter()
        .map(|s| s.name.as_str())
        .chain(alerts.webhook.iter().map(|s| s.name.as_str()))
        .collect();
    let mut sinks: Vec<String> = Vec::new();
    for (index, field) in raw
        .and_then(|r| r.sinks.as_ref())
        .into_iter()
        .flat_map(|s| s.get_ref())
        .enumerate()
    {
        let name = field.get_ref();
        let path = format!("{p}.sinks[{index}]");
        if !known.contains(&name.as_str()) {
            let choices = if known.is_empty() {
                "no sinks are configured: add [[alerts.email]] or [[alerts.webhook]]".to_owned()
            } else {
                format!("configured sinks: {}", known.join(", "))
            };
            ctx.error(
                span_of(field),
                path,
                format!("unknown sink \"{name}\" ({choices})"),
            );
        } else if sinks.contains(name) {
            ctx.error(
                span_of(field),
                path,
                format!("sink \"{name}\" is listed twice"),
            );
        } else {
            sinks.push(name.clone());
        }
    }
    ReportsConfig {
        schedule,
        period,
        sinks,
        top_keys,
    }
}
