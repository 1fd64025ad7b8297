//! Waiting for a wall-clock instant, injectable: the daemon sleeps on tokio's timer, tests
//! move a manual clock and see exactly when the scheduler would wake.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Waits until an instant of the wall clock.
pub trait Sleeper: Send + Sync {
    /// Return at `until` or later (never much earlier: the scheduler checks what is due
    /// when this returns, and sleeps again if nothing is).
    fn sleep_until(&self, until: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// At most this long on tokio's timer before the wall clock is read again. Tokio's timer
/// is monotonic and stops while the machine is suspended, and the wall clock can be
/// stepped: re-reading it bounds how late such a jump makes a run, at the cost of one
/// wake-up per minute while nothing is due for longer than that.
pub const MAX_TIMER_SLEEP: Duration = Duration::from_secs(60);

/// The daemon's sleeper: the system clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemSleeper;

impl Sleeper for SystemSleeper {
    fn sleep_until(&self, until: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let left = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(MAX_TIMER_SLEEP)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_system_sleeper_returns_at_the_instant() {
        let until = Utc::now() + chrono::Duration::milliseconds(150);
        tokio::time::timeout(Duration::from_secs(5), SystemSleeper.sleep_until(until))
            .await
            .expect("the sleeper hung");
        assert!(Utc::now() >= until);
        let past = Utc::now() - chrono::Duration::seconds(1);
        tokio::time::timeout(Duration::from_millis(100), SystemSleeper.sleep_until(past))
            .await
            .expect("an instant in the past returns at once");
    }
}
