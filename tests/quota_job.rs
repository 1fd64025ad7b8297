//! The quota job against the simulated server over real HTTP, both generations, with a
//! real store and a manual clock: thresholds once per period, on_exceed reset, boundary
//! resets and catch-up, ignored resets, deletes, the guard, dry runs, drops and syncs.

mod support;

use keywarden::config::Severity;
use keywarden::finding::FindingKind;
use keywarden::sim::ApiGeneration;
use support::quota::{MIB, Rig, Setup, kinds, monthly, of_kind, start, utc};

const BOTH: [ApiGeneration; 2] = [ApiGeneration::V1, ApiGeneration::V2];

#[tokio::test]
async fn thresholds_are_raised_once_per_period() {
    for generation in BOTH {
        let rig = Rig::new(generation, 2, &monthly("alert")).await;
        rig.set_counter(0, 10 * MIB);
        rig.set_counter(1, 0);
        let first = rig.run().await;
        assert!(first.findings.is_empty(), "{generation:?}: {first:#?}");
        assert_eq!(rig.entry(0).used, 10 * MIB, "{generation:?}: adopted");

        // (counter, findings this run)
        let steps = [
            (81 * MIB, vec![FindingKind::QuotaWarning]),
            (85 * MIB, vec![]),
            (96 * MIB, vec![FindingKind::QuotaWarning]),
            (99 * MIB, vec![]),
            (100 * MIB, vec![FindingKind::QuotaExceeded]),
            (150 * MIB, vec![]),
        ];
        for (counter, want) in steps {
            rig.set_counter(0, counter);
            let result = rig.run().await;
            assert_eq!(
                kinds(&result),
                want,
                "{generation:?} at {counter}: {result:#?}"
            );
        }
        // December: a new period; the thresholds are raised again, once. (Key 1 kept
        // moving: counters frozen for days with connections open would be stale.)
        rig.set_counter(1, MIB);
        let december = rig.run_at(utc(12, 1, 0, 5)).await;
        assert!(
            december.findings.is_empty(),
            "{generation:?}: {december:#?}"
        );
        assert_eq!(rig.entry(0).period_start, utc(12, 1, 0, 0));
        let base = rig.key(0).total_bytes;
        rig.set_counter(0, base + 90 * MIB);
        let result = rig.run().await;
        assert_eq!(
            kinds(&result),
            [FindingKind::QuotaWarning],
            "{generation:?}"
        );
        let warning = &result.findings[0];
        assert_eq!(warning.subject, format!("{}@80%", rig.key(0).uuid));
        assert_eq!(warning.severity, Severity::Warning);
        assert!(
            warning
                .summary
                .contains("crossed 80% of its quota: 90.0 MiB of 100.0 MiB (90%)"),
            "{}",
            warning.summary
        );
        assert!(warning.details.contains("one-shot"), "{}", warning.details);
        rig.set_counter(0, base + 91 * MIB);
        assert!(rig.run().await.findings.is_empty(), "{generation:?}");
    }
}

#[tokio::test]
async fn on_exceed_reset_resets_exactly_that_key_once_per_crossing() {
    for generation in BOTH {
        let rig = Rig::new(generation, 3, &monthly("reset")).await;
        for i in 0..3 {
            rig.set_counter(i, 5 * MIB);
        }
        rig.run().await;
        assert_eq!(
            rig.reset_posts(),
            0,
            "{generation:?}: the first run resets nothing"
        );
        let keys = [rig.key(0), rig.key(1), rig.key(2)];
        rig.set_counter(0, 120 * MIB);
        let result = rig.run().await;
        assert_eq!(
            kinds(&result),
            [FindingKind::QuotaWarning, FindingKind::QuotaExceeded],
            "{generation:?}"
        );
        let exceeded = of_kind(&result, FindingKind::QuotaExceeded)[0];
        assert_eq!(exceeded.subject, keys[0].uuid);
        assert!(
            exceeded.details.contains("starts afresh"),
            "{}",
            exceeded.details
        );
        let resets: Vec<usize> = keys.iter().map(|k| rig.resets_of(k)).collect();
        assert_eq!(resets, [1, 0, 0], "{generation:?}");
        assert_eq!(
            rig.key(0).total_bytes,
            0,
            "{generation:?}: the sim applied it"
        );
        let entry = rig.entry(0);
        assert_eq!(
            (entry.used, entry.exceed_resets, entry.period_total),
            (0, 1, 120 * MIB)
        );

        // Growth after the reset counts from zero; nothing is reset again.
        rig.set_counter(0, 30 * MIB);
        let after = rig.run().await;
        assert!(after.findings.is_empty(), "{generation:?}: {after:#?}");
        assert_eq!(rig.entry(0).used, 30 * MIB);
        assert_eq!(rig.resets_of(&keys[0]), 1);

        // A fresh allowance: the thresholds are armed again within the period.
        rig.set_counter(0, 85 * MIB);
        assert_eq!(kinds(&rig.run().await), [FindingKind::QuotaWarning]);
        rig.set_counter(0, 101 * MIB);
        let again = rig.run().await;
        assert_eq!(
            kinds(&again),
            [FindingKind::QuotaWarning, FindingKind::QuotaExceeded]
        );
        assert_eq!(
            rig.resets_of(&keys[0]),
            2,
            "{generation:?}: second allowance"
        );
        assert_eq!(rig.reset_posts(), 2);
    }
}

