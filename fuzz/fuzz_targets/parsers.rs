//! The cron, size and duration parsers on arbitrary text: none panics, and a schedule
//! that parses yields increasing run times after the instant asked about.
#![no_main]

use chrono::{TimeZone, Utc};
use keywarden::config::Schedule;
use keywarden::config::raw::NumOrStr;
use keywarden::config::units::{parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_size(&NumOrStr::Str(text.to_string()));
    let _ = parse_duration(&NumOrStr::Str(text.to_string()));
    if let Ok(schedule) = Schedule::parse(&text) {
        let after = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
        for zone in [chrono_tz::Tz::UTC, chrono_tz::Europe::Berlin] {
            let runs = schedule.next_runs(zone, after, 3);
            assert!(
                runs.windows(2).all(|pair| pair[0] < pair[1]),
                "{text}: {runs:?}"
            );
            assert!(
                runs.iter().all(|run| run.with_timezone(&Utc) > after),
                "{text}"
            );
        }
    }
});
