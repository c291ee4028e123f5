//! The controller's decisions, as pure functions of time and status: what to do
//! next, what the status becomes after a cycle (and what in the spec), how
//! long to wait after failures, and the conditions to report.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::certificates::CertificateInfo;
use crate::crd::compass_connection::{
    CertificateStatus, CompassConnectionSpec, CompassConnectionStatus, ConnectionState,
    ManagementInfo, SynchronizationStatus,
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

/// What establishing or maintaining the connection came to.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnectionOutcome {
    /// A certificate for the one-time token.
    Established {
        certificate: CertificateInfo,
        management_info: ManagementInfo,
        /// A part of the credentials that could not be stored (the CA), and
        /// its category: the certificate works, the state says what failed.
        credentials_problem: Option<(String, &'static str)>,
    },
    /// The stored certificate works; it was renewed or not; the Connector
    /// told the management URLs, or did not.
    Maintained {
        certificate: CertificateInfo,
        renewed: bool,
        management_info: Option<ManagementInfo>,
        credentials_problem: Option<(String, &'static str)>,
    },
    Failed {
        /// For the status.
        error: String,
        /// The Event's reason, a metrics label.
        category: &'static str,
        /// The credentials can no longer work: only the token can help.
        credentials_gone: bool,
    },
}

impl ConnectionOutcome {
    fn credentials_problem(&self) -> Option<&(String, &'static str)> {
        match self {
            ConnectionOutcome::Established {
                credentials_problem,
                ..
            }
            | ConnectionOutcome::Maintained {
                credentials_problem,
                ..
            } => credentials_problem.as_ref(),
            ConnectionOutcome::Failed { .. } => None,
        }
    }

    /// The certificate the agent works with after it, if any.
    pub fn certificate(&self) -> Option<&CertificateInfo> {
        match self {
            ConnectionOutcome::Established { certificate, .. }
            | ConnectionOutcome::Maintained { certificate, .. } => Some(certificate),
            ConnectionOutcome::Failed { .. } => None,
        }
    }
}

/// What a synchronization of Applications came to.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncReport {
    pub state: ConnectionState,
    pub status: SynchronizationStatus,
    /// The category of its failure, if it failed.
    pub failure: Option<&'static str>,
}

/// Short for the state every cycle aims at.
pub const SYNCHRONIZED: ConnectionState = ConnectionState::Synchronized;

/// The state, the synchronization error and the failure's category after the
/// Applications were applied (`failed`: `<name>: <error>` of each that
/// failed, of `total`) and the Runtime labelled. A list of applications that
/// did not come whole (`incomplete`: why; nothing was deleted) is the most
/// important news, a failed Application the next: each stays the state when
/// the later steps fail too.
pub fn after_apply(
    failed: &[String],
    total: usize,
    labels_error: Option<String>,
    incomplete: Option<String>,
) -> (ConnectionState, String, Option<&'static str>) {
    if let Some(problem) = incomplete {
        let mut error = format!(
            "the Director's list of applications did not come whole ({problem}), so no Application was deleted in this cycle"
        );
        let (_, rest, _) = after_apply(failed, total, labels_error, None);
        if !rest.is_empty() {
            error.push_str("; ");
            error.push_str(&rest);
        }
        return (
            ConnectionState::SynchronizationFailed,
            error,
            Some("InconsistentAnswer"),
        );
    }
    match (failed.is_empty(), labels_error) {
        (true, None) => (ConnectionState::Synchronized, String::new(), None),
        (true, Some(labels)) => (
            ConnectionState::MetadataUpdateFailed,
            labels,
            Some("MetadataUpdateFailed"),
        ),
        (false, labels) => {
            let mut error = format!(
                "{} of {total} applications could not be synchronized: {}",
                failed.len(),
                failed.join("; ")
            );
            if let Some(labels) = labels {
                error.push_str("; ");
                error.push_str(&labels);
            }
            (
                ConnectionState::ResourceApplicationFailed,
                error,
                Some("ResourceApplicationFailed"),
            )
        }
    }
}

/// The management URLs after this outcome: the Connector's, when it told
/// them, else those in the spec.
pub fn management_info_after(
    spec: &CompassConnectionSpec,
    outcome: &ConnectionOutcome,
) -> ManagementInfo {
    match outcome {
        ConnectionOutcome::Established {
            management_info, ..
        }
        | ConnectionOutcome::Maintained {
            management_info: Some(management_info),
            ..
        } => management_info.clone(),
        _ => spec.management_info.clone(),
    }
}

/// Everything a cycle's status transition depends on.
pub struct Cycle<'a> {
    pub now: Timestamp,
    /// `Establish` or `Maintain` (a cycle that waits has no transition).
    pub step: Step,
    pub spec: &'a CompassConnectionSpec,
    pub previous: &'a CompassConnectionStatus,
    pub connection: &'a ConnectionOutcome,
    /// `None` when no synchronization ran (not due, or no credentials).
    pub sync: Option<SyncReport>,
    /// Where the connection parameters were read from, if they were read.
    pub configuration_source: Option<String>,
    /// The `metadata.generation` the cycle ran for.
    pub generation: Option<i64>,
    /// The digest of a one-time token presented in this cycle.
    pub presented_token: Option<String>,
    /// When certificate validity is judged for the conditions: at the end of
    /// the cycle, since a certificate issued during it is valid from a later
    /// second.
    pub judged_at: Timestamp,
}