#[tokio::test]
async fn the_boundary_resets_every_key_once() {
    for generation in BOTH {
        let rig = Rig::new(generation, 3, &monthly("alert")).await;
        for i in 0..3 {
            rig.set_counter(i, (i as u64 + 1) * 10 * MIB);
        }
        rig.run().await;
        for i in 0..3 {
            rig.set_counter(i, (i as u64 + 1) * 10 * MIB + MIB);
        }
        let keys = [rig.key(0), rig.key(1), rig.key(2)];
        let boundary = rig.run_at(utc(12, 1, 0, 3)).await;
        assert!(
            boundary.findings.is_empty(),
            "{generation:?}: {boundary:#?}"
        );
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(rig.resets_of(key), 1, "{generation:?} key {i}");
            assert_eq!(rig.key(i).total_bytes, 0);
            let entry = rig.entry(i);
            assert_eq!((entry.period_start, entry.used), (utc(12, 1, 0, 0), 0));
            assert!(!entry.adopted && !entry.expect_drop);
        }
        let history = rig.store().quota_history("fra-1", None).expect("history");
        assert_eq!(history.len(), 3);
        for row in &history {
            let i = keys.iter().position(|k| k.uuid == row.uuid).expect("a key");
            assert_eq!(row.total, (i as u64 + 1) * 10 * MIB + MIB);
            assert_eq!(
                (row.period_start, row.period_end),
                (utc(11, 1, 0, 0), utc(12, 1, 0, 0))
            );
            assert!(row.adopted);
        }
        for step in 1..4 {
            for i in 0..3 {
                rig.set_counter(i, step * MIB);
            }
            let later = rig.run().await;
            assert!(later.findings.is_empty(), "{generation:?}: {later:#?}");
        }
        assert_eq!(
            rig.reset_posts(),
            3,
            "{generation:?}: once per key and period"
        );
        assert_eq!(rig.entry(0).used, 3 * MIB);
        let intents = rig.store().quota_intents("fra-1", None).expect("intents");
        assert!(
            intents.iter().all(|i| i.outcome == "applied"),
            "{intents:#?}"
        );
    }
}

#[tokio::test]
async fn a_missed_boundary_is_caught_up_once_after_a_restart() {
    for generation in BOTH {
        let mut rig = Rig::new(generation, 2, &monthly("alert")).await;
        rig.set_counter(0, 10 * MIB);
        rig.set_counter(1, 20 * MIB);
        rig.run_at(utc(10, 20, 12, 0)).await;
        // keywarden is down from October 20 to December 3: two boundaries pass.
        rig.restart();
        rig.set_counter(0, 15 * MIB);
        rig.set_counter(1, 25 * MIB);
        let keys = [rig.key(0), rig.key(1)];
        let caught_up = rig.run_at(utc(12, 3, 9, 0)).await;
        assert!(
            caught_up.findings.is_empty(),
            "{generation:?}: {caught_up:#?}"
        );
        assert_eq!([rig.resets_of(&keys[0]), rig.resets_of(&keys[1])], [1, 1]);
        let history = rig
            .store()
            .quota_history("fra-1", Some(&keys[0].uuid))
            .expect("history");
        assert_eq!(
            history.len(),
            1,
            "one period closed, not one per missed boundary"
        );
        assert_eq!(
            (history[0].period_start, history[0].period_end),
            (utc(10, 1, 0, 0), utc(12, 1, 0, 0))
        );
        assert_eq!(history[0].total, 15 * MIB);
        rig.restart();
        rig.set_counter(0, MIB);
        rig.run_at(utc(12, 3, 9, 10)).await;
        assert_eq!(rig.reset_posts(), 2, "{generation:?}: caught up once");
    }
}

