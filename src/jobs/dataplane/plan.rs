//! The pure decisions of the dataplane job: which keys' links to fetch, which distinct
//! host:port pairs to probe (and which of them this run, in turn), and what the probes
//! mean. No IO and no clock.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::server_api::XrayInbound;
use crate::server_api::vless::endpoint;
use crate::store::{PortRecord, PortState, StoredLink, XrayMemory, XrayState};

/// A fetched link is trusted this long even when its key did not change (the server's
/// host name in it may).
pub const LINK_MAX_AGE: TimeDelta = TimeDelta::hours(24);
/// Closed ports this soon after keywarden restarted Xray are a restart in progress.
pub const SETTLE: TimeDelta = TimeDelta::seconds(30);
/// How recent health's "Xray stopped" must be to explain closed ports.
pub const XRAY_STATE_FRESH: TimeDelta = TimeDelta::minutes(15);

/// An active key as the dataplane job sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveKey {
    pub id: String,
    pub uuid: String,
    pub name: String,
    /// What its link depends on: a change means the link must be fetched again.
    pub sig: String,
}

/// Links to fetch and to forget in this run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPlan {
    pub fetch: Vec<String>,
    /// Keys gone or inactive: their links are dropped.
    pub forget: Vec<String>,
}

/// Fetch the links of keys without one (first), then of keys whose link is outdated, at
/// most `max` per run; forget the links of keys no longer active.
pub fn links_to_fetch(
    keys: &[ActiveKey],
    links: &HashMap<String, StoredLink>,
    max: usize,
    now: DateTime<Utc>,
) -> LinkPlan {
    let missing = keys.iter().filter(|k| !links.contains_key(&k.id));
    let outdated = keys.iter().filter(|k| {
        links
            .get(&k.id)
            .is_some_and(|l| l.key_sig != k.sig || now - l.fetched_at >= LINK_MAX_AGE)
    });
    let fetch = missing
        .chain(outdated)
        .take(max)
        .map(|k| k.id.clone())
        .collect();
    let mut forget: Vec<String> = links
        .keys()
        .filter(|id| !keys.iter().any(|k| &k.id == *id))
        .cloned()
        .collect();
    forget.sort();
    LinkPlan { fetch, forget }
}

/// One distinct host:port and how to greet it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// `host:port` as probed (after a `vless_host` override).
    pub endpoint: String,
    pub host: String,
    pub port: u16,
    /// The SNI: one of the inbound's server names; None when neither the link nor the
    /// inbound names one (the port cannot be checked).
    pub server_name: Option<String>,
    /// Names of the keys served here (for findings).
    pub keys: Vec<String>,
}

/// The distinct endpoints of the keys' links, sorted. The server name is the link's
/// `sni` when the key's inbound lists it, else the inbound's first server name.
pub fn targets(
    keys: &[ActiveKey],
    links: &HashMap<String, StoredLink>,
    inbounds: Option<&[XrayInbound]>,
    vless_host: Option<&str>,
) -> Vec<Target> {
    let mut by_endpoint: BTreeMap<String, Target> = BTreeMap::new();
    let mut sorted: Vec<&ActiveKey> = keys.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for key in sorted {
        let Some(link) = links.get(&key.id) else {
            continue;
        };
        let host = vless_host.unwrap_or(&link.host).to_string();
        let target = by_endpoint
            .entry(endpoint(&host, link.port))
            .or_insert_with(|| Target {
                endpoint: endpoint(&host, link.port),
                host,
                port: link.port,
                server_name: None,
                keys: Vec::new(),
            });
        target.keys.push(key.name.clone());
        if target.server_name.is_none() {
            target.server_name = server_name(key, link, inbounds);
        }
    }
    by_endpoint.into_values().collect()
}

fn server_name(
    key: &ActiveKey,
    link: &StoredLink,
    inbounds: Option<&[XrayInbound]>,
) -> Option<String> {
    let names = inbounds
        .and_then(|list| list.iter().find(|i| i.uuids.contains(&key.uuid)))
        .map(|inbound| inbound.server_names.as_slice())
        .unwrap_or_default();
    match &link.sni {
        Some(sni) if names.is_empty() || names.contains(sni) => Some(sni.clone()),
        _ => names.first().cloned().or_else(|| link.sni.clone()),
    }
}

