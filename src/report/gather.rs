//! Gathering a report: the one place that reads the store (`gather`), then pure assembly
//! (`assemble`) of the numbers from what was read.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::model::{
    ActionCount, Availability, DayBytes, DayShare, FindingLine, KeyUsage, QuotaStanding, Report,
    ServerTraffic, Traffic, change_percent, share,
};
use super::period::ReportPeriod;
use crate::config::Config;
use crate::quota::{Entry, rules};
use crate::store::{
    AuditEntry, AvailabilityRow, AvailabilitySeries, DailyUsageRow, Store, StoreError,
    StoredFinding,
};

/// Near-quota keys listed at most (the rest are counted).
pub const NEAR_QUOTA_LISTED: usize = 50;

/// Audit results that are not an action of their own (the intent written before a sync).
const NOT_ACTIONS: &[&str] = &["started"];

/// Everything a report reads from the store.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// Days of the previous period and this one.
    pub daily: Vec<DailyUsageRow>,
    /// Keys still on their servers, with their ledger entries.
    pub ledger: Vec<(String, Entry)>,
    pub audit: Vec<AuditEntry>,
    pub findings: Vec<StoredFinding>,
    pub availability: Vec<AvailabilityRow>,
}

/// Read what a report of `period` needs.
pub fn read(store: &Store, period: &ReportPeriod, tz: Tz) -> Result<Gathered, StoreError> {
    let (start, end) = (period.start(tz), period.end(tz));
    Ok(Gathered {
        daily: store.daily_usage(period.previous().first_day, period.last_day)?,
        ledger: store.quota_usage(None)?,
        audit: store.audit_between(start, end)?,
        findings: store.findings_between(start, end)?,
        availability: store.availability(start, end)?,
    })
}

/// Read and assemble the report of `period` as of `now`.
pub fn gather(
    store: &Store,
    config: &Config,
    period: &ReportPeriod,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let gathered = read(store, period, config.agent.timezone)?;
    Ok(assemble(config, period, &gathered, now))
}

/// The report from what was read (pure).
pub fn assemble(
    config: &Config,
    period: &ReportPeriod,
    gathered: &Gathered,
    now: DateTime<Utc>,
) -> Report {
    let tz = config.agent.timezone;
    let servers: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    let (near_quota, near_quota_more) = near_quota(config, &gathered.ledger);
    Report {
        period: period.clone(),
        previous: period.previous(),
        generated_at: now,
        timezone: tz.name().to_string(),
        partial: !period.is_over(tz, now),
        traffic: traffic(period, &servers, &gathered.daily),
        top_keys: top_keys(config, period, &gathered.daily, &gathered.ledger),
        near_quota,
        near_quota_more,
        actions: actions(&gathered.audit),
        findings: findings(period, tz, &gathered.findings, now),
        availability: availability(period, tz, &servers, &gathered.availability),
    }
}

fn in_period(period: &ReportPeriod, day: NaiveDate) -> bool {
    (period.first_day..=period.last_day).contains(&day)
}

fn traffic(period: &ReportPeriod, servers: &[&str], daily: &[DailyUsageRow]) -> Traffic {
    let previous = period.previous();
    let per_server: Vec<ServerTraffic> = servers
        .iter()
        .map(|server| {
            let rows = || daily.iter().filter(|r| r.server == *server);
            let mut by_day: BTreeMap<NaiveDate, u64> = BTreeMap::new();
            for row in rows().filter(|r| in_period(period, r.day)) {
                *by_day.entry(row.day).or_default() += row.bytes;
            }
            let total_bytes = by_day.values().sum();
            let previous_total_bytes = rows()
                .filter(|r| in_period(&previous, r.day))
                .map(|r| r.bytes)
                .sum();
            ServerTraffic {
                server: server.to_string(),
                total_bytes,
                previous_total_bytes,
                change_percent: change_percent(previous_total_bytes, total_bytes),
                daily: period
                    .days()
                    .into_iter()
                    .map(|day| DayBytes {
                        day,
                        bytes: by_day.get(&day).copied().unwrap_or(0),
                    })
                    .collect(),
            }
        })
        .collect();
    let total_bytes = per_server.iter().map(|s| s.total_bytes).sum();
    let previous_total_bytes = per_server.iter().map(|s| s.previous_total_bytes).sum();
    Traffic {
        total_bytes,
        previous_total_bytes,
        change_percent: change_percent(previous_total_bytes, total_bytes),
        servers: per_server,
    }
}

fn top_keys(
    config: &Config,
    period: &ReportPeriod,
    daily: &[DailyUsageRow],
    ledger: &[(String, Entry)],
) -> Vec<KeyUsage> {
    let mut sums: HashMap<(&str, &str), (u64, &str)> = HashMap::new();
    for row in daily.iter().filter(|r| in_period(period, r.day)) {
        let sum = sums
            .entry((row.server.as_str(), row.uuid.as_str()))
            .or_insert((0, row.name.as_str()));
        sum.0 += row.bytes;
        sum.1 = row.name.as_str();
    }
    let mut keys: Vec<KeyUsage> = sums
        .into_iter()
        .filter(|(_, (bytes, _))| *bytes > 0)
        .map(|((server, uuid), (bytes, name))| {
            let entry = ledger
                .iter()
                .find(|(s, e)| s == server && e.uuid == uuid)
                .map(|(_, e)| e);
            let limit = entry.and_then(|e| limit_of(config, server, e));
            let used = entry.map(|e| e.used);
            KeyUsage {
                server: server.to_string(),
                name: entry.map_or(name, |e| e.name.as_str()).to_string(),
                uuid: uuid.to_string(),
                period_bytes: bytes,
                quota_used_bytes: used,
                quota_limit_bytes: limit,
                quota_percent: used.zip(limit).map(|(u, l)| percent(u, l)),
            }
        })
        .collect();
    keys.sort_by(|a, b| {
        b.period_bytes
            .cmp(&a.period_bytes)
            .then_with(|| (&a.server, &a.name).cmp(&(&b.server, &b.name)))
    });
    keys.truncate(config.reports.top_keys);
    keys
}

