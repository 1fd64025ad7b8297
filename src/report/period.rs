//! Report periods: last week (Monday to Sunday), last month, or a named month, as local
//! days in the agent's time zone, and the UTC instants they start and end at. Pure.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::ReportPeriodKind;

/// What the operator asked for (`--period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodSpec {
    LastWeek,
    LastMonth,
    /// A calendar month, `YYYY-MM`.
    Month {
        year: i32,
        month: u32,
    },
}

impl From<ReportPeriodKind> for PeriodSpec {
    fn from(kind: ReportPeriodKind) -> PeriodSpec {
        match kind {
            ReportPeriodKind::LastWeek => PeriodSpec::LastWeek,
            ReportPeriodKind::LastMonth => PeriodSpec::LastMonth,
        }
    }
}

impl FromStr for PeriodSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<PeriodSpec, String> {
        let hint = "expected last-week, last-month or a month as YYYY-MM, e.g. 2026-11";
        match text {
            "last-week" => return Ok(PeriodSpec::LastWeek),
            "last-month" => return Ok(PeriodSpec::LastMonth),
            _ => {}
        }
        let parsed = text.split_once('-').and_then(|(y, m)| {
            let (year, month) = (y.parse::<i32>().ok()?, m.parse::<u32>().ok()?);
            (y.len() == 4 && m.len() == 2 && NaiveDate::from_ymd_opt(year, month, 1).is_some())
                .then_some(PeriodSpec::Month { year, month })
        });
        parsed.ok_or_else(|| format!("invalid period \"{text}\" ({hint})"))
    }
}

/// Whether a period is a week or a month (its previous period is the same kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Span {
    Week,
    Month,
}

/// A report period: whole local days, `first_day..=last_day`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportPeriod {
    /// Stable name: `2026-W48` or `2026-11` (deliveries are recorded under it).
    pub key: String,
    /// For people: `week 48 of 2026 (23 Nov – 29 Nov 2026)`, `November 2026`.
    pub title: String,
    pub span: Span,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

impl fmt::Display for ReportPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

fn month_start(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

fn previous_month(day: NaiveDate) -> (i32, u32) {
    match day.month() {
        1 => (day.year() - 1, 12),
        m => (day.year(), m - 1),
    }
}

impl ReportPeriod {
    /// The week starting on Monday `monday`.
    pub fn week(monday: NaiveDate) -> ReportPeriod {
        let last_day = monday + Duration::days(6);
        let iso = monday.iso_week();
        ReportPeriod {
            key: format!("{}-W{:02}", iso.year(), iso.week()),
            title: format!(
                "week {} of {} ({} – {})",
                iso.week(),
                iso.year(),
                monday.format("%-d %b"),
                last_day.format("%-d %b %Y")
            ),
            span: Span::Week,
            first_day: monday,
            last_day,
        }
    }

    /// The calendar month `year-month`.
    pub fn month(year: i32, month: u32) -> ReportPeriod {
        let first_day = month_start(year, month);
        let next = match month {
            12 => month_start(year + 1, 1),
            m => month_start(year, m + 1),
        };
        ReportPeriod {
            key: format!("{year}-{month:02}"),
            title: first_day.format("%B %Y").to_string(),
            span: Span::Month,
            first_day,
            last_day: next - Duration::days(1),
        }
    }

    /// The period `spec` names, as seen at `now` in `tz`.
    pub fn resolve(spec: PeriodSpec, tz: Tz, now: DateTime<Utc>) -> ReportPeriod {
        let today = now.with_timezone(&tz).date_naive();
        match spec {
            PeriodSpec::LastWeek => {
                let this_monday =
                    today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
                ReportPeriod::week(this_monday - Duration::days(7))
            }
            PeriodSpec::LastMonth => {
                let (year, month) = previous_month(today);
                ReportPeriod::month(year, month)
            }
            PeriodSpec::Month { year, month } => ReportPeriod::month(year, month),
        }
    }

    /// The period before this one, of the same kind (for "change against").
    pub fn previous(&self) -> ReportPeriod {
        match self.span {
            Span::Week => ReportPeriod::week(self.first_day - Duration::days(7)),
            Span::Month => {
                let (year, month) = previous_month(self.first_day);
                ReportPeriod::month(year, month)
            }
        }
    }

    /// Every day of the period, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.first_day
            .iter_days()
            .take_while(|d| *d <= self.last_day)
            .collect()
    }

    /// When the period starts: local midnight of its first day.
    pub fn start(&self, tz: Tz) -> DateTime<Utc> {
        local_midnight(self.first_day, tz)
    }

    /// When the period ends (exclusive): local midnight after its last day.
    pub fn end(&self, tz: Tz) -> DateTime<Utc> {
        local_midnight(self.last_day + Duration::days(1), tz)
    }

    /// Whether the period has ended at `now` (a report of it is complete).
    pub fn is_over(&self, tz: Tz, now: DateTime<Utc>) -> bool {
        now >= self.end(tz)
    }
}

