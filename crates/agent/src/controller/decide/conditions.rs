//! The standard conditions of the status: `Connected`, `CertificateValid`,
//! `Synchronized`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::certificates::CertificateInfo;
use crate::crd::compass_connection::ConnectionState;

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
    use jiff::SignedDuration;

    use super::super::fixtures::{at, certificate};
    use super::*;

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
