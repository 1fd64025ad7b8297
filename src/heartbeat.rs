//! The dead man's switch: after every cycle in which every scheduled (server, job) ran
//! to completion at least once, GET `[alerts] heartbeat_url`, so an external monitor
//! notices when keywarden itself dies or hangs. The URL carries a token: it is never
//! logged.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{JobKind, SecretUrl};

/// Tracks which (server, job) pairs completed since the last heartbeat.
#[derive(Debug, Default)]
pub struct Cycle {
    completed: Mutex<HashSet<(String, JobKind)>>,
    /// Wakes the daemon's upkeep after a run instead of on a timer.
    ran: tokio::sync::Notify,
}

impl Cycle {
    /// Note a completed (not skipped) run.
    pub fn completed(&self, server: &str, job: JobKind) {
        self.lock().insert((server.to_string(), job));
        self.ran.notify_one();
    }

    /// Resolves after the next completed run (at once if one completed since the last
    /// call): runs that complete together wake the waiter once or twice, not each time.
    pub async fn next_completion(&self) {
        self.ran.notified().await;
    }

    /// True, and a new cycle starts, when every expected pair completed.
    pub fn take_if_complete(&self, expected: &[(String, JobKind)]) -> bool {
        let mut completed = self.lock();
        if expected.is_empty() || !expected.iter().all(|pair| completed.contains(pair)) {
            return false;
        }
        completed.clear();
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, JobKind)>> {
        self.completed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// GET the heartbeat URL once. Errors name no URL (it holds a token).
pub async fn ping(client: &reqwest::Client, url: &SecretUrl) -> Result<(), String> {
    let response = client
        .get(url.expose().clone())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|error| error.without_url().to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the heartbeat URL answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_completes_when_every_pair_ran() {
        let cycle = Cycle::default();
        let expected = vec![
            ("a".to_string(), JobKind::Health),
            ("a".to_string(), JobKind::Reality),
        ];
        assert!(!cycle.take_if_complete(&expected));
        cycle.completed("a", JobKind::Health);
        cycle.completed("a", JobKind::Health);
        assert!(!cycle.take_if_complete(&expected));
        cycle.completed("a", JobKind::Reality);
        assert!(cycle.take_if_complete(&expected));
        assert!(
            !cycle.take_if_complete(&expected),
            "a new cycle starts empty"
        );
        assert!(
            !cycle.take_if_complete(&[]),
            "nothing scheduled, nothing to vouch for"
        );
    }

    #[tokio::test]
    async fn a_completed_run_wakes_the_waiter_and_nothing_else_does() {
        let cycle = std::sync::Arc::new(Cycle::default());
        let waiter = tokio::spawn({
            let cycle = cycle.clone();
            async move { cycle.next_completion().await }
        });
        // A while without a run: still waiting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished());
        cycle.completed("a", JobKind::Health);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the run")
            .expect("no panic");
        // Runs that completed while nobody waited wake the next waiter once, at once.
        cycle.completed("a", JobKind::Quota);
        cycle.completed("b", JobKind::Quota);
        tokio::time::timeout(Duration::from_secs(1), cycle.next_completion())
            .await
            .expect("a stored wake-up");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), cycle.next_completion())
                .await
                .is_err(),
            "only one stored wake-up"
        );
    }
}
