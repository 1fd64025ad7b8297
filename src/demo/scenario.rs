//! The demo's script: inject one problem at a time into the simulator and wait (with
//! a deadline) until the agent has noticed and dealt with it.

use std::time::Duration;

use crate::agent::Agent;
use crate::sim::SimHandle;

use super::receiver::Receiver;
use super::timeline::Timeline;
use super::{DEMO_KEYS, DEMO_LIMIT_BYTES};

/// How long one step may take before the demo calls it failed.
const STEP_DEADLINE: Duration = Duration::from_secs(15);

/// Which steps happened as they should.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: Vec<(String, bool)>,
    pub alerts_received: usize,
    pub syncs: usize,
    pub resets: usize,
    /// Restarts of a stopped Xray on the 2.x server (syncs there).
    pub xray_restarts: usize,
}

impl Outcome {
    pub fn all_passed(&self) -> bool {
        self.steps.iter().all(|(_, ok)| *ok)
    }

    pub fn summary(&self) -> String {
        let mut out = String::from("Summary\n");
        for (step, ok) in &self.steps {
            out.push_str(&format!(
                "  {} {step}\n",
                if *ok { "ok    " } else { "FAILED" }
            ));
        }
        out.push_str(&format!(
            "  {} syncs, {} counter resets on the 1.x server, {} Xray restarts on the 2.x server, {} webhook notifications received",
            self.syncs, self.resets, self.xray_restarts, self.alerts_received
        ));
        out
    }
}

/// Traffic so every key shows up (1.x lists only keys with connections), all below
/// the first warning, one close to it.
pub fn prepare(sim: &SimHandle) {
    for (index, key) in sim.keys().iter().enumerate() {
        let percent = if index == 0 {
            70
        } else {
            (index as u64 * 7) % 60
        };
        sim.set_counter(&key.id, DEMO_LIMIT_BYTES / 100 * percent);
        sim.set_connections(&key.id, 1 + (index as u32 % 3));
    }
}

/// Poll `done` every 100 ms until it holds or the step deadline passes.
async fn until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

pub async fn play(
    sim: &SimHandle,
    sim2: &SimHandle,
    agent: &Agent,
    timeline: &Timeline,
    receiver: &Receiver,
) -> Outcome {
    let mut outcome = Outcome::default();
    let store = agent.store.clone();
    // Every job on both servers.
    let first_runs = until(|| {
        store
            .last_runs()
            .map(|runs| runs.len() >= 10)
            .unwrap_or(false)
    })
    .await;
    record(
        &mut outcome,
        timeline,
        "the first run of every job",
        first_runs,
    );

    let keys = sim.keys();
    let drifted = &keys[DEMO_KEYS / 2];
    timeline.say(
        "demo",
        &format!(
            "injecting drift: removing {} ({}) from config.json",
            drifted.name, drifted.uuid
        ),
    );
    sim.remove_config_client(&drifted.uuid);
    let repaired = until(|| timeline.contains("(config_drift_repaired)")).await;
    record(
        &mut outcome,
        timeline,
        "drift detected, confirmed, synced and repaired",
        repaired,
    );

    timeline.say("demo", "setting Reality's maxTimeDiff to 0");
    sim.set_max_time_diff(0);
    let fixed = until(|| sim.max_time_diff() == 600).await;
    if fixed {
        timeline.say("sim", "verify-reality rewrote maxTimeDiff to 600");
    }
    record(&mut outcome, timeline, "Reality verified and fixed", fixed);

    timeline.say(
        "demo",
        "stopping Xray on demo-2: every VLESS port closes, /health says stopped",
    );
    sim2.stop_xray().await;
    let restarted = until(|| timeline.contains("(xray_restarted)") && sim2.xray_running()).await;
    let resolved = restarted
        && until(|| {
            timeline
                .lines()
                .iter()
                .any(|l| l.contains("resolved:") && l.contains("xray_restarted"))
        })
        .await;
    record(
        &mut outcome,
        timeline,
        "Xray stopped -> xray_down confirmed -> restarted -> resolved",
        restarted && resolved && timeline.contains("xray_down confirmed"),
    );

    let heavy = &keys[0];
    timeline.say(
        "demo",
        &format!("{} uses more: 70% -> 85% of its 1 GiB", heavy.name),
    );
    sim.add_traffic(&heavy.id, DEMO_LIMIT_BYTES / 100 * 15);
    let warned = until(|| timeline.contains("(quota_warning)")).await;
    record(
        &mut outcome,
        timeline,
        "a key crossing 80% raised a warning",
        warned,
    );

    let resets_before = sim.reset_count();
    timeline.say(
        "demo",
        &format!("{} goes over its limit: 85% -> 110%", heavy.name),
    );
    sim.add_traffic(&heavy.id, DEMO_LIMIT_BYTES / 100 * 25);
    let exceeded =
        until(|| timeline.contains("(quota_exceeded)") && sim.reset_count() > resets_before).await;
    let counter = sim
        .keys()
        .iter()
        .find(|k| k.id == heavy.id)
        .map(|k| k.total_bytes)
        .unwrap_or(u64::MAX);
    if exceeded {
        timeline.say(
            "sim",
            &format!(
                "{}'s counter reset on the server; it now reads {counter} bytes",
                heavy.name
            ),
        );
    }
    record(
        &mut outcome,
        timeline,
        "a key over its limit was reset (and the reset verified)",
        exceeded && counter < 1024 * 1024,
    );

    timeline.say("demo", "taking the server down");
    sim.set_down_and_wait(true).await;
    let unreachable = until(|| timeline.contains("(server_unreachable)")).await;
    record(
        &mut outcome,
        timeline,
        "the outage raised server_unreachable",
        unreachable,
    );
    timeline.say("demo", "bringing the server back");
    sim.set_down_and_wait(false).await;
    let resolved = until(|| {
        timeline.contains("resolved:")
            && timeline
                .lines()
                .iter()
                .any(|l| l.contains("resolved:") && l.contains("server_unreachable"))
    })
    .await;
    record(
        &mut outcome,
        timeline,
        "the server answered again and the alert resolved",
        resolved,
    );

    // Let the last notifications (group_wait 1 s) go out before the summary.
    let delivered = until(|| {
        // Grouping may put the resolved notice in a digest with others: look at each alert.
        receiver
            .received()
            .iter()
            .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
            .any(|alert| alert["kind"] == "server_unreachable" && alert["status"] == "resolved")
    })
    .await;
    record(
        &mut outcome,
        timeline,
        "the resolved notice reached the webhook",
        delivered,
    );
    outcome.alerts_received = receiver.received().len();
    outcome.syncs = sim.sync_count();
    outcome.resets = sim.reset_count();
    outcome.xray_restarts = sim2.sync_count();
    outcome
}

fn record(outcome: &mut Outcome, timeline: &Timeline, step: &str, ok: bool) {
    if !ok {
        timeline.say(
            "demo",
            &format!(
                "step did not complete within {}s: {step}",
                STEP_DEADLINE.as_secs()
            ),
        );
    }
    outcome.steps.push((step.to_string(), ok));
}
