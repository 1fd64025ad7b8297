//! Table-driven tests of the period arithmetic: month ends, day 31 in February, leap years,
//! DST changes in Europe/Berlin (and a midnight gap), weekly, never, cron.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn cron(expr: &str) -> Period {
    Period::Cron(Schedule::parse(expr).expect("valid cron"))
}

const BERLIN: Tz = chrono_tz::Europe::Berlin;
const UTC: Tz = Tz::UTC;

struct Case {
    what: &'static str,
    period: Period,
    day: u8,
    tz: Tz,
    at: DateTime<Utc>,
    start: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
}

fn case(
    what: &'static str,
    period: Period,
    day: u8,
    tz: Tz,
    at: DateTime<Utc>,
    start: DateTime<Utc>,
    next: DateTime<Utc>,
) -> Case {
    Case {
        what,
        period,
        day,
        tz,
        at,
        start: Some(start),
        next: Some(next),
    }
}

fn check(cases: Vec<Case>) {
    for c in cases {
        let start = period_start(&c.period, c.day, c.tz, c.at);
        let next = next_boundary(&c.period, c.day, c.tz, c.at);
        assert_eq!((start, next), (c.start, c.next), "{}", c.what);
        if let (Some(start), Some(next)) = (start, next) {
            assert!(start <= c.at && c.at < next, "{}: not around at", c.what);
            // The start is itself a boundary: the period right before it ends there.
            let before = c.at.min(start) - chrono::Duration::seconds(1);
            assert_eq!(
                next_boundary(&c.period, c.day, c.tz, before),
                Some(start),
                "{}: start is not the boundary after the previous period",
                c.what
            );
        }
    }
}

#[test]
#[rustfmt::skip]
fn monthly_with_month_ends() {
    use Period::Monthly;
    check(vec![
        case("day 1 mid-month", Monthly, 1, UTC, utc(2026, 11, 15, 9, 0), utc(2026, 11, 1, 0, 0), utc(2026, 12, 1, 0, 0)),
        case("day 1 exactly at the boundary", Monthly, 1, UTC, utc(2026, 12, 1, 0, 0), utc(2026, 12, 1, 0, 0), utc(2027, 1, 1, 0, 0)),
        case("day 1 one minute before new year", Monthly, 1, UTC, utc(2026, 12, 31, 23, 59), utc(2026, 12, 1, 0, 0), utc(2027, 1, 1, 0, 0)),
        case("day 15 across the year", Monthly, 15, UTC, utc(2026, 1, 10, 0, 0), utc(2025, 12, 15, 0, 0), utc(2026, 1, 15, 0, 0)),
        case("day 31 early February", Monthly, 31, UTC, utc(2026, 2, 10, 0, 0), utc(2026, 1, 31, 0, 0), utc(2026, 2, 28, 0, 0)),
        case("day 31 is Feb 28 in 2026", Monthly, 31, UTC, utc(2026, 2, 28, 0, 0), utc(2026, 2, 28, 0, 0), utc(2026, 3, 31, 0, 0)),
        case("day 31 on March 30", Monthly, 31, UTC, utc(2026, 3, 30, 12, 0), utc(2026, 2, 28, 0, 0), utc(2026, 3, 31, 0, 0)),
        case("day 31 in April is the 30th", Monthly, 31, UTC, utc(2026, 4, 30, 5, 0), utc(2026, 4, 30, 0, 0), utc(2026, 5, 31, 0, 0)),
        case("day 30 in a leap February", Monthly, 30, UTC, utc(2028, 2, 29, 1, 0), utc(2028, 2, 29, 0, 0), utc(2028, 3, 30, 0, 0)),
        case("day 29 in a common February", Monthly, 29, UTC, utc(2026, 3, 1, 0, 0), utc(2026, 2, 28, 0, 0), utc(2026, 3, 29, 0, 0)),
        case("Berlin: November starts at 23:00 UTC", Monthly, 1, BERLIN, utc(2026, 11, 15, 0, 0), utc(2026, 10, 31, 23, 0), utc(2026, 11, 30, 23, 0)),
        case("Berlin: last half hour of October (CET) is still October", Monthly, 1, BERLIN, utc(2026, 10, 31, 22, 30), utc(2026, 9, 30, 22, 0), utc(2026, 10, 31, 23, 0)),
    ]);
}