fn limit_of(config: &Config, server: &str, entry: &Entry) -> Option<u64> {
    let quotas = &config.quotas;
    let rule = rules::matching(quotas, server, &entry.key_id, &entry.uuid, &entry.name);
    rule.policy(quotas).limit_bytes
}

fn percent(used: u64, limit: u64) -> f64 {
    (used as f64 * 10_000.0 / limit.max(1) as f64).round() / 100.0
}

fn near_quota(config: &Config, ledger: &[(String, Entry)]) -> (Vec<QuotaStanding>, usize) {
    let quotas = &config.quotas;
    let mut near: Vec<QuotaStanding> = ledger
        .iter()
        .filter(|(server, _)| config.server(server).is_some())
        .filter_map(|(server, entry)| {
            let rule = rules::matching(quotas, server, &entry.key_id, &entry.uuid, &entry.name);
            let policy = rule.policy(quotas);
            let limit = policy.limit_bytes?;
            let threshold = policy.warn_at.iter().copied().min().unwrap_or(100);
            let percent = percent(entry.used, limit);
            (percent >= f64::from(threshold) || entry.used >= limit).then(|| QuotaStanding {
                server: server.clone(),
                name: entry.name.clone(),
                uuid: entry.uuid.clone(),
                used_bytes: entry.used,
                limit_bytes: limit,
                percent,
                over: entry.used >= limit,
            })
        })
        .collect();
    near.sort_by(|a, b| {
        b.percent
            .total_cmp(&a.percent)
            .then_with(|| (&a.server, &a.name).cmp(&(&b.server, &b.name)))
    });
    let more = near.len().saturating_sub(NEAR_QUOTA_LISTED);
    near.truncate(NEAR_QUOTA_LISTED);
    (near, more)
}

fn actions(audit: &[AuditEntry]) -> Vec<ActionCount> {
    let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for entry in audit
        .iter()
        .filter(|e| !NOT_ACTIONS.contains(&e.result.as_str()))
    {
        *counts
            .entry((&entry.server, &entry.action, &entry.result))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((server, action, result), count)| ActionCount {
            server: server.to_string(),
            action: action.to_string(),
            result: result.to_string(),
            count,
        })
        .collect()
}

fn findings(
    period: &ReportPeriod,
    tz: Tz,
    found: &[StoredFinding],
    now: DateTime<Utc>,
) -> Vec<FindingLine> {
    let (start, end) = (period.start(tz), period.end(tz));
    let mut lines: Vec<FindingLine> = found
        .iter()
        .map(|f| {
            let until = f.resolved_at.unwrap_or(end.min(now)).min(end);
            FindingLine {
                server: f.server.clone(),
                kind: f.kind.clone(),
                severity: f.severity.clone(),
                summary: f.summary.clone(),
                first_seen: f.first_seen,
                resolved_at: f.resolved_at,
                raised_in_period: f.first_seen >= start,
                resolved_in_period: f.resolved_at.is_some_and(|at| at < end),
                open_seconds: (until - f.first_seen).num_seconds().max(0),
            }
        })
        .collect();
    let rank = |s: &str| match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    };
    lines.sort_by(|a, b| {
        (rank(&a.severity), &a.server, a.first_seen).cmp(&(
            rank(&b.severity),
            &b.server,
            b.first_seen,
        ))
    });
    lines
}

/// Checks and successes per local day.
type DayCounts = BTreeMap<NaiveDate, (u64, u64)>;

fn availability(
    period: &ReportPeriod,
    tz: Tz,
    servers: &[&str],
    rows: &[AvailabilityRow],
) -> Vec<Availability> {
    let mut series: BTreeMap<(&str, AvailabilitySeries), DayCounts> = BTreeMap::new();
    for row in rows.iter().filter(|r| servers.contains(&r.server.as_str())) {
        let day = row.hour.with_timezone(&tz).date_naive();
        let slot = series
            .entry((row.server.as_str(), row.series))
            .or_default()
            .entry(day)
            .or_default();
        slot.0 += row.checks;
        slot.1 += row.up;
    }
    let order = |server: &str| servers.iter().position(|s| *s == server);
    let mut out: Vec<Availability> = series
        .into_iter()
        .map(|((server, kind), days)| {
            let checks = days.values().map(|d| d.0).sum();
            let up = days.values().map(|d| d.1).sum();
            Availability {
                server: server.to_string(),
                series: kind.as_str().to_string(),
                title: kind.title().to_string(),
                checks,
                up,
                percent: share(up, checks),
                daily: period
                    .days()
                    .into_iter()
                    .map(|day| DayShare {
                        day,
                        percent: days.get(&day).and_then(|(c, u)| share(*u, *c)),
                    })
                    .collect(),
            }
        })
        .collect();
    out.sort_by_key(|a| (order(&a.server), a.series.clone()));
    out
}

#[cfg(test)]
mod tests;