/// What to write to the spec after a cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecChanges {
    /// New management URLs, when they differ from the spec's.
    pub management_info: Option<ManagementInfo>,
    pub clear_resync_now: bool,
    pub clear_refresh_credentials_now: bool,
    /// The digest of the one-time token just presented, to record.
    pub presented_token: Option<String>,
}

impl SpecChanges {
    pub fn is_empty(&self) -> bool {
        self == &SpecChanges::default()
    }
}

/// When the next cycle comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// All went well: after the sync period, or sooner when the certificate
    /// becomes due for renewal.
    AfterSuccess,
    /// The certificate stopped working: connect anew with the token after
    /// the minimal sync time, without a backoff.
    Reconnect,
    /// A failure: back off.
    Backoff,
}

/// The outcome of a cycle, as data.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: CompassConnectionStatus,
    pub spec: SpecChanges,
    /// The category of the failure that decides the state, if any: the
    /// reason of the Warning Event.
    pub failure: Option<&'static str>,
    pub requeue: Requeue,
}

/// The status after a cycle, the spec changes to make, and the requeue.
pub fn transition(cycle: Cycle<'_>) -> Transition {
    let Cycle {
        now,
        step,
        spec,
        previous,
        connection,
        sync,
        configuration_source,
        generation,
        presented_token,
        judged_at,
    } = cycle;
    let mut status = previous.clone();
    let mut changes = SpecChanges {
        presented_token,
        ..SpecChanges::default()
    };
    let mut failure = None;
    let cs = &mut status.connection_status;
    cs.last_sync = Some(Time(now));
    let management_info = management_info_after(spec, connection);
    if management_info != spec.management_info {
        changes.management_info = Some(management_info);
    }
    match connection {
        ConnectionOutcome::Established { certificate, .. } => {
            cs.established = Some(Time(now));
            cs.last_success = Some(Time(now));
            cs.error.clear();
            cs.certificate_status = certificate_status(certificate, now);
            status.connection_state = ConnectionState::Connected;
            // A fresh certificate also answers a pending renewal request.
            changes.clear_refresh_credentials_now = spec.refresh_credentials_now;
        }
        ConnectionOutcome::Maintained {
            certificate,
            renewed,
            ..
        } => {
            cs.last_success = Some(Time(now));
            cs.error.clear();
            if *renewed {
                cs.renewed = Some(Time(now));
                cs.certificate_status = certificate_status(certificate, now);
                changes.clear_refresh_credentials_now = spec.refresh_credentials_now;
            } else {
                // Acquired when it was first seen, not at every check.
                let acquired = cs.certificate_status.acquired.clone();
                cs.certificate_status = certificate_status(certificate, now);
                cs.certificate_status.acquired = acquired.or(Some(Time(now)));
            }
            if !status.connection_state.is_connected() {
                status.connection_state = ConnectionState::Connected;
            }
        }
        ConnectionOutcome::Failed {
            error,
            category,
            credentials_gone,
        } => {
            cs.error = error.clone();
            status.connection_state = if step == Step::Establish || *credentials_gone {
                ConnectionState::ConnectionFailed
            } else {
                ConnectionState::ConnectionMaintenanceFailed
            };
            failure = Some(*category);
        }
    }
    if let Some(sync) = sync {
        changes.clear_resync_now = spec.resync_now;
        status.connection_state = sync.state;
        status.synchronization_status = Some(sync.status);
        if sync.failure.is_some() {
            failure = sync.failure;
        }
    }
    // The certificate works, but not all of the credentials could be stored:
    // the connection's maintenance failed, whatever the sync did.
    if let Some((problem, category)) = connection.credentials_problem() {
        status.connection_status.error = problem.clone();
        status.connection_state = ConnectionState::ConnectionMaintenanceFailed;
        failure = Some(*category);
    }
    if let Some(source) = configuration_source {
        status.connection_status.configuration_source = source;
    }
    let error = current_error(&status);
    status.conditions = conditions(
        &previous.conditions,
        status.connection_state,
        &error,
        connection.certificate(),
        judged_at,
        generation,
    );
    status.observed_generation = generation;
    let requeue = match failure {
        None => Requeue::AfterSuccess,
        // The stored certificate stopped working: the token may help at once.
        Some(_)
            if status.connection_state == ConnectionState::ConnectionFailed
                && step == Step::Maintain =>
        {
            Requeue::Reconnect
        }
        Some(_) => Requeue::Backoff,
    };
    Transition {
        status,
        spec: changes,
        failure,
        requeue,
    }
}