/// The targets of this run: all of them when they fit in `max`, else `max` of them
/// starting after `cursor` (wrapping), so every port is probed over successive runs.
/// Returns the chosen indices and the cursor to remember.
pub fn this_run(
    targets: &[Target],
    cursor: Option<&str>,
    max: usize,
) -> (Vec<usize>, Option<String>) {
    let max = max.max(1);
    if targets.len() <= max {
        return ((0..targets.len()).collect(), None);
    }
    let start = cursor
        .and_then(|c| targets.iter().position(|t| t.endpoint.as_str() > c))
        .unwrap_or(0);
    let chosen: Vec<usize> = (0..max).map(|n| (start + n) % targets.len()).collect();
    let last = chosen.last().map(|&i| targets[i].endpoint.clone());
    (chosen, last)
}

/// What the probes mean for the server as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outage {
    /// Some port accepted a connection (or nothing was probed).
    None,
    /// No probed port accepts a connection.
    AllClosed,
    /// Every probed port is closed, and the health job saw Xray stopped: the same outage,
    /// which the health job reports (and repairs).
    XrayStopped,
    /// Every probed port is closed right after keywarden restarted Xray at `at`.
    Restarting { at: DateTime<Utc> },
}

/// The verdict of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub outage: Outage,
    /// Ports that refuse connections (when others accept), by their latest probe.
    pub closed: Vec<PortRecord>,
    /// Ports whose TLS fails or whose certificate does not verify, by their latest probe.
    pub broken: Vec<PortRecord>,
    pub probed: usize,
    pub open: usize,
}

