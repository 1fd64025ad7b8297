//! Runs [`ScheduledTask`] bodies on cron schedules: one loop that sleeps until the next
//! task is due (nothing polls in between; see `sleep.rs` for the one exception), starts
//! every due body on a task tracker and goes back to sleep. Occurrences are computed in
//! the configured time zone (`table.rs`), so daylight saving changes need no special
//! handling. Panics end only their own body and are counted; shutdown stops starting
//! bodies, waits for the running ones up to a deadline, then cancels them.
//! It must not hold job logic, prevent overlapping runs (the job runner guards each
//! (server, job) with a try-lock), or read configuration: callers pass validated schedules.

mod run;
mod sleep;
mod table;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Schedule;
use run::Shared;
use table::Table;

pub use sleep::{MAX_TIMER_SLEEP, Sleeper, SystemSleeper};

/// The body of a task: called once per due time with a token that fires when shutdown's
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

/// Why the scheduler could not take a task set.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("task id \"{id}\" is used by more than one task")]
    DuplicateTaskId { id: String },
}

/// Counts since start, per task id (ids of replaced task sets stay listed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub tasks: BTreeMap<String, TaskStats>,
    /// Bodies running now, from any task set.
    pub in_flight: usize,
    /// Times the loop woke up after its first pass: because a task fell due, or because
    /// the task set was replaced. Nothing else wakes it.
    pub wakeups: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Due times that started a body.
    pub ticks: u64,
    /// Bodies that panicked (the task stays scheduled).
    pub panicked: u64,
}

/// What shutdown found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every body returned before the deadline; nothing was cancelled.
    pub finished_in_time: bool,
    /// Bodies running when the loop stopped.
    pub in_flight_at_stop: usize,
    /// Bodies still running at the deadline, whose token was then fired.
    pub cancelled: usize,
    /// Bodies still running after the grace that followed the cancellation; left behind.
    pub abandoned: usize,
}

/// After the deadline, how long cancelled bodies get to return.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// What the loop and the handle share.
struct Inner {
    table: Mutex<Table>,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    /// Wakes the loop when the task set changed, so it sleeps for the new next due time.
    changed: Notify,
    wakeups: AtomicU64,
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Cron scheduler for task sets; see the module docs.
pub struct Scheduler {
    inner: Arc<Inner>,
    stop: CancellationToken,
    driver: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Register every task in time zone `tz` and start, on the system clock.
    pub async fn start(tz: Tz, tasks: Vec<ScheduledTask>) -> Result<Scheduler, SchedulerError> {
        Scheduler::start_with(tz, tasks, Arc::new(SystemClock), Arc::new(SystemSleeper)).await
    }

    /// Like [`Scheduler::start`], on an injected clock and sleeper (tests move time).
    pub async fn start_with(
        tz: Tz,
        tasks: Vec<ScheduledTask>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Result<Scheduler, SchedulerError> {
        check_unique_ids(&tasks)?;
        let shared = Arc::new(Shared::new());
        shared.know(tasks.iter().map(|task| task.id.as_str()));
        let table = Table::new(tz, tasks, clock.now());
        let inner = Arc::new(Inner {
            table: Mutex::new(table),
            shared,
            clock,
            sleeper,
            changed: Notify::new(),
            wakeups: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let driver = tokio::spawn(drive(Arc::clone(&inner), stop.clone()));
        Ok(Scheduler {
            inner,
            stop,
            driver: Some(driver),
        })
    }

    /// Swap the whole task set (config reload): runs already in flight continue and are
    /// still waited for at shutdown; no task of the old set starts once this returned.
    /// All or nothing: on error the old set keeps running.
    pub async fn replace(&self, tz: Tz, tasks: Vec<ScheduledTask>) -> Result<(), SchedulerError> {
        check_unique_ids(&tasks)?;
        let now = self.inner.clock.now();
        {
            let mut table = self.inner.table();
            table.replace(tz, tasks, now);
            self.inner.shared.know(table.ids());
        }
        self.inner.changed.notify_one();
        Ok(())
    }

    /// Stop starting bodies, wait for in-flight ones up to `deadline`, then fire their
    /// cancellation token and wait a little more (2 s) for them to return.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        // 1. Decide: no body starts from here on.
        self.stop.cancel();
        let shared = Arc::clone(&self.inner.shared);
        shared.stop_accepting();
        if let Some(driver) = self.driver.take()
            && let Err(err) = driver.await
            && err.is_panic()
        {
            tracing::error!(error = %err, "the scheduler loop panicked");
        }
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

    /// Per task id: due times that started a body, bodies that panicked; bodies in flight
    /// now; loop wake-ups.
    pub fn stats(&self) -> SchedulerStats {
        let shared = &self.inner.shared;
        SchedulerStats {
            tasks: shared.stats().into_iter().collect(),
            in_flight: shared.tracker.len(),
            wakeups: self.inner.wakeups.load(Ordering::Relaxed),
        }
    }

    /// The loop is running (not shut down, not ended by a panic). For a health endpoint.
    pub fn is_alive(&self) -> bool {
        !self.stop.is_cancelled() && self.driver.as_ref().is_some_and(|d| !d.is_finished())
    }
}

impl Drop for Scheduler {
    /// A scheduler dropped without `shutdown` stops starting bodies (its loop would
    /// otherwise run on, unowned).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The loop: start what is due, sleep until the next due time, a change of the task set
/// or the stop token, whichever comes first.
async fn drive(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let next = {
            let mut table = inner.table();
            let now = inner.clock.now();
            for (id, body) in table.take_due(now) {
                inner.shared.start_body(&id, body);
            }
            table.next_due()
        };
        let sleep = async {
            match next {
                Some(at) => inner.sleeper.sleep_until(at).await,
                // No task has an occurrence left: only a replace or the stop can wake us.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = inner.changed.notified() => {}
            () = sleep => {}
        }
        inner.wakeups.fetch_add(1, Ordering::Relaxed);
    }
}

fn check_unique_ids(tasks: &[ScheduledTask]) -> Result<(), SchedulerError> {
    let mut seen = HashSet::with_capacity(tasks.len());
    match tasks.iter().find(|task| !seen.insert(task.id.as_str())) {
        Some(task) => Err(SchedulerError::DuplicateTaskId {
            id: task.id.clone(),
        }),
        None => Ok(()),
    }
}
