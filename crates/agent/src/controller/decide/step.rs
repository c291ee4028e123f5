//! What a reconcile does now: wait, establish the connection with the
//! token, or maintain it with the certificate; and whether it synchronizes
//! Applications.

use std::time::Duration;

use jiff::Timestamp;

use super::time::{remaining, until};
use crate::crd::compass_connection::{
    CompassConnectionSpec, CompassConnectionStatus, ConnectionState, SynchronizationStatus,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do before this much time has passed.
    Wait(Duration),
    /// Get a certificate with the configured one-time token.
    Establish,
    /// Check the connection with the certificate (and renew it when due).
    Maintain,
}

/// What the reconcile does now. `next_attempt_at` is when the last reconcile
/// scheduled the next attempt (the sync period after a success, the backoff
/// after a failure); it is unknown after a restart.
pub fn next_step(
    now: Timestamp,
    spec: &CompassConnectionSpec,
    status: &CompassConnectionStatus,
    minimal_sync_time: Duration,
    next_attempt_at: Option<Timestamp>,
) -> Step {
    let forced = spec.resync_now || spec.refresh_credentials_now;
    if !forced {
        let mut wait = Duration::ZERO;
        if let Some(last) = status.connection_status.last_sync.as_ref() {
            wait = wait.max(remaining(now, last.0, minimal_sync_time));
        }
        if let Some(not_before) = next_attempt_at {
            wait = wait.max(until(now, not_before));
        }
        if !wait.is_zero() {
            return Step::Wait(wait);
        }
    }
    if status.connection_state == ConnectionState::ConnectionFailed {
        Step::Establish
    } else {
        Step::Maintain
    }
}

/// Whether Applications are synchronized in this reconcile: at most once per
/// minimal sync time, unless `spec.resyncNow` asks for it.
pub fn sync_due(
    now: Timestamp,
    spec: &CompassConnectionSpec,
    sync: Option<&SynchronizationStatus>,
    minimal_sync_time: Duration,
) -> bool {
    if spec.resync_now {
        return true;
    }
    match sync.and_then(|s| s.last_attempt.as_ref()) {
        Some(last) => remaining(now, last.0, minimal_sync_time).is_zero(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::super::fixtures::{at, status, MIN};
    use super::*;

    #[test]
    fn a_failed_connection_is_established_again() {
        let step = next_step(
            at(100),
            &Default::default(),
            &status(ConnectionState::ConnectionFailed, Some(0)),
            MIN,
            None,
        );
        assert_eq!(step, Step::Establish);
    }

    #[test]
    fn every_other_state_is_maintained() {
        for state in ConnectionState::ALL
            .into_iter()
            .filter(|s| *s != ConnectionState::ConnectionFailed)
        {
            assert_eq!(
                next_step(
                    at(100),
                    &Default::default(),
                    &status(state, Some(0)),
                    MIN,
                    None
                ),
                Step::Maintain
            );
        }
    }

    #[test]
    fn an_attempt_younger_than_the_minimal_sync_time_waits_for_the_rest() {
        let step = next_step(
            at(4),
            &Default::default(),
            &status(ConnectionState::Synchronized, Some(0)),
            MIN,
            None,
        );
        assert_eq!(step, Step::Wait(Duration::from_secs(6)));
    }

    #[test]
    fn resync_now_and_refresh_credentials_now_do_not_wait() {
        let spec = CompassConnectionSpec {
            resync_now: true,
            ..Default::default()
        };
        let step = next_step(
            at(1),
            &spec,
            &status(ConnectionState::Synchronized, Some(0)),
            MIN,
            Some(at(60)),
        );
        assert_eq!(step, Step::Maintain);
        let spec = CompassConnectionSpec {
            refresh_credentials_now: true,
            ..Default::default()
        };
        assert_eq!(
            next_step(
                at(1),
                &spec,
                &status(ConnectionState::Synchronized, Some(0)),
                MIN,
                None
            ),
            Step::Maintain
        );
    }

    #[test]
    fn a_backoff_longer_than_the_minimal_time_is_honoured() {
        let step = next_step(
            at(20),
            &Default::default(),
            &status(ConnectionState::ConnectionFailed, Some(0)),
            MIN,
            Some(at(50)),
        );
        assert_eq!(step, Step::Wait(Duration::from_secs(30)));
    }

    #[test]
    fn a_last_sync_in_the_future_does_not_block_forever() {
        let step = next_step(
            at(0),
            &Default::default(),
            &status(ConnectionState::Synchronized, Some(3600)),
            MIN,
            None,
        );
        assert_eq!(step, Step::Maintain);
    }

    #[test]
    fn synchronization_follows_the_minimal_time_on_its_own_last_attempt() {
        let sync = SynchronizationStatus {
            last_attempt: Some(Time(at(0))),
            ..Default::default()
        };
        assert!(!sync_due(at(5), &Default::default(), Some(&sync), MIN));
        assert!(sync_due(at(10), &Default::default(), Some(&sync), MIN));
        assert!(sync_due(at(0), &Default::default(), None, MIN));
        let spec = CompassConnectionSpec {
            resync_now: true,
            ..Default::default()
        };
        assert!(sync_due(at(1), &spec, Some(&sync), MIN));
    }
}
