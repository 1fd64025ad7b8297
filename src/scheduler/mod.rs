//! Runs [`ScheduledTask`] bodies on cron schedules, on top of tokio-cron-scheduler 0.15.
//! It owns the crate's pitfalls (see `/work/shared/crates.md`): a time zone frozen into a
//! fixed UTC offset, panics, runs nobody waits for at shutdown. It also keeps per-task counts.
//! It must not hold job logic, prevent overlapping runs (the job runner guards each
//! (server, job) with a try-lock), or read configuration: callers pass validated schedules.
//! The crate logs at INFO on every add and run; `logging::DEFAULT_FILTER` keeps it at warn.

mod dst;
mod registry;
mod run;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;

use crate::config::Schedule;
use registry::Registry;
use run::Shared;

/// The body of a task: called once per tick with a token that fires when shutdown's
/// deadline has passed.
pub type TaskBody =
    Arc<dyn Fn(CancellationToken) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A unit of work the scheduler runs on a cron schedule. Its body receives a
/// cancellation token that fires when shutdown's deadline passes.
#[derive(Clone)]
pub struct ScheduledTask {
    /// Unique within a task set, e.g. "fra-1/health".
    pub id: String,
    pub schedule: Schedule,
    pub body: TaskBody,
}

impl ScheduledTask {
    /// A task whose body is an async closure.
    pub fn new<F, Fut>(id: impl Into<String>, schedule: Schedule, body: F) -> ScheduledTask
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ScheduledTask {
            id: id.into(),
            schedule,
            body: Arc::new(move |token| Box::pin(body(token))),
        }
    }
}

impl fmt::Debug for ScheduledTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduledTask")
            .field("id", &self.id)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

/// Why the scheduler could not start or take a task set. tokio-cron-scheduler's own errors
/// say only which step failed ("ParseSchedule"), so each variant adds what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot start tokio-cron-scheduler")]
    Start(#[source] JobSchedulerError),
    #[error("task id \"{id}\" is used by more than one task")]
    DuplicateTaskId { id: String },
    #[error("cannot register task \"{id}\" with schedule \"{schedule}\"")]
    Register {
        id: String,
        schedule: String,
        #[source]
        source: JobSchedulerError,
    },
}

/// Counts since start, per task id (ids of replaced task sets stay listed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub tasks: BTreeMap<String, TaskStats>,
    /// Bodies running now, from any task set.
    pub in_flight: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Ticks that started a body.
    pub ticks: u64,
    /// Bodies that panicked (the task stays scheduled).
    pub panicked: u64,
}

/// What shutdown found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every body returned before the deadline; nothing was cancelled.
    pub finished_in_time: bool,
    /// Bodies running when ticking stopped.
    pub in_flight_at_stop: usize,
    /// Bodies still running at the deadline, whose token was then fired.
    pub cancelled: usize,
    /// Bodies still running after the grace that followed the cancellation; left behind.
    pub abandoned: usize,
}

/// After the deadline, how long cancelled bodies get to return.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Liveness: a job of our own that beats every 5 s proves the crate's detached tick loop
/// and job runner still work, which nothing else would tell us. In UTC: no DST to handle.
const HEARTBEAT_SCHEDULE: &str = "*/5 * * * * *";
const HEARTBEAT_STALE: Duration = Duration::from_secs(20);

/// Cron scheduler for task sets; see the module docs.
pub struct Scheduler {
    registry: Arc<Registry>,
    heartbeat: Arc<Heartbeat>,
    watcher: JoinHandle<()>,
}

impl Scheduler {
    /// Register every task in time zone `tz` and start ticking.
    pub async fn start(tz: Tz, tasks: Vec<ScheduledTask>) -> Result<Scheduler, SchedulerError> {
        let cron = JobScheduler::new().await.map_err(SchedulerError::Start)?;
        let heartbeat = Arc::new(Heartbeat::new());
        let registry = Arc::new(Registry::new(cron.clone(), Arc::new(Shared::new())));
        let registered = async {
            cron.add(heartbeat.job()?).await?;
            Ok::<_, JobSchedulerError>(())
        };
        if let Err(err) = registered.await {
            stop_crate(cron).await;
            return Err(SchedulerError::Start(err));
        }
        if let Err(err) = registry.replace(tz, tasks).await {
            stop_crate(cron).await;
            return Err(err);
        }
        if let Err(err) = cron.start().await {
            stop_crate(cron).await;
            return Err(SchedulerError::Start(err));
        }
        // Re-registers the tasks when the zone's UTC offset changes: the crate froze the
        // offset into each job (open upstream bug), so after a DST change local-time
        // schedules would otherwise run an hour off. Stopped by shutdown.
        let watcher = tokio::spawn(Arc::clone(&registry).watch_offset());
        Ok(Scheduler {
            registry,
            heartbeat,
            watcher,
        })
    }

    /// Swap the whole task set (config reload): runs already in flight continue and are
    /// still waited for at shutdown. All or nothing: on error the old set keeps running.
    pub async fn replace(&self, tz: Tz, tasks: Vec<ScheduledTask>) -> Result<(), SchedulerError> {
        self.registry.replace(tz, tasks).await
    }

