//! Crash safety of the quota job and how resets are judged: a run killed between writing
//! its intents and finishing them (an injected crash point), or a reset whose answer is
//! lost to a timeout after the server did it, leaves exactly one reset per key and period;
//! a 2.x "Traffic history not found" means there was nothing to reset.

mod support;

use keywarden::jobs::quota::CrashPoint;
use keywarden::model::FindingKind;
use keywarden::model::quota::IntentState;
use keywarden_sim::{ApiGeneration, Fault, Route};
use support::quota::{MIB, Rig, Setup, kinds, monthly, start, utc};

const BOTH: [ApiGeneration; 2] = [ApiGeneration::V1, ApiGeneration::V2];

async fn states(rig: &Rig) -> Vec<(IntentState, String)> {
    let intents = rig
        .store()
        .quota()
        .intents("fra-1", None)
        .await
        .expect("intents");
    // The outcome as text ("" while open), as the tests below compare it.
    let outcome = |i: &keywarden::model::quota::Intent| i.outcome.map_or("", |o| o.as_str());
    intents
        .iter()
        .map(|i| (i.state, outcome(i).to_string()))
        .collect()
}

async fn three_keys_adopted(generation: ApiGeneration) -> Rig {
    let rig = Rig::new(generation, 3, &monthly("alert")).await;
    for i in 0..3 {
        rig.set_counter(i, (i as u64 + 1) * 10 * MIB);
    }
    rig.run_at(start()).await;
    // Traffic goes on until the boundary (counters frozen for days would be stale).
    for i in 0..3 {
        rig.set_counter(i, (i as u64 + 1) * 10 * MIB + MIB);
    }
    rig
}

#[tokio::test]
async fn killed_after_writing_the_intents_resets_once_after_a_restart() {
    for generation in BOTH {
        let mut rig = three_keys_adopted(generation).await;
        let keys = [rig.key(0), rig.key(1), rig.key(2)];
        let crashed = rig
            .run_crashing_at(utc(12, 1, 0, 5), CrashPoint::AfterIntents)
            .await;
        assert!(crashed.findings.is_empty());
        assert_eq!(rig.reset_posts(), 0, "{generation:?}: died before sending");
        let pending = vec![(IntentState::Pending, String::new()); 3];
        assert_eq!(states(&rig).await, pending);

        rig.restart();
        let restarted = rig.run_at(utc(12, 1, 0, 15)).await;
        assert!(
            restarted.findings.is_empty(),
            "{generation:?}: {restarted:#?}"
        );
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(rig.resets_of(key), 1, "{generation:?} key {i}");
            assert_eq!(rig.key(i).total_bytes, 0);
        }
        assert_eq!(
            states(&rig).await,
            vec![(IntentState::Done, "applied".to_string()); 3]
        );
        rig.restart();
        rig.run_at(utc(12, 1, 0, 25)).await;
        assert_eq!(
            rig.reset_posts(),
            3,
            "{generation:?}: exactly one reset per key"
        );
    }
}

#[tokio::test]
async fn killed_after_sending_the_resets_does_not_reset_again() {
    for generation in BOTH {
        let mut rig = three_keys_adopted(generation).await;
        let keys = [rig.key(0), rig.key(1), rig.key(2)];
        rig.run_crashing_at(utc(12, 1, 0, 5), CrashPoint::AfterRemoteCalls)
            .await;
        assert_eq!(rig.reset_posts(), 3, "{generation:?}: sent, then died");
        let sending = vec![(IntentState::Sending, String::new()); 3];
        assert_eq!(states(&rig).await, sending);

        rig.restart();
        rig.set_counter(0, 2 * MIB); // traffic since the reset
        let restarted = rig.run_at(utc(12, 1, 0, 15)).await;
        assert!(
            restarted.findings.is_empty(),
            "{generation:?}: {restarted:#?}"
        );
        for key in &keys {
            assert_eq!(rig.resets_of(key), 1, "{generation:?}: not sent again");
        }
        assert_eq!(
            states(&rig).await,
            vec![(IntentState::Done, "applied".to_string()); 3]
        );
        let entry = rig.entry(0).await;
        assert_eq!(
            (entry.used, entry.period_start),
            (2 * MIB, utc(12, 1, 0, 0))
        );
        assert!(!entry.expect_drop);
    }
}

