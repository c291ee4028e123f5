//! The controller's decisions, as pure functions of time and status: what to do
//! next, how long to wait after failures, and the conditions to report.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::certificates::CertificateInfo;
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

/// Exponential backoff with "equal jitter": the n-th consecutive failure waits
/// between half and all of `base × 2^(n-1)`, capped at `cap`. `random` is in [0, 1).
pub fn backoff_delay(
    consecutive_failures: u32,
    base: Duration,
    cap: Duration,
    random: f64,
) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1 << exponent).min(cap);
    full.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
}

/// The next reconcile after a success: the sync period, or earlier when the
/// certificate becomes due for renewal before that.
pub fn requeue_after_success(
    now: Timestamp,
    sync_period: Duration,
    renewal_due_at: Option<Timestamp>,
) -> Duration {
    let mut after = sync_period;
    if let Some(due) = renewal_due_at {
        after = after.min(until(now, due).max(Duration::from_secs(1)));
    }
    after.max(Duration::from_millis(100))
}

fn remaining(now: Timestamp, since: Timestamp, period: Duration) -> Duration {
    let elapsed = now.duration_since(since);
    if elapsed.is_negative() {
        // A timestamp from the future (clock skew): do not wait forever.
        return Duration::ZERO;
    }
    period.saturating_sub(elapsed.unsigned_abs())
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    let left = then.duration_since(now);
    if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    }
}

pub const CONDITION_CONNECTED: &str = "Connected";
pub const CONDITION_CERTIFICATE_VALID: &str = "CertificateValid";
pub const CONDITION_SYNCHRONIZED: &str = "Synchronized";

/// The standard conditions for a status. A condition keeps its
/// `lastTransitionTime` while its status does not change.
pub fn conditions(
    previous: &[Condition],
    state: ConnectionState,
    error: &str,
    certificate: Option<&CertificateInfo>,
    now: Timestamp,
    generation: Option<i64>,
) -> Vec<Condition> {
    let (connected, connected_reason, connected_message) = if state.is_connected() {
        (
            true,
            "Connected".to_string(),
            "the Runtime holds a working connection to Compass".to_string(),
        )
    } else {
        (false, state.to_string(), error.to_string())
    };
    let (valid, valid_reason, valid_message) = match certificate {
        Some(info) if info.is_valid_at(now) => {
            (true, "Valid", format!("valid until {}", info.not_after))
        }
        Some(info) if now >= info.not_after => {
            (false, "Expired", format!("expired at {}", info.not_after))
        }
        Some(info) => (
            false,
            "NotYetValid",
            format!("valid from {}", info.not_before),
        ),
        None => (
            false,
            "NoCertificate",
            "the agent holds no client certificate".to_string(),
        ),
    };
    let (synchronized, sync_reason, sync_message) = match state {
        ConnectionState::Synchronized => (
            true,
            "Synchronized".to_string(),
            "Applications match the Director".to_string(),
        ),
        ConnectionState::Connected => (
            false,
            "NotSynchronizedYet".to_string(),
            "no synchronization has finished yet".to_string(),
        ),
        other => (false, other.to_string(), error.to_string()),
    };
    [
        (
            CONDITION_CONNECTED,
            connected,
            connected_reason,
            connected_message,
        ),
        (
            CONDITION_CERTIFICATE_VALID,
            valid,
            valid_reason.to_string(),
            valid_message,
        ),
        (
            CONDITION_SYNCHRONIZED,
            synchronized,
            sync_reason,
            sync_message,
        ),
    ]
    .into_iter()
    .map(|(kind, ok, reason, message)| {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason,
            message,
            last_transition_time,
            observed_generation: generation,
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::compass_connection::ConnectionStatus;
    use jiff::SignedDuration;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn status(state: ConnectionState, last_sync: Option<i64>) -> CompassConnectionStatus {
        CompassConnectionStatus {
            connection_state: state,
            connection_status: ConnectionStatus {
                last_sync: last_sync.map(|s| Time(at(s))),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const MIN: Duration = Duration::from_secs(10);

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

    #[test]
    fn backoff_doubles_is_jittered_and_capped() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(300);
        assert_eq!(
            backoff_delay(1, base, cap, 0.999_999),
            Duration::from_secs(10).mul_f64(0.999_999_5)
        );
        assert_eq!(backoff_delay(1, base, cap, 0.0), Duration::from_secs(5));
        assert_eq!(backoff_delay(3, base, cap, 0.0), Duration::from_secs(20));
        assert_eq!(backoff_delay(30, base, cap, 0.0), Duration::from_secs(150));
        assert!(backoff_delay(1000, base, cap, 1.0) <= cap);
    }

    #[test]
    fn success_requeues_at_the_sync_period_or_at_renewal() {
        let period = Duration::from_secs(20);
        assert_eq!(requeue_after_success(at(0), period, None), period);
        assert_eq!(
            requeue_after_success(at(0), period, Some(at(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            requeue_after_success(at(10), period, Some(at(5))),
            Duration::from_secs(1)
        );
    }

    fn certificate(from: i64, to: i64) -> CertificateInfo {
        CertificateInfo {
            subject: "CN=r".into(),
            common_name: "r".into(),
            serial: "01".into(),
            not_before: at(from),
            not_after: at(to),
        }
    }

    #[test]
    fn conditions_report_connection_certificate_and_synchronization() {
        let conditions = conditions(
            &[],
            ConnectionState::Synchronized,
            "",
            Some(&certificate(0, 100)),
            at(50),
            Some(3),
        );
        let get = |kind: &str| conditions.iter().find(|c| c.type_ == kind).unwrap();
        assert_eq!(get("Connected").status, "True");
        assert_eq!(get("CertificateValid").status, "True");
        assert_eq!(get("Synchronized").status, "True");
        assert_eq!(get("Synchronized").observed_generation, Some(3));
    }

    #[test]
    fn a_failure_is_the_reason_and_the_error_the_message() {
        let conditions = conditions(
            &[],
            ConnectionState::SynchronizationFailed,
            "applicationsForRuntime: HTTP status 500",
            Some(&certificate(0, 100)),
            at(150),
            None,
        );
        let get = |kind: &str| conditions.iter().find(|c| c.type_ == kind).unwrap();
        assert_eq!(get("Connected").status, "True");
        assert_eq!(get("CertificateValid").reason, "Expired");
        assert_eq!(get("Synchronized").reason, "SynchronizationFailed");
        assert!(get("Synchronized").message.contains("HTTP status 500"));
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let first = conditions(
            &[],
            ConnectionState::Synchronized,
            "",
            Some(&certificate(0, 100)),
            at(10),
            None,
        );
        let same = conditions(
            &first,
            ConnectionState::Synchronized,
            "",
            Some(&certificate(0, 100)),
            at(20),
            None,
        );
        assert_eq!(first, same);
        let failed = conditions(
            &same,
            ConnectionState::ConnectionFailed,
            "x",
            None,
            at(30),
            None,
        );
        let connected = failed.iter().find(|c| c.type_ == "Connected").unwrap();
        assert_eq!(connected.last_transition_time, Time(at(30)));
        assert_eq!(
            connected.last_transition_time.0 - SignedDuration::from_secs(30),
            at(0)
        );
    }
}