    /// Stop ticking, wait for in-flight bodies up to `deadline`, then fire their
    /// cancellation token and wait a little more (2 s) for them to return.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        // No re-registration may add jobs while we stop. Aborted rather than asked: it may
        // be waiting on the crate, and the caller's deadline does not include it. An install
        // cut short leaves at most both sets ticking, and ticking stops right below.
        self.watcher.abort();
        if let Err(err) = self.watcher.await
            && err.is_panic()
        {
            tracing::error!(error = %err, "the time zone offset watcher panicked");
        }
        // 1. Stop ticking. The crate's shutdown only sets a flag that its poll loop reads
        // every ~500 ms, and never waits for runs: the rest is ours.
        stop_crate(self.registry.cron.clone()).await;
        let shared = &self.registry.shared;
        shared.stop_accepting();
        // 2. Wait for the bodies, however many task sets ago they started.
        let tracker = &shared.tracker;
        tracker.close();
        let in_flight_at_stop = tracker.len();
        let finished_in_time = tokio::time::timeout(deadline, tracker.wait()).await.is_ok();
        let mut report = ShutdownReport {
            finished_in_time,
            in_flight_at_stop,
            cancelled: 0,
            abandoned: 0,
        };
        if !finished_in_time {
            // 3. Tell the late ones to stop, and give them a moment.
            report.cancelled = tracker.len();
            shared.cancel.cancel();
            if tokio::time::timeout(CANCEL_GRACE, tracker.wait())
                .await
                .is_err()
            {
                report.abandoned = tracker.len();
            }
        }
        if report.abandoned > 0 {
            tracing::warn!(
                ?report,
                "scheduler stopped; some task bodies ignored cancellation"
            );
        } else {
            tracing::info!(?report, "scheduler stopped");
        }
        report
    }

    /// Per task id: ticks that started a body, bodies that panicked; bodies in flight now.
    pub fn stats(&self) -> SchedulerStats {
        let shared = &self.registry.shared;
        SchedulerStats {
            tasks: shared.stats().into_iter().collect(),
            in_flight: shared.tracker.len(),
        }
    }

    /// Ticking (not shut down): the crate's tick loop ran our heartbeat job lately and the
    /// offset watcher is running. For a health endpoint.
    pub fn is_alive(&self) -> bool {
        !self.watcher.is_finished() && self.heartbeat.age() < HEARTBEAT_STALE
    }

    #[cfg(test)]
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

async fn stop_crate(mut cron: JobScheduler) {
    if let Err(err) = cron.shutdown().await {
        tracing::warn!(error = %err, "tokio-cron-scheduler did not shut down cleanly");
    }
}

/// When our heartbeat job last ran, on the monotonic clock.
struct Heartbeat {
    base: Instant,
    last_ms: AtomicU64,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        Heartbeat {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn job(self: &Arc<Self>) -> Result<Job, JobSchedulerError> {
        let heartbeat = Arc::clone(self);
        Job::new_async(HEARTBEAT_SCHEDULE, move |_job_id, _cron| {
            let heartbeat = Arc::clone(&heartbeat);
            Box::pin(async move { heartbeat.beat() })
        })
    }

    fn beat(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use std::sync::Mutex;

    async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(limit, future)
            .await
            .unwrap_or_else(|_| panic!("timed out: {what}"))
    }

    /// Jobs the crate itself holds: ours plus the heartbeat.
    async fn crate_job_count(scheduler: &Scheduler) -> usize {
        let storage = scheduler.registry().cron.context().metadata_storage.clone();
        let mut storage = storage.write().await;
        storage.list_next_ticks().await.expect("list jobs").len()
    }

    #[tokio::test]
    async fn an_offset_change_registers_every_task_again_exactly_once() {
        let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let recorded = Arc::clone(&starts);
        let every_second = ScheduledTask::new(
            "fra-1/health",
            Schedule::parse("*/1 * * * * *").expect("valid"),
            move |_token| {
                let recorded = Arc::clone(&recorded);
                async move { recorded.lock().expect("lock").push(Instant::now()) }
            },
        );
        let daily = ScheduledTask::new(
            "fra-1/quota",
            Schedule::parse("0 0 3 * * *").expect("valid"),
            |_token| async {},
        );
        let berlin = chrono_tz::Europe::Berlin;
        let scheduler = within(
            "start",
            Duration::from_secs(5),
            Scheduler::start(berlin, vec![every_second, daily]),
        )
        .await
        .expect("start");
        let registry = scheduler.registry();
        let now = Utc::now();
        let unchanged = within(
            "offset check",
            Duration::from_secs(5),
            registry.reregister_if_offset_changed(now),
        )
        .await
        .expect("check");
        assert!(!unchanged, "the offset has not changed since start");

        // Pretend it is a day with the other offset (Berlin is +1 in winter, +2 in summer).
        // A day before the registration, so no run is owed (see dst::owed_run).
        let other = if dst::utc_offset_secs(berlin, now) == 3600 {
            Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0)
        } else {
            Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        }
        .single()
        .expect("valid time");
        assert!(other < now, "the test needs a date before today");
        let again = within(
            "re-registration",
            Duration::from_secs(5),
            registry.reregister_if_offset_changed(other),
        )
        .await
        .expect("re-register");
        assert!(again);
        assert_eq!(registry.job_count().await, 2);
        assert_eq!(crate_job_count(&scheduler).await, 3, "2 tasks + heartbeat");

        // It keeps ticking once per second: no gap, no doubled run.
        let before = starts.lock().expect("lock").len();
        within("3 more runs", Duration::from_millis(4500), async {
            while starts.lock().expect("lock").len() < before + 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let starts = starts.lock().expect("lock").clone();
        for pair in starts.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(gap > Duration::from_millis(500), "two runs {gap:?} apart");
        }
        let report = within(
            "shutdown",
            Duration::from_secs(5),
            scheduler.shutdown(Duration::from_secs(2)),
        )
        .await;
        assert!(report.finished_in_time, "{report:?}");
    }
}
