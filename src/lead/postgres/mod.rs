//! The leader task (PostgreSQL store): on its own connection (never the pool's, so its
//! session-level advisory locks live exactly as long as that connection), every
//! `renew_interval` it renews this agent's row in `agents`, reads which agents are live
//! and which advisory locks are granted, asks `plan` what to claim and release, does
//! it, and publishes what it holds. When the connection errors or closes, every lock is
//! gone with it: it publishes "nothing, disconnected" at once (so no job acts), then
//! reconnects with backoff and claims again. Times come from PostgreSQL's `now()`, so
//! the agents' own clocks never have to agree.

mod queries;
mod round;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::plan::{self, LiveAgent};
use super::{Leadership, Mode, Publisher, Snapshot};
use crate::metrics::Metrics;
use crate::store::postgres::{PgConnector, error_text};

pub use queries::{GrantedLock, fleet_view, granted_locks, live_agents};
use queries::{quote_ident, session_start};
use round::{Memories, decide};

/// The dispatcher's item name in the plan (not a valid server name, so never confused).
const DISPATCHER: &str = "(alert dispatcher)";

/// Agents whose row was renewed within this are live (issue 13).
pub const LIVE_WINDOW: Duration = Duration::from_secs(30);

/// A dedicated connection: its client, and the task driving it, which ends when the
/// connection does (error or close).
struct Session {
    client: Client,
    closed: tokio::task::JoinHandle<()>,
}

/// How the leader task runs.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// This agent's name (unique among the agents of one schema).
    pub agent: String,
    /// The PostgreSQL schema of the store (part of every lock key).
    pub schema: String,
    /// How often the row is renewed and the locks reconsidered.
    pub renew_interval: Duration,
    /// Agents renewed within this count as live.
    pub live_window: Duration,
}

impl LeaderOptions {
    pub fn new(agent: &str, schema: &str, renew_interval: Duration) -> LeaderOptions {
        LeaderOptions {
            agent: agent.to_string(),
            schema: schema.to_string(),
            renew_interval,
            live_window: LIVE_WINDOW,
        }
    }

    /// From `[store.postgres]`.
    pub fn from_config(pg: &crate::config::PgConfig) -> LeaderOptions {
        LeaderOptions::new(&pg.agent_name, &pg.schema, pg.renew_interval)
    }

    /// A round that takes longer than this counts as a lost connection: the renew
    /// interval, at least 2 s (a busy host or database is not a lost one; a slow round
    /// holds its locks, so nobody else can act meanwhile), at most 10 s. An agent cut off
    /// silently thus stops acting within two renew intervals of its last good round.
    fn round_timeout(&self) -> Duration {
        self.renew_interval
            .clamp(Duration::from_secs(2), Duration::from_secs(10))
    }
}

/// The running leader task.
pub struct Leader {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    servers: Arc<Mutex<Vec<String>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Leader {
    /// Start leading `servers`; the returned `Leadership` leads nothing until the first
    /// round has claimed something.
    pub fn start(
        options: LeaderOptions,
        servers: Vec<String>,
        connector: PgConnector,
        metrics: Option<Arc<Metrics>>,
    ) -> (Leadership, Leader) {
        let (leadership, mut publisher) = Leadership::shared(&options.agent);
        if let Some(metrics) = metrics {
            publisher = publisher.with_metrics(metrics);
        }
        let stop = CancellationToken::new();
        let servers = Arc::new(Mutex::new(servers));
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(
            Task {
                options,
                servers: servers.clone(),
                connector,
                publisher,
                wake: wake.clone(),
            }
            .run(stop.clone()),
        );
        let leader = Leader {
            stop,
            task,
            servers,
            wake,
        };
        (leadership, leader)
    }

    /// Stop at once without leaving, as a crash would: the connection closes (its
    /// locks go with it) but the row stays until it is stale.
    pub fn abort(self) {
        self.task.abort();
    }

