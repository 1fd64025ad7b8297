//! The alert pipeline as the runner sees it: a `FindingSink` that turns each run's
//! findings into observations, lets the engine decide, and writes states and notices
//! to the store in one transaction (synchronously: SQLite is fast, and a notice is
//! durable before anything is sent). It then wakes the dispatcher; it never sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::engine::{Routing, decide};
use super::model::{AGENT, Facts, Observation, sink_failing_fingerprint};
use crate::clock::Clock;
use crate::config::{AlertsConfig, Severity};
use crate::jobs::runner::{FindingSink, LogSink, RunReport};
use crate::model::FindingKind;
use crate::store::{FindingChanges, Store, StoreError};

/// Shared by the pipeline and the dispatcher.
pub struct Pipeline {
    pub(crate) store: Arc<Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) routing: Routing,
    /// Per sink: woken when it has new notices (a permit is kept if it is busy).
    wakers: HashMap<String, Arc<Notify>>,
    /// Load-decide-store is one critical section: two jobs of one server finishing
    /// together must not both announce the same alert.
    deciding: Mutex<()>,
    /// Where the dispatcher counts notifications per sink (the daemon only).
    pub(crate) metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("routing", &self.routing)
            .finish()
    }
}

impl Pipeline {
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>, config: &AlertsConfig) -> Pipeline {
        Pipeline::with_routing(store, clock, Routing::from_config(config))
    }

    pub fn with_routing(store: Arc<Store>, clock: Arc<dyn Clock>, routing: Routing) -> Pipeline {
        let wakers = routing
            .sinks
            .iter()
            .map(|sink| (sink.name.clone(), Arc::new(Notify::new())))
            .collect();
        Pipeline {
            store,
            clock,
            routing,
            wakers,
            deciding: Mutex::new(()),
            metrics: None,
        }
    }

    /// Count sent, failed and dropped notifications per sink in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Pipeline {
        self.metrics = Some(metrics);
        self
    }

    /// The same, without group_wait: a one-shot `check --notify` sends at once.
    pub fn without_group_wait(mut self) -> Pipeline {
        self.routing.group_wait = chrono::Duration::zero();
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(crate) fn waker(&self, sink: &str) -> Arc<Notify> {
        self.wakers.get(sink).cloned().unwrap_or_default()
    }

    /// Wake every sink (tests call it after moving a manual clock).
    pub fn wake_all(&self) {
        for waker in self.wakers.values() {
            waker.notify_one();
        }
    }

    /// Decide on `observations` of `server` and store the plan. Returns the number of
    /// notices queued.
    pub fn observe(&self, server: &str, observations: &[Observation]) -> Result<usize, StoreError> {
        if observations.is_empty() {
            return Ok(0);
        }
        let _deciding = self
            .deciding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.clock.now();
        let stored = self.store.alert_states(server)?;
        let plan = decide(server, observations, &stored, &self.routing, now);
        self.store
            .save_alert_plan(&plan.states, &plan.notices, now)?;
        for notice in &plan.notices {
            tracing::info!(
                sink = %notice.sink,
                fingerprint = %notice.alert.fingerprint,
                reason = notice.reason.as_str(),
                severity = %notice.alert.severity,
                "notification queued"
            );
            if let Some(waker) = self.wakers.get(&notice.sink) {
                waker.notify_one();
            }
        }
        Ok(plan.notices.len())
    }

    /// Notifications to `sink` fail for good: tell the other sinks (once; the engine
    /// deduplicates, the dispatcher calls this on the transition only).
    pub(crate) fn sink_failing(&self, sink: &str, error: &str) {
        let kind = FindingKind::NotificationsFailing;
        let facts = Facts {
            fingerprint: sink_failing_fingerprint(sink),
            server: AGENT.to_string(),
            kind: kind.as_str().to_string(),
            subject: sink.to_string(),
            severity: Severity::Critical,
            summary: format!("notifications to sink {sink} are failing"),
            details: format!(
                "Seen: {error}\nDone: keywarden stopped retrying these notifications; the other sinks get this alert.\n\
                 Next: check the sink's settings (credentials, URL, recipients) and run `keywarden alert-test --sink {sink}`."
            ),
        };
        if let Err(error) = self.observe(AGENT, &[Observation::Present(facts)]) {
            tracing::error!(%error, sink, "cannot record that the sink is failing");
        }
    }

    /// `sink` delivers again.
    pub(crate) fn sink_recovered(&self, sink: &str) {
        let gone = Observation::Gone {
            fingerprint: sink_failing_fingerprint(sink),
        };
        if let Err(error) = self.observe(AGENT, &[gone]) {
            tracing::error!(%error, sink, "cannot record that the sink recovered");
        }
    }
}

/// The `FindingSink` the runner is given.
#[derive(Debug, Clone)]
pub struct AlertSink(pub Arc<Pipeline>);

/// The observations of one run: what it found, and what it no longer finds.
pub fn observations(report: &RunReport, changes: &FindingChanges) -> Vec<Observation> {
    let mut out: Vec<Observation> = report
        .findings
        .iter()
        .map(|finding| Observation::Present(Facts::from(finding)))
        .collect();
    out.extend(changes.resolved.iter().map(|resolved| Observation::Gone {
        fingerprint: format!("{}/{}/{}", resolved.server, resolved.kind, resolved.subject),
    }));
    out
}

impl FindingSink for AlertSink {
    fn deliver(&self, report: &RunReport, changes: &FindingChanges) {
        LogSink.deliver(report, changes);
        let observations = observations(report, changes);
        if let Err(error) = self.0.observe(&report.server, &observations) {
            tracing::error!(%error, server = %report.server, "cannot record alerts");
        }
    }
}

/// How long `check --notify` waits for its notifications at most.
pub const CHECK_NOTIFY_DEADLINE: Duration = Duration::from_secs(30);