/// Local midnight; where a DST change skips midnight, the first instant of the day.
pub fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    (0..=3)
        .find_map(|hours| {
            tz.from_local_datetime(&(midnight + Duration::hours(hours)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    fn day(y: i32, mo: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap()
    }

    #[test]
    fn specs_parse_with_a_hint() {
        assert_eq!("last-week".parse(), Ok(PeriodSpec::LastWeek));
        assert_eq!("last-month".parse(), Ok(PeriodSpec::LastMonth));
        assert_eq!(
            "2026-02".parse(),
            Ok(PeriodSpec::Month {
                year: 2026,
                month: 2
            })
        );
        for bad in ["2026-13", "26-01", "2026-1", "week", ""] {
            let err = bad.parse::<PeriodSpec>().unwrap_err();
            assert!(err.contains("YYYY-MM"), "{bad}: {err}");
        }
    }

    #[test]
    fn last_week_is_monday_to_sunday_before_today_in_the_agent_zone() {
        // Monday 30 Nov 2026, 00:30 in Berlin is still Sunday 29 Nov in UTC.
        let berlin = chrono_tz::Europe::Berlin;
        let now = utc(2026, 11, 29, 23) + Duration::minutes(30);
        let week = ReportPeriod::resolve(PeriodSpec::LastWeek, berlin, now);
        assert_eq!(
            (week.first_day, week.last_day),
            (day(2026, 11, 23), day(2026, 11, 29))
        );
        assert_eq!(week.key, "2026-W48");
        assert_eq!(week.days().len(), 7);
        assert_eq!(week.start(berlin), utc(2026, 11, 22, 23));
        assert_eq!(week.end(berlin), utc(2026, 11, 29, 23));
        assert!(week.is_over(berlin, now));
        assert_eq!(week.previous().key, "2026-W47");
        let in_utc = ReportPeriod::resolve(PeriodSpec::LastWeek, Tz::UTC, now);
        assert_eq!(in_utc.key, "2026-W47", "in UTC it is still Sunday");
    }

    #[test]
    fn months_and_their_previous() {
        let now = utc(2026, 1, 15, 12);
        let last = ReportPeriod::resolve(PeriodSpec::LastMonth, Tz::UTC, now);
        assert_eq!(last.key, "2025-12");
        assert_eq!(last.title, "December 2025");
        assert_eq!(last.last_day, day(2025, 12, 31));
        assert_eq!(last.previous().key, "2025-11");
        let feb = ReportPeriod::resolve(
            PeriodSpec::Month {
                year: 2028,
                month: 2,
            },
            Tz::UTC,
            now,
        );
        assert_eq!(feb.days().len(), 29);
        assert!(!feb.is_over(Tz::UTC, now));
    }

    #[test]
    fn a_dst_change_makes_a_23_hour_day() {
        let berlin = chrono_tz::Europe::Berlin;
        let march = ReportPeriod::month(2026, 3);
        let hours = (march.end(berlin) - march.start(berlin)).num_hours();
        assert_eq!(hours, 31 * 24 - 1);
    }
}
