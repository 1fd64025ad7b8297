//! The scheduler. Most tests inject a manual clock and sleeper, so they see exactly when the
//! loop would wake and move time in steps; a few run on the system clock with every-second
//! schedules (a few real seconds each, in parallel) to cover the real timer and shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use keywarden::clock::Clock;
use keywarden::config::Schedule;
use keywarden::scheduler::{ScheduledTask, Scheduler, SchedulerError, SchedulerStats, Sleeper};
use tokio::sync::{mpsc, watch};
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
        Ok(_) => panic!("duplicate ids were accepted"),
    }
}

// ---------------------------------------------------------------------------------------
// On a manual clock.

/// A wall clock that moves only when told, and a sleeper on it that records every sleep
/// the scheduler asks for.
#[derive(Clone)]
struct ManualTime {
    now: Arc<watch::Sender<DateTime<Utc>>>,
    sleeps: Arc<Mutex<Vec<DateTime<Utc>>>>,
}

impl ManualTime {
    fn at(start: DateTime<Utc>) -> ManualTime {
        ManualTime {
            now: Arc::new(watch::channel(start).0),
            sleeps: Arc::default(),
        }
    }

    fn set(&self, to: DateTime<Utc>) {
        self.now.send_replace(to);
    }

    fn sleeps(&self) -> Vec<DateTime<Utc>> {
        self.sleeps.lock().expect("lock").clone()
    }
}

impl Clock for ManualTime {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }
}

impl Sleeper for ManualTime {
    fn sleep_until(&self, until: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.sleeps.lock().expect("lock").push(until);
        let mut now = self.now.subscribe();
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= until).await;
        })
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid time")
}

fn counting_on(id: &str, expr: &str, count: &Arc<AtomicUsize>) -> ScheduledTask {
    let count = Arc::clone(count);
    let schedule = Schedule::parse(expr).expect("valid schedule");
    ScheduledTask::new(id, schedule, move |_token| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
        }
    })
}

async fn start_manual(time: &ManualTime, tz: Tz, tasks: Vec<ScheduledTask>) -> Scheduler {
    within(
        "Scheduler::start_with",
        Duration::from_secs(5),
        Scheduler::start_with(tz, tasks, Arc::new(time.clone()), Arc::new(time.clone())),
    )
    .await
    .expect("scheduler starts")
}

