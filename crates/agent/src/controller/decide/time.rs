//! Durations between timestamps, as the decisions count them.

use std::time::Duration;

use jiff::Timestamp;

/// `now + delay`, unless that is beyond what a timestamp holds.
pub(super) fn after(now: Timestamp, delay: Duration) -> Option<Timestamp> {
    jiff::SignedDuration::try_from(delay)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
}

pub(super) fn remaining(now: Timestamp, since: Timestamp, period: Duration) -> Duration {
    let elapsed = now.duration_since(since);
    if elapsed.is_negative() {
        // A timestamp from the future (clock skew): do not wait forever.
        return Duration::ZERO;
    }
    period.saturating_sub(elapsed.unsigned_abs())
}

pub(super) fn until(now: Timestamp, then: Timestamp) -> Duration {
    let left = then.duration_since(now);
    if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    }
}