    /// A reloaded configuration's servers: reconsidered at once.
    pub fn set_servers(&self, servers: Vec<String>) {
        *self.servers.lock().unwrap_or_else(|p| p.into_inner()) = servers;
        self.wake.notify_one();
    }

    /// Leave: delete this agent's row (so the others take over at their next round
    /// instead of waiting for it to go stale) and close the connection, which releases
    /// every lock. Waits at most `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("leader task did not stop in time; its connection is closed anyway");
        }
    }
}

struct Task {
    options: LeaderOptions,
    servers: Arc<Mutex<Vec<String>>>,
    connector: PgConnector,
    publisher: Publisher,
    wake: Arc<tokio::sync::Notify>,
}

const RECONNECT_FIRST: Duration = Duration::from_millis(200);

impl Task {
    async fn run(self, stop: CancellationToken) {
        let mut backoff = RECONNECT_FIRST;
        loop {
            let connected = tokio::select! {
                () = stop.cancelled() => return,
                connected = self.connector.dedicated() => connected,
            };
            match connected {
                Ok((client, closed)) => {
                    let session = Session { client, closed };
                    backoff = RECONNECT_FIRST;
                    if self.lead(session, &stop).await == Ended::Stopped {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot connect to PostgreSQL for leadership");
                }
            }
            self.publisher.disconnected();
            let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(self.options.renew_interval.max(RECONNECT_FIRST));
        }
    }

    /// Lead on one connection until it is lost (`Lost`) or the agent stops (`Stopped`).
    async fn lead(&self, mut session: Session, stop: &CancellationToken) -> Ended {
        let client = &session.client;
        let round_timeout = self.options.round_timeout();
        let since =
            match tokio::time::timeout(self.options.round_timeout(), session_start(client)).await {
                Ok(Ok(since)) => since,
                Ok(Err(error)) => {
                    let error = self.connector.redact(&error_text(&error));
                    tracing::warn!(%error, "leadership connection failed at its first query");
                    return Ended::Lost;
                }
                Err(_) => {
                    tracing::warn!("leadership connection did not answer its first query in time");
                    return Ended::Lost;
                }
            };
        tracing::info!(agent = %self.options.agent, "leadership connection established; claiming servers");
        let mut memory = Memories::default();
        loop {
            let servers = self
                .servers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let round = tokio::time::timeout(
                self.options.round_timeout(),
                self.round(client, since, &servers, &mut memory),
            )
            .await;
            match round {
                Ok(Ok(snapshot)) => self.publisher.publish(snapshot),
                Ok(Err(error)) => {
                    let error = self.connector.redact(&error_text(&error));
                    // Whatever happened, the locks can no longer be trusted: drop the
                    // connection (which releases them) and start over.
                    self.publisher.disconnected();
                    tracing::warn!(%error, "leadership round failed; reconnecting (leading nothing meanwhile)");
                    return Ended::Lost;
                }
                Err(_) => {
                    self.publisher.disconnected();
                    tracing::warn!(timeout = ?round_timeout, "leadership round timed out; reconnecting (leading nothing meanwhile)");
                    return Ended::Lost;
                }
            }
            tokio::select! {
                () = stop.cancelled() => {
                    self.goodbye(client).await;
                    self.publisher.disconnected();
                    return Ended::Stopped;
                }
                _ = &mut session.closed => {
                    self.publisher.disconnected();
                    tracing::warn!("leadership connection to PostgreSQL lost: every lock is gone; leading nothing until reconnected");
                    return Ended::Lost;
                }
                () = tokio::time::sleep(self.options.renew_interval) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One round: renew, observe, plan, claim and release; what is held afterwards.
    async fn round(
        &self,
        client: &Client,
        since: DateTime<Utc>,
        servers: &[String],
        memory: &mut Memories,
    ) -> Result<Snapshot, tokio_postgres::Error> {
        let options = &self.options;
        queries::renew(client, &options.schema, &options.agent, since).await?;
        let mut live = live_agents(client, &options.schema, options.live_window).await?;
        if !live.iter().any(|a| a.name == options.agent) {
            live.push(LiveAgent {
                name: options.agent.clone(),
                since,
            });
        }
        let granted = granted_locks(client).await?;
        let key_of: BTreeMap<i64, String> = servers
            .iter()
            .map(|s| (plan::server_lock_key(&options.schema, s), s.clone()))
            .chain([(
                plan::dispatcher_lock_key(&options.schema),
                DISPATCHER.to_string(),
            )])
            .collect();
        let mut mine = BTreeSet::new();
        let mut others = BTreeSet::new();
        for lock in &granted {
            if let Some(item) = key_of.get(&lock.key) {
                if lock.mine {
                    mine.insert(item.clone());
                } else {
                    others.insert(item.clone());
                }
            }
        }
        let dispatcher_items = [DISPATCHER.to_string()];
        let server_plan = decide(
            &options.agent,
            &live,
            servers,
            &mine,
            &others,
            &mut memory.servers,
        );
        let dispatcher_plan = decide(
            &options.agent,
            &live,
            &dispatcher_items,
            &mine,
            &others,
            &mut memory.dispatcher,
        );
        let lock_key = |item: &String| {
            if item == DISPATCHER {
                plan::dispatcher_lock_key(&options.schema)
            } else {
                plan::server_lock_key(&options.schema, item)
            }
        };
        let release: Vec<i64> = server_plan
            .release
            .iter()
            .chain(&dispatcher_plan.release)
            .map(lock_key)
            .collect();
        // Held but not configured any more (a reload) count too: their keys are not
        // in `key_of`, so release those by key.
        let stale: Vec<i64> = granted
            .iter()
            .filter(|lock| lock.mine && !key_of.contains_key(&lock.key))
            .map(|lock| lock.key)
            .collect();
        if !release.is_empty() || !stale.is_empty() {
            let all: Vec<i64> = release.iter().chain(&stale).copied().collect();
            queries::unlock(client, &all).await?;
            for item in server_plan.release.iter().chain(&dispatcher_plan.release) {
                mine.remove(item);
            }
            tracing::info!(released = ?server_plan.release, "released servers to the agents they are assigned to");
        }
        let claim: Vec<String> = server_plan
            .claim
            .iter()
            .chain(&dispatcher_plan.claim)
            .cloned()
            .collect();
        if !claim.is_empty() {
            let keys: Vec<i64> = claim.iter().map(lock_key).collect();
            let mut won = Vec::new();
            for key in queries::try_lock(client, &keys).await? {
                if let Some(item) = key_of.get(&key) {
                    mine.insert(item.clone());
                    won.push(item.clone());
                }
            }
            if !won.is_empty() {
                tracing::info!(claimed = ?won, "now leading");
            }
        }
        let dispatcher = mine.remove(DISPATCHER);
        Ok(Snapshot {
            mode: Mode::Shared,
            agent: options.agent.clone(),
            connected: true,
            servers: mine,
            dispatcher,
            agents_live: live.into_iter().map(|a| a.name).collect(),
        })
    }

    /// Delete this agent's row; the connection's close (by the caller) releases the
    /// locks. Best effort: a failure only means the others wait for the row to go stale.
    async fn goodbye(&self, client: &Client) {
        let sql = format!(
            "DELETE FROM {}.agents WHERE agent_name = $1",
            quote_ident(&self.options.schema)
        );
        let deleted = tokio::time::timeout(
            Duration::from_secs(2),
            client.execute(&sql, &[&self.options.agent]),
        )
        .await;
        if !matches!(deleted, Ok(Ok(_))) {
            tracing::warn!(
                "could not remove this agent's row at shutdown; the others take over once it is stale"
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Lost,
    Stopped,
}