#[tokio::test]
async fn ignored_resets_keep_a_correct_ledger_and_one_digest_per_period() {
    let january = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2027, 1, 1, 0, 5, 0).unwrap();
    for generation in BOTH {
        for mode in ["auto", "always"] {
            let setup = Setup {
                server: format!("counter_resets = \"{mode}\""),
                ..monthly("alert")
            };
            let rig = Rig::new(generation, 3, &setup).await;
            rig.handle().set_resets_ignored(true);
            for i in 0..3 {
                rig.set_counter(i, 50 * MIB);
            }
            rig.run().await;
            for i in 0..3 {
                rig.set_counter(i, 60 * MIB);
            }
            let december = rig.run_at(utc(12, 1, 0, 5)).await;
            let what = format!("{generation:?} {mode}");
            let digest = of_kind(&december, FindingKind::ResetNotApplied);
            assert_eq!(digest.len(), 1, "{what}: {december:#?}");
            assert_eq!(digest[0].subject, "resets");
            assert!(
                digest[0]
                    .summary
                    .contains("3 counter reset(s) did not take effect"),
                "{}",
                digest[0].summary
            );
            for i in 0..3 {
                assert!(digest[0].details.contains(&rig.key(i).uuid), "{what}");
                let entry = rig.entry(i);
                assert_eq!(
                    (entry.period_start, entry.used, entry.counter),
                    (utc(12, 1, 0, 0), 0, Some(60 * MIB)),
                    "{what}"
                );
            }
            assert_eq!(
                digest[0].details.contains("stops calling reset"),
                mode == "auto",
                "{what}"
            );
            assert_eq!(rig.reset_posts(), 3);
            // Only growth after the boundary counts; no second digest this period.
            rig.set_counter(0, 65 * MIB);
            let later = rig.run().await;
            assert!(later.findings.is_empty(), "{what}: {later:#?}");
            assert_eq!(rig.entry(0).used, 5 * MIB);
            // January: auto no longer calls reset on this API version; always does (and
            // says so once for the new period).
            rig.set_counter(1, 61 * MIB);
            let next = rig.run_at(january).await;
            let digests = of_kind(&next, FindingKind::ResetNotApplied).len();
            match mode {
                "auto" => assert_eq!((rig.reset_posts(), digests), (3, 0), "{what}: {next:#?}"),
                _ => assert_eq!((rig.reset_posts(), digests), (6, 1), "{what}: {next:#?}"),
            }
            assert_eq!(
                rig.entry(1).period_start,
                january - chrono::Duration::minutes(5)
            );
            assert_eq!(rig.entry(1).used, 0);
        }
    }
}

#[tokio::test]
async fn delete_needs_allow_delete_and_waits_for_the_grace() {
    let refused = keywarden::config::from_str_with_env(
        "[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/api\"\napi_key = \"k\"\n[quotas]\nlimit = \"1 GiB\"\non_exceed = \"delete\"\n",
        std::path::Path::new("agent.toml"),
        &|_| None,
    )
    .expect_err("delete without allow_delete is refused");
    assert!(refused.to_string().contains("allow_delete"), "{refused}");
    for generation in BOTH {
        let setup = Setup {
            agent: "allow_delete = true".into(),
            quotas: "limit = \"100 MiB\"\non_exceed = \"delete\"\ngrace = \"1h\"\n".into(),
            ..Setup::default()
        };
        let mut rig = Rig::new(generation, 3, &setup).await;
        for i in 0..3 {
            rig.set_counter(i, 10 * MIB);
        }
        rig.run_at(start()).await;
        let (doomed, saved) = (rig.key(0), rig.key(1));
        rig.set_counter(0, 120 * MIB);
        let over = rig.run_at(start() + chrono::Duration::minutes(10)).await;
        let exceeded = of_kind(&over, FindingKind::QuotaExceeded);
        assert_eq!(exceeded.len(), 1, "{generation:?}: {over:#?}");
        assert!(
            exceeded[0]
                .details
                .contains("will be deleted at 2026-11-20 13:10 UTC"),
            "{}",
            exceeded[0].details
        );
        let quiet = rig.run_at(start() + chrono::Duration::minutes(40)).await;
        assert!(
            quiet.findings.is_empty(),
            "{generation:?}: within the grace"
        );
        assert_eq!(rig.handle().keys().len(), 3);

        let due = rig.run_at(start() + chrono::Duration::minutes(70)).await;
        assert_eq!(
            kinds(&due),
            [FindingKind::KeyDeleted],
            "{generation:?}: {due:#?}"
        );
        assert_eq!(due.findings[0].subject, doomed.uuid);
        assert!(rig.handle().keys().iter().all(|k| k.uuid != doomed.uuid));
        assert!(rig.entry_of(&doomed.uuid).gone_at.is_some());
        let audit = rig.store().recent_audit(Some("fra-1"), 10).expect("audit");
        assert!(audit.iter().any(|a| a.action == "quota_delete"
            && a.result == "deleted"
            && a.target == doomed.uuid));

        // A key back under its limit before its grace ends is kept (the limit was raised).
        let index = rig
            .handle()
            .keys()
            .iter()
            .position(|k| k.uuid == saved.uuid)
            .expect("still there");
        rig.set_counter(index, 130 * MIB);
        rig.run_at(start() + chrono::Duration::minutes(80)).await;
        rig.config.quotas.defaults.limit_bytes = Some(1000 * MIB);
        let relieved = rig.run_at(start() + chrono::Duration::minutes(150)).await;
        assert!(
            relieved.plan.iter().any(|l| l.contains("called off")),
            "{relieved:#?}"
        );
        assert_eq!(rig.handle().keys().len(), 2, "{generation:?}");
        let deletes = rig
            .handle()
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count();
        assert_eq!(deletes, 1, "{generation:?}");
    }
}

