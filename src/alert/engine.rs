//! The alert engine: a pure function from (what a run observed, the stored alert
//! states of that server, the routing settings, now) to (new states, notices). It owns
//! dedup, repeat, severity changes, resolved notices, inhibition and per-sink routing.
//! No IO, no clock: the pipeline loads the states, calls `decide` and stores the plan.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::model::{AlertState, AlertStatus, Notice, Observation, Reason};
use crate::config::{AlertsConfig, Severity};
use crate::finding::FindingKind;

/// One sink as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRoute {
    pub name: String,
    pub min_severity: Severity,
}

/// The settings the engine decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub min_severity: Severity,
    pub repeat_interval: chrono::Duration,
    pub send_resolved: bool,
    pub group_wait: chrono::Duration,
    pub sinks: Vec<SinkRoute>,
}

fn sinks_min(sinks: &[SinkRoute]) -> Option<Severity> {
    sinks.iter().map(|sink| sink.min_severity).min()
}

fn duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Routing {
    pub fn from_config(config: &AlertsConfig) -> Routing {
        let sinks: Vec<SinkRoute> = config
            .email
            .iter()
            .map(|s| (s.name.clone(), s.min_severity))
            .chain(
                config
                    .webhook
                    .iter()
                    .map(|s| (s.name.clone(), s.min_severity)),
            )
            .map(|(name, min_severity)| SinkRoute { name, min_severity })
            .collect();
        // `alerts.min_severity` is every sink's default; what decides whether an alert
        // is announced at all is the lowest severity any sink asks for.
        let min_severity = sinks_min(&sinks).unwrap_or(config.min_severity);
        Routing {
            min_severity,
            repeat_interval: duration(config.repeat_interval),
            send_resolved: config.send_resolved,
            group_wait: duration(config.group_wait),
            sinks,
        }
    }

    /// The sinks a notice of `severity` about `alert_kind`/`subject` goes to: those
    /// asking for it (their own `min_severity`), never the sink an
    /// `notifications_failing` alert is about.
    fn targets(&self, severity: Severity, kind: &str, subject: &str) -> Vec<&SinkRoute> {
        let about_sink = kind == FindingKind::NotificationsFailing.as_str();
        self.sinks
            .iter()
            .filter(|sink| severity >= sink.min_severity)
            .filter(|sink| !(about_sink && sink.name == subject))
            .collect()
    }
}

/// What to store and what to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// States to upsert (every state the run touched).
    pub states: Vec<AlertState>,
    pub notices: Vec<Notice>,
}

fn is_unreachable(state: &AlertState) -> bool {
    state.alert.kind == FindingKind::ServerUnreachable.as_str()
}

fn inhibits(states: &BTreeMap<String, AlertState>) -> bool {
    states
        .values()
        .any(|s| is_unreachable(s) && s.alert.status == AlertStatus::Firing)
}

fn is_outage(state: &AlertState) -> bool {
    FindingKind::parse(&state.alert.kind).is_some_and(FindingKind::is_dataplane_outage)
}

/// The one alert of a data-plane outage that speaks for it (`xray_down`,
/// `xray_down_persists` and `vless_ports_closed` describe the same outage from two
/// jobs): the one already announced, else the health job's (it names the cause), else
/// the dataplane's. The others are held while it fires.
fn outage_leader(states: &BTreeMap<String, AlertState>) -> Option<String> {
    let firing: Vec<&AlertState> = states
        .values()
        .filter(|s| is_outage(s) && s.alert.status == AlertStatus::Firing)
        .collect();
    let announced = firing
        .iter()
        .filter(|s| s.last_notified_severity.is_some() && !s.held)
        .min_by_key(|s| (s.alert.started_at, s.alert.fingerprint.clone()));
    let rank = |s: &AlertState| match FindingKind::parse(&s.alert.kind) {
        Some(FindingKind::XrayDownPersists) => 0,
        Some(FindingKind::XrayDown) => 1,
        _ => 2,
    };
    announced
        .or_else(|| {
            firing
                .iter()
                .min_by_key(|s| (rank(s), s.alert.fingerprint.clone()))
        })
        .map(|s| s.alert.fingerprint.clone())
}

