//! The alert pipeline's front: each run's findings become observations, the engine
//! decides, and the states and notices are written to the store in one transaction (a
//! notice is durable before anything is sent). It then wakes the dispatcher; it never
//! sends. The runner reaches it through `jobs::sink::AlertSink`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use super::engine::{Routing, decide};
use super::model::{AGENT, Facts, Observation, sink_failing_fingerprint};
use crate::clock::Clock;
use crate::config::AlertsConfig;
use crate::model::{Finding, FindingKind, Severity, StoredFinding};
use crate::store::{Store, StoreError};

/// Shared by the pipeline and the dispatcher.
pub struct Pipeline {
    pub(crate) store: Arc<Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) routing: Routing,
    /// Per sink: woken when it has new notices (a permit is kept if it is busy).
    wakers: HashMap<String, Arc<Notify>>,
    /// Load-decide-store is one critical section: two jobs of one server finishing
    /// together must not both announce the same alert. (An async mutex: the section
    /// awaits the store.)
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
    pub async fn observe(
        &self,
        server: &str,
        observations: &[Observation],
    ) -> Result<usize, StoreError> {
        if observations.is_empty() {
            return Ok(0);
        }
        let _deciding = self.deciding.lock().await;
        let now = self.clock.now();
        let stored = self.store.alerts().states(server).await?;
        let plan = decide(server, observations, &stored, &self.routing, now);
        self.store
            .alerts()
            .save_plan(&plan.states, &plan.notices, now)
            .await?;
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
    pub(crate) async fn sink_failing(&self, sink: &str, error: &str) {
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
        if let Err(error) = self.observe(AGENT, &[Observation::Present(facts)]).await {
            tracing::error!(%error, sink, "cannot record that the sink is failing");
        }
    }

    /// `sink` delivers again.
    pub(crate) async fn sink_recovered(&self, sink: &str) {
        let gone = Observation::Gone {
            fingerprint: sink_failing_fingerprint(sink),
        };
        if let Err(error) = self.observe(AGENT, &[gone]).await {
            tracing::error!(%error, sink, "cannot record that the sink recovered");
        }
    }
}

/// The observations of one run: what it found, and what it no longer finds.
pub fn observations(findings: &[Finding], resolved: &[StoredFinding]) -> Vec<Observation> {
    let mut out: Vec<Observation> = findings
        .iter()
        .map(|finding| Observation::Present(Facts::from(finding)))
        .collect();
    out.extend(resolved.iter().map(|resolved| Observation::Gone {
        fingerprint: resolved.fingerprint(),
    }));
    out
}

/// How long `check --notify` waits for its notifications at most.
pub const CHECK_NOTIFY_DEADLINE: Duration = Duration::from_secs(30);