#[tokio::test]
async fn the_guard_blocks_a_mass_reset_unless_the_rule_allows_it() {
    for allow_mass in [false, true] {
        let mut setup = monthly("reset");
        if allow_mass {
            setup
                .quotas
                .push_str("[[quotas.rules]]\nmatch_name = \"*\"\nallow_mass = true\n");
        }
        let rig = Rig::new(ApiGeneration::V1, 10, &setup).await;
        for i in 0..10 {
            rig.set_counter(i, MIB);
        }
        rig.run().await;
        for i in 0..6 {
            rig.set_counter(i, 200 * MIB);
        }
        let result = rig.run().await;
        let exceeded = of_kind(&result, FindingKind::QuotaExceeded).len();
        let blocked = of_kind(&result, FindingKind::MassActionBlocked);
        assert_eq!(exceeded, 6, "{result:#?}");
        if allow_mass {
            assert!(blocked.is_empty());
            assert_eq!(rig.reset_posts(), 6);
            continue;
        }
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].severity, Severity::Critical);
        assert!(
            blocked[0].summary.contains("refused to reset 6 of 10 keys"),
            "{}",
            blocked[0].summary
        );
        for i in 0..6 {
            assert!(blocked[0].details.contains(&rig.key(i).uuid));
        }
        assert_eq!(rig.reset_posts(), 0);
        // Still blocked next run (an open critical finding), nothing raised twice.
        let again = rig.run().await;
        assert_eq!(kinds(&again), [FindingKind::MassActionBlocked]);
        assert_eq!(rig.reset_posts(), 0);
        // A period boundary resets every key: that is not a mass action.
        for i in 0..10 {
            rig.set_counter(i, 201 * MIB);
        }
        let boundary = rig.run_at(utc(12, 1, 0, 5)).await;
        assert!(
            of_kind(&boundary, FindingKind::MassActionBlocked).is_empty(),
            "{boundary:#?}"
        );
        assert_eq!(rig.reset_posts(), 10);
    }
}