#[test]
#[rustfmt::skip]
fn daily_and_weekly_across_dst() {
    use Period::{Daily, Weekly};
    check(vec![
        case("UTC day", Daily, 1, UTC, utc(2026, 11, 28, 10, 0), utc(2026, 11, 28, 0, 0), utc(2026, 11, 29, 0, 0)),
        // 2026-03-29: 02:00 CET -> 03:00 CEST, a 23-hour day.
        case("Berlin spring-forward day", Daily, 1, BERLIN, utc(2026, 3, 29, 12, 0), utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0)),
        case("Berlin in the skipped hour", Daily, 1, BERLIN, utc(2026, 3, 29, 1, 30), utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0)),
        // 2026-10-25: 03:00 CEST -> 02:00 CET, a 25-hour day.
        case("Berlin fall-back day", Daily, 1, BERLIN, utc(2026, 10, 25, 12, 0), utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 23, 0)),
        case("Berlin in the repeated hour", Daily, 1, BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 23, 0)),
        case("UTC Sunday night", Weekly, 1, UTC, utc(2026, 11, 29, 23, 59), utc(2026, 11, 23, 0, 0), utc(2026, 11, 30, 0, 0)),
        case("UTC Monday 00:00", Weekly, 1, UTC, utc(2026, 11, 30, 0, 0), utc(2026, 11, 30, 0, 0), utc(2026, 12, 7, 0, 0)),
        case("Berlin week with the spring change", Weekly, 1, BERLIN, utc(2026, 3, 29, 12, 0), utc(2026, 3, 22, 23, 0), utc(2026, 3, 29, 22, 0)),
        case("Berlin week across new year", Weekly, 1, BERLIN, utc(2027, 1, 1, 12, 0), utc(2026, 12, 27, 23, 0), utc(2027, 1, 3, 23, 0)),
    ]);
}

#[test]
fn a_midnight_that_does_not_exist_starts_the_day_when_the_clocks_jump() {
    // Chile moves its clocks from 24:00 to 01:00: 2026-09-06 00:00 does not exist in
    // America/Santiago; the day begins at 01:00 -03, which is 04:00 UTC.
    let santiago = chrono_tz::America::Santiago;
    let day = chrono::NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
    let naive = day.and_time(chrono::NaiveTime::MIN);
    assert!(
        matches!(santiago.from_local_datetime(&naive), LocalResult::None),
        "zone data: expected a gap at midnight"
    );
    let start = local_midnight(santiago, day);
    assert_eq!(start, utc(2026, 9, 6, 4, 0));
    assert_eq!(
        start.with_timezone(&santiago).format("%H:%M").to_string(),
        "01:00"
    );
    check(vec![case(
        "Santiago day after the gap",
        Period::Daily,
        1,
        santiago,
        utc(2026, 9, 6, 12, 0),
        utc(2026, 9, 6, 4, 0),
        utc(2026, 9, 7, 3, 0),
    )]);
}

#[test]
#[rustfmt::skip]
fn cron_periods() {
    check(vec![
        case("weekly by cron", cron("0 0 0 * * MON"), 1, UTC, utc(2026, 11, 29, 10, 0), utc(2026, 11, 23, 0, 0), utc(2026, 11, 30, 0, 0)),
        case("monthly at 06:00 local, across DST", cron("0 0 6 1 * *"), 1, BERLIN, utc(2026, 11, 1, 4, 0), utc(2026, 10, 1, 4, 0), utc(2026, 11, 1, 5, 0)),
        case("every 10 seconds", cron("*/10 * * * * *"), 1, UTC, utc(2026, 11, 28, 12, 0) + chrono::Duration::seconds(5), utc(2026, 11, 28, 12, 0), utc(2026, 11, 28, 12, 0) + chrono::Duration::seconds(10)),
        case("yearly, looked back over months", cron("0 0 0 1 1 *"), 1, UTC, utc(2026, 11, 28, 0, 0), utc(2026, 1, 1, 0, 0), utc(2027, 1, 1, 0, 0)),
    ]);
}

#[test]
fn cron_at_a_skipped_local_time_still_moves_forward() {
    // 02:30 does not exist in Berlin on 2026-03-29; the boundaries stay increasing and
    // each day has exactly one.
    let period = cron("0 30 2 * * *");
    let mut at = utc(2026, 3, 27, 12, 0);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let next = next_boundary(&period, 1, BERLIN, at).expect("fires daily");
        assert!(next > at);
        assert_eq!(period_start(&period, 1, BERLIN, next), Some(next));
        seen.push(next.with_timezone(&BERLIN).date_naive());
        at = next;
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[test]
fn never_has_no_boundaries() {
    let at = utc(2026, 11, 28, 10, 0);
    assert_eq!(period_start(&Period::Never, 1, UTC, at), None);
    assert_eq!(next_boundary(&Period::Never, 1, UTC, at), None);
}

#[test]
fn a_schedule_that_only_fired_long_ago_is_found() {
    // Fires only in 2020: more than ten years back from 2031, nothing is found.
    let period = cron("0 0 0 1 1 * 2020");
    assert_eq!(
        period_start(&period, 1, UTC, utc(2026, 11, 28, 0, 0)),
        Some(utc(2020, 1, 1, 0, 0))
    );
    assert_eq!(
        next_boundary(&period, 1, UTC, utc(2026, 11, 28, 0, 0)),
        None
    );
    assert_eq!(period_start(&period, 1, UTC, utc(2031, 1, 2, 0, 0)), None);
}
