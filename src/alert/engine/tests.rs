//! Table tests of the engine: (observations, stored states, routing, now) -> plan.
//! Each case runs a sequence of runs through `decide`, carrying the states forward the
//! way the store does, and lists the notices each run produced.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::alert::model::Facts;

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + Duration::minutes(minute)
}

fn routing() -> Routing {
    Routing {
        min_severity: Severity::Warning,
        repeat_interval: Duration::hours(4),
        send_resolved: true,
        group_wait: Duration::seconds(10),
        sinks: vec![
            SinkRoute {
                name: "mail".into(),
                min_severity: Severity::Warning,
            },
            SinkRoute {
                name: "pager".into(),
                min_severity: Severity::Critical,
            },
        ],
    }
}

fn present(server: &str, kind: FindingKind, severity: Severity) -> Observation {
    Observation::Present(Facts {
        fingerprint: format!("{server}/{}/", kind.as_str()),
        server: server.into(),
        kind: kind.as_str().into(),
        subject: String::new(),
        severity,
        summary: format!("{} on {server}", kind.as_str()),
        details: "Seen: x\nDone: y\nNext: z".into(),
    })
}

fn gone(server: &str, kind: FindingKind) -> Observation {
    Observation::Gone {
        fingerprint: format!("{server}/{}/", kind.as_str()),
    }
}

/// Runs `runs` (minute, observations) on server fra-1 in order; returns per run the
/// notices as "sink:reason:kind".
fn play(routing: &Routing, runs: Vec<(i64, Vec<Observation>)>) -> Vec<Vec<String>> {
    let mut stored: Vec<AlertState> = Vec::new();
    let mut out = Vec::new();
    for (minute, observations) in runs {
        let plan = decide("fra-1", &observations, &stored, routing, at(minute));
        for state in plan.states {
            stored.retain(|s| s.alert.fingerprint != state.alert.fingerprint);
            stored.push(state);
        }
        out.push(
            plan.notices
                .iter()
                .map(|n| format!("{}:{}:{}", n.sink, n.reason.as_str(), n.alert.kind))
                .collect(),
        );
    }
    out
}

use FindingKind::{ConfigDrift, ConfigDriftPersists, ServerUnreachable, TrafficMonitorUnavailable};
use Severity::{Critical, Info, Warning};

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_firing_alert_is_notified_once_then_every_repeat_interval() {
    let drift = || vec![present("fra-1", ConfigDrift, Warning)];
    let got = play(
        &routing(),
        vec![
            (0, drift()),
            (5, drift()),
            (60, drift()),
            (239, drift()),
            (240, drift()),
            (245, drift()),
            (480, drift()),
        ],
    );
    assert_eq!(
        got,
        vec![
            v(&["mail:new:config_drift"]),
            v(&[]),
            v(&[]),
            v(&[]),
            v(&["mail:repeat:config_drift"]),
            v(&[]),
            v(&["mail:repeat:config_drift"]),
        ]
    );
}

#[test]
fn severity_changes_notify_at_once_and_route_by_the_new_severity() {
    let got = play(
        &routing(),
        vec![
            (0, vec![present("fra-1", ConfigDrift, Warning)]),
            (1, vec![present("fra-1", ConfigDrift, Critical)]),
            (2, vec![present("fra-1", ConfigDrift, Critical)]),
            (3, vec![present("fra-1", ConfigDrift, Warning)]),
            (4, vec![gone("fra-1", ConfigDrift)]),
        ],
    );
    assert_eq!(
        got,
        vec![
            v(&["mail:new:config_drift"]),
            v(&["mail:changed:config_drift", "pager:changed:config_drift"]),
            v(&[]),
            v(&["mail:changed:config_drift"]),
            // The pager heard it was critical, so it hears that it is over.
            v(&["mail:resolved:config_drift", "pager:resolved:config_drift"]),
        ]
    );
}

#[test]
fn resolved_notices_only_for_announced_alerts_and_only_when_wanted() {
    let runs = || {
        vec![
            (0, vec![present("fra-1", ConfigDrift, Warning)]),
            (1, vec![gone("fra-1", ConfigDrift)]),
            (2, vec![gone("fra-1", ConfigDrift)]),
            // Below the global minimum: never announced, so never resolved either.
            (3, vec![present("fra-1", TrafficMonitorUnavailable, Info)]),
            (4, vec![gone("fra-1", TrafficMonitorUnavailable)]),
            // Firing again after it resolved is a new alert.
            (5, vec![present("fra-1", ConfigDrift, Warning)]),
        ]
    };
    assert_eq!(
        play(&routing(), runs()),
        vec![
            v(&["mail:new:config_drift"]),
            v(&["mail:resolved:config_drift"]),
            v(&[]),
            v(&[]),
            v(&[]),
            v(&["mail:new:config_drift"]),
        ]
    );
    let quiet = Routing {
        send_resolved: false,
        ..routing()
    };
    assert_eq!(
        play(&quiet, runs()),
        vec![
            v(&["mail:new:config_drift"]),
            v(&[]),
            v(&[]),
            v(&[]),
            v(&[]),
            v(&["mail:new:config_drift"]),
        ]
    );
}

