//! Leadership: which servers this agent may act on, and whether it delivers the alert
//! outbox. With the embedded SQLite store the agent is alone ([`Leadership::solo`]: it
//! leads everything, as it always did). With the PostgreSQL store several agents share
//! one fleet: each acts only on the servers whose advisory lock its dedicated
//! connection holds, and only the holder of the dispatcher lock delivers the outbox
//! (issue 13). The runner, the dispatcher, /healthz and the metrics ask a
//! [`Leadership`]; the leader task (`postgres`) publishes what it holds through a
//! [`Publisher`]. This module decides nothing about who should hold what (`plan` does,
//! purely) and runs no job.

pub mod fleet;
pub mod plan;
pub mod postgres;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Whether the agent shares its fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The only agent (SQLite store): leads every server and the dispatcher.
    Solo,
    /// One of several agents on one PostgreSQL schema: leads what it holds locks for.
    Shared,
}

/// What this agent leads at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub mode: Mode,
    /// This agent's name (`[store.postgres] agent_name`; "local" when solo).
    pub agent: String,
    /// Shared: the lock connection is up. Solo: always true.
    pub connected: bool,
    /// Shared: the servers whose lock this agent holds. Solo: empty (it leads all).
    pub servers: BTreeSet<String>,
    /// Shared: this agent holds the alert dispatcher's lock.
    pub dispatcher: bool,
    /// Shared: the agents whose row is fresh, this one included while connected.
    pub agents_live: Vec<String>,
}

impl Snapshot {
    /// Shared and holding nothing because the connection is gone.
    fn disconnected(agent: &str) -> Snapshot {
        Snapshot {
            mode: Mode::Shared,
            agent: agent.to_string(),
            connected: false,
            servers: BTreeSet::new(),
            dispatcher: false,
            agents_live: Vec::new(),
        }
    }

    pub fn leads(&self, server: &str) -> bool {
        match self.mode {
            Mode::Solo => true,
            Mode::Shared => self.connected && self.servers.contains(server),
        }
    }

    pub fn leads_dispatcher(&self) -> bool {
        match self.mode {
            Mode::Solo => true,
            Mode::Shared => self.connected && self.dispatcher,
        }
    }
}

/// What the rest of the agent asks. Cheap to clone; reads never wait.
#[derive(Debug, Clone)]
pub struct Leadership {
    snapshot: watch::Receiver<Snapshot>,
    /// Keeps a solo snapshot's channel open (nobody publishes to it).
    _solo: Option<Arc<watch::Sender<Snapshot>>>,
}

/// The leader task's side: publishes what it holds.
#[derive(Debug)]
pub struct Publisher {
    snapshot: watch::Sender<Snapshot>,
    metrics: Option<Arc<Metrics>>,
}

impl Leadership {
    /// The only agent: leads every server and the dispatcher, always.
    pub fn solo() -> Leadership {
        let (tx, rx) = watch::channel(Snapshot {
            mode: Mode::Solo,
            agent: "local".to_string(),
            connected: true,
            servers: BTreeSet::new(),
            dispatcher: true,
            agents_live: Vec::new(),
        });
        Leadership {
            snapshot: rx,
            _solo: Some(Arc::new(tx)),
        }
    }

    /// One of several agents: leads nothing until `Publisher` says otherwise.
    pub fn shared(agent: &str) -> (Leadership, Publisher) {
        let (tx, rx) = watch::channel(Snapshot::disconnected(agent));
        let leadership = Leadership {
            snapshot: rx,
            _solo: None,
        };
        let publisher = Publisher {
            snapshot: tx,
            metrics: None,
        };
        (leadership, publisher)
    }

    pub fn mode(&self) -> Mode {
        self.snapshot.borrow().mode
    }

    /// May this agent act on `server` now?
    pub fn leads(&self, server: &str) -> bool {
        self.snapshot.borrow().leads(server)
    }

