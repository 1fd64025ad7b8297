//! Threshold tests: each level once, jumps over several levels, on_exceed actions, the
//! delete grace, and re-arming when the limit is raised.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::Period;
use crate::quota::ledger::{KeyInfo, Reading, adopt};

const GIB: u64 = 1 << 30;

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, hour, 0, 0).unwrap()
}

fn policy(on_exceed: OnExceed) -> QuotaPolicy {
    QuotaPolicy {
        limit_bytes: Some(10 * GIB),
        period: Period::Monthly,
        period_day: 1,
        warn_at: vec![80, 95],
        on_exceed,
        grace: Duration::from_secs(6 * 3600),
        allow_mass: false,
    }
}

fn entry() -> Entry {
    let key = KeyInfo {
        id: "k",
        uuid: "u",
        name: "n",
    };
    adopt(&key, Reading::Idle, at(0), at(0)).expect("adopted")
}

/// What a run at `used` bytes raised: (warning levels, exceeded, action).
type Seen = (Vec<u8>, bool, Option<ExceedAction>);

fn run(entry: &mut Entry, policy: &QuotaPolicy, used: u64, hour: u32) -> Seen {
    entry.used = used;
    let (notices, action) = evaluate(entry, policy, true, at(hour));
    let mut warned = Vec::new();
    let mut exceeded = false;
    for notice in notices {
        match notice {
            Notice::Warning { crossed, .. } => warned = crossed,
            Notice::Exceeded { .. } => exceeded = true,
            Notice::DeleteCancelled { .. } => panic!("unexpected cancel"),
        }
    }
    (warned, exceeded, action)
}

#[test]
fn each_level_is_raised_once_as_use_grows() {
    let policy = policy(OnExceed::Alert);
    let mut entry = entry();
    let steps: [(u64, Seen); 7] = [
        (5 * GIB, (vec![], false, None)),
        (8 * GIB + 1, (vec![80], false, None)),
        (9 * GIB, (vec![], false, None)),
        (9 * GIB + GIB * 6 / 10, (vec![95], false, None)),
        (10 * GIB - 1, (vec![], false, None)),
        (10 * GIB, (vec![], true, None)),
        (15 * GIB, (vec![], false, None)),
    ];
    for (hour, (used, want)) in steps.into_iter().enumerate() {
        assert_eq!(
            run(&mut entry, &policy, used, hour as u32),
            want,
            "at {used}"
        );
    }
    assert_eq!(entry.warned, 95);
    assert_eq!(entry.exceeded_at, Some(at(5)));
}

#[test]
fn a_jump_over_every_level_raises_them_together() {
    let mut entry = entry();
    let seen = run(&mut entry, &policy(OnExceed::Alert), 12 * GIB, 1);
    assert_eq!(seen, (vec![80, 95], true, None));
}

#[test]
fn reset_is_asked_for_while_over_the_limit() {
    let policy = policy(OnExceed::Reset);
    let mut entry = entry();
    assert_eq!(
        run(&mut entry, &policy, 11 * GIB, 1),
        (vec![80, 95], true, Some(ExceedAction::Reset))
    );
    // Until the plan starts a fresh allowance, the ask stands (the guard may have held it).
    assert_eq!(
        run(&mut entry, &policy, 11 * GIB, 2),
        (vec![], false, Some(ExceedAction::Reset))
    );
}

#[test]
fn delete_waits_for_the_grace() {
    let policy = policy(OnExceed::Delete);
    let mut entry = entry();
    entry.used = 11 * GIB;
    let (notices, action) = evaluate(&mut entry, &policy, true, at(1));
    assert_eq!(action, None);
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, Notice::Exceeded { delete_at: Some(due), .. } if *due == at(7))),
        "{notices:?}"
    );
    assert_eq!(run(&mut entry, &policy, 12 * GIB, 6), (vec![], false, None));
    assert_eq!(
        run(&mut entry, &policy, 12 * GIB, 7),
        (vec![], false, Some(ExceedAction::Delete))
    );
    // Without allow_delete (a reload that dropped it) nothing is deleted.
    let mut other = self::entry();
    other.used = 11 * GIB;
    let (_, action) = evaluate(&mut other, &policy, false, at(20));
    assert_eq!((action, other.delete_due), (None, None));
}

#[test]
fn raising_the_limit_rearms_and_calls_off_a_delete() {
    let mut policy = policy(OnExceed::Delete);
    let mut entry = entry();
    run(&mut entry, &policy, 11 * GIB, 1);
    assert!(entry.delete_due.is_some());
    policy.limit_bytes = Some(100 * GIB);
    entry.used = 11 * GIB;
    let (notices, action) = evaluate(&mut entry, &policy, true, at(2));
    assert_eq!(action, None);
    assert!(
        matches!(notices.as_slice(), [Notice::DeleteCancelled { .. }]),
        "{notices:?}"
    );
    assert_eq!(
        (entry.warned, entry.exceeded_at, entry.delete_due),
        (0, None, None)
    );
    // Crossing the new levels raises them again.
    assert_eq!(
        run(&mut entry, &policy, 81 * GIB, 3),
        (vec![80], false, None)
    );
}

#[test]
fn without_a_limit_nothing_is_raised() {
    let mut policy = policy(OnExceed::Reset);
    policy.limit_bytes = None;
    let mut entry = entry();
    assert_eq!(
        run(&mut entry, &policy, 500 * GIB, 1),
        (vec![], false, None)
    );
}

#[test]
fn percent_rounds_down_and_survives_huge_numbers() {
    assert_eq!(percent(799, 1000), 79);
    assert_eq!(percent(800, 1000), 80);
    assert_eq!(percent(u64::MAX, 1), u64::MAX);
    assert_eq!(percent(5, 0), 0);
}

#[test]
fn a_grace_too_long_to_add_never_comes_due() {
    // 99 999 999 999 999 days once wrapped to "now": a delete on the first run.
    for grace in [
        Duration::from_secs(99_999_999_999_999 * 86_400),
        Duration::from_secs(8_000 * 365 * 86_400),
        Duration::MAX,
    ] {
        let mut policy = policy(OnExceed::Delete);
        policy.grace = grace;
        let mut entry = entry();
        assert_eq!(
            run(&mut entry, &policy, 11 * GIB, 1),
            (vec![80, 95], true, None)
        );
        assert_eq!(
            run(&mut entry, &policy, 11 * GIB, 23),
            (vec![], false, None)
        );
        assert_eq!(entry.delete_due, Some(crate::clock::far_future()));
    }
}

#[test]
fn a_rule_turned_to_delete_while_over_starts_the_grace() {
    let mut entry = entry();
    assert_eq!(
        run(&mut entry, &policy(OnExceed::Alert), 11 * GIB, 1),
        (vec![80, 95], true, None)
    );
    let delete = policy(OnExceed::Delete);
    assert_eq!(run(&mut entry, &delete, 11 * GIB, 2), (vec![], false, None));
    assert_eq!(entry.delete_due, Some(at(8)));
    assert_eq!(
        run(&mut entry, &delete, 11 * GIB, 8),
        (vec![], false, Some(ExceedAction::Delete))
    );
}