/// Let the scheduler's loop and bodies run (they are tasks on this runtime); a short real
/// wait, not a schedule's length.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Wait (briefly) for the loop to ask for its `n`-th sleep; that sleep's instant.
async fn nth_sleep(time: &ManualTime, n: usize) -> DateTime<Utc> {
    within(
        "the scheduler to go to sleep",
        Duration::from_secs(5),
        async {
            loop {
                if let Some(at) = time.sleeps().get(n - 1) {
                    return *at;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await
}

#[tokio::test]
async fn nothing_wakes_the_scheduler_while_nothing_is_due() {
    let time = ManualTime::at(utc(2026, 1, 1, 0, 0, 10));
    let (fast, hourly) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let scheduler = start_manual(
        &time,
        Tz::UTC,
        vec![
            counting_on("fra-1/health", "*/30 * * * * *", &fast),
            counting_on("fra-1/reality", "0 0 * * * *", &hourly),
        ],
    )
    .await;
    assert_eq!(nth_sleep(&time, 1).await, utc(2026, 1, 1, 0, 0, 30));

    // Time passes up to just before the due time: the loop stays asleep.
    for second in 11..30 {
        time.set(utc(2026, 1, 1, 0, 0, second));
        settle().await;
    }
    assert_eq!(scheduler.stats().wakeups, 0);
    assert_eq!(time.sleeps().len(), 1, "no new sleep was asked for");
    assert_eq!(fast.load(Ordering::SeqCst), 0);

    // Due: one wake-up, one run, and straight back to sleep until the next due time.
    time.set(utc(2026, 1, 1, 0, 0, 30));
    assert_eq!(nth_sleep(&time, 2).await, utc(2026, 1, 1, 0, 1, 0));
    settle().await;
    assert_eq!(fast.load(Ordering::SeqCst), 1);
    assert_eq!(scheduler.stats().wakeups, 1);

    // Only the hourly task left: a whole hour without a single wake-up.
    within(
        "replace",
        Duration::from_secs(5),
        scheduler.replace(
            Tz::UTC,
            vec![counting_on("fra-1/reality", "0 0 * * * *", &hourly)],
        ),
    )
    .await
    .expect("replace");
    assert_eq!(nth_sleep(&time, 3).await, utc(2026, 1, 1, 1, 0, 0));
    let woken = scheduler.stats().wakeups;
    assert_eq!(woken, 2, "the replace woke it once");
    for minute in 1..60 {
        time.set(utc(2026, 1, 1, 0, minute, 0));
        settle().await;
    }
    assert_eq!(scheduler.stats().wakeups, woken);
    assert_eq!(time.sleeps().len(), 3);
    assert_eq!(
        (fast.load(Ordering::SeqCst), hourly.load(Ordering::SeqCst)),
        (1, 0)
    );
    time.set(utc(2026, 1, 1, 1, 0, 0));
    assert_eq!(nth_sleep(&time, 4).await, utc(2026, 1, 1, 2, 0, 0));
    settle().await;
    assert_eq!(hourly.load(Ordering::SeqCst), 1);
    assert_eq!(scheduler.stats().wakeups, woken + 1);

    let report = within(
        "shutdown",
        Duration::from_secs(5),
        scheduler.shutdown(Duration::from_secs(1)),
    )
    .await;
    assert!(report.finished_in_time, "{report:?}");
}

#[tokio::test]
async fn a_berlin_schedule_wakes_at_local_time_on_both_sides_of_the_spring_change() {
    // CET (+1) -> CEST (+2) on 2026-03-29 at 01:00 UTC.
    let time = ManualTime::at(utc(2026, 3, 27, 12, 0, 0));
    let runs = Arc::new(AtomicUsize::new(0));
    let scheduler = start_manual(
        &time,
        chrono_tz::Europe::Berlin,
        vec![counting_on("fra-1/quota", "0 0 3 * * *", &runs)],
    )
    .await;
    let expected = [
        utc(2026, 3, 28, 2, 0, 0),
        utc(2026, 3, 29, 1, 0, 0),
        utc(2026, 3, 30, 1, 0, 0),
    ];
    for (n, due) in expected.iter().enumerate() {
        assert_eq!(nth_sleep(&time, n + 1).await, *due, "sleep {}", n + 1);
        time.set(*due);
        nth_sleep(&time, n + 2).await;
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), n + 1);
    }
    assert_eq!(scheduler.stats().wakeups, 3);
    within(
        "shutdown",
        Duration::from_secs(5),
        scheduler.shutdown(Duration::from_secs(1)),
    )
    .await;
}

#[tokio::test]
async fn after_a_suspend_a_task_runs_once_then_keeps_its_schedule() {
    let time = ManualTime::at(utc(2026, 1, 1, 0, 0, 0));
    let runs = Arc::new(AtomicUsize::new(0));
    let scheduler = start_manual(
        &time,
        Tz::UTC,
        vec![counting_on("fra-1/health", "*/30 * * * * *", &runs)],
    )
    .await;
    nth_sleep(&time, 1).await;
    // The machine slept for an hour: 120 occurrences passed.
    time.set(utc(2026, 1, 1, 1, 0, 7));
    assert_eq!(nth_sleep(&time, 2).await, utc(2026, 1, 1, 1, 0, 30));
    settle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(scheduler.stats().tasks["fra-1/health"].ticks, 1);
    within(
        "shutdown",
        Duration::from_secs(5),
        scheduler.shutdown(Duration::from_secs(1)),
    )
    .await;
}

#[tokio::test]
async fn a_task_set_without_future_runs_sleeps_until_replaced() {
    // 2026 only: by 2027 it has no occurrence left.
    let time = ManualTime::at(utc(2027, 1, 1, 0, 0, 0));
    let runs = Arc::new(AtomicUsize::new(0));
    let scheduler = start_manual(
        &time,
        Tz::UTC,
        vec![counting_on("fra-1/once", "0 0 0 1 1 * 2026", &runs)],
    )
    .await;
    settle().await;
    assert!(time.sleeps().is_empty(), "nothing to wait for");
    time.set(utc(2027, 6, 1, 0, 0, 0));
    settle().await;
    assert_eq!(scheduler.stats().wakeups, 0);
    scheduler
        .replace(
            Tz::UTC,
            vec![counting_on("fra-1/new", "0 * * * * *", &runs)],
        )
        .await
        .expect("replace");
    assert_eq!(nth_sleep(&time, 1).await, utc(2027, 6, 1, 0, 1, 0));
    within(
        "shutdown",
        Duration::from_secs(5),
        scheduler.shutdown(Duration::from_secs(1)),
    )
    .await;
}
