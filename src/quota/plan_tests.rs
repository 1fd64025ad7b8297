//! Planner tests: (observed, settings, now) -> (ledger, plan). Adoption, boundaries and
//! catch-up, what is exempt from a server reset, counter_resets, the guard, dry runs.
//!
//! Longer than 400 lines on purpose: a test file, one table or scenario per rule of the
//! planner.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::{AdoptMode, KeyMatcher, OnExceed, Period, QuotaRule};

const GIB: u64 = 1 << 30;

fn utc(mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, mo, d, h, 0, 0).unwrap()
}

fn policy(limit: Option<u64>, on_exceed: OnExceed) -> QuotaPolicy {
    QuotaPolicy {
        limit_bytes: limit,
        period: Period::Monthly,
        period_day: 1,
        warn_at: vec![80, 95],
        on_exceed,
        grace: Duration::from_secs(3600),
        allow_mass: false,
    }
}

fn quotas(on_exceed: OnExceed) -> QuotasConfig {
    QuotasConfig {
        defaults: policy(Some(10 * GIB), on_exceed),
        rules: Vec::new(),
        adopt: AdoptMode::Count,
    }
}

fn settings(quotas: &QuotasConfig) -> Settings<'_> {
    Settings {
        quotas,
        tz: Tz::UTC,
        allow_delete: true,
        counter_resets: CounterResets::Auto,
        dry_run: false,
    }
}

fn key(n: usize, bytes: u64) -> ObservedKey {
    ObservedKey {
        id: format!("id-{n}"),
        uuid: format!("uuid-{n}"),
        name: format!("key-{n}"),
        active: true,
        created_at: Some(utc(1, 1, 0)),
        reading: Reading::Counter {
            bytes,
            connections: Some(1),
        },
    }
}

fn observed(keys: Vec<ObservedKey>) -> Observed {
    Observed {
        server: "fra-1".into(),
        api_version: "1.0.0".into(),
        keys,
        ledger: Ledger::default(),
        memory: ServerMemory::default(),
    }
}

/// The observation after committing `accounting`, with new readings.
fn next(previous: &Observed, accounting: &Accounting, keys: Vec<ObservedKey>) -> Observed {
    Observed {
        ledger: accounting
            .entries
            .iter()
            .map(|e| (e.uuid.clone(), e.clone()))
            .collect(),
        keys,
        ..previous.clone()
    }
}

fn entry<'a>(accounting: &'a Accounting, uuid: &str) -> &'a Entry {
    accounting
        .entries
        .iter()
        .find(|e| e.uuid == uuid)
        .unwrap_or_else(|| panic!("no entry {uuid}"))
}

fn kinds(plan: &Plan) -> Vec<(ActionKind, Reason, &str)> {
    plan.actions
        .iter()
        .map(|a| (a.kind, a.reason, a.uuid.as_str()))
        .collect()
}

#[test]
fn first_run_adopts_every_key_and_resets_nothing() {
    let quotas = quotas(OnExceed::Alert);
    let first = observed(vec![key(1, 3 * GIB), key(2, 0)]);
    let (accounting, plan) = plan(&first, &settings(&quotas), utc(11, 15, 12));
    assert_eq!(accounting.adopted, 2);
    assert!(
        plan.actions.is_empty() && plan.notices.is_empty(),
        "{plan:?}"
    );
    let one = entry(&accounting, "uuid-1");
    assert_eq!(
        (one.used, one.period_start, one.adopted),
        (3 * GIB, utc(11, 1, 0), true)
    );
}

