//! Time. TTLs are epoch seconds (DynamoDB TTL), `connectedAt` epoch ms.
//!
//! The dispatcher, the auth check, the sweeper, the in-memory stores and topics read time
//! through a [`Clock`]: the system clock in production, a manual one in tests (see
//! [`App::clock`](crate::App::clock) and the `testing` feature's kit), so that moving the
//! clock forward really expires authentication windows, sessions, tokens and rate windows.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, from the system clock.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Where the runtime reads the time: the system clock (the default), or a manual clock
/// that only moves when told to. Cheap to clone; clones of a manual clock share its time.
///
/// ```
/// use std::time::Duration;
/// use venturekit_ws::clock::Clock;
///
/// let clock = Clock::manual(1_000_000);
/// let same = clock.clone();
/// clock.advance(Duration::from_secs(31));
/// assert_eq!(same.now_ms(), 1_031_000);
/// assert_eq!(same.now_secs(), 1_031);
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(ms) => write!(f, "Clock::manual({})", ms.load(Ordering::Relaxed)),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A manual clock starting at `start_ms` (epoch milliseconds); it moves only through
    /// [`Clock::advance`] and [`Clock::set_ms`].
    pub fn manual(start_ms: i64) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            None => now_ms(),
            Some(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// The current time as a UTC timestamp.
    pub fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    /// Moves a manual clock forward by `by`; returns `false` (and does nothing) on the
    /// system clock, which cannot be moved.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.manual {
            None => false,
            Some(ms) => {
                let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
                ms.fetch_add(by, Ordering::SeqCst);
                true
            }
        }
    }

    /// Sets a manual clock to `ms` (epoch milliseconds); returns `false` on the system clock.
    pub fn set_ms(&self, ms: i64) -> bool {
        match &self.manual {
            None => false,
            Some(now) => {
                now.store(ms, Ordering::SeqCst);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_cannot_be_moved_and_follows_the_system_time() {
        let clock = Clock::system();
        assert!(!clock.advance(Duration::from_secs(3600)));
        assert!(!clock.set_ms(0));
        assert!((clock.now_ms() - now_ms()).abs() < 60_000);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual(-1);
        assert_eq!(clock.now_secs(), -1, "seconds round down");
        assert!(clock.set_ms(1_700_000_000_500));
        assert_eq!(clock.now_utc().timestamp_millis(), 1_700_000_000_500);
        assert!(clock.is_manual() && !Clock::system().is_manual());
    }
}