#[test]
fn info_goes_only_to_sinks_asking_for_it() {
    let mut routing = routing();
    routing.min_severity = Info;
    routing.sinks.push(SinkRoute {
        name: "chatty".into(),
        min_severity: Info,
    });
    let got = play(
        &routing,
        vec![(0, vec![present("fra-1", TrafficMonitorUnavailable, Info)])],
    );
    assert_eq!(got, vec![v(&["chatty:new:traffic_monitor_unavailable"])]);
}

#[test]
fn new_alerts_wait_for_group_wait_others_go_at_once() {
    let plan = decide(
        "fra-1",
        &[present("fra-1", ConfigDrift, Warning)],
        &[],
        &routing(),
        at(0),
    );
    assert_eq!(plan.notices[0].due_at, at(0) + Duration::seconds(10));
    let plan2 = decide(
        "fra-1",
        &[gone("fra-1", ConfigDrift)],
        &plan.states,
        &routing(),
        at(1),
    );
    assert_eq!(plan2.notices[0].due_at, at(1));
}

#[test]
fn alerts_are_held_while_the_server_is_unreachable_then_released_or_dropped() {
    let got = play(
        &routing(),
        vec![
            (0, vec![present("fra-1", ConfigDrift, Warning)]),
            (1, vec![present("fra-1", ServerUnreachable, Critical)]),
            // While it is down: a new alert and a resolution are held back, and so is
            // a repeat that falls due.
            (2, vec![present("fra-1", ConfigDriftPersists, Critical)]),
            (3, vec![gone("fra-1", ConfigDrift)]),
            (
                4,
                vec![present("fra-1", TrafficMonitorUnavailable, Warning)],
            ),
            (5, vec![gone("fra-1", TrafficMonitorUnavailable)]),
            // It answers again: what still fires is sent, what was announced and
            // ended is resolved, what never went out and ended is dropped.
            (6, vec![gone("fra-1", ServerUnreachable)]),
            (7, vec![present("fra-1", ConfigDriftPersists, Critical)]),
        ],
    );
    assert_eq!(
        got,
        vec![
            v(&["mail:new:config_drift"]),
            v(&[
                "mail:new:server_unreachable",
                "pager:new:server_unreachable"
            ]),
            v(&[]),
            v(&[]),
            v(&[]),
            v(&[]),
            v(&[
                "mail:resolved:server_unreachable",
                "pager:resolved:server_unreachable",
                "mail:resolved:config_drift",
                "mail:released:config_drift_persists",
                "pager:released:config_drift_persists",
            ]),
            v(&[]),
        ]
    );
}

#[test]
fn other_servers_are_not_inhibited() {
    let mut stored = Vec::new();
    let down = decide(
        "fra-1",
        &[present("fra-1", ServerUnreachable, Critical)],
        &[],
        &routing(),
        at(0),
    );
    stored.extend(down.states);
    let other = decide(
        "ams-1",
        &[present("ams-1", ConfigDrift, Warning)],
        &stored,
        &routing(),
        at(1),
    );
    assert_eq!(other.notices.len(), 1);
}

#[test]
fn a_failing_sink_is_never_told_about_itself() {
    let observation = Observation::Present(Facts {
        fingerprint: crate::alert::model::sink_failing_fingerprint("mail"),
        server: crate::alert::model::AGENT.into(),
        kind: FindingKind::NotificationsFailing.as_str().into(),
        subject: "mail".into(),
        severity: Critical,
        summary: "notifications to mail fail".into(),
        details: String::new(),
    });
    let plan = decide("keywarden", &[observation], &[], &routing(), at(0));
    let sinks: Vec<&str> = plan.notices.iter().map(|n| n.sink.as_str()).collect();
    assert_eq!(sinks, vec!["pager"]);
}