#[test]
fn growth_warns_once_and_the_boundary_resets_every_key_once() {
    let quotas = quotas(OnExceed::Alert);
    let settings = settings(&quotas);
    let first = observed(vec![key(1, GIB), key(2, GIB)]);
    let (acc, _) = plan(&first, &settings, utc(11, 15, 12));
    let second = next(&first, &acc, vec![key(1, 9 * GIB), key(2, 2 * GIB)]);
    let (acc, plan2) = plan(&second, &settings, utc(11, 20, 12));
    assert!(
        matches!(plan2.notices.as_slice(), [Notice::Warning { uuid, crossed, .. }] if uuid == "uuid-1" && *crossed == vec![80])
    );
    let third = next(&second, &acc, vec![key(1, 9 * GIB), key(2, 2 * GIB)]);
    let (acc, plan3) = plan(&third, &settings, utc(11, 21, 12));
    assert!(plan3.is_quiet(), "{plan3:?}");
    // December: both keys start a new period, the server counters are reset once each.
    let fourth = next(&third, &acc, vec![key(1, 9 * GIB + 100), key(2, 2 * GIB)]);
    let (acc, plan4) = plan(&fourth, &settings, utc(12, 1, 0));
    assert_eq!(
        kinds(&plan4),
        [
            (ActionKind::Reset, Reason::Boundary, "uuid-1"),
            (ActionKind::Reset, Reason::Boundary, "uuid-2")
        ]
    );
    assert_eq!(
        plan4.actions[0].intent_key(),
        "period 2026-12-01T00:00:00.000Z"
    );
    assert_eq!(plan4.actions[0].counter_before, Some(9 * GIB + 100));
    assert_eq!(acc.history.len(), 2);
    assert_eq!(acc.history[0].total + acc.history[1].total, 11 * GIB + 100);
    let one = entry(&acc, "uuid-1");
    assert_eq!(
        (one.used, one.period_start, one.adopted, one.expect_drop),
        (0, utc(12, 1, 0), false, true)
    );
    // The next run in December: no second reset.
    let fifth = next(&fourth, &acc, vec![key(1, 5), key(2, 7)]);
    let (acc, plan5) = plan(&fifth, &settings, utc(12, 1, 1));
    assert!(plan5.actions.is_empty(), "{plan5:?}");
    assert!(acc.drops.is_empty(), "the drop after our reset is expected");
    assert_eq!(entry(&acc, "uuid-1").used, 5);
}

#[test]
fn a_missed_boundary_is_caught_up_once() {
    let quotas = quotas(OnExceed::Alert);
    let settings = settings(&quotas);
    let first = observed(vec![key(1, GIB)]);
    let (acc, _) = plan(&first, &settings, utc(9, 20, 0));
    // Down from September 20 to November 3: two boundaries passed, one reset.
    let later = next(&first, &acc, vec![key(1, 2 * GIB)]);
    let (acc, plan2) = plan(&later, &settings, utc(11, 3, 0));
    assert_eq!(
        kinds(&plan2),
        [(ActionKind::Reset, Reason::Boundary, "uuid-1")]
    );
    assert_eq!(acc.history.len(), 1);
    assert_eq!(
        (acc.history[0].period_start, acc.history[0].period_end),
        (utc(9, 1, 0), utc(11, 1, 0))
    );
    assert_eq!(
        acc.history[0].total,
        2 * GIB,
        "growth while down goes to the period that ended"
    );
}

#[test]
fn boundary_exemptions_inactive_new_keys_and_counter_resets() {
    let quotas = quotas(OnExceed::Alert);
    let mut inactive = key(2, GIB);
    inactive.active = false;
    let mut fresh = key(3, GIB);
    fresh.created_at = Some(utc(12, 1, 0) + chrono::Duration::minutes(5));
    let keys = vec![key(1, GIB), inactive, fresh];
    for (mode, version, want_resets, want_mode) in [
        (CounterResets::Auto, "1.0.0", 1, ServerResets::Call),
        (CounterResets::Always, "1.0.0", 1, ServerResets::Call),
        (CounterResets::Never, "1.0.0", 0, ServerResets::Never),
        (
            CounterResets::Auto,
            "1.0.0",
            0,
            ServerResets::Suspended {
                version: "1.0.0".into(),
            },
        ),
        (CounterResets::Auto, "1.1.0", 1, ServerResets::Call),
    ] {
        let mut settings = settings(&quotas);
        settings.counter_resets = mode;
        let mut first = observed(keys.clone());
        let (acc, _) = plan(&first, &settings, utc(11, 20, 0));
        if matches!(want_mode, ServerResets::Suspended { .. }) || version != "1.0.0" {
            first.memory.resets_suspended_version = Some("1.0.0".into());
        }
        first.api_version = version.into();
        let later = next(&first, &acc, keys.clone());
        let (acc, plan2) = plan(&later, &settings, utc(12, 1, 6));
        assert_eq!(plan2.actions.len(), want_resets, "{mode:?} {version}");
        assert_eq!(plan2.server_resets, want_mode, "{mode:?} {version}");
        assert_eq!(plan2.boundaries, 3);
        assert_eq!(plan2.ledger_only_resets, 3 - want_resets);
        assert_eq!(plan2.resets_resumed, version == "1.1.0");
        assert!(acc.entries.iter().all(|e| e.period_start == utc(12, 1, 0)));
    }
}