    /// May this agent deliver the alert outbox (and the scheduled report) now?
    pub fn leads_dispatcher(&self) -> bool {
        self.snapshot.borrow().leads_dispatcher()
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Resolves as soon as this agent stops leading `server` (never when solo). A
    /// publisher that went away counts as a loss.
    pub async fn lost(&self, server: &str) {
        let mut rx = self.snapshot.clone();
        loop {
            if !rx.borrow_and_update().leads(server) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Resolves when what this agent leads changes (never when solo).
    pub async fn changed(&self) {
        let mut rx = self.snapshot.clone();
        rx.mark_unchanged();
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Publisher {
    /// Also set `keywarden_leading_servers` and `keywarden_agents_live` on every publish.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Publisher {
        let current = self.snapshot.borrow().clone();
        set_gauges(&metrics, &current, 0);
        self.metrics = Some(metrics);
        self
    }

    /// What the lock connection holds now.
    pub fn publish(&self, snapshot: Snapshot) {
        if let Some(metrics) = &self.metrics {
            set_gauges(metrics, &snapshot, 0);
        }
        self.snapshot.send_if_modified(|current| {
            let changed = *current != snapshot;
            *current = snapshot;
            changed
        });
    }

    /// The connection is gone, so are its locks: lead nothing, at once.
    pub fn disconnected(&self) {
        let agent = self.snapshot.borrow().agent.clone();
        self.publish(Snapshot::disconnected(&agent));
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }
}

/// Set the leadership gauges from `snapshot`; `configured` is the number of servers a
/// solo agent leads.
pub fn set_gauges(metrics: &Metrics, snapshot: &Snapshot, configured: usize) {
    let (leading, live) = match snapshot.mode {
        Mode::Solo => (configured, 1),
        Mode::Shared if snapshot.connected => (snapshot.servers.len(), snapshot.agents_live.len()),
        Mode::Shared => (0, 0),
    };
    metrics
        .leading_servers
        .set(i64::try_from(leading).unwrap_or(i64::MAX));
    metrics
        .agents_live
        .set(i64::try_from(live).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn holding(agent: &str, servers: &[&str], dispatcher: bool) -> Snapshot {
        Snapshot {
            mode: Mode::Shared,
            agent: agent.into(),
            connected: true,
            servers: servers.iter().map(|s| s.to_string()).collect(),
            dispatcher,
            agents_live: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn solo_leads_everything() {
        let solo = Leadership::solo();
        assert!(solo.leads("any") && solo.leads_dispatcher());
        assert_eq!(solo.mode(), Mode::Solo);
    }

    #[test]
    fn shared_leads_what_it_holds_and_nothing_once_disconnected() {
        let (leadership, publisher) = Leadership::shared("a");
        assert!(!leadership.leads("fra-1"), "nothing before the first round");
        assert!(!leadership.leads_dispatcher());
        publisher.publish(holding("a", &["fra-1"], true));
        assert!(leadership.leads("fra-1") && !leadership.leads("fra-2"));
        assert!(leadership.leads_dispatcher());
        publisher.disconnected();
        assert!(!leadership.leads("fra-1") && !leadership.leads_dispatcher());
        let snapshot = leadership.snapshot();
        assert!(!snapshot.connected && snapshot.servers.is_empty());
    }

    #[test]
    fn gauges_follow_the_snapshot() {
        let metrics = Arc::new(Metrics::new(false));
        let (_leadership, publisher) = Leadership::shared("a");
        let publisher = publisher.with_metrics(metrics.clone());
        publisher.publish(holding("a", &["x", "y"], false));
        assert_eq!(metrics.leading_servers.get(), 2);
        assert_eq!(metrics.agents_live.get(), 2);
        publisher.disconnected();
        assert_eq!(metrics.leading_servers.get(), 0);
        assert_eq!(metrics.agents_live.get(), 0);
    }

    #[tokio::test]
    async fn lost_resolves_when_the_lock_goes_and_not_before() {
        let (leadership, publisher) = Leadership::shared("a");
        publisher.publish(holding("a", &["fra-1", "fra-2"], false));
        let waiter = tokio::spawn({
            let leadership = leadership.clone();
            async move { leadership.lost("fra-1").await }
        });
        publisher.publish(holding("a", &["fra-1"], true));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "still leads fra-1");
        publisher.publish(holding("a", &["fra-2"], true));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("lost fra-1 resolves")
            .expect("no panic");
        // Solo never loses.
        let solo = Leadership::solo();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), solo.lost("x"))
                .await
                .is_err()
        );
    }
}
