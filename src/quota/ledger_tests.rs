//! Table-driven tests of the ledger: growth, drops, missing readings, keywarden's own
//! resets, a sync restart, adoption, the period roll-over and the reset verification.

use chrono::{DateTime, TimeZone, Utc};

use super::*;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, minute, 0).unwrap()
}

const KEY: KeyInfo<'static> = KeyInfo {
    id: "k1",
    uuid: "u1",
    name: "Alice iPhone",
};

fn counter(bytes: u64) -> Reading {
    Reading::Counter {
        bytes,
        connections: None,
    }
}

/// An entry that last read `last` (None: never) with `used` bytes counted.
fn entry(last: Option<u64>, used: u64) -> Entry {
    let mut entry = adopt(&KEY, Reading::Idle, at(0), at(0)).expect("adopted");
    entry.counter = last;
    entry.used = used;
    entry.period_total = used;
    entry
}

struct Case {
    what: &'static str,
    last: Option<u64>,
    expect_drop: bool,
    sync_at: Option<DateTime<Utc>>,
    reading: Reading,
    /// (counter, used) afterwards.
    want: (Option<u64>, u64),
    reported_drop: bool,
}

#[test]
#[rustfmt::skip]
fn readings_update_the_ledger() {
    let base = Case {
        what: "",
        last: Some(1_000),
        expect_drop: false,
        sync_at: None,
        reading: Reading::Failed,
        want: (Some(1_000), 500),
        reported_drop: false,
    };
    let cases = [
        Case { what: "growth adds the difference", reading: counter(1_600), want: (Some(1_600), 1_100), ..base },
        Case { what: "an unchanged counter adds nothing", reading: counter(1_000), want: (Some(1_000), 500), ..base },
        Case { what: "a drop adds the new value and is reported", reading: counter(300), want: (Some(300), 800), reported_drop: true, ..base },
        Case { what: "a drop to zero adds nothing and is reported", reading: counter(0), want: (Some(0), 500), reported_drop: true, ..base },
        Case { what: "a failed reading changes nothing", reading: Reading::Failed, ..base },
        Case { what: "idle (absent from the bulk answer) is no new traffic", reading: Reading::Idle, ..base },
        Case { what: "after keywarden's own reset the drop is expected", expect_drop: true, reading: counter(200), want: (Some(200), 700), ..base },
        Case { what: "after a reset the server ignored, growth still counts", expect_drop: true, reading: counter(1_050), want: (Some(1_050), 550), ..base },
        Case { what: "a drop across a sync is expected", sync_at: Some(at(5)), reading: counter(40), want: (Some(40), 540), ..base },
        Case { what: "a sync before the last reading does not excuse a drop", sync_at: Some(at(0) - chrono::Duration::minutes(1)), reading: counter(40), want: (Some(40), 540), reported_drop: true, ..base },
        Case { what: "the first figure of a key adopted idle counts fully", last: None, reading: counter(4_000), want: (Some(4_000), 4_500), ..base },
    ];
    for case in cases {
        let mut entry = entry(case.last, 500);
        entry.expect_drop = case.expect_drop;
        entry.read_at = Some(at(0));
        let before = entry.clone();
        let accounted = account(&mut entry, &KEY, case.reading, case.sync_at, at(10));
        assert_eq!((entry.counter, entry.used), case.want, "{}", case.what);
        assert_eq!(entry.period_total, entry.used, "{}", case.what);
        assert_eq!(accounted.drop.is_some(), case.reported_drop, "{}", case.what);
        assert_eq!(accounted.growth, case.want.1 - 500, "{}", case.what);
        match case.reading {
            Reading::Failed => assert_eq!(entry, before, "{}: untouched", case.what),
            _ => assert_eq!(entry.read_at, Some(at(10)), "{}", case.what),
        }
        if let Reading::Counter { .. } = case.reading {
            assert!(!entry.expect_drop, "{}: a reading settles the reset", case.what);
        }
    }
}

#[test]
fn a_reported_drop_names_the_key_and_both_values() {
    let mut entry = entry(Some(9_000), 9_000);
    let accounted = account(&mut entry, &KEY, counter(10), None, at(10));
    assert_eq!(
        accounted.drop,
        Some(Drop {
            uuid: "u1".into(),
            name: "Alice iPhone".into(),
            from: 9_000,
            to: 10
        })
    );
    assert!(accounted.changed);
    assert_eq!(entry.changed_at, Some(at(10)));
}

#[test]
fn adoption_counts_the_current_counter() {
    let adopted = adopt(&KEY, counter(7_000), at(0), at(3)).expect("adopted");
    assert_eq!(
        (adopted.counter, adopted.used, adopted.period_total),
        (Some(7_000), 7_000, 7_000)
    );
    assert!(adopted.adopted);
    assert_eq!(adopted.first_seen, at(3));
    let idle = adopt(&KEY, Reading::Idle, at(0), at(3)).expect("adopted");
    assert_eq!((idle.counter, idle.used), (None, 0));
    assert_eq!(
        adopt(&KEY, Reading::Failed, at(0), at(3)),
        None,
        "no reading, no entry"
    );
}

#[test]
fn roll_over_keeps_the_period_and_rearms() {
    let mut entry = entry(Some(5_000), 4_000);
    entry.period_total = 9_000;
    entry.warned = 95;
    entry.exceeded_at = Some(at(1));
    entry.exceed_resets = 1;
    entry.delete_due = Some(at(2));
    let history = roll_over(&mut entry, at(30), at(31));
    assert_eq!(
        (
            history.period_start,
            history.period_end,
            history.total,
            history.used,
            history.adopted
        ),
        (at(0), at(30), 9_000, 4_000, true)
    );
    assert_eq!((entry.used, entry.period_total, entry.warned), (0, 0, 0));
    assert_eq!(
        (entry.exceeded_at, entry.delete_due, entry.exceed_resets),
        (None, None, 0)
    );
    assert_eq!(entry.period_start, at(30));
    assert_eq!(entry.last_reset, Some(at(31)));
    assert!(!entry.adopted, "a full period now");
    assert_eq!(
        entry.counter,
        Some(5_000),
        "the baseline stays: only growth counts"
    );
}

#[test]
fn reset_verification_threshold() {
    const MIB: u64 = 1024 * 1024;
    let cases = [
        (Some(50 * MIB), 0, true),
        (Some(50 * MIB), MIB, true),
        (Some(50 * MIB), MIB + 1, false),
        (Some(50 * MIB), 50 * MIB, false),
        (Some(1000 * MIB), 10 * MIB, true),
        (Some(1000 * MIB), 10 * MIB + 1, false),
        (None, MIB, true),
        (None, 2 * MIB, false),
    ];
    for (before, after, applied) in cases {
        assert_eq!(
            reset_applied(before, after),
            applied,
            "{before:?} -> {after}"
        );
    }
}