#[tokio::test]
async fn a_dry_run_changes_nothing_on_the_server() {
    for generation in BOTH {
        let rig = Rig::new(generation, 3, &monthly("reset")).await;
        for i in 0..3 {
            rig.set_counter(i, 10 * MIB);
        }
        rig.dry_run_at(start()).await;
        rig.set_counter(0, 120 * MIB);
        let over = rig
            .dry_run_at(start() + chrono::Duration::minutes(10))
            .await;
        assert_eq!(
            kinds(&over),
            [FindingKind::QuotaWarning, FindingKind::QuotaExceeded]
        );
        assert!(
            over.plan
                .iter()
                .any(|l| l.contains("would reset the counter of key \"Alice iPhone\"")),
            "{over:#?}"
        );
        assert_eq!(
            rig.entry(0).used,
            120 * MIB,
            "the ledger still records usage"
        );
        let boundary = rig.dry_run_at(utc(12, 1, 0, 5)).await;
        let would = boundary
            .plan
            .iter()
            .filter(|l| l.contains("would reset"))
            .count();
        assert_eq!(would, 3, "{boundary:#?}");
        assert_eq!(rig.entry(1).period_start, utc(12, 1, 0, 0));
        let changes = rig
            .handle()
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count();
        assert_eq!(changes, 0, "{generation:?}: no POST or DELETE");
        assert!(
            rig.store()
                .quota_intents("fra-1", None)
                .expect("intents")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn drops_are_counted_and_reported_unless_a_sync_explains_them() {
    for generation in BOTH {
        let mut setup = monthly("alert");
        setup
            .quotas
            .push_str("[jobs.config_sync]\nconfirmations = 1\nverify_reality_after_sync = false\n");
        let rig = Rig::new(generation, 2, &setup).await;
        rig.set_counter(0, 40 * MIB);
        rig.set_counter(1, 10 * MIB);
        rig.run().await;
        rig.set_counter(0, 5 * MIB);
        let dropped = rig.run().await;
        assert_eq!(
            kinds(&dropped),
            [FindingKind::CounterResetSeen],
            "{generation:?}"
        );
        let seen = &dropped.findings[0];
        assert_eq!(
            (seen.severity, seen.subject.as_str()),
            (Severity::Info, "counters")
        );
        assert!(
            seen.details.contains("40.0 MiB -> 5.00 MiB"),
            "{}",
            seen.details
        );
        assert_eq!(rig.entry(0).used, 45 * MIB, "nothing lost, nothing twice");

        // config_sync repairs drift with a sync (which restarts Xray and zeroes counters).
        rig.handle().remove_config_client(&rig.key(1).uuid);
        rig.clock.advance(chrono::Duration::minutes(3));
        let sync = keywarden::jobs::config_sync::run(&rig.ctx(false)).await;
        assert_eq!(
            kinds(&sync),
            [FindingKind::ConfigDriftRepaired],
            "{generation:?}: {sync:#?}"
        );
        rig.set_counter(0, MIB);
        rig.set_counter(1, 0);
        let after_sync = rig.run().await;
        assert!(
            after_sync.findings.is_empty(),
            "{generation:?}: expected drop: {after_sync:#?}"
        );
        assert_eq!(rig.entry(0).used, 46 * MIB);
        rig.set_counter(0, 0);
        let unexplained = rig.run().await;
        assert_eq!(
            kinds(&unexplained),
            [FindingKind::CounterResetSeen],
            "{generation:?}"
        );
    }
}

#[tokio::test]
async fn stale_after_three_failed_runs_or_frozen_counters() {
    let rig = Rig::new(ApiGeneration::V1, 2, &monthly("alert")).await;
    rig.set_counter(0, MIB);
    rig.run().await;
    rig.handle().set_down_and_wait(true).await;
    for n in 1..=3 {
        let down = rig.run().await;
        assert!(down.transport_failure.is_some());
        let stale = of_kind(&down, FindingKind::TrafficDataStale);
        assert_eq!(stale.len(), usize::from(n == 3), "run {n}: {down:#?}");
    }
    rig.handle().set_down_and_wait(false).await;
    rig.set_counter(0, 2 * MIB);
    assert!(rig.run().await.findings.is_empty());
    // Counters frozen for a day while the server reports connections.
    let frozen = rig
        .run_at(rig.clock_now() + chrono::Duration::hours(25))
        .await;
    let stale = of_kind(&frozen, FindingKind::TrafficDataStale);
    assert_eq!(stale.len(), 1, "{frozen:#?}");
    assert!(
        stale[0]
            .summary
            .contains("no key's traffic counter changed"),
        "{}",
        stale[0].summary
    );
    rig.set_counter(1, MIB);
    assert!(rig.run().await.findings.is_empty(), "moving again");
}

#[tokio::test]
async fn growth_lands_in_the_daily_totals_and_adoption_does_not() {
    for generation in BOTH {
        let rig = Rig::new(generation, 2, &monthly("alert")).await;
        rig.set_counter(0, 10 * MIB);
        rig.run().await;
        let today = rig.clock_now().date_naive();
        let rows = rig.store().daily_usage(today, today).unwrap();
        assert!(
            rows.is_empty(),
            "{generation:?}: an adopted counter is old traffic of unknown days: {rows:?}"
        );
        rig.set_counter(0, 15 * MIB);
        rig.run().await;
        rig.set_counter(0, 17 * MIB);
        rig.run().await;
        let rows = rig.store().daily_usage(today, today).unwrap();
        assert_eq!(rows.len(), 1, "{generation:?}: {rows:?}");
        assert_eq!(rows[0].uuid, rig.key(0).uuid);
        assert_eq!(rows[0].server, "fra-1");
        assert_eq!(rows[0].bytes, 7 * MIB, "{generation:?}: two runs' growth");
    }
}
