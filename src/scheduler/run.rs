//! What happens on a tick: decide whether it may start a body, start it on the tracker, and
//! turn a panic into a logged, counted error.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dst::needs_reregistration;
use super::{TaskBody, TaskStats};

/// During a swap (replace, DST re-registration) the old and the new job of a task both exist
/// for a few milliseconds. The crate checks every job against one clock reading per ~500 ms
/// poll, so both fire for the same occurrence within microseconds of each other: two starts
/// from *different* registrations closer than this are one occurrence, and run once.
const HANDOVER_WINDOW: Duration = Duration::from_millis(250);

/// State shared by the scheduler handle and every job closure the crate holds.
pub(super) struct Shared {
    /// Every body runs on this tracker, so shutdown can wait for all of them, including
    /// those started by a task set that has since been replaced.
    pub(super) tracker: TaskTracker,
    /// Fires when shutdown's deadline passes; each body gets a child of it.
    pub(super) cancel: CancellationToken,
    /// Wakes the offset watcher at once when a tick finds its registration's offset stale,
    /// instead of at its next minute.
    pub(super) offset_moved: Notify,
    runs: Mutex<Runs>,
}

struct Runs {
    /// False once shutdown began: the crate's tick loop checks its own stop flag only every
    /// ~500 ms, so one last poll can still fire after `JobScheduler::shutdown` returned.
    accepting: bool,
    tasks: HashMap<String, TaskRuns>,
}

#[derive(Default)]
struct TaskRuns {
    stats: TaskStats,
    /// When the last body of this task started, and from which registration.
    last_start: Option<(Instant, u64)>,
}

/// One registration of a task set: the jobs created together by `start`, `replace` or a DST
/// re-registration, in one time zone whose offset the crate froze at `offset_secs`.
pub(super) struct Generation {
    pub(super) number: u64,
    pub(super) tz: Tz,
    pub(super) offset_secs: i32,
    /// False once the next registration is installed: its jobs may still fire until removed.
    live: AtomicBool,
    /// The latest time (Unix ms) at which `offset_secs` was seen to be right.
    valid_through_ms: AtomicI64,
}

impl Generation {
    pub(super) fn new(number: u64, tz: Tz, offset_secs: i32, at: DateTime<Utc>) -> Generation {
        Generation {
            number,
            tz,
            offset_secs,
            live: AtomicBool::new(true),
            valid_through_ms: AtomicI64::new(at.timestamp_millis()),
        }
    }

    /// Record that the offset was still right at `at`.
    pub(super) fn confirm(&self, at: DateTime<Utc>) {
        self.valid_through_ms
            .fetch_max(at.timestamp_millis(), Ordering::SeqCst);
    }