#[test]
#[rustfmt::skip]
fn the_guard_blocks_mass_resets_outside_a_boundary() {
    // (keys on the server, keys over the limit, allow_mass) -> blocked
    let cases = [
        (10, 6, false, true),
        (10, 5, false, false),
        (30, 6, false, false),
        (29, 6, false, true),
        (10, 6, true, false),
    ];
    for (total, over, allow_mass, blocked) in cases {
        let mut quotas = quotas(OnExceed::Reset);
        if allow_mass {
            let mut policy = quotas.defaults.clone();
            policy.allow_mass = true;
            quotas.rules.push(QuotaRule {
                matcher: KeyMatcher::NameGlob("*".into()),
                server: None,
                policy,
            });
        }
        // Adopted first: keywarden never acts in the run that adopts a key.
        let first = observed((0..total).map(|n| key(n, GIB)).collect());
        let (acc, _) = plan(&first, &settings(&quotas), utc(11, 20, 0));
        let keys = (0..total)
            .map(|n| key(n, if n < over { 11 * GIB } else { GIB }))
            .collect();
        let (acc, plan) = plan(&next(&first, &acc, keys), &settings(&quotas), utc(11, 20, 1));
        let case = format!("{total} keys, {over} over, allow_mass {allow_mass}");
        assert_eq!(plan.blocked.len(), if blocked { over } else { 0 }, "{case}");
        assert_eq!(plan.actions.len(), if blocked { 0 } else { over }, "{case}");
        let reset_in_ledger = acc.entries.iter().filter(|e| e.exceed_resets == 1).count();
        assert_eq!(reset_in_ledger, plan.actions.len(), "{case}: fresh allowances");
        assert_eq!(plan.notices.iter().filter(|n| matches!(n, Notice::Exceeded { .. })).count(), over);
    }
}

#[test]
fn boundary_resets_are_never_blocked() {
    let quotas = quotas(OnExceed::Alert);
    let settings = settings(&quotas);
    let keys: Vec<ObservedKey> = (0..20).map(|n| key(n, GIB)).collect();
    let first = observed(keys.clone());
    let (acc, _) = plan(&first, &settings, utc(11, 20, 0));
    let (_, plan) = plan(&next(&first, &acc, keys), &settings, utc(12, 1, 0));
    assert_eq!((plan.actions.len(), plan.blocked.len()), (20, 0));
}

#[test]
fn exceeded_reset_starts_a_fresh_allowance_except_in_a_dry_run() {
    let quotas = quotas(OnExceed::Reset);
    for dry_run in [false, true] {
        let mut settings = settings(&quotas);
        settings.dry_run = dry_run;
        let first = observed(vec![key(1, GIB)]);
        let (acc, _) = plan(&first, &settings, utc(11, 2, 0));
        let second = next(&first, &acc, vec![key(1, 12 * GIB)]);
        let (acc, plan2) = plan(&second, &settings, utc(11, 3, 0));
        assert_eq!(
            kinds(&plan2),
            [(ActionKind::Reset, Reason::Exceeded, "uuid-1")]
        );
        assert_eq!(
            plan2.actions[0].intent_key(),
            "exceeded 2026-11-01T00:00:00.000Z #1"
        );
        let one = entry(&acc, "uuid-1");
        match dry_run {
            false => assert_eq!((one.used, one.exceed_resets, one.expect_drop), (0, 1, true)),
            true => assert_eq!(
                (one.used, one.exceed_resets, one.expect_drop),
                (12 * GIB, 0, false)
            ),
        }
        assert_eq!(
            one.counter,
            Some(12 * GIB),
            "the ledger records usage either way"
        );
    }
}

