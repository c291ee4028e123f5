//! The status after a cycle, the spec changes to make, and the requeue it
//! asks for ([`transition`]); the status after a cycle abandoned at its
//! deadline ([`after_deadline`]).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::conditions;
use super::schedule::Requeue;
use super::step::Step;
use super::sync_report::SyncReport;
use crate::certificates::CertificateInfo;
use crate::crd::compass_connection::{
    CertificateStatus, CompassConnectionSpec, CompassConnectionStatus, ConnectionState,
    ManagementInfo,
};

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

/// The category of a cycle abandoned at its deadline (`APP_CYCLE_TIMEOUT`).
pub const CYCLE_TIMEOUT: &str = "CycleTimeout";

/// Where a cycle was when it was abandoned at its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbandonedIn {
    /// Establishing or maintaining the connection (the Connector, the
    /// certificate Secrets).
    Connection,
    /// Anything after it: the synchronization, the status write.
    Synchronization,
}

/// The status after a cycle abandoned at its deadline (`error` says after
/// how long and what it waited for): the previous status, with the error
/// where the operator reads it and the state of the step that did not
/// finish. A connection that had failed stays `ConnectionFailed`; nothing
/// the cycle did not finish is claimed (no new timestamps of success).
pub fn after_deadline(
    previous: &CompassConnectionStatus,
    abandoned_in: AbandonedIn,
    error: String,
    now: Timestamp,
    generation: Option<i64>,
) -> CompassConnectionStatus {
    let mut status = previous.clone();
    status.connection_status.last_sync = Some(Time(now));
    match (previous.connection_state, abandoned_in) {
        (ConnectionState::ConnectionFailed, _) => {
            status.connection_status.error = error;
        }
        (_, AbandonedIn::Connection) => {
            status.connection_state = ConnectionState::ConnectionMaintenanceFailed;
            status.connection_status.error = error;
        }
        (_, AbandonedIn::Synchronization) => {
            status.connection_state = ConnectionState::SynchronizationFailed;
            let sync = status
                .synchronization_status
                .get_or_insert_with(Default::default);
            sync.last_attempt = Some(Time(now));
            sync.error = error;
        }
    }
    let certificate = previous
        .connection_status
        .certificate_status
        .not_before
        .as_ref()
        .zip(
            previous
                .connection_status
                .certificate_status
                .not_after
                .as_ref(),
        )
        .map(|(not_before, not_after)| CertificateInfo {
            subject: String::new(),
            common_name: String::new(),
            serial: String::new(),
            not_before: not_before.0,
            not_after: not_after.0,
        });
    status.conditions = conditions(
        &previous.conditions,
        status.connection_state,
        &current_error(&status),
        certificate.as_ref(),
        now,
        generation,
    );
    status.observed_generation = generation;
    status
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

#[cfg(test)]
mod tests {
    use super::super::conditions::{
        CONDITION_CERTIFICATE_VALID, CONDITION_CONNECTED, CONDITION_SYNCHRONIZED,
    };
    use super::super::fixtures::{at, certificate, status};
    use super::*;
    use crate::crd::compass_connection::SynchronizationStatus;

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
    fn an_abandoned_cycle_reports_the_step_that_did_not_finish_and_claims_no_success() {
        let mut synchronized = status(ConnectionState::Synchronized, Some(0));
        synchronized.connection_status.last_success = Some(Time(at(0)));
        synchronized.connection_status.certificate_status = CertificateStatus {
            acquired: Some(Time(at(0))),
            not_before: Some(Time(at(0))),
            not_after: Some(Time(at(1_000))),
        };
        synchronized.synchronization_status = Some(SynchronizationStatus {
            last_attempt: Some(Time(at(0))),
            last_successful_fetch: Some(Time(at(0))),
            last_successful_application: Some(Time(at(0))),
            ..Default::default()
        });

        // Stuck in the synchronization: SynchronizationFailed, which the
        // provisioning side accepts, with the error where Kyma's CRD keeps it.
        let after = after_deadline(
            &synchronized,
            AbandonedIn::Synchronization,
            "abandoned while waiting for: the Director's applications".into(),
            at(300),
            Some(4),
        );
        assert_eq!(
            after.connection_state,
            ConnectionState::SynchronizationFailed
        );
        let sync = after.synchronization_status.as_ref().unwrap();
        assert_eq!(
            sync.error,
            "abandoned while waiting for: the Director's applications"
        );
        assert_eq!(sync.last_attempt, Some(Time(at(300))));
        assert_eq!(
            sync.last_successful_fetch,
            Some(Time(at(0))),
            "no success claimed"
        );
        assert_eq!(after.connection_status.last_success, Some(Time(at(0))));
        assert_eq!(after.connection_status.last_sync, Some(Time(at(300))));
        assert!(after.connection_status.error.is_empty());
        let condition = |kind: &str| {
            after
                .conditions
                .iter()
                .find(|c| c.type_ == kind)
                .unwrap()
                .clone()
        };
        assert_eq!(condition(CONDITION_SYNCHRONIZED).status, "False");
        assert_eq!(condition(CONDITION_CONNECTED).status, "True");
        assert_eq!(
            condition(CONDITION_CERTIFICATE_VALID).status,
            "True",
            "the certificate in the status is still valid"
        );
        assert_eq!(after.observed_generation, Some(4));

        // Stuck with the Connector: the connection's maintenance failed.
        let after = after_deadline(
            &synchronized,
            AbandonedIn::Connection,
            "abandoned while waiting for: the Connector's configuration".into(),
            at(300),
            None,
        );
        assert_eq!(
            after.connection_state,
            ConnectionState::ConnectionMaintenanceFailed
        );
        assert!(after.connection_status.error.contains("Connector"));
        assert_eq!(
            after.synchronization_status,
            synchronized.synchronization_status
        );

        // A connection that had failed stays failed, whatever was stuck.
        let failed = status(ConnectionState::ConnectionFailed, Some(0));
        for step in [AbandonedIn::Connection, AbandonedIn::Synchronization] {
            let after = after_deadline(&failed, step, "abandoned".into(), at(300), None);
            assert_eq!(after.connection_state, ConnectionState::ConnectionFailed);
            assert_eq!(after.connection_status.error, "abandoned");
        }
    }
}
