//! Starting a task body: on the tracker (so shutdown can wait for it), with a child of the
//! shutdown token, counted, and with a panic turned into a logged, counted error that ends
//! only that body.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{TaskBody, TaskStats};

/// State shared by the scheduler handle and its loop.
pub(super) struct Shared {
    /// Every body runs on this tracker, so shutdown can wait for all of them, including
    /// those started by a task set that has since been replaced.
    pub(super) tracker: TaskTracker,
    /// Fires when shutdown's deadline passes; each body gets a child of it.
    pub(super) cancel: CancellationToken,
    runs: Mutex<Runs>,
}

struct Runs {
    /// False once shutdown began.
    accepting: bool,
    tasks: HashMap<String, TaskStats>,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
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

    /// Make sure `ids` show up in stats before their first run.
    pub(super) fn know<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut runs = self.runs();
        for id in ids {
            runs.tasks.entry(id.to_owned()).or_default();
        }
    }

    /// Refuse every later start (shutdown).
    pub(super) fn stop_accepting(&self) {
        self.runs().accepting = false;
    }

    pub(super) fn stats(&self) -> Vec<(String, TaskStats)> {
        self.runs()
            .tasks
            .iter()
            .map(|(id, stats)| (id.clone(), *stats))
            .collect()
    }

    /// Start one run of task `id`. Never waits for it: a long run does not delay the next
    /// one of the same task or of any other (overlap is the job runner's business: it
    /// guards each (server, job) and counts skips).
    pub(super) fn start_body(self: &std::sync::Arc<Self>, id: &str, body: TaskBody) -> bool {
        let mut runs = self.runs();
        if !runs.accepting {
            return false;
        }
        runs.tasks.entry(id.to_owned()).or_default().ticks += 1;
        // A child token: a body that cancels its own token must not cancel every other.
        let token = self.cancel.child_token();
        let shared = std::sync::Arc::clone(self);
        let id = id.to_owned();
        // Spawned while holding the lock, so shutdown's close() + wait(), which come after
        // stop_accepting(), cannot miss a body started just before.
        self.tracker.spawn(async move {
            // Calling the body may itself panic before it returns its future.
            let outcome = match catch_unwind(AssertUnwindSafe(|| body(token))) {
                Ok(future) => CatchUnwind(future).await,
                Err(payload) => Err(payload),
            };
            if let Err(payload) = outcome {
                shared.count_panic(&id, payload);
            }
        });
        true
    }

    /// A panic ended only its own body: logged and counted. This needs `panic = "unwind"`
    /// (set in Cargo.toml for release too): with "abort" any panicking body would take the
    /// whole daemon down.
    fn count_panic(&self, id: &str, payload: Box<dyn Any + Send>) {
        let message = panic_message(payload);
        self.runs().tasks.entry(id.to_owned()).or_default().panicked += 1;
        tracing::error!(task = %id, panic = %message, "scheduled task panicked; it stays scheduled");
    }
}

/// A body's future with its panics caught (what `futures::FutureExt::catch_unwind` does,
/// without the dependency).
struct CatchUnwind(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for CatchUnwind {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(payload) => Poll::Ready(Err(payload)),
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counting_body(count: &Arc<AtomicUsize>) -> TaskBody {
        let count = Arc::clone(count);
        Arc::new(move |_token| {
            let count = Arc::clone(&count);
            Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
            })
        })
    }

    async fn finish(shared: &Shared) {
        shared.tracker.close();
        tokio::time::timeout(Duration::from_secs(5), shared.tracker.wait())
            .await
            .expect("bodies did not finish");
    }

    fn stats(shared: &Shared, id: &str) -> TaskStats {
        shared
            .stats()
            .into_iter()
            .find(|(task, _)| task == id)
            .map(|(_, stats)| stats)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn panics_before_and_after_the_first_await_are_counted_and_the_next_run_works() {
        let shared = Arc::new(Shared::new());
        let at_poll: TaskBody = Arc::new(|_token| {
            Box::pin(async {
                tokio::task::yield_now().await;
                panic!("boom after an await")
            })
        });
        let at_call: TaskBody = Arc::new(|_token| panic!("boom before any future"));
        assert!(shared.start_body("a", at_poll));
        assert!(shared.start_body("a", at_call));
        let count = Arc::new(AtomicUsize::new(0));
        assert!(shared.start_body("a", counting_body(&count)));
        finish(&shared).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(
            stats(&shared, "a"),
            TaskStats {
                ticks: 3,
                panicked: 2
            }
        );
    }

    #[tokio::test]
    async fn a_stopped_scheduler_starts_nothing() {
        let shared = Arc::new(Shared::new());
        let count = Arc::new(AtomicUsize::new(0));
        shared.stop_accepting();
        assert!(!shared.start_body("a", counting_body(&count)));
        finish(&shared).await;
        assert_eq!(count.load(Ordering::SeqCst), 0);
        assert_eq!(stats(&shared, "a").ticks, 0);
    }
}
