//! The 2.x rate limiter (slowapi's fixed window), driven by an injected clock: pure code.

use std::time::{Duration, Instant};

/// A fixed window that opens at the first request and admits `per_window` requests.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_window: u32,
    window: Duration,
    opened: Option<Instant>,
    count: u32,
}

impl RateLimit {
    pub fn new(per_window: u32, window: Duration) -> Self {
        RateLimit {
            per_window,
            window,
            opened: None,
            count: 0,
        }
    }

    /// Change the limit; the current window starts over.
    pub fn configure(&mut self, per_window: u32, window: Duration) {
        *self = RateLimit::new(per_window, window);
    }

    /// Forget every request (an API restart empties slowapi's in-memory storage).
    pub fn reset(&mut self) {
        self.opened = None;
        self.count = 0;
    }

    /// Count one request at `now`; `Err` carries the 429 message when over the limit.
    pub fn hit(&mut self, now: Instant) -> Result<(), String> {
        let expired = match self.opened {
            Some(opened) => now.saturating_duration_since(opened) >= self.window,
            None => true,
        };
        if expired {
            self.opened = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count > self.per_window {
            Err(self.message())
        } else {
            Ok(())
        }
    }

    /// The text slowapi puts in the 429 body, e.g. "Rate limit exceeded: 3 per 1 minute".
    pub fn message(&self) -> String {
        format!(
            "Rate limit exceeded: {} per {}",
            self.per_window,
            describe_window(self.window)
        )
    }
}

/// "1 minute", "2 minute", "1 hour", "5 second" (the `limits` library's singular units).
fn describe_window(window: Duration) -> String {
    let secs = window.as_secs_f64().ceil().max(1.0) as u64;
    if secs.is_multiple_of(3600) {
        format!("{} hour", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{} minute", secs / 60)
    } else {
        format!("{secs} second")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_limit_then_refuses_until_the_window_ends() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limit.hit(t0), Ok(()));
        }
        assert_eq!(
            limit.hit(t0 + Duration::from_secs(59)),
            Err("Rate limit exceeded: 3 per 1 minute".to_string())
        );
        assert_eq!(limit.hit(t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn the_window_opens_at_the_first_request() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1, Duration::from_secs(10));
        assert!(limit.hit(t0 + Duration::from_secs(5)).is_ok());
        assert!(limit.hit(t0 + Duration::from_secs(14)).is_err());
        assert!(limit.hit(t0 + Duration::from_secs(15)).is_ok());
    }

    #[test]
    fn reset_and_configure_start_over() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1, Duration::from_secs(60));
        assert!(limit.hit(t0).is_ok());
        assert!(limit.hit(t0).is_err());
        limit.reset();
        assert!(limit.hit(t0).is_ok());
        limit.configure(30, Duration::from_secs(1));
        assert!(limit.hit(t0).is_ok());
        assert_eq!(limit.message(), "Rate limit exceeded: 30 per 1 second");
    }

    #[test]
    fn windows_are_described_like_the_limits_library() {
        assert_eq!(describe_window(Duration::from_secs(120)), "2 minute");
        assert_eq!(describe_window(Duration::from_secs(3600)), "1 hour");
        assert_eq!(describe_window(Duration::from_millis(200)), "1 second");
    }
}