#[test]
fn delete_after_the_grace_and_gone_keys() {
    let quotas = quotas(OnExceed::Delete);
    let settings = settings(&quotas);
    let first = observed(vec![key(1, 12 * GIB), key(2, GIB)]);
    let (acc, plan1) = plan(&first, &settings, utc(11, 2, 0));
    assert!(plan1.actions.is_empty());
    let second = next(&first, &acc, vec![key(1, 12 * GIB), key(2, GIB)]);
    let (acc, plan2) = plan(&second, &settings, utc(11, 2, 1));
    assert_eq!(
        kinds(&plan2),
        [(ActionKind::Delete, Reason::GraceEnded, "uuid-1")]
    );
    // The key is gone from the server: its entry is marked, once.
    let third = next(&second, &acc, vec![key(2, GIB)]);
    let (acc, plan3) = plan(&third, &settings, utc(11, 2, 2));
    assert!(plan3.actions.is_empty());
    assert_eq!(entry(&acc, "uuid-1").gone_at, Some(utc(11, 2, 2)));
    let fourth = next(&third, &acc, vec![key(2, GIB)]);
    let (acc, _) = plan(&fourth, &settings, utc(11, 2, 3));
    assert!(
        acc.entries.iter().all(|e| e.uuid != "uuid-1"),
        "not rewritten"
    );
}

#[test]
fn failed_readings_leave_the_ledger_alone() {
    let quotas = quotas(OnExceed::Alert);
    let settings = settings(&quotas);
    let first = observed(vec![key(1, GIB)]);
    let (acc, _) = plan(&first, &settings, utc(11, 2, 0));
    let mut failed = key(1, 0);
    failed.reading = Reading::Failed;
    let mut unseen = key(2, 0);
    unseen.reading = Reading::Failed;
    let second = next(&first, &acc, vec![failed, unseen]);
    let (acc2, _) = plan(&second, &settings, utc(11, 2, 1));
    assert_eq!(acc2.failed_readings, 2);
    assert_eq!(entry(&acc2, "uuid-1"), entry(&acc, "uuid-1"));
    assert!(
        acc2.entries.iter().all(|e| e.uuid != "uuid-2"),
        "no reading, no adoption"
    );
}

#[test]
fn baseline_adoption_counts_from_the_first_reading() {
    let mut quotas = quotas(OnExceed::Reset);
    quotas.adopt = AdoptMode::Baseline;
    let settings = settings(&quotas);
    // 12 GiB at first sight (months of history): not this period's usage.
    let first = observed(vec![key(1, 12 * GIB), key(2, 0)]);
    let (acc, plan1) = plan(&first, &settings, utc(11, 15, 12));
    assert!(plan1.is_quiet(), "{plan1:?}");
    let one = entry(&acc, "uuid-1");
    assert_eq!(
        (one.used, one.period_total, one.counter, one.adopted),
        (0, 0, Some(12 * GIB), true)
    );
    // Growth from there counts.
    let second = next(&first, &acc, vec![key(1, 15 * GIB), key(2, 0)]);
    let (acc, plan2) = plan(&second, &settings, utc(11, 15, 13));
    assert_eq!(entry(&acc, "uuid-1").used, 3 * GIB);
    assert!(plan2.actions.is_empty());
}

#[test]
fn baseline_adoption_of_an_idle_key_takes_its_first_figure_as_the_baseline() {
    let mut quotas = quotas(OnExceed::Reset);
    quotas.adopt = AdoptMode::Baseline;
    let settings = settings(&quotas);
    let mut idle = key(1, 0);
    idle.reading = Reading::Idle;
    let first = observed(vec![idle]);
    let (acc, _) = plan(&first, &settings, utc(11, 15, 12));
    assert_eq!(entry(&acc, "uuid-1").counter, None);
    let second = next(&first, &acc, vec![key(1, 30 * GIB)]);
    let (acc, plan2) = plan(&second, &settings, utc(11, 15, 13));
    let one = entry(&acc, "uuid-1");
    assert_eq!((one.used, one.counter), (0, Some(30 * GIB)));
    assert!(plan2.actions.is_empty() && plan2.notices.is_empty());
}