#[tokio::test]
async fn an_exceeded_reset_interrupted_before_sending_is_sent_once_on_restart() {
    let mut rig = Rig::new(ApiGeneration::V1, 3, &monthly("reset")).await;
    rig.set_counter(0, 10 * MIB);
    rig.run_at(start()).await;
    let key = rig.key(0);
    rig.set_counter(0, 150 * MIB);
    rig.run_crashing_at(
        start() + chrono::Duration::minutes(10),
        CrashPoint::AfterIntents,
    )
    .await;
    assert_eq!(
        rig.entry(0).await.used,
        0,
        "the fresh allowance is committed with its intent"
    );
    rig.restart();
    let restarted = rig.run_at(start() + chrono::Duration::minutes(20)).await;
    assert!(
        restarted.findings.is_empty(),
        "raised by the run that died: {restarted:#?}"
    );
    assert_eq!(rig.resets_of(&key), 1);
    assert_eq!(rig.key(0).total_bytes, 0);
    rig.run_at(start() + chrono::Duration::minutes(30)).await;
    assert_eq!(rig.resets_of(&key), 1);
}

#[tokio::test]
async fn a_reset_answer_lost_to_a_timeout_is_judged_by_reading_back() {
    for generation in BOTH {
        let setup = Setup {
            action_timeout: "300ms",
            ..monthly("reset")
        };
        let rig = Rig::new(generation, 2, &setup).await;
        rig.set_counter(0, 10 * MIB);
        rig.run_at(start()).await;
        rig.set_counter(0, 150 * MIB);
        // The server resets at once but answers after the client gave up.
        rig.handle().fail_next(
            Route::ResetTraffic,
            1,
            Fault::Delay(std::time::Duration::from_millis(800)),
        );
        let result = rig.run_at(start() + chrono::Duration::minutes(10)).await;
        assert_eq!(
            kinds(&result),
            [FindingKind::QuotaWarning, FindingKind::QuotaExceeded],
            "{generation:?}: no reset_not_applied: {result:#?}"
        );
        assert_eq!(rig.handle().reset_count(), 1);
        assert_eq!(rig.key(0).total_bytes, 0);
        assert_eq!(
            states(&rig).await,
            vec![(IntentState::Done, "applied".to_string())]
        );
    }
}

#[tokio::test]
async fn a_2x_reset_without_traffic_history_means_nothing_to_reset() {
    let rig = Rig::new(ApiGeneration::V2, 2, &monthly("reset")).await;
    rig.set_counter(0, 10 * MIB);
    rig.run_at(start()).await;
    rig.set_counter(0, 150 * MIB);
    let fault = Fault::Status {
        status: 404,
        detail: "Traffic history not found for this key".into(),
    };
    // Both candidates (by id, then by uuid) answer 404; the first answer is the one judged.
    rig.handle().fail_next(Route::ResetTraffic, 2, fault);
    let result = rig.run_at(start() + chrono::Duration::minutes(10)).await;
    assert_eq!(
        kinds(&result),
        [FindingKind::QuotaWarning, FindingKind::QuotaExceeded],
        "not a reset_not_applied: {result:#?}"
    );
    assert_eq!(
        states(&rig).await,
        vec![(IntentState::Done, "nothing_to_reset".to_string())]
    );
    assert_eq!(
        rig.entry(0).await.used,
        0,
        "the ledger's fresh allowance stands"
    );
}

#[tokio::test]
async fn a_reset_that_could_not_reach_the_server_is_finished_by_the_next_run() {
    let rig = Rig::new(ApiGeneration::V1, 1, &monthly("alert")).await;
    rig.set_counter(0, 10 * MIB);
    rig.run_at(start()).await;
    rig.set_counter(0, 11 * MIB);
    // At the boundary the proxy fails the reset and both tries of the read-back.
    let down = Fault::Html { status: 502 };
    rig.handle().fail_next(Route::ResetTraffic, 1, down.clone());
    rig.handle().fail_next(Route::KeyTraffic, 2, down);
    let boundary = rig.run_at(utc(12, 1, 0, 5)).await;
    assert!(boundary.findings.is_empty(), "{boundary:#?}");
    assert!(
        boundary.plan[0].contains("1 left for the next run"),
        "{boundary:#?}"
    );
    assert_eq!(
        states(&rig).await,
        vec![(IntentState::Sending, String::new())]
    );
    assert_eq!(rig.handle().reset_count(), 0);

    let next = rig.run_at(utc(12, 1, 0, 15)).await;
    assert!(next.findings.is_empty(), "{next:#?}");
    assert_eq!(
        states(&rig).await,
        vec![(IntentState::Done, "applied".to_string())]
    );
    assert_eq!(rig.handle().reset_count(), 1);
    assert_eq!(rig.key(0).total_bytes, 0);
}

