//! The validity of the client certificate the reconcile works with,
//! readable from any task: the process wires it into `/readyz`, which
//! answers ready while it is valid.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// See the module's text. Unix seconds; `not_after` is 0 while none is held.
#[derive(Debug, Default)]
pub struct CertificateInUse {
    not_before: AtomicI64,
    not_after: AtomicI64,
}

impl CertificateInUse {
    /// The reconcile works with a certificate valid from `not_before` until
    /// `not_after`.
    pub fn set(&self, not_before: Timestamp, not_after: Timestamp) {
        self.not_before
            .store(not_before.as_second(), Ordering::Relaxed);
        self.not_after
            .store(not_after.as_second(), Ordering::Relaxed);
    }

    /// It holds none any more (the connection failed without credentials).
    pub fn clear(&self) {
        self.not_before.store(0, Ordering::Relaxed);
        self.not_after.store(0, Ordering::Relaxed);
    }

    /// Whether it holds one that is valid at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        let now = now.as_second();
        let not_after = self.not_after.load(Ordering::Relaxed);
        not_after > 0 && self.not_before.load(Ordering::Relaxed) <= now && now < not_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn valid_only_while_one_is_held_and_within_its_validity() {
        let in_use = CertificateInUse::default();
        assert!(!in_use.is_valid_at(at(0)), "none held at start");
        in_use.set(at(10), at(100));
        assert!(!in_use.is_valid_at(at(9)));
        assert!(in_use.is_valid_at(at(10)));
        assert!(in_use.is_valid_at(at(99)));
        assert!(!in_use.is_valid_at(at(100)));
        in_use.clear();
        assert!(!in_use.is_valid_at(at(50)));
    }
}