/// The error an operator reads first: the connection's, else the last
/// synchronization's.
pub fn current_error(status: &CompassConnectionStatus) -> String {
    if !status.connection_status.error.is_empty() {
        return status.connection_status.error.clone();
    }
    status
        .synchronization_status
        .as_ref()
        .map(|s| s.error.clone())
        .unwrap_or_default()
}

fn certificate_status(certificate: &CertificateInfo, acquired: Timestamp) -> CertificateStatus {
    CertificateStatus {
        acquired: Some(Time(acquired)),
        not_before: Some(Time(certificate.not_before)),
        not_after: Some(Time(certificate.not_after)),
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
    let random = if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    };
    // In f64 seconds, which round: never above `full` (so never above the
    // cap), and no panic near `Duration::MAX`.
    Duration::try_from_secs_f64(full.as_secs_f64() * (0.5 + 0.5 * random))
        .map_or(full, |delay| delay.min(full))
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
    fn backoff_stays_within_its_cap_for_any_settings() {
        // Found by the backoff_and_lease fuzz target: a panic near
        // Duration::MAX, and 1-2 ns above a cap beyond 2^53 ns.
        let almost_one = 1.0 - f64::EPSILON / 2.0;
        assert!(backoff_delay(39, Duration::MAX, Duration::MAX, almost_one) <= Duration::MAX);
        let cap = Duration::new(9_909_326_555_114_763_765, 298_478_725);
        let base = Duration::from_secs(17_700_000_000_000_000_000);
        assert!(backoff_delay(u32::MAX, base, cap, almost_one) <= cap);
        assert_eq!(
            backoff_delay(1, Duration::from_secs(10), cap, f64::NAN),
            Duration::from_secs(5)
        );
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
    // ---- the status transition of a cycle ----

    fn info() -> ManagementInfo {
        ManagementInfo {
            director_url: "https://director".into(),
            connector_url: "https://connector".into(),
        }
    }

    fn established() -> ConnectionOutcome {
        ConnectionOutcome::Established {
            certificate: certificate(0, 1000),
            management_info: info(),
            credentials_problem: None,
        }
    }

    fn maintained(renewed: bool) -> ConnectionOutcome {
        ConnectionOutcome::Maintained {
            certificate: certificate(50, 1050),
            renewed,
            management_info: None,
            credentials_problem: None,
        }
    }

    fn failed(credentials_gone: bool) -> ConnectionOutcome {
        ConnectionOutcome::Failed {
            error: "configuration: Compass refused the credentials".into(),
            category: "CredentialsRefused",
            credentials_gone,
        }
    }

    fn cycle<'a>(
        step: Step,
        spec: &'a CompassConnectionSpec,
        previous: &'a CompassConnectionStatus,
        connection: &'a ConnectionOutcome,
        sync: Option<SyncReport>,
    ) -> Transition {
        transition(Cycle {
            now: at(100),
            step,
            spec,
            previous,
            connection,
            sync,
            configuration_source: None,
            generation: Some(7),
            presented_token: None,
            judged_at: at(101),
        })
    }

    fn synchronized(previous_attempt: Option<i64>) -> SyncReport {
        SyncReport {
            state: ConnectionState::Synchronized,
            status: SynchronizationStatus {
                last_attempt: previous_attempt.map(|s| Time(at(s))),
                ..Default::default()
            },
            failure: None,
        }
    }

    #[test]
    fn an_established_connection_is_connected_with_the_new_certificate_and_urls() {
        let spec = CompassConnectionSpec {
            refresh_credentials_now: true,
            ..Default::default()
        };
        let previous = status(ConnectionState::ConnectionFailed, Some(0));
        let result = cycle(Step::Establish, &spec, &previous, &established(), None);
        let cs = &result.status.connection_status;
        assert_eq!(result.status.connection_state, ConnectionState::Connected);
        assert_eq!(cs.established, Some(Time(at(100))));
        assert_eq!(cs.last_success, Some(Time(at(100))));
        assert_eq!(cs.last_sync, Some(Time(at(100))));
        assert_eq!(cs.certificate_status.acquired, Some(Time(at(100))));
        assert_eq!(cs.certificate_status.not_after, Some(Time(at(1000))));
        assert_eq!(result.spec.management_info, Some(info()));
        assert!(
            result.spec.clear_refresh_credentials_now,
            "a fresh certificate answers a renewal request"
        );
        assert!(!result.spec.clear_resync_now);
        assert_eq!(
            (result.failure, result.requeue),
            (None, Requeue::AfterSuccess)
        );
        assert_eq!(result.status.observed_generation, Some(7));
    }

    #[test]
    fn a_failed_establishment_stays_connection_failed_and_backs_off() {
        let mut previous = status(ConnectionState::ConnectionFailed, Some(0));
        previous.connection_status.established = Some(Time(at(-50)));
        // Whatever the error says about the credentials, there were none.
        for gone in [false, true] {
            let result = cycle(
                Step::Establish,
                &Default::default(),
                &previous,
                &failed(gone),
                None,
            );
            assert_eq!(
                result.status.connection_state,
                ConnectionState::ConnectionFailed
            );
            assert_eq!(result.failure, Some("CredentialsRefused"));
            assert_eq!(result.requeue, Requeue::Backoff);
            let cs = &result.status.connection_status;
            assert!(cs.error.contains("refused"), "{}", cs.error);
            assert_eq!(
                cs.established,
                Some(Time(at(-50))),
                "earlier facts are kept"
            );
            assert_eq!(cs.last_sync, Some(Time(at(100))));
            assert!(result.spec.is_empty());
        }
    }

    #[test]
    fn a_maintained_certificate_keeps_its_acquired_time_and_clears_old_errors() {
        let mut previous = status(ConnectionState::ConnectionMaintenanceFailed, Some(0));
        previous.connection_status.error = "old".into();
        previous.connection_status.certificate_status.acquired = Some(Time(at(10)));
        let spec = CompassConnectionSpec {
            management_info: info(),
            ..Default::default()
        };
        let result = cycle(Step::Maintain, &spec, &previous, &maintained(false), None);
        let cs = &result.status.connection_status;
        assert_eq!(result.status.connection_state, ConnectionState::Connected);
        assert_eq!(cs.error, "");
        assert_eq!(cs.certificate_status.acquired, Some(Time(at(10))));
        assert_eq!(cs.certificate_status.not_before, Some(Time(at(50))));
        assert_eq!(cs.renewed, None);
        assert!(result.spec.is_empty(), "the URLs in the spec stand");
        // Without an earlier acquired time, now.
        previous.connection_status.certificate_status.acquired = None;
        let result = cycle(Step::Maintain, &spec, &previous, &maintained(false), None);
        assert_eq!(
            result.status.connection_status.certificate_status.acquired,
            Some(Time(at(100)))
        );
    }

    #[test]
    fn a_maintained_connection_keeps_a_synchronization_state_until_the_next_sync() {
        let previous = status(ConnectionState::SynchronizationFailed, Some(0));
        let result = cycle(
            Step::Maintain,
            &Default::default(),
            &previous,
            &maintained(false),
            None,
        );
        assert_eq!(
            result.status.connection_state,
            ConnectionState::SynchronizationFailed
        );
        assert_eq!(result.requeue, Requeue::AfterSuccess);
    }

    #[test]
    fn a_renewal_is_recorded_and_answers_refresh_credentials_now() {
        let spec = CompassConnectionSpec {
            refresh_credentials_now: true,
            ..Default::default()
        };
        let mut previous = status(ConnectionState::Synchronized, Some(0));
        previous.connection_status.certificate_status.acquired = Some(Time(at(10)));
        let result = cycle(Step::Maintain, &spec, &previous, &maintained(true), None);
        let cs = &result.status.connection_status;
        assert_eq!(cs.renewed, Some(Time(at(100))));
        assert_eq!(cs.certificate_status.acquired, Some(Time(at(100))));
        assert!(result.spec.clear_refresh_credentials_now);
    }

    #[test]
    fn credentials_that_stopped_working_reconnect_at_once_other_failures_back_off() {
        let previous = status(ConnectionState::Synchronized, Some(0));
        let gone = cycle(
            Step::Maintain,
            &Default::default(),
            &previous,
            &failed(true),
            None,
        );
        assert_eq!(
            gone.status.connection_state,
            ConnectionState::ConnectionFailed
        );
        assert_eq!(gone.requeue, Requeue::Reconnect);
        let not_gone = cycle(
            Step::Maintain,
            &Default::default(),
            &previous,
            &failed(false),
            None,
        );
        assert_eq!(
            not_gone.status.connection_state,
            ConnectionState::ConnectionMaintenanceFailed
        );
        assert_eq!(not_gone.requeue, Requeue::Backoff);
        assert_eq!(not_gone.failure, Some("CredentialsRefused"));
    }

    #[test]
    fn a_synchronization_decides_the_state_and_clears_resync_now() {
        let spec = CompassConnectionSpec {
            resync_now: true,
            ..Default::default()
        };
        let previous = status(ConnectionState::Synchronized, Some(0));
        let ok = cycle(
            Step::Maintain,
            &spec,
            &previous,
            &maintained(false),
            Some(synchronized(Some(100))),
        );
        assert_eq!(ok.status.connection_state, ConnectionState::Synchronized);
        assert!(ok.spec.clear_resync_now);
        assert_eq!(ok.requeue, Requeue::AfterSuccess);
        assert_eq!(
            ok.status.synchronization_status.unwrap().last_attempt,
            Some(Time(at(100)))
        );
        let mut failing = synchronized(Some(100));
        failing.state = ConnectionState::SynchronizationFailed;
        failing.failure = Some("HTTPError");
        let failed = cycle(
            Step::Maintain,
            &spec,
            &previous,
            &maintained(false),
            Some(failing),
        );
        assert_eq!(
            failed.status.connection_state,
            ConnectionState::SynchronizationFailed
        );
        assert_eq!(
            (failed.failure, failed.requeue),
            (Some("HTTPError"), Requeue::Backoff)
        );
        assert!(failed.spec.clear_resync_now, "the requested sync ran");
        let synced = failed
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_SYNCHRONIZED)
            .unwrap();
        assert_eq!(synced.reason, "SynchronizationFailed");
    }

    #[test]
    fn the_configuration_source_is_recorded_when_known_and_kept_otherwise() {
        let mut previous = status(ConnectionState::Synchronized, Some(0));
        previous.connection_status.configuration_source = "Secret ns/c".into();
        let kept = cycle(
            Step::Maintain,
            &Default::default(),
            &previous,
            &maintained(false),
            None,
        );
        assert_eq!(
            kept.status.connection_status.configuration_source,
            "Secret ns/c"
        );
        let read = transition(Cycle {
            configuration_source: Some("ConfigMap ns/c".into()),
            now: at(100),
            step: Step::Maintain,
            spec: &Default::default(),
            previous: &previous,
            connection: &maintained(false),
            sync: None,
            generation: None,
            presented_token: None,
            judged_at: at(100),
        });
        assert_eq!(
            read.status.connection_status.configuration_source,
            "ConfigMap ns/c"
        );
    }

    #[test]
    fn a_failed_application_is_bigger_news_than_failed_labels() {
        let none: Vec<String> = vec![];
        assert_eq!(
            after_apply(&none, 3, None, None),
            (ConnectionState::Synchronized, String::new(), None)
        );
        assert_eq!(
            after_apply(&none, 3, Some("cannot label".into()), None),
            (
                ConnectionState::MetadataUpdateFailed,
                "cannot label".into(),
                Some("MetadataUpdateFailed")
            )
        );
        let failed = vec!["shop: forbidden".to_string()];
        let (state, error, failure) = after_apply(&failed, 3, Some("cannot label".into()), None);
        assert_eq!(state, ConnectionState::ResourceApplicationFailed);
        assert_eq!(failure, Some("ResourceApplicationFailed"));
        assert_eq!(
            error,
            "1 of 3 applications could not be synchronized: shop: forbidden; cannot label"
        );
        // A list that did not come whole comes first.
        let (state, error, failure) = after_apply(
            &failed,
            3,
            None,
            Some("the totalCount changed from 4 to 3 between pages".into()),
        );
        assert_eq!(state, ConnectionState::SynchronizationFailed);
        assert_eq!(failure, Some("InconsistentAnswer"));
        assert!(
            error.starts_with(
                "the Director's list of applications did not come whole (the totalCount changed"
            ) && error.contains("no Application was deleted")
                && error.ends_with("shop: forbidden"),
            "{error}"
        );
    }
}