/// kill -9 after the resets reached the server, then traffic before the restart: more
/// than the counter held before the reset on key 0 (the case that lost it all: the
/// restart reset again and the ledger lost the interim traffic), less on key 1, none on
/// key 2. One reset per key; every byte that can be proven is counted; key 0's usage is
/// uncertain by its reading before the reset, and the finding says so.
#[tokio::test]
async fn killed_after_sending_then_traffic_counts_what_is_proven_and_resets_once() {
    for generation in BOTH {
        let mut rig = three_keys_adopted(generation).await;
        let keys = [rig.key(0), rig.key(1), rig.key(2)];
        let before = [11 * MIB, 21 * MIB, 31 * MIB];
        for (i, bytes) in before.iter().enumerate() {
            assert_eq!(rig.key(i).total_bytes, *bytes);
        }
        rig.run_crashing_at(utc(12, 1, 0, 5), CrashPoint::AfterRemoteCalls)
            .await;
        assert_eq!(rig.reset_posts(), 3, "{generation:?}: sent, then killed");

        // Traffic while keywarden is down, after the resets took effect.
        rig.set_counter(0, 15 * MIB);
        rig.set_counter(1, 2 * MIB);
        rig.restart();
        let restarted = rig.run_at(utc(12, 1, 0, 15)).await;
        for key in &keys {
            assert_eq!(rig.resets_of(key), 1, "{generation:?}: one reset only");
        }
        assert_eq!(
            states(&rig).await,
            vec![
                (IntentState::Done, "uncertain".to_string()),
                (IntentState::Done, "applied".to_string()),
                (IntentState::Done, "applied".to_string()),
            ],
            "{generation:?}"
        );
        // Key 0: 15 MiB now, 11 before: the growth (4 MiB) is what can be proven.
        // Key 1: it dropped to 2 MiB, so the reset happened: all 2 MiB are new.
        let used: Vec<u64> = [rig.entry(0).await, rig.entry(1).await, rig.entry(2).await]
            .iter()
            .map(|e| e.used)
            .collect();
        assert_eq!(used, [4 * MIB, 2 * MIB, 0], "{generation:?}");
        assert_eq!(
            kinds(&restarted),
            [FindingKind::UsageUncertain],
            "{generation:?}: {restarted:#?}"
        );
        let finding = &restarted.findings[0];
        assert!(finding.summary.contains("1 key(s)"), "{}", finding.summary);
        assert!(finding.summary.contains("11.0 MiB"), "{}", finding.summary);
        assert!(
            finding.details.contains(&keys[0].uuid),
            "{}",
            finding.details
        );
        assert!(
            finding.details.contains("did not reset again"),
            "{}",
            finding.details
        );
        // The next run counts on from 15 MiB: nothing twice, nothing reset.
        rig.set_counter(0, 16 * MIB);
        let next = rig.run_at(utc(12, 1, 0, 25)).await;
        assert!(next.findings.is_empty(), "{generation:?}: {next:#?}");
        assert_eq!(rig.entry(0).await.used, 5 * MIB);
        assert_eq!(rig.reset_posts(), 3);
    }
}

/// A reset that reached a slow server but had not taken effect when keywarden was killed:
/// the counter has not moved at all at the restart, so the reset is sent again (the
/// documented repeat: nothing counted can be lost by it).
#[tokio::test]
async fn an_interrupted_reset_whose_counter_did_not_move_is_sent_again() {
    let mut rig = three_keys_adopted(ApiGeneration::V1).await;
    let key = rig.key(0);
    rig.run_crashing_at(utc(12, 1, 0, 5), CrashPoint::AfterRemoteCalls)
        .await;
    // The server had not applied key 0's reset yet: its counter still reads as before.
    rig.set_counter(0, 11 * MIB);
    rig.restart();
    let restarted = rig.run_at(utc(12, 1, 0, 15)).await;
    assert!(restarted.findings.is_empty(), "{restarted:#?}");
    assert_eq!(rig.resets_of(&key), 2, "sent again: the first did not take");
    assert_eq!(rig.key(0).total_bytes, 0);
    assert_eq!(rig.entry(0).await.used, 0, "nothing new, nothing lost");
}
