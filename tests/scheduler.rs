//! The scheduler against the real tokio-cron-scheduler. It polls the wall clock every
//! ~500 ms and `tokio::time::pause()` cannot move it, so these tests are few, use
//! every-second schedules, and take a few real seconds each (they run in parallel).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use keywarden::config::Schedule;
use keywarden::scheduler::{ScheduledTask, Scheduler, SchedulerError, SchedulerStats};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const EVERY_SECOND: &str = "*/1 * * * * *";

async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// Poll `done` every 50 ms until it holds; on timeout, say what hung and show the stats.
async fn wait_until(
    what: &str,
    limit: Duration,
    scheduler: &Scheduler,
    done: impl Fn(&SchedulerStats) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let stats = scheduler.stats();
        if done(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}; stats: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn every_second() -> Schedule {
    Schedule::parse(EVERY_SECOND).expect("valid schedule")
}

fn counting(id: &str, count: &Arc<AtomicUsize>) -> ScheduledTask {
    let count = Arc::clone(count);
    ScheduledTask::new(id, every_second(), move |_token| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
        }
    })
}

/// A body that reports its start, then sleeps for a minute unless cancelled.
fn sleeper(
    id: &str,
    started: mpsc::UnboundedSender<()>,
    cancelled: &Arc<AtomicUsize>,
) -> ScheduledTask {
    let cancelled = Arc::clone(cancelled);
    ScheduledTask::new(id, every_second(), move |token: CancellationToken| {
        let started = started.clone();
        let cancelled = Arc::clone(&cancelled);
        async move {
            let _ = started.send(());
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
                () = token.cancelled() => {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
}

async fn start(tasks: Vec<ScheduledTask>) -> Scheduler {
    within(
        "Scheduler::start",
        Duration::from_secs(5),
        Scheduler::start(Tz::UTC, tasks),
    )
    .await
    .expect("scheduler starts")
}

// Multi-threaded like the daemon, so bodies, ticks and the crate's actors really interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_coming_through_panics_and_long_runs() {
    let healthy = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (started, _starts) = mpsc::unbounded_channel();
    let boom = ScheduledTask::new("fra-1/boom", every_second(), |_token| async {
        panic!("body panicked on purpose");
    });
    let scheduler = start(vec![
        counting("fra-1/health", &healthy),
        boom,
        sleeper("fra-1/slow", started, &cancelled),
    ])
    .await;
    assert!(scheduler.is_alive());

    wait_until(
        "2 healthy runs, 2 panics and 2 overlapping slow runs",
        Duration::from_millis(3500),
        &scheduler,
        |stats| {
            let task = |id: &str| stats.tasks.get(id).copied().unwrap_or_default();
            task("fra-1/health").ticks >= 2
                && task("fra-1/boom").panicked >= 2
                && task("fra-1/slow").ticks >= 2
        },
    )
    .await;
    assert!(healthy.load(Ordering::SeqCst) >= 2);
    let stats = scheduler.stats();
    assert_eq!(stats.tasks["fra-1/health"].panicked, 0);
    assert!(stats.in_flight >= 2, "slow runs overlap: {stats:?}");
    assert!(scheduler.is_alive());

    let report = within(
        "shutdown with slow bodies in flight",
        Duration::from_secs(5),
        scheduler.shutdown(Duration::from_millis(100)),
    )
    .await;
    assert!(!report.finished_in_time, "{report:?}");
    assert!(report.cancelled >= 2, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[tokio::test]
async fn replace_swaps_the_task_set() {
    let old = Arc::new(AtomicUsize::new(0));
    let new = Arc::new(AtomicUsize::new(0));
    let scheduler = start(vec![counting("fra-1/old", &old)]).await;
    wait_until(
        "the old task runs",
        Duration::from_secs(3),
        &scheduler,
        |stats| stats.tasks["fra-1/old"].ticks >= 1,
    )
    .await;

    within(
        "replace",
        Duration::from_secs(5),
        scheduler.replace(Tz::UTC, vec![counting("fra-1/new", &new)]),
    )
    .await
    .expect("replace");
    let old_at_swap = old.load(Ordering::SeqCst);
    wait_until(
        "the new task runs twice",
        Duration::from_millis(3500),
        &scheduler,
        |stats| {
            stats
                .tasks
                .get("fra-1/new")
                .is_some_and(|task| task.ticks >= 2)
        },
    )
    .await;
    assert_eq!(
        old.load(Ordering::SeqCst),
        old_at_swap,
        "the old task ran after the swap"
    );

    // A bad set is refused as a whole and the current one keeps running.
    let duplicate = vec![counting("fra-1/x", &new), counting("fra-1/x", &new)];
    let err = scheduler
        .replace(Tz::UTC, duplicate)
        .await
        .expect_err("duplicate ids");
    assert!(
        matches!(err, SchedulerError::DuplicateTaskId { ref id } if id == "fra-1/x"),
        "{err}"
    );
    let ticks = scheduler.stats().tasks["fra-1/new"].ticks;
    wait_until(
        "the new task still runs",
        Duration::from_millis(2500),
        &scheduler,
        |stats| stats.tasks["fra-1/new"].ticks > ticks,
    )
    .await;

    within(
        "shutdown",
        Duration::from_secs(5),
        scheduler.shutdown(Duration::from_secs(2)),
    )
    .await;
}

#[tokio::test]
async fn shutdown_cancels_bodies_still_running_at_the_deadline() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (started, mut starts) = mpsc::unbounded_channel();
    let scheduler = start(vec![sleeper("fra-1/slow", started, &cancelled)]).await;
    within("the first slow run", Duration::from_secs(3), starts.recv()).await;

    let deadline = Duration::from_millis(300);
    let begun = Instant::now();
    let report = within(
        "shutdown past its deadline",
        deadline + Duration::from_secs(4),
        scheduler.shutdown(deadline),
    )
    .await;
    let took = begun.elapsed();
    assert!(took >= deadline, "returned before the deadline: {took:?}");
    assert!(took < deadline + Duration::from_secs(2), "{took:?}");
    assert!(!report.finished_in_time, "{report:?}");
    assert!(report.in_flight_at_stop >= 1, "{report:?}");
    assert_eq!(report.cancelled, report.in_flight_at_stop, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(cancelled.load(Ordering::SeqCst), report.cancelled);
}

#[tokio::test]
async fn shutdown_gives_up_on_bodies_that_ignore_cancellation() {
    let (started, mut starts) = mpsc::unbounded_channel::<()>();
    let stubborn = ScheduledTask::new("fra-1/stubborn", every_second(), move |_token| {
        let started = started.clone();
        async move {
            let _ = started.send(());
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    let scheduler = start(vec![stubborn]).await;
    within(
        "the first stubborn run",
        Duration::from_secs(3),
        starts.recv(),
    )
    .await;

    let deadline = Duration::from_millis(200);
    let begun = Instant::now();
    let report = within(
        "shutdown with a body that ignores its token",
        deadline + Duration::from_secs(5),
        scheduler.shutdown(deadline),
    )
    .await;
    let took = begun.elapsed();
    assert!(took < deadline + Duration::from_millis(2500), "{took:?}");
    assert!(!report.finished_in_time, "{report:?}");
    assert!(report.cancelled >= 1, "{report:?}");
    assert_eq!(report.abandoned, report.cancelled, "{report:?}");
}

#[tokio::test]
async fn shutdown_waits_for_bodies_that_finish_in_time() {
    let finished = Arc::new(AtomicUsize::new(0));
    let (started, mut starts) = mpsc::unbounded_channel::<()>();
    let started_count = Arc::new(AtomicUsize::new(0));
    let (done, begun_count) = (Arc::clone(&finished), Arc::clone(&started_count));
    let short = ScheduledTask::new("fra-1/short", every_second(), move |_token| {
        let (started, done, begun) = (started.clone(), Arc::clone(&done), Arc::clone(&begun_count));
        async move {
            begun.fetch_add(1, Ordering::SeqCst);
            let _ = started.send(());
            tokio::time::sleep(Duration::from_millis(800)).await;
            done.fetch_add(1, Ordering::SeqCst);
        }
    });
    let scheduler = start(vec![short]).await;
    within("the first short run", Duration::from_secs(3), starts.recv()).await;

    let report = within(
        "shutdown with a short body in flight",
        Duration::from_secs(8),
        scheduler.shutdown(Duration::from_secs(5)),
    )
    .await;
    assert!(report.finished_in_time, "{report:?}");
    assert!(report.in_flight_at_stop >= 1, "{report:?}");
    assert_eq!((report.cancelled, report.abandoned), (0, 0), "{report:?}");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        started_count.load(Ordering::SeqCst),
        "every started body finished"
    );
}

#[tokio::test]
async fn duplicate_task_ids_are_refused_at_start() {
    let count = Arc::new(AtomicUsize::new(0));
    let result = within(
        "Scheduler::start",
        Duration::from_secs(5),
        Scheduler::start(
            Tz::UTC,
            vec![
                counting("fra-1/health", &count),
                counting("fra-1/health", &count),
            ],
        ),
    )
    .await;
    match result {
        Err(SchedulerError::DuplicateTaskId { id }) => assert_eq!(id, "fra-1/health"),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("duplicate ids were accepted"),
    }
}