#[test]
fn count_adoption_counts_history_but_acts_only_after_the_adoption_run() {
    for on_exceed in [OnExceed::Reset, OnExceed::Delete] {
        let quotas = quotas(on_exceed);
        let settings = settings(&quotas);
        let first = observed(vec![key(1, 12 * GIB)]);
        let (acc, plan1) = plan(&first, &settings, utc(11, 15, 12));
        assert_eq!(entry(&acc, "uuid-1").used, 12 * GIB, "{on_exceed:?}");
        assert!(plan1.actions.is_empty() && plan1.blocked.is_empty());
        assert!(
            matches!(plan1.notices.last(), Some(Notice::Exceeded { .. })),
            "the notice is raised: {plan1:?}"
        );
        // The next run (past the delete's 1 h grace) acts.
        let second = next(&first, &acc, vec![key(1, 12 * GIB)]);
        let (_, plan2) = plan(&second, &settings, utc(11, 15, 14));
        assert_eq!(plan2.actions.len(), 1, "{on_exceed:?}: {plan2:?}");
    }
}

#[test]
fn ambiguous_keys_are_left_alone_and_the_others_handled() {
    let quotas = quotas(OnExceed::Reset);
    let settings = settings(&quotas);
    let first = observed(vec![key(1, GIB), key(2, GIB)]);
    let (acc, _) = plan(&first, &settings, utc(11, 2, 0));
    let mut shared = key(1, 50 * GIB);
    shared.reading = Reading::Ambiguous;
    let second = next(&first, &acc, vec![shared, key(2, 50 * GIB)]);
    let (acc2, plan2) = plan(&second, &settings, utc(11, 2, 1));
    assert_eq!(acc2.ambiguous, 1);
    assert_eq!(acc2.failed_readings, 0);
    assert_eq!(
        entry(&acc2, "uuid-1"),
        entry(&acc, "uuid-1"),
        "untouched, not gone"
    );
    assert_eq!(
        kinds(&plan2),
        [(ActionKind::Reset, Reason::Exceeded, "uuid-2")]
    );
    assert!(
        plan2
            .notices
            .iter()
            .all(|n| !matches!(n, Notice::Exceeded { uuid, .. } if uuid == "uuid-1"))
    );
}

#[test]
fn implausible_readings_are_rejected_and_the_ledger_never_saturates() {
    let quotas = quotas(OnExceed::Delete);
    let settings = settings(&quotas);
    let first = observed(vec![
        key(1, GIB),
        key(2, GIB),
        key(3, 18_000_000_000_000_000_000),
    ]);
    let (acc, plan1) = plan(&first, &settings, utc(11, 2, 0));
    assert_eq!(acc.implausible.len(), 1, "a first reading beyond 2^53");
    assert_eq!(acc.implausible[0].uuid, "uuid-3");
    assert!(
        acc.entries.iter().all(|e| e.uuid != "uuid-3"),
        "not adopted"
    );
    assert!(plan1.actions.is_empty());
    // Ten minutes later: 15.6 EiB, and a jump no link carries in ten minutes.
    let jump = GIB + 600 * plausible::MAX_BYTES_PER_SECOND + plausible::SLACK_BYTES + 1;
    let second = next(
        &first,
        &acc,
        vec![key(1, 18_000_000_000_000_000_000), key(2, jump)],
    );
    let (acc2, plan2) = plan(
        &second,
        &settings,
        utc(11, 2, 0) + chrono::Duration::minutes(10),
    );
    let rejected: Vec<(&str, &Implausible)> = acc2
        .implausible
        .iter()
        .map(|r| (r.uuid.as_str(), &r.why))
        .collect();
    assert!(
        matches!(rejected[0], ("uuid-1", Implausible::TooLarge { .. })),
        "{rejected:?}"
    );
    assert!(
        matches!(
            rejected[1],
            ("uuid-2", Implausible::TooFast { seconds: 600, .. })
        ),
        "{rejected:?}"
    );
    for uuid in ["uuid-1", "uuid-2"] {
        let before = entry(&acc, uuid);
        let after = entry(&acc2, uuid);
        assert_eq!(
            (after.used, after.period_total, after.counter),
            (before.used, before.period_total, before.counter)
        );
    }
    assert!(plan2.is_quiet(), "no warning, no delete: {plan2:?}");
}
