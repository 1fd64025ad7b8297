//! Cron schedules with a seconds field (day-of-month AND day-of-week), parsed by croner: the
//! same parser computes the scheduler's due times, so whatever validates here also runs.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A validated cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`.
#[derive(Clone, PartialEq)]
pub struct Schedule {
    /// The expression as written in the file.
    pub expr: String,
    /// Boxed: a parsed pattern is ~300 bytes and schedules sit in enums (`Period::Cron`).
    cron: Box<Cron>,
}

const FIELDS_HINT: &str = "6 fields: sec min hour day-of-month month day-of-week, e.g. \"0 */5 * * * *\" for every 5 minutes";

impl Schedule {
    /// Parse `expr`; the error says what a valid expression looks like.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        // Seconds required and day-of-month ANDed with day-of-week, as operators' files
        // were written for (the scheduler that came before ours parsed them this way).
        let parsed = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr);
        let schedule = match parsed {
            Ok(cron) => Schedule {
                expr: expr.to_owned(),
                cron: Box::new(cron),
            },
            Err(err) => return Err(explain(expr, &err)),
        };
        // "0 0 0 31 2 *" parses but never fires: the job would silently never run. A fixed
        // start keeps this pure; croner gives up after searching a few thousand years.
        let start = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&Tz::UTC);
        if schedule.cron.find_next_occurrence(&start, false).is_err() {
            return Err(format!(
                "cron schedule \"{expr}\" never fires (a day that no month has, such as the 31st of February?)"
            ));
        }
        Ok(schedule)
    }

    /// The next `n` run times strictly after `after`, in `tz` (fewer if the schedule ends).
    pub fn next_runs(&self, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut runs = Vec::with_capacity(n);
        let mut cursor = after.with_timezone(&tz);
        while runs.len() < n {
            match self.cron.find_next_occurrence(&cursor, false) {
                Ok(next) => {
                    cursor = next;
                    runs.push(next);
                }
                Err(_) => break,
            }
        }
        runs
    }

    /// The time between the next two runs after `after` (an hour when the schedule has
    /// fewer than two more runs). The runner caps a server's backoff at this.
    pub fn interval(&self, tz: Tz, after: DateTime<Utc>) -> std::time::Duration {
        match self.next_runs(tz, after, 2).as_slice() {
            [first, second] => (*second - *first).to_std().unwrap_or_default(),
            _ => std::time::Duration::from_secs(3600),
        }
    }
}