    pub(super) fn valid_through(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.valid_through_ms.load(Ordering::SeqCst))
            .unwrap_or(DateTime::UNIX_EPOCH)
    }
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            offset_moved: Notify::new(),
            runs: Mutex::new(Runs {
                accepting: true,
                tasks: HashMap::new(),
            }),
        }
    }

    /// Nothing panics while holding the lock; recover anyway rather than unwrap.
    fn runs(&self) -> MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make sure `ids` show up in stats before their first tick.
    pub(super) fn know<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut runs = self.runs();
        for id in ids {
            runs.tasks.entry(id.to_owned()).or_default();
        }
    }

    /// Retire `old`: once this returns, none of its jobs starts a body. Under the runs lock,
    /// so that a tick which passed the check has been counted and spawned by then.
    pub(super) fn retire(&self, old: &Generation) {
        let _runs = self.runs();
        old.live.store(false, Ordering::SeqCst);
    }

    /// Refuse every later tick (shutdown, right after the crate was told to stop ticking).
    pub(super) fn stop_accepting(&self) {
        self.runs().accepting = false;
    }

    pub(super) fn stats(&self) -> Vec<(String, TaskStats)> {
        let runs = self.runs();
        runs.tasks
            .iter()
            .map(|(id, task)| (id.clone(), task.stats))
            .collect()
    }

    /// A tick of task `id` from registration `generation`: start its body and wait for it.
    /// The crate runs this future in its own `tokio::spawn`, so a long body never delays the
    /// next tick of the same task or of any other (overlap is the caller's runner's business).
    pub(super) async fn tick(
        self: Arc<Self>,
        id: Arc<str>,
        generation: Arc<Generation>,
        body: TaskBody,
    ) {
        if let Some(handle) = self.start_body(&id, &generation, body) {
            self.account(&id, handle).await;
        }
    }

    /// Start a body outside the crate's ticks (a run owed after a DST change).
    pub(super) fn run_owed(self: &Arc<Self>, id: &str, generation: &Generation, body: TaskBody) {
        if let Some(handle) = self.start_body(id, generation, body) {
            let shared = Arc::clone(self);
            let id = id.to_owned();
            // Not on the tracker: the body is, and this only waits for it to count a panic.
            tokio::spawn(async move { shared.account(&id, handle).await });
        }
    }

    fn start_body(
        &self,
        id: &str,
        generation: &Generation,
        body: TaskBody,
    ) -> Option<JoinHandle<()>> {
        // A retired registration's jobs are being removed: nothing to check or wake.
        if !generation.live.load(Ordering::SeqCst) {
            return None;
        }
        let now = Utc::now();
        // The crate computed this tick with the offset frozen at registration: if the zone
        // has moved since, the tick is an hour off. Skip it; the watcher registers the task
        // again and runs the occurrence it owes (see `dst::owed_run`).
        if needs_reregistration(generation.tz, generation.offset_secs, now) {
            self.offset_moved.notify_one();
            tracing::debug!(task = %id, "tick computed with a stale UTC offset; skipped");
            return None;
        }
        let mut runs = self.runs();
        if !runs.accepting || !generation.live.load(Ordering::SeqCst) {
            return None;
        }
        generation.confirm(now);
        let task = runs.tasks.entry(id.to_owned()).or_default();
        let started = Instant::now();
        if let Some((at, number)) = task.last_start
            && number != generation.number
            && started.duration_since(at) < HANDOVER_WINDOW
        {
            tracing::debug!(task = %id, "one occurrence fired by the old and the new registration; ran once");
            return None;
        }
        task.last_start = Some((started, generation.number));
        task.stats.ticks += 1;
        // A child token: a body that cancels its own token must not cancel every other.
        let token = self.cancel.child_token();
        // Spawned while holding the lock, so shutdown's close() + wait(), which come after
        // stop_accepting(), cannot miss a body started by a late tick. The body is called
        // inside the task, so even a panic before its first await is caught there.
        Some(self.tracker.spawn(async move { body(token).await }))
    }

    /// Wait for a body; a panic ended only its own task, and becomes a logged, counted error.
    /// This needs `panic = "unwind"` (set in Cargo.toml for release too): with "abort" any
    /// panicking body would take the whole daemon down.
    async fn account(&self, id: &str, handle: JoinHandle<()>) {
        match handle.await {
            Ok(()) => {}
            Err(err) if err.is_panic() => {
                let message = panic_message(err.into_panic());
                self.runs()
                    .tasks
                    .entry(id.to_owned())
                    .or_default()
                    .stats
                    .panicked += 1;
                tracing::error!(task = %id, panic = %message, "scheduled task panicked; it stays scheduled");
            }
            Err(err) => {
                tracing::warn!(task = %id, error = %err, "scheduled task was aborted");
            }
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(not a string)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting_body(count: &Arc<AtomicUsize>) -> TaskBody {
        let count = Arc::clone(count);
        Arc::new(move |_token| {
            let count = Arc::clone(&count);
            Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
            })
        })
    }

    fn generation(number: u64) -> Generation {
        Generation::new(number, Tz::UTC, 0, Utc::now())
    }

    async fn finish(shared: &Shared) {
        shared.tracker.close();
        tokio::time::timeout(Duration::from_secs(5), shared.tracker.wait())
            .await
            .expect("bodies did not finish");
    }

    fn ticks(shared: &Shared, id: &str) -> u64 {
        shared
            .stats()
            .into_iter()
            .find(|(task, _)| task == id)
            .map_or(0, |(_, stats)| stats.ticks)
    }

    #[tokio::test]
    async fn one_occurrence_from_two_registrations_runs_once() {
        let shared = Shared::new();
        let count = Arc::new(AtomicUsize::new(0));
        let (old, new) = (generation(1), generation(2));
        assert!(
            shared
                .start_body("a", &old, counting_body(&count))
                .is_some()
        );
        assert!(
            shared
                .start_body("a", &new, counting_body(&count))
                .is_none()
        );
        // Another task, and the same registration again, are not duplicates.
        assert!(
            shared
                .start_body("b", &new, counting_body(&count))
                .is_some()
        );
        assert!(
            shared
                .start_body("a", &old, counting_body(&count))
                .is_some()
        );
        finish(&shared).await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(ticks(&shared, "a"), 2);
    }

    #[tokio::test]
    async fn retired_registrations_and_stopped_schedulers_start_nothing() {
        let shared = Shared::new();
        let count = Arc::new(AtomicUsize::new(0));
        let old = generation(1);
        shared.retire(&old);
        assert!(
            shared
                .start_body("a", &old, counting_body(&count))
                .is_none()
        );
        let live = generation(2);
        shared.stop_accepting();
        assert!(
            shared
                .start_body("a", &live, counting_body(&count))
                .is_none()
        );
        finish(&shared).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_tick_with_a_stale_offset_is_skipped_and_wakes_the_watcher() {
        let shared = Shared::new();
        let count = Arc::new(AtomicUsize::new(0));
        // Registered with an offset Berlin does not have now (it has +1 or +2, never +3).
        let stale = Generation::new(1, chrono_tz::Europe::Berlin, 3 * 3600, Utc::now());
        assert!(
            shared
                .start_body("a", &stale, counting_body(&count))
                .is_none()
        );
        tokio::time::timeout(Duration::from_secs(1), shared.offset_moved.notified())
            .await
            .expect("the watcher was not woken");
        finish(&shared).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_panicking_body_is_counted_and_the_next_one_runs() {
        let shared = Arc::new(Shared::new());
        let live = Arc::new(generation(1));
        let boom: TaskBody = Arc::new(|_token| Box::pin(async { panic!("boom") }));
        let tick = Arc::clone(&shared).tick(Arc::from("a"), Arc::clone(&live), boom);
        tokio::time::timeout(Duration::from_secs(5), tick)
            .await
            .expect("the panicking tick hung");
        let count = Arc::new(AtomicUsize::new(0));
        shared.run_owed("a", &live, counting_body(&count));
        finish(&shared).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let stats: HashMap<_, _> = shared.stats().into_iter().collect();
        assert_eq!(
            stats["a"],
            TaskStats {
                ticks: 2,
                panicked: 1
            }
        );
    }
}