#[test]
fn routing_from_config_keeps_sink_order_and_thresholds() {
    let text = r#"
[[servers]]
name = "fra-1"
url = "https://fra-1.example.net/api"
api_key = "k"
[alerts]
group_wait = "0s"
[[alerts.email]]
name = "m"
host = "smtp.example.net"
from = "a@b"
to = ["c@d"]
min_severity = "critical"
[[alerts.webhook]]
name = "w"
url = "https://x.example/h"
"#;
    let loaded =
        crate::config::from_str_with_env(text, std::path::Path::new("/t/agent.toml"), &|_| None)
            .expect("valid");
    let routing = Routing::from_config(&loaded.config.alerts);
    assert_eq!(routing.group_wait, Duration::zero());
    assert_eq!(
        routing.sinks,
        vec![
            SinkRoute {
                name: "m".into(),
                min_severity: Critical
            },
            SinkRoute {
                name: "w".into(),
                min_severity: Warning
            },
        ]
    );
}

#[test]
fn one_shot_notices_get_no_resolved_notice() {
    let runs = vec![
        (
            0,
            vec![present("fra-1", FindingKind::QuotaWarning, Warning)],
        ),
        (1, vec![gone("fra-1", FindingKind::QuotaWarning)]),
        (
            2,
            vec![present("fra-1", FindingKind::QuotaExceeded, Warning)],
        ),
        (3, vec![gone("fra-1", FindingKind::QuotaExceeded)]),
    ];
    assert_eq!(
        play(&routing(), runs),
        vec![
            v(&["mail:new:quota_warning"]),
            v(&[]),
            v(&["mail:new:quota_exceeded"]),
            v(&[])
        ]
    );
}

#[test]
fn a_sink_asking_for_info_gets_info_although_the_default_is_warning() {
    let text = r#"
[[servers]]
name = "fra-1"
url = "http://127.0.0.1:1/api"
api_key = "k"

[alerts]
min_severity = "warning"

[[alerts.webhook]]
name = "chat"
url = "http://127.0.0.1:2/hook"
min_severity = "info"

[[alerts.webhook]]
name = "mail"
url = "http://127.0.0.1:3/hook"
"#;
    let loaded = crate::config::from_str(text, std::path::Path::new("/tmp/agent.toml")).unwrap();
    let routing = Routing::from_config(&loaded.config.alerts);
    let runs = vec![
        (
            0,
            vec![present("fra-1", FindingKind::CounterResetSeen, Info)],
        ),
        (1, vec![present("fra-1", ConfigDrift, Warning)]),
    ];
    assert_eq!(
        play(&routing, runs),
        vec![
            v(&["chat:new:counter_reset_seen"]),
            v(&["chat:new:config_drift", "mail:new:config_drift"])
        ]
    );
}

#[test]
fn one_data_plane_outage_is_announced_once_whichever_job_sees_it_first() {
    use FindingKind::{VlessPortsClosed, XrayDown};
    // Health first: the dataplane's view of the same outage is held, then dropped.
    let got = play(
        &routing(),
        vec![
            (0, vec![present("fra-1", XrayDown, Critical)]),
            (1, vec![present("fra-1", VlessPortsClosed, Critical)]),
            (2, vec![gone("fra-1", XrayDown)]),
        ],
    );
    assert_eq!(
        got,
        vec![
            v(&["mail:new:xray_down", "pager:new:xray_down"]),
            v(&[]),
            // The ports are still closed when Xray's alert ends: now they speak.
            v(&[
                "mail:resolved:xray_down",
                "pager:resolved:xray_down",
                "mail:released:vless_ports_closed",
                "pager:released:vless_ports_closed",
            ]),
        ]
    );
    // The dataplane first: health's alert is held; both end without a second message.
    let got = play(
        &routing(),
        vec![
            (0, vec![present("fra-1", VlessPortsClosed, Critical)]),
            (1, vec![present("fra-1", XrayDown, Critical)]),
            (2, vec![gone("fra-1", XrayDown)]),
            (3, vec![gone("fra-1", VlessPortsClosed)]),
        ],
    );
    assert_eq!(
        got,
        vec![
            v(&[
                "mail:new:vless_ports_closed",
                "pager:new:vless_ports_closed"
            ]),
            v(&[]),
            v(&[]),
            v(&[
                "mail:resolved:vless_ports_closed",
                "pager:resolved:vless_ports_closed"
            ]),
        ]
    );
    // Both in one go: the health job's names the cause.
    let got = play(
        &routing(),
        vec![(
            0,
            vec![
                present("fra-1", VlessPortsClosed, Critical),
                present("fra-1", XrayDown, Critical),
            ],
        )],
    );
    assert_eq!(got, vec![v(&["mail:new:xray_down", "pager:new:xray_down"])]);
    // Other kinds are not held by an outage.
    let got = play(
        &routing(),
        vec![
            (0, vec![present("fra-1", XrayDown, Critical)]),
            (1, vec![present("fra-1", ConfigDrift, Warning)]),
        ],
    );
    assert_eq!(got[1], v(&["mail:new:config_drift"]));
}
