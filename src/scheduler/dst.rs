//! Daylight saving time, pure (no clock, no scheduler): when a task set must be registered
//! again because its time zone's UTC offset moved, and which run the change made it miss.

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Schedule;

/// The UTC offset of `tz` at `at`, in seconds east of UTC (Berlin in winter: 3600).
/// Computed the way tokio-cron-scheduler 0.15 freezes it in `Job::new_async_tz`.
pub(super) fn utc_offset_secs(tz: Tz, at: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Whether tasks registered in `tz` while its offset was `registered_offset_secs` must be
/// registered again at `now`. tokio-cron-scheduler turns the zone into that fixed offset when
/// a job is created (open upstream bug), so after a DST change every local-time schedule
/// would run an hour off until the jobs are created anew.
pub(super) fn needs_reregistration(
    tz: Tz,
    registered_offset_secs: i32,
    now: DateTime<Utc>,
) -> bool {
    utc_offset_secs(tz, now) != registered_offset_secs
}

/// The run of `schedule` owed after a re-registration: the first occurrence strictly after
/// `valid_through` (the last moment the old registration's offset was known to be right), if
/// it is already due at `now`. The old jobs skip such an occurrence (it came after their
/// offset went stale) and the new jobs start after `now`, so without this it would be lost:
/// a daily "0 0 3 * * *" in Berlin on the spring change day, say. Only the first one: like the
/// crate, which runs a late job once, not once per missed occurrence.
pub(super) fn owed_run(
    schedule: &Schedule,
    tz: Tz,
    valid_through: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let next = schedule
        .next_runs(tz, valid_through, 1)
        .into_iter()
        .next()?;
    let next = next.with_timezone(&Utc);
    (next <= now).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use chrono_tz::{America, Asia, Europe};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid time")
    }

    const HOUR: i32 = 3600;

    #[test]
    fn berlin_across_the_spring_change() {
        // CET (+1) -> CEST (+2) on 2026-03-29 at 01:00 UTC (02:00 local).
        let registered = utc_offset_secs(Europe::Berlin, utc(2026, 3, 28, 12, 0, 0));
        assert_eq!(registered, HOUR);
        let table = [
            (utc(2026, 3, 29, 0, 59, 59), false),
            (utc(2026, 3, 29, 1, 0, 0), true),
            (utc(2026, 3, 29, 1, 1, 0), true),
            (utc(2026, 7, 1, 0, 0, 0), true),
        ];
        for (now, want) in table {
            assert_eq!(
                needs_reregistration(Europe::Berlin, registered, now),
                want,
                "{now}"
            );
        }
        // Once registered again in summer time, nothing more to do until autumn.
        assert!(!needs_reregistration(
            Europe::Berlin,
            2 * HOUR,
            utc(2026, 3, 29, 1, 1, 0)
        ));
    }

    #[test]
    fn berlin_across_the_autumn_change() {
        // CEST (+2) -> CET (+1) on 2026-10-25 at 01:00 UTC (03:00 local).
        let table = [
            (utc(2026, 10, 25, 0, 59, 59), false),
            (utc(2026, 10, 25, 1, 0, 0), true),
        ];
        for (now, want) in table {
            assert_eq!(
                needs_reregistration(Europe::Berlin, 2 * HOUR, now),
                want,
                "{now}"
            );
        }
        assert!(!needs_reregistration(
            Europe::Berlin,
            HOUR,
            utc(2026, 10, 25, 1, 0, 0)
        ));
    }

    #[test]
    fn new_york_across_both_changes() {
        // EST (-5) -> EDT (-4) on 2026-03-08 at 07:00 UTC; back on 2026-11-01 at 06:00 UTC.
        let ny = America::New_York;
        assert_eq!(utc_offset_secs(ny, utc(2026, 1, 15, 0, 0, 0)), -5 * HOUR);
        assert!(!needs_reregistration(
            ny,
            -5 * HOUR,
            utc(2026, 3, 8, 6, 59, 59)
        ));
        assert!(needs_reregistration(
            ny,
            -5 * HOUR,
            utc(2026, 3, 8, 7, 0, 0)
        ));
        assert!(!needs_reregistration(
            ny,
            -4 * HOUR,
            utc(2026, 3, 8, 7, 0, 0)
        ));
        assert!(!needs_reregistration(
            ny,
            -4 * HOUR,
            utc(2026, 11, 1, 5, 59, 59)
        ));
        assert!(needs_reregistration(
            ny,
            -4 * HOUR,
            utc(2026, 11, 1, 6, 0, 0)
        ));
    }

    #[test]
    fn owed_run_is_the_first_occurrence_the_change_skipped() {
        let berlin = Europe::Berlin;
        let daily_3am = Schedule::parse("0 0 3 * * *").expect("valid");
        // Spring: 03:00 CEST = 01:00 UTC, the very instant of the change. Last confirmed at
        // 00:59:30, noticed at 01:00:30: owed. Noticed before it was due: not owed yet.
        let valid = utc(2026, 3, 29, 0, 59, 30);
        assert_eq!(
            owed_run(&daily_3am, berlin, valid, utc(2026, 3, 29, 1, 0, 30)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        assert_eq!(
            owed_run(&daily_3am, berlin, valid, utc(2026, 3, 29, 0, 59, 59)),
            None
        );
        // Autumn: 03:00 CET = 02:00 UTC, an hour after the change: the new job runs it.
        assert_eq!(
            owed_run(
                &daily_3am,
                berlin,
                utc(2026, 10, 25, 0, 59, 30),
                utc(2026, 10, 25, 1, 0, 30)
            ),
            None
        );
        // A run already confirmed (valid_through at or after it) is not owed again; many
        // missed occurrences are owed once.
        let every_5s = Schedule::parse("*/5 * * * * *").expect("valid");
        assert_eq!(
            owed_run(
                &every_5s,
                berlin,
                utc(2026, 3, 29, 1, 0, 0),
                utc(2026, 3, 29, 1, 0, 4)
            ),
            None
        );
        assert_eq!(
            owed_run(
                &every_5s,
                berlin,
                utc(2026, 3, 29, 0, 59, 58),
                utc(2026, 3, 29, 1, 0, 59)
            ),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
    }

    #[test]
    fn utc_and_zones_without_dst_never_need_it() {
        let mut now = utc(2026, 1, 1, 0, 30, 0);
        while now < utc(2027, 1, 1, 0, 0, 0) {
            assert!(!needs_reregistration(Tz::UTC, 0, now), "{now}");
            assert!(!needs_reregistration(Asia::Tokyo, 9 * HOUR, now), "{now}");
            now += Duration::hours(1);
        }
    }
}