/// Decide for one server. `stored` holds that server's states (others are ignored).
pub fn decide(
    server: &str,
    observations: &[Observation],
    stored: &[AlertState],
    routing: &Routing,
    now: DateTime<Utc>,
) -> Plan {
    let mut states: BTreeMap<String, AlertState> = stored
        .iter()
        .filter(|s| s.alert.server == server)
        .map(|s| (s.alert.fingerprint.clone(), s.clone()))
        .collect();
    let mut touched: Vec<String> = Vec::new();
    for observation in observations {
        let fingerprint = match observation {
            Observation::Present(facts) => {
                match states.get_mut(&facts.fingerprint) {
                    Some(state) if state.alert.status == AlertStatus::Firing => {
                        state.alert.severity = facts.severity;
                        state.alert.summary = facts.summary.clone();
                        state.alert.details = facts.details.clone();
                    }
                    // New, or firing again after it resolved: a new alert.
                    _ => {
                        states.insert(facts.fingerprint.clone(), AlertState::firing(facts, now));
                    }
                }
                &facts.fingerprint
            }
            Observation::Gone { fingerprint } => {
                match states.get_mut(fingerprint) {
                    Some(state) if state.alert.status == AlertStatus::Firing => {
                        state.alert.status = AlertStatus::Resolved;
                        state.alert.ended_at = Some(now);
                    }
                    _ => continue,
                }
                fingerprint
            }
        };
        if !touched.contains(fingerprint) {
            touched.push(fingerprint.clone());
        }
    }
    let inhibited = inhibits(&states);
    let leader = outage_leader(&states);
    let held_back = |state: &AlertState| {
        let behind_outage = is_outage(state)
            && state.alert.status == AlertStatus::Firing
            && leader.as_ref() != Some(&state.alert.fingerprint);
        (inhibited && !is_unreachable(state)) || behind_outage
    };
    // The server answers again, or an outage's leader ended: release (or drop) what was
    // held and is held no longer.
    for (fingerprint, state) in &states {
        if state.held && !held_back(state) && !touched.contains(fingerprint) {
            touched.push(fingerprint.clone());
        }
    }
    let mut plan = Plan::default();
    for fingerprint in touched {
        let Some(state) = states.get(&fingerprint) else {
            continue;
        };
        let held_back = held_back(state);
        let Some(state) = states.get_mut(&fingerprint) else {
            continue;
        };
        let Some((reason, severity)) = step(state, held_back, routing, now) else {
            plan.states.push(state.clone());
            continue;
        };
        let due_at = if reason == Reason::New {
            now.checked_add_signed(routing.group_wait)
                .unwrap_or_else(crate::clock::far_future)
        } else {
            now
        };
        for sink in routing.targets(severity, &state.alert.kind, &state.alert.subject) {
            plan.notices.push(Notice {
                sink: sink.name.clone(),
                reason,
                alert: state.alert.clone(),
                due_at,
            });
        }
        plan.states.push(state.clone());
    }
    plan
}

/// Advance one state; `Some((reason, routing severity))` when a notice is due.
fn step(
    state: &mut AlertState,
    held_back: bool,
    routing: &Routing,
    now: DateTime<Utc>,
) -> Option<(Reason, Severity)> {
    let severity = state.alert.severity;
    match state.alert.status {
        AlertStatus::Firing => {
            let wanted = severity >= routing.min_severity;
            let reason = match (state.last_notified_severity, state.last_notified_at) {
                (None, _) if wanted && state.held => Some(Reason::Released),
                (None, _) if wanted => Some(Reason::New),
                (None, _) => None,
                (Some(last), _) if last != severity && wanted => Some(Reason::Changed),
                (Some(_), Some(at)) if now - at >= routing.repeat_interval => Some(Reason::Repeat),
                _ => None,
            };
            if held_back {
                state.held |= reason.is_some();
                return None;
            }
            state.held = false;
            let reason = reason?;
            state.last_notified_at = Some(now);
            state.last_notified_severity = Some(severity);
            state.max_notified_severity = state.max_notified_severity.max(Some(severity));
            Some((reason, severity))
        }
        AlertStatus::Resolved => {
            // Only what was announced is owed a resolved notice; the rest is dropped.
            // One-shot event notices (a quota warning) "resolve" at the next run by
            // design: a resolved notice for them would only be noise.
            let one_shot = crate::finding::FindingKind::parse(&state.alert.kind)
                .is_some_and(|k| k.is_one_shot());
            let Some(max) = state.max_notified_severity.filter(|_| {
                state.last_notified_severity.is_some() && routing.send_resolved && !one_shot
            }) else {
                state.held = false;
                state.last_notified_severity = None;
                return None;
            };
            if held_back {
                state.held = true;
                return None;
            }
            state.held = false;
            state.last_notified_at = Some(now);
            state.last_notified_severity = None;
            Some((Reason::Resolved, max))
        }
    }
}

#[cfg(test)]
mod tests;
