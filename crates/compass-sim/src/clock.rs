//! The simulator's clock: real time plus an offset that tests can advance, so
//! token and certificate expiry are tested without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Real time shifted by an adjustable offset. Clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<Mutex<Duration>>,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The simulator's "now".
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + *self.offset.lock().expect("clock lock poisoned")
    }

    /// Moves the simulator's time forward (tokens and certificates age).
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock poisoned") += by;
    }

    /// How far the clock has been moved ahead of real time.
    pub fn offset(&self) -> Duration {
        *self.offset.lock().expect("clock lock poisoned")
    }
}

/// RFC 3339 rendering (UTC, seconds) used in the admin API and the request log.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_for_every_clone() {
        let clock = Clock::new();
        let other = clock.clone();
        let before = other.now();
        clock.advance(Duration::from_secs(3600));
        let after = other.now();
        assert!(after.duration_since(before).unwrap() >= Duration::from_secs(3600));
        assert_eq!(other.offset(), Duration::from_secs(3600));
    }
}
