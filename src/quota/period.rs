//! Period arithmetic: where a key's current quota period started and when the next one
//! begins, in the agent's time zone. Pure code (the caller passes `now`).
//!
//! Boundaries are local midnights (daily; weekly on Monday; monthly on `period_day`,
//! clamped to the month's last day) or the fire times of a cron schedule. DST-safe:
//! a midnight that does not exist (a spring-forward gap at 00:00) starts the day when
//! the clocks jump; an ambiguous one (autumn) starts at its first occurrence. Boundaries
//! are computed as instants (UTC), so days of 23 or 25 hours come out right.

use chrono::{
    DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::config::{Period, QuotaPolicy, Schedule};

/// The period around one instant: where it started and when the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The latest boundary at or before `now`; `None` for `never` (and a cron schedule
    /// that has not fired in the last ten years).
    pub start: Option<DateTime<Utc>>,
    /// The first boundary after `now`; `None` for `never`.
    pub next: Option<DateTime<Utc>>,
}

/// The period of `policy` around `now`.
pub fn window(policy: &QuotaPolicy, tz: Tz, now: DateTime<Utc>) -> Window {
    Window {
        start: period_start(&policy.period, policy.period_day, tz, now),
        next: next_boundary(&policy.period, policy.period_day, tz, now),
    }
}

/// The latest boundary at or before `at`.
pub fn period_start(
    period: &Period,
    period_day: u8,
    tz: Tz,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let today = at.with_timezone(&tz).date_naive();
    match period {
        Period::Never => None,
        Period::Daily => Some(local_midnight(tz, today)),
        Period::Weekly => Some(local_midnight(tz, monday_of(today))),
        Period::Monthly => {
            let this_month = month_boundary(tz, today, period_day);
            if this_month <= at {
                Some(this_month)
            } else {
                Some(month_boundary(tz, previous_month(today), period_day))
            }
        }
        Period::Cron(schedule) => latest_fire(schedule, tz, at),
    }
}

/// The first boundary strictly after `after`.
pub fn next_boundary(
    period: &Period,
    period_day: u8,
    tz: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let today = after.with_timezone(&tz).date_naive();
    let next = match period {
        Period::Never => return None,
        Period::Daily => local_midnight(tz, today + Days::new(1)),
        Period::Weekly => local_midnight(tz, monday_of(today) + Days::new(7)),
        Period::Monthly => {
            let this_month = month_boundary(tz, today, period_day);
            if this_month > after {
                this_month
            } else {
                month_boundary(tz, next_month(today), period_day)
            }
        }
        Period::Cron(schedule) => {
            return schedule
                .next_runs(tz, after, 1)
                .first()
                .map(|t| t.with_timezone(&Utc));
        }
    };
    Some(next)
}

fn monday_of(date: NaiveDate) -> NaiveDate {
    date - Days::new(u64::from(date.weekday().num_days_from_monday()))
}

fn previous_month(date: NaiveDate) -> NaiveDate {
    first_of_month(date)
        .checked_sub_months(Months::new(1))
        .unwrap_or(date)
}

fn next_month(date: NaiveDate) -> NaiveDate {
    first_of_month(date)
        .checked_add_months(Months::new(1))
        .unwrap_or(date)
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// Local midnight of day `period_day` of `date`'s month, clamped to the month's last day.
fn month_boundary(tz: Tz, date: NaiveDate, period_day: u8) -> DateTime<Utc> {
    let first = first_of_month(date);
    let last_day = next_month(first).pred_opt().map_or(28, |last| last.day());
    let day = u32::from(period_day).clamp(1, last_day);
    local_midnight(tz, first.with_day(day).unwrap_or(first))
}

/// The instant a local day begins.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    resolve_local(tz, date.and_time(NaiveTime::MIN))
}

/// A local wall-clock time as an instant: the first of two (autumn), or the end of the
/// gap for a time the clocks skipped (spring), so a period never starts late or twice.
pub fn resolve_local(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Read with the offset in force before the gap, `naive` lands exactly where the
            // clocks jumped (for a boundary at the gap's start) or inside the new offset.
            let before = tz
                .offset_from_utc_datetime(&(naive - Days::new(1)))
                .fix()
                .local_minus_utc();
            Utc.from_utc_datetime(&(naive - chrono::Duration::seconds(i64::from(before))))
        }
    }
}

/// Windows searched backwards for a cron schedule's latest fire: the first window with a
/// fire wins, so frequent schedules are never walked over long spans.
const CRON_LOOKBACK_DAYS: [i64; 6] = [1, 8, 32, 367, 1470, 3660];

/// The latest fire time of `schedule` at or before `at`.
fn latest_fire(schedule: &Schedule, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    for days in CRON_LOOKBACK_DAYS {
        let mut cursor = at - chrono::Duration::days(days);
        let mut latest = None;
        'window: loop {
            let runs = schedule.next_runs(tz, cursor, 64);
            for run in &runs {
                let run = run.with_timezone(&Utc);
                if run > at {
                    break 'window;
                }
                latest = Some(run);
                cursor = run;
            }
            if runs.len() < 64 {
                break;
            }
        }
        if latest.is_some() {
            return latest;
        }
    }
    None
}

#[cfg(test)]
#[path = "period_tests.rs"]
mod tests;