/// croner's errors say little about the cause (and the scheduler drops them entirely):
/// count the fields ourselves, since a 5-field Vixie expression is the usual mistake.
fn explain(expr: &str, err: &croner::errors::CronError) -> String {
    let fields = expr.split_whitespace().count();
    let detail = match fields {
        0 => "it is empty".to_owned(),
        5 => format!(
            "it has 5 fields, but a seconds field is required first (e.g. \"0 {}\")",
            expr.trim()
        ),
        1..=4 => format!("it has only {fields} fields"),
        6 | 7 => format!("{err}"),
        _ => format!("it has {fields} fields"),
    };
    format!("invalid cron schedule \"{expr}\": {detail} (expected {FIELDS_HINT})")
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn interval_is_the_gap_between_the_next_two_runs() {
        let every_30s = super::Schedule::parse("*/30 * * * * *").unwrap();
        let now = chrono::Utc::now();
        assert_eq!(
            every_30s.interval(chrono_tz::Tz::UTC, now),
            std::time::Duration::from_secs(30)
        );
        let hourly = super::Schedule::parse("0 7 * * * *").unwrap();
        assert_eq!(
            hourly.interval(chrono_tz::Tz::Europe__Berlin, now),
            std::time::Duration::from_secs(3600)
        );
    }

    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid time")
    }

    #[test]
    fn five_fields_ask_for_seconds() {
        let err = Schedule::parse("*/5 * * * *").unwrap_err();
        assert!(err.contains("seconds field is required"), "{err}");
        assert!(err.contains("\"0 */5 * * * *\""), "{err}");
        assert!(
            err.contains("sec min hour day-of-month month day-of-week"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        for bad in [
            "",
            "* * *",
            "61 * * * * *",
            "0 0 25 * * *",
            "0 0 0 * * MON-XYZ",
            "a b c d e f",
        ] {
            let err = Schedule::parse(bad).expect_err(bad);
            assert!(err.contains("6 fields"), "{bad}: {err}");
        }
    }

    #[test]
    fn schedules_that_never_fire_are_rejected() {
        let err = Schedule::parse("0 0 0 31 2 *").unwrap_err();
        assert!(err.contains("never fires"), "{err}");
        Schedule::parse("0 0 0 29 2 *").expect("leap days do come");
    }

    #[test]
    fn next_runs_every_30_seconds() {
        let schedule = Schedule::parse("*/30 * * * * *").expect("valid");
        let runs = schedule.next_runs(Tz::UTC, utc(2026, 1, 1, 0, 0, 10), 3);
        let want: Vec<_> = [
            utc(2026, 1, 1, 0, 0, 30),
            utc(2026, 1, 1, 0, 1, 0),
            utc(2026, 1, 1, 0, 1, 30),
        ]
        .iter()
        .map(|t| t.with_timezone(&Tz::UTC))
        .collect();
        assert_eq!(runs, want);
    }

    #[test]
    fn next_runs_follow_berlin_local_time_across_dst() {
        let berlin = chrono_tz::Europe::Berlin;
        // Daily at 07:00 local: 06:00 UTC in winter (CET), 05:00 UTC in summer (CEST).
        // DST starts 2026-03-29 at 02:00 local.
        let schedule = Schedule::parse("0 0 7 * * *").expect("valid");
        let runs = schedule.next_runs(berlin, utc(2026, 3, 27, 12, 0, 0), 3);
        let in_utc: Vec<_> = runs.iter().map(|t| t.with_timezone(&Utc)).collect();
        assert_eq!(
            in_utc,
            vec![
                utc(2026, 3, 28, 6, 0, 0),
                utc(2026, 3, 29, 5, 0, 0),
                utc(2026, 3, 30, 5, 0, 0)
            ]
        );
        assert!(
            runs.iter()
                .all(|t| t.format("%H:%M").to_string() == "07:00")
        );
    }

    #[test]
    fn a_local_time_skipped_by_dst_runs_at_the_end_of_the_gap() {
        let berlin = chrono_tz::Europe::Berlin;
        // 02:30 does not exist on 2026-03-29 in Berlin: that day's run is at 03:00 CEST.
        let schedule = Schedule::parse("0 30 2 * * *").expect("valid");
        let runs = schedule.next_runs(berlin, utc(2026, 3, 28, 12, 0, 0), 3);
        let in_utc: Vec<_> = runs.iter().map(|t| t.with_timezone(&Utc)).collect();
        assert_eq!(
            in_utc,
            vec![
                utc(2026, 3, 29, 1, 0, 0),
                utc(2026, 3, 30, 0, 30, 0),
                utc(2026, 3, 31, 0, 30, 0)
            ]
        );
    }

    #[test]
    fn next_runs_hourly_through_the_autumn_change_are_increasing() {
        let berlin = chrono_tz::Europe::Berlin;
        // DST ends 2026-10-25 at 03:00 CEST -> 02:00 CET.
        let schedule = Schedule::parse("0 0 * * * *").expect("valid");
        let runs = schedule.next_runs(berlin, utc(2026, 10, 24, 23, 30, 0), 4);
        let in_utc: Vec<_> = runs.iter().map(|t| t.with_timezone(&Utc)).collect();
        assert_eq!(in_utc.len(), 4);
        assert!(in_utc.windows(2).all(|w| w[0] < w[1]), "{in_utc:?}");
        assert_eq!(
            in_utc[0],
            utc(2026, 10, 24, 23, 0, 0) + chrono::Duration::hours(1)
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_are_anded() {
        // Friday the 13th at noon: with OR semantics this would fire on every Friday.
        let schedule = Schedule::parse("0 0 12 13 * FRI").expect("valid");
        let runs = schedule.next_runs(Tz::UTC, utc(2026, 1, 1, 0, 0, 0), 2);
        let in_utc: Vec<_> = runs.iter().map(|t| t.with_timezone(&Utc)).collect();
        assert_eq!(
            in_utc,
            vec![utc(2026, 2, 13, 12, 0, 0), utc(2026, 3, 13, 12, 0, 0)]
        );
    }
}