/// Judge this run's probes, with the latest remembered probe of each current endpoint
/// that was not probed in this run (rotation). `xray_now`: what 2.x `GET /health` said
/// right after the probes (read only when every probed port was closed); `xray`: what the
/// health job last saw.
pub fn assess(
    endpoints: &[String],
    probed: &[PortRecord],
    remembered: &[PortRecord],
    xray_now: Option<XrayState>,
    xray: &XrayMemory,
    last_restart: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Assessment {
    let open = probed.iter().filter(|p| p.state == PortState::Open).count();
    let all_closed = !probed.is_empty() && probed.iter().all(|p| p.state == PortState::Closed);
    let settling = last_restart.filter(|at| now - *at < SETTLE);
    let recently_seen_stopped = xray.state == Some(XrayState::Stopped)
        && xray
            .checked_at
            .is_some_and(|at| now - at < XRAY_STATE_FRESH);
    let xray_stopped =
        xray_now == Some(XrayState::Stopped) || (xray_now.is_none() && recently_seen_stopped);
    let mut assessment = Assessment {
        outage: Outage::None,
        closed: Vec::new(),
        broken: Vec::new(),
        probed: probed.len(),
        open,
    };
    if all_closed {
        assessment.outage = match (settling, xray_stopped) {
            (Some(at), _) => Outage::Restarting { at },
            (None, true) => Outage::XrayStopped,
            (None, false) => Outage::AllClosed,
        };
        return assessment;
    }
    let mut latest: BTreeMap<&str, &PortRecord> = remembered
        .iter()
        .filter(|r| endpoints.contains(&r.endpoint))
        .map(|r| (r.endpoint.as_str(), r))
        .collect();
    for record in probed {
        latest.insert(&record.endpoint, record);
    }
    for record in latest.into_values() {
        match record.state {
            PortState::Open => {}
            PortState::Closed if settling.is_none() => assessment.closed.push(record.clone()),
            PortState::Closed => {}
            PortState::TlsFailed | PortState::CertInvalid => assessment.broken.push(record.clone()),
        }
    }
    assessment
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()
    }

    fn key(id: &str, uuid: &str) -> ActiveKey {
        ActiveKey {
            id: id.into(),
            uuid: uuid.into(),
            name: format!("key {id}"),
            sig: format!("{uuid}|sig"),
        }
    }

    fn link(id: &str, host: &str, port: u16, sni: Option<&str>) -> (String, StoredLink) {
        (
            id.to_string(),
            StoredLink {
                key_id: id.into(),
                key_sig: String::new(),
                host: host.into(),
                port,
                sni: sni.map(str::to_string),
                fetched_at: now(),
            },
        )
    }

    fn record(endpoint: &str, state: PortState) -> PortRecord {
        PortRecord {
            endpoint: endpoint.into(),
            state,
            detail: String::new(),
            latency_ms: None,
            probed_at: now(),
        }
    }

    #[test]
    fn links_are_fetched_once_until_the_key_changes() {
        let keys = vec![key("a", "ua"), key("b", "ub"), key("c", "uc")];
        let mut links: HashMap<String, StoredLink> = HashMap::new();
        assert_eq!(
            links_to_fetch(&keys, &links, 10, now()).fetch,
            ["a", "b", "c"]
        );
        assert_eq!(links_to_fetch(&keys, &links, 2, now()).fetch, ["a", "b"]);
        for k in &keys {
            let (id, mut l) = link(&k.id, "h", 1, None);
            l.key_sig = k.sig.clone();
            links.insert(id, l);
        }
        assert_eq!(
            links_to_fetch(&keys, &links, 10, now()),
            LinkPlan::default()
        );
        let changed = vec![key("a", "ua"), key("b", "ub-new"), key("c", "uc")];
        assert_eq!(links_to_fetch(&changed, &links, 10, now()).fetch, ["b"]);
        let later = now() + LINK_MAX_AGE;
        assert_eq!(links_to_fetch(&keys, &links, 10, later).fetch.len(), 3);
        let fewer = vec![key("a", "ua")];
        assert_eq!(links_to_fetch(&fewer, &links, 10, now()).forget, ["b", "c"]);
    }

    #[test]
    fn distinct_endpoints_with_the_inbounds_server_names() {
        let keys = vec![key("a", "ua"), key("b", "ub"), key("c", "uc")];
        let links: HashMap<String, StoredLink> = [
            link("a", "vpn.example", 10001, Some("www.microsoft.com")),
            link("b", "vpn.example", 10002, Some("not.listed")),
            link("c", "vpn.example", 10001, None),
        ]
        .into_iter()
        .collect();
        let inbounds = vec![
            XrayInbound {
                tag: "a".into(),
                port: Some(10001),
                uuids: vec!["ua".into(), "uc".into()],
                short_ids: vec![],
                dest: "www.microsoft.com:443".into(),
                server_names: vec!["www.github.com".into(), "www.microsoft.com".into()],
            },
            XrayInbound {
                tag: "b".into(),
                port: Some(10002),
                uuids: vec!["ub".into()],
                short_ids: vec![],
                dest: "www.apple.com:443".into(),
                server_names: vec!["www.apple.com".into()],
            },
        ];
        let found = targets(&keys, &links, Some(&inbounds), None);
        let summary: Vec<(&str, Option<&str>, usize)> = found
            .iter()
            .map(|t| (t.endpoint.as_str(), t.server_name.as_deref(), t.keys.len()))
            .collect();
        assert_eq!(
            summary,
            [
                ("vpn.example:10001", Some("www.microsoft.com"), 2),
                ("vpn.example:10002", Some("www.apple.com"), 1)
            ]
        );
        let overridden = targets(&keys, &links, None, Some("10.0.0.5"));
        assert_eq!(overridden[0].endpoint, "10.0.0.5:10001");
        assert_eq!(overridden[1].server_name.as_deref(), Some("not.listed"));
    }

    #[test]
    fn rotation_covers_every_port_over_successive_runs() {
        let targets: Vec<Target> = (1..=5)
            .map(|n| Target {
                endpoint: format!("h:{n}"),
                host: "h".into(),
                port: n,
                server_name: None,
                keys: vec![],
            })
            .collect();
        assert_eq!(
            this_run(&targets, Some("h:3"), 5),
            (vec![0, 1, 2, 3, 4], None)
        );
        let mut cursor = None;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (chosen, next) = this_run(&targets, cursor.as_deref(), 2);
            seen.extend(chosen);
            cursor = next;
        }
        assert_eq!(seen, [0, 1, 2, 3, 4, 0]);
        assert_eq!(cursor.as_deref(), Some("h:1"));
        // A cursor whose endpoint is gone continues at the next one after it.
        assert_eq!(this_run(&targets, Some("h:25"), 2).0, [2, 3]);
    }

    #[test]
    fn assessments() {
        use PortState::*;
        let endpoints: Vec<String> = ["h:1", "h:2", "h:3"].map(String::from).to_vec();
        let stopped = XrayMemory {
            state: Some(XrayState::Stopped),
            stopped_reads: 1,
            first_stopped_at: Some(now()),
            checked_at: Some(now() - TimeDelta::minutes(1)),
        };
        let stale_stopped = XrayMemory {
            checked_at: Some(now() - TimeDelta::hours(1)),
            ..stopped.clone()
        };
        let none = XrayMemory::default();
        let closed3 = vec![
            record("h:1", Closed),
            record("h:2", Closed),
            record("h:3", Closed),
        ];
        let restarted_at = now() - TimeDelta::seconds(10);
        let restart = Some(restarted_at);
        let old_restart = Some(now() - TimeDelta::minutes(5));
        type Row<'a> = (
            &'a str,
            Vec<PortRecord>,
            Vec<PortRecord>,
            &'a XrayMemory,
            Option<DateTime<Utc>>,
            Outage,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            ("all closed, /health says stopped now", closed3.clone(), vec![], &none, None, Outage::XrayStopped, vec![], vec![]),
            ("all open", vec![record("h:1", Open), record("h:2", Open), record("h:3", Open)], vec![], &none, None, Outage::None, vec![], vec![]),
            ("nothing probed", vec![], vec![], &none, None, Outage::None, vec![], vec![]),
            ("all closed", closed3.clone(), vec![], &none, None, Outage::AllClosed, vec![], vec![]),
            ("all closed, Xray stopped", closed3.clone(), vec![], &stopped, None, Outage::XrayStopped, vec![], vec![]),
            ("all closed, stale Xray state", closed3.clone(), vec![], &stale_stopped, None, Outage::AllClosed, vec![], vec![]),
            ("all closed, health saw it stopped", closed3.clone(), vec![], &stopped, None, Outage::XrayStopped, vec![], vec![]),
            ("all closed right after a restart", closed3.clone(), vec![], &none, restart, Outage::Restarting { at: restarted_at }, vec![], vec![]),
            ("all closed long after a restart", closed3.clone(), vec![], &none, old_restart, Outage::AllClosed, vec![], vec![]),
            ("one closed", vec![record("h:1", Open), record("h:2", Closed), record("h:3", Open)], vec![], &none, None, Outage::None, vec!["h:2"], vec![]),
            ("one closed right after a restart", vec![record("h:1", Open), record("h:2", Closed)], vec![], &none, restart, Outage::None, vec![], vec![]),
            ("wrong certificate", vec![record("h:1", CertInvalid), record("h:2", Open)], vec![], &none, None, Outage::None, vec![], vec!["h:1"]),
            ("TLS fails", vec![record("h:1", TlsFailed)], vec![], &none, None, Outage::None, vec![], vec!["h:1"]),
            ("remembered ports count", vec![record("h:1", Open)], vec![record("h:2", Closed), record("h:3", CertInvalid), record("h:9", Closed)], &none, None, Outage::None, vec!["h:2"], vec!["h:3"]),
            ("this run's probe wins", vec![record("h:2", Open)], vec![record("h:2", Closed)], &none, None, Outage::None, vec![], vec![]),
        ];
        for (name, probed, remembered, xray, last_restart, outage, closed, broken) in table {
            // The first row read /health right after the probes; the others did not.
            let xray_now = name
                .contains("/health says stopped")
                .then_some(XrayState::Stopped);
            let got = assess(
                &endpoints,
                &probed,
                &remembered,
                xray_now,
                xray,
                last_restart,
                now(),
            );
            assert_eq!(got.outage, outage, "{name}");
            let ends =
                |list: &[PortRecord]| list.iter().map(|r| r.endpoint.clone()).collect::<Vec<_>>();
            assert_eq!(ends(&got.closed), closed, "{name}");
            assert_eq!(ends(&got.broken), broken, "{name}");
        }
    }
}
