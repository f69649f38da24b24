//! Rate-limited logging for events a client can repeat at will (refused connections, failed
//! operator logins): one line per interval says how many were suppressed, so a flood cannot
//! fill the disk with log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Admits at most one log line per interval.
#[derive(Debug)]
pub struct LogLimiter {
    started: Instant,
    interval_ms: u64,
    /// Milliseconds after `started` before which the next line is suppressed.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            started: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log this event now, with `n` events suppressed since the last line; `None`:
    /// suppress it.
    pub fn admit(&self) -> Option<u64> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next_ms = self.next_ms.load(Ordering::Relaxed);
        let admitted = now_ms >= next_ms
            && self
                .next_ms
                .compare_exchange(
                    next_ms,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if admitted {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counts_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(limiter.admit(), Some(0));
        assert_eq!(limiter.admit(), None);
        assert_eq!(limiter.admit(), None);
        let every = LogLimiter::new(Duration::ZERO);
        assert_eq!(every.admit(), Some(0));
        assert_eq!(every.admit(), Some(0));
    }
}
