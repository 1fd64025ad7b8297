//! The dispatcher: one task per sink reads that sink's outbox and delivers. It owns
//! retries (exponential backoff with jitter, Retry-After), the per-sink rate limit,
//! max_age expiry, permanent failures and sink health. A slow or broken sink only
//! delays itself. Shutdown: cancel, let sends in flight finish within a deadline;
//! whatever is undelivered stays in the outbox for the next start. With a shared fleet
//! (PostgreSQL store) only the agent leading the dispatcher delivers; the others' tasks
//! wait for that leadership, and a task that loses it mid-pass stops before its next
//! send.
//!
//! Longer than 400 lines on purpose: the worker's pass, the daemon's loop and the one-shot
//! `flush` and `send_test` share the worker's bookkeeping (outbox rows, sink health,
//! counters); apart, each would need that state made public.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch::{self, earliest};
use super::model::{AGENT, Alert, AlertStatus, Item, Message, Notice, OutboxRow, Reason};
use super::pipeline::Pipeline;
use super::sink::{SendError, Sink};
use crate::lead::Leadership;
use crate::metrics::{Metrics, SinkLabels};
use crate::model::Severity;
use crate::model::alert::SinkHealth;
use crate::store::{OUTBOX_KEPT_DAYS, StoreError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Timing of the dispatcher (tests shorten it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchOptions {
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Undelivered notices older than this are dropped.
    pub max_age: Duration,
    /// A sink task looks at its outbox at least this often (real time).
    pub max_idle: Duration,
}

/// How often a sink task of a shared fleet (PostgreSQL store) looks at its outbox: the
/// other agents queue notices there without waking this one.
pub const SHARED_MAX_IDLE: Duration = Duration::from_secs(5);

/// How often a sink task of the only agent (SQLite store) looks at its outbox when
/// nothing is due: the notices it must send are queued by its own pipeline, which wakes
/// it, except those a `check --notify` beside the daemon leaves queued for it
/// (`flush_right`), which this look picks up. The 5 s of a shared fleet cost the idle
/// daemon an outbox read on a blocking thread every 5 s per sink.
pub const ALONE_MAX_IDLE: Duration = Duration::from_secs(20);

impl DispatchOptions {
    pub fn new(max_age: Duration) -> DispatchOptions {
        DispatchOptions {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            max_age,
            max_idle: SHARED_MAX_IDLE,
        }
    }

    /// The daemon's: sink tasks of the only agent sleep until something is due, a
    /// notice is queued or [`ALONE_MAX_IDLE`] passed, instead of reading the outbox
    /// every few seconds.
    pub fn for_daemon(max_age: Duration, shared_fleet: bool) -> DispatchOptions {
        DispatchOptions {
            max_idle: if shared_fleet {
                SHARED_MAX_IDLE
            } else {
                ALONE_MAX_IDLE
            },
            ..DispatchOptions::new(max_age)
        }
    }
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchStats {
    pub messages_sent: u64,
    pub notices_delivered: u64,
    pub failed_attempts: u64,
    pub dropped_max_age: u64,
    pub dropped_permanent: u64,
}

/// The delay before attempt `attempts + 1`: base * 2^(attempts-1), capped, with
/// jitter in [delay/2, delay].
pub fn backoff(options: &DispatchOptions, attempts: u32) -> Duration {
    let delay = options
        .backoff_base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(options.backoff_max);
    delay.mul_f64(0.5 + fastrand::f64() * 0.5)
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One sink's delivery state between passes.
struct Worker {
    sink: Arc<Sink>,
    pipeline: Arc<Pipeline>,
    options: DispatchOptions,
    /// When recent messages went out (the rate window).
    sent: VecDeque<DateTime<Utc>>,
    stats: Arc<Mutex<DispatchStats>>,
    last_prune: Option<DateTime<Utc>>,
    leadership: Leadership,
}

/// What a pass left behind.
struct PassOutcome {
    pending: usize,
    next_due: Option<DateTime<Utc>>,
}

impl Worker {
    fn count(&self, f: impl FnOnce(&mut DispatchStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Add `n` to one of the per-sink notification counters, when metrics are on.
    fn meter(&self, family: fn(&Metrics) -> &Family<SinkLabels, Counter>, n: u64) {
        if let Some(metrics) = &self.pipeline.metrics {
            let labels = SinkLabels {
                sink: self.sink.name().to_string(),
            };
            family(metrics).get_or_create(&labels).inc_by(n);
        }
    }

    /// Expire, plan, send what is due.
    async fn pass(&mut self) -> Result<PassOutcome, StoreError> {
        let store = self.pipeline.store.clone();
        let name = self.sink.name().to_string();
        let now = self.pipeline.clock.now();
        if self
            .last_prune
            .is_none_or(|at| now - at > chrono::Duration::hours(1))
        {
            store
                .alerts()
                .prune(now - chrono::Duration::days(OUTBOX_KEPT_DAYS))
                .await?;
            self.last_prune = Some(now);
        }
        let rows = store.alerts().pending(&name).await?;
        // Checked: a max_age of 300 000 years once panicked here (DateTime - TimeDelta).
        let cutoff = crate::clock::earlier(now, self.options.max_age);
        let (expired, rows): (Vec<OutboxRow>, Vec<OutboxRow>) =
            rows.into_iter().partition(|row| row.created_at < cutoff);
        if !expired.is_empty() {
            let ids: Vec<i64> = expired.iter().map(|r| r.id).collect();
            store
                .alerts()
                .mark_dropped(&ids, now, "max_age", None)
                .await?;
            self.count(|s| s.dropped_max_age += ids.len() as u64);
            self.meter(|m| &m.notifications_dropped, ids.len() as u64);
            let last_error = expired.iter().rev().find_map(|r| r.last_error.clone());
            tracing::warn!(sink = %name, dropped = ids.len(), last_error = last_error.as_deref().unwrap_or(""), "undelivered notifications dropped after max_age");
            let error = format!(
                "{} notifications were not delivered within max_age ({}); last error: {}",
                ids.len(),
                humantime::format_duration(self.options.max_age),
                last_error.as_deref().unwrap_or("none")
            );
            self.fail_sink(&error, now).await?;
        }
        while self
            .sent
            .front()
            .is_some_and(|at| now - *at >= chrono(RATE_WINDOW))
        {
            self.sent.pop_front();
        }
        let limit = self.sink.rate_limit_per_minute().max(1) as usize;
        let tokens = limit.saturating_sub(self.sent.len());
        let plan = batch::plan(&rows, now, tokens);
        let mut next_due = plan.next_due;
        if plan.rate_limited
            && let Some(oldest) = self.sent.front()
        {
            next_due = earliest(next_due, *oldest + chrono(RATE_WINDOW));
        }
        let mut sent_rows = 0;
        for indices in plan.messages {
            if !self.leadership.leads_dispatcher() {
                // Lost mid-pass: the new leader delivers the rest.
                break;
            }
            let group: Vec<&OutboxRow> = indices.iter().map(|&i| &rows[i]).collect();
            sent_rows += group.len();
            if let Some(retry_at) = self.send(&group, now).await? {
                next_due = earliest(next_due, retry_at);
            }
        }
        Ok(PassOutcome {
            pending: rows.len() - sent_rows,
            next_due,
        })
    }

    /// Send one message; `Some(when)` if it is to be retried.
    async fn send(
        &mut self,
        rows: &[&OutboxRow],
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let store = self.pipeline.store.clone();
        let name = self.sink.name().to_string();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let message = Message::new(
            rows.iter()
                .map(|r| Item {
                    reason: r.reason,
                    alert: r.alert.clone(),
                })
                .collect(),
        );
        self.sent.push_back(now);
        let result = self.sink.send(&message, now).await;
        let mut health = store.alerts().sink_health(&name).await?;
        health.last_attempt_at = Some(now);
        match result {
            Ok(()) => {
                store.alerts().mark_delivered(&ids, now).await?;
                self.count(|s| {
                    s.messages_sent += 1;
                    s.notices_delivered += ids.len() as u64;
                });
                self.meter(|m| &m.notifications_sent, ids.len() as u64);
                tracing::info!(sink = %name, notices = ids.len(), "notification delivered");
                let was_failing = health.failing;
                health.failing = false;
                health.consecutive_failures = 0;
                health.last_success_at = Some(now);
                store.alerts().save_sink_health(&health).await?;
                if was_failing {
                    self.pipeline.sink_recovered(&name).await;
                }
                Ok(None)
            }
            Err(SendError::Transient { error, retry_after }) => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
                let delay = retry_after.unwrap_or_else(|| backoff(&self.options, attempts));
                let retry_at = crate::clock::later(now, delay);
                store.alerts().mark_retry(&ids, retry_at, &error).await?;
                self.count(|s| s.failed_attempts += 1);
                self.meter(|m| &m.notifications_failed, 1);
                tracing::warn!(sink = %name, notices = ids.len(), attempts, retry_in = %humantime::format_duration(Duration::from_secs(delay.as_secs())), %error, "notification not delivered; will retry");
                health.consecutive_failures += 1;
                health.last_error = Some(error);
                store.alerts().save_sink_health(&health).await?;
                Ok(Some(retry_at))
            }
            Err(SendError::Permanent { error }) => {
                store
                    .alerts()
                    .mark_dropped(&ids, now, "permanent failure", Some(&error))
                    .await?;
                self.count(|s| {
                    s.failed_attempts += 1;
                    s.dropped_permanent += ids.len() as u64;
                });
                self.meter(|m| &m.notifications_failed, 1);
                self.meter(|m| &m.notifications_dropped, ids.len() as u64);
                tracing::error!(sink = %name, notices = ids.len(), %error, "notification refused for good; not retrying");
                health.consecutive_failures += 1;
                health.last_error = Some(error.clone());
                store.alerts().save_sink_health(&health).await?;
                self.fail_sink(&error, now).await?;
                Ok(None)
            }
        }
    }

    /// Raise `notifications_failing` for this sink, unless it already is.
    async fn fail_sink(&self, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let store = &self.pipeline.store;
        let name = self.sink.name();
        let mut health = store.alerts().sink_health(name).await?;
        if health.failing {
            return Ok(());
        }
        health.failing = true;
        health.last_attempt_at = health.last_attempt_at.or(Some(now));
        health.last_error = Some(error.to_string());
        store.alerts().save_sink_health(&health).await?;
        self.pipeline.sink_failing(name, error).await;
        Ok(())
    }
}

fn worker(
    pipeline: &Arc<Pipeline>,
    sink: Arc<Sink>,
    options: DispatchOptions,
    stats: &Arc<Mutex<DispatchStats>>,
    leadership: &Leadership,
) -> Worker {
    Worker {
        sink,
        pipeline: pipeline.clone(),
        options,
        sent: VecDeque::new(),
        stats: stats.clone(),
        last_prune: None,
        leadership: leadership.clone(),
    }
}

/// Real time until `at` by the pipeline's clock, at most `cap`.
fn until(pipeline: &Pipeline, at: Option<DateTime<Utc>>, cap: Duration) -> Duration {
    match at {
        Some(at) => (at - pipeline.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(cap),
        None => cap,
    }
}

/// The running dispatcher of the daemon.
pub struct Dispatcher {
    cancel: CancellationToken,
    tracker: TaskTracker,
    stats: Arc<Mutex<DispatchStats>>,
}

impl Dispatcher {
    /// Start one task per sink (the only agent: it always delivers).
    pub fn start(
        pipeline: Arc<Pipeline>,
        sinks: Vec<Sink>,
        options: DispatchOptions,
    ) -> Dispatcher {
        Dispatcher::start_led(pipeline, sinks, options, Leadership::solo())
    }

    /// Start one task per sink; they deliver only while `leadership` holds the
    /// dispatcher.
    pub fn start_led(
        pipeline: Arc<Pipeline>,
        sinks: Vec<Sink>,
        options: DispatchOptions,
        leadership: Leadership,
    ) -> Dispatcher {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let stats = Arc::new(Mutex::new(DispatchStats::default()));
        for sink in sinks {
            let waker = pipeline.waker(sink.name());
            let mut worker = worker(&pipeline, Arc::new(sink), options, &stats, &leadership);
            let cancel = cancel.clone();
            let pipeline = pipeline.clone();
            let leadership = leadership.clone();
            tracker.spawn(async move {
                loop {
                    if !leadership.leads_dispatcher() {
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            () = leadership.changed() => {}
                            _ = tokio::time::sleep(options.max_idle) => {}
                        }
                        continue;
                    }
                    let next = match worker.pass().await {
                        Ok(outcome) => outcome.next_due,
                        Err(error) => {
                            tracing::error!(sink = %worker.sink.name(), %error, "cannot read the outbox");
                            None
                        }
                    };
                    let wait = until(&pipeline, next, options.max_idle);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = waker.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            });
        }
        tracker.close();
        Dispatcher {
            cancel,
            tracker,
            stats,
        }
    }

    pub fn stats(&self) -> DispatchStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stop: sends in flight may finish within `deadline`; the rest stays queued.
    /// Returns whether every task ended in time.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        self.cancel.cancel();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                "alert dispatcher: a send was still running at the deadline; it is retried after the next start"
            );
        }
        finished
    }
}

/// What `flush` achieved, per sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushReport {
    pub delivered: u64,
    /// Sinks with notices still queued (for the daemon), with the last error.
    pub undelivered: Vec<Undelivered>,
    /// Set when this process did not deliver because another holds the dispatcher's
    /// right (`alert::flush_right`): who delivers the queued notices instead.
    pub left_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Undelivered {
    pub sink: String,
    pub pending: usize,
    pub last_error: Option<String>,
}

impl Undelivered {
    /// What `sink` still has queued (`pending`, its outbox rows), if anything.
    fn of(sink: String, pending: &[OutboxRow]) -> Option<Undelivered> {
        (!pending.is_empty()).then(|| Undelivered {
            sink,
            pending: pending.len(),
            last_error: pending.iter().rev().find_map(|r| r.last_error.clone()),
        })
    }
}

/// Deliver what is queued now, retrying within `deadline`, all sinks in parallel
/// (`check --notify`). What is left stays in the outbox.
pub async fn flush(
    pipeline: Arc<Pipeline>,
    sinks: Vec<Sink>,
    options: DispatchOptions,
    deadline: Duration,
) -> FlushReport {
    let started = tokio::time::Instant::now();
    let stats = Arc::new(Mutex::new(DispatchStats::default()));
    let tracker = TaskTracker::new();
    let mut handles = Vec::new();
    // A one-shot flush (`check --notify`) is the operator's own act: no leadership.
    let solo = Leadership::solo();
    for sink in sinks {
        let mut worker = worker(&pipeline, Arc::new(sink), options, &stats, &solo);
        let pipeline = pipeline.clone();
        handles.push(tracker.spawn(async move {
            let name = worker.sink.name().to_string();
            loop {
                let outcome = match worker.pass().await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        tracing::error!(sink = %name, %error, "cannot read the outbox");
                        break;
                    }
                };
                let left = deadline.saturating_sub(started.elapsed());
                let wait = until(&pipeline, outcome.next_due, left);
                if outcome.pending == 0 || left.is_zero() || wait >= left {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
            let pending = pipeline
                .store
                .alerts()
                .pending(&name)
                .await
                .unwrap_or_default();
            (name, pending)
        }));
    }
    tracker.close();
    let mut report = FlushReport::default();
    for handle in handles {
        if let Ok((sink, pending)) = handle.await {
            report.undelivered.extend(Undelivered::of(sink, &pending));
        }
    }
    report.delivered = stats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .notices_delivered;
    report
}

/// No flush: another process delivers the outbox (`holder`); what each sink has queued.
pub async fn left_queued(pipeline: &Pipeline, sinks: &[Sink], holder: String) -> FlushReport {
    let mut report = FlushReport {
        left_for: Some(holder),
        ..FlushReport::default()
    };
    for sink in sinks {
        let pending = pipeline
            .store
            .alerts()
            .pending(sink.name())
            .await
            .unwrap_or_default();
        report
            .undelivered
            .extend(Undelivered::of(sink.name().to_string(), &pending));
    }
    report
}

/// `keywarden alert-test`: queue a test notice for `sink` and send it right away. The
/// row is bookkept like any other (delivered, or dropped with its error) but never
/// retried: a test that failed is reported, not resent later.
pub async fn send_test(pipeline: &Pipeline, sink: &Sink) -> Result<(), String> {
    let now = pipeline.clock.now();
    let name = sink.name();
    let alert = Alert {
        fingerprint: format!("{AGENT}/test/{name}"),
        server: AGENT.to_string(),
        kind: "test".to_string(),
        subject: name.to_string(),
        severity: Severity::Info,
        status: AlertStatus::Firing,
        summary: format!("Test notification from keywarden to sink {name}"),
        details: "Seen: nothing wrong; this is a test.\nDone: nothing.\nNext: nothing: if you read this, the sink works.".to_string(),
        started_at: now,
        ended_at: None,
    };
    // Due far ahead, so a running daemon's dispatcher never picks it up meanwhile.
    let notice = Notice {
        sink: name.to_string(),
        reason: Reason::Test,
        alert: alert.clone(),
        due_at: now + chrono::Duration::days(365),
    };
    let alerts = pipeline.store.alerts();
    let ids = alerts
        .save_plan(&[], &[notice], now)
        .await
        .map_err(|e| e.to_string())?;
    let message = Message::new(vec![Item {
        reason: Reason::Test,
        alert,
    }]);
    let result = sink.send(&message, now).await;
    let mut health: SinkHealth = alerts.sink_health(name).await.map_err(|e| e.to_string())?;
    health.last_attempt_at = Some(now);
    match result {
        Ok(()) => {
            alerts
                .mark_delivered(&ids, now)
                .await
                .map_err(|e| e.to_string())?;
            health.last_success_at = Some(now);
        }
        Err(ref error) => {
            alerts
                .mark_dropped(&ids, now, "test", Some(&error.to_string()))
                .await
                .map_err(|e| e.to_string())?;
            health.last_error = Some(error.to_string());
        }
    }
    alerts
        .save_sink_health(&health)
        .await
        .map_err(|e| e.to_string())?;
    result.map_err(|error| error.to_string())
}
