//! Errors of the connection cycle, each with a bounded category and whether it
//! means the agent's credentials are gone for good (re-establish with the
//! token). The category of the failure that decides a cycle's state is the
//! reason of its Warning Event and the `category` label of
//! `reconciles_total{outcome="Failure"}` (see `reconcile`): under Kyma's
//! RBAC there are no Events, and the metric is what an operator has.

use super::decide::WriteFailure;
use crate::certificates::CertificateError;
use crate::compass::CompassError;
use crate::config::SourceError;
use crate::crd::compass_connection::ConnectionState;
use crate::k8s::applications::ReadError;
use crate::k8s::connection::ConnectionStoreError;
use crate::k8s::credentials_store::CredentialsStoreError;

/// Longest error text written to the status.
pub const MAX_ERROR_LEN: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Configuration(#[from] SourceError),
    #[error(transparent)]
    Compass(#[from] CompassError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Credentials(#[from] CredentialsStoreError),
    #[error("the Connector's configuration has no {0}")]
    MissingField(&'static str),
    #[error("the client certificate expired at {0}")]
    CertificateExpired(jiff::Timestamp),
    #[error("the certificate-secured Connector URL is not known (spec.managementInfo.connectorUrl is empty)")]
    NoConnectorUrl,
    #[error("key generation did not finish")]
    KeyGenerationTask(#[source] tokio::task::JoinError),
}

impl ConnectionError {
    /// Whether the credentials can no longer work, so that only a new
    /// connection with the configured token can help. A refusal by Compass
    /// is not that: a valid certificate is kept (see `controller::connection`).
    pub fn requires_new_connection(&self) -> bool {
        match self {
            ConnectionError::Credentials(error) => !matches!(
                error,
                CredentialsStoreError::Read { .. }
                    | CredentialsStoreError::Write { .. }
                    | CredentialsStoreError::NotWritable { .. }
            ),
            ConnectionError::CertificateExpired(_) | ConnectionError::NoConnectorUrl => true,
            _ => false,
        }
    }

    /// Compass answered, and said no (a refused certificate, a GraphQL
    /// error such as a refused renewal): retrying alone may not help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ConnectionError::Compass(error) if error.is_refusal() || matches!(error, CompassError::GraphQl { .. }))
    }

    pub fn category(&self) -> &'static str {
        match self {
            ConnectionError::Configuration(error) => error.category(),
            ConnectionError::Compass(error) => error.category(),
            ConnectionError::Certificate(_) => "InvalidCertificate",
            ConnectionError::Credentials(_) => "CredentialsStorage",
            ConnectionError::MissingField(_) => "MalformedAnswer",
            ConnectionError::CertificateExpired(_) => "CertificateExpired",
            ConnectionError::NoConnectorUrl => "NoConnectorURL",
            ConnectionError::KeyGenerationTask(_) => "KeyGeneration",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Configuration(#[from] SourceError),
    #[error("cannot fetch applications from the Director")]
    Fetch(#[source] CompassError),
    #[error(transparent)]
    ReadCluster(#[from] ReadError),
    #[error("cannot label the Runtime in the Director")]
    Labels(#[source] CompassError),
}

impl SyncError {
    /// The state a synchronization that failed so leaves.
    pub fn state(&self) -> ConnectionState {
        match self {
            SyncError::Labels(_) => ConnectionState::MetadataUpdateFailed,
            SyncError::ReadCluster(_) => ConnectionState::ResourceApplicationFailed,
            SyncError::Configuration(_) | SyncError::Fetch(_) => {
                ConnectionState::SynchronizationFailed
            }
        }
    }

    /// The reason of the Warning Event: a small fixed set.
    pub fn category(&self) -> &'static str {
        match self {
            SyncError::Configuration(error) => error.category(),
            SyncError::Fetch(error) => error.category(),
            SyncError::ReadCluster(_) => "KubernetesAPI",
            SyncError::Labels(_) => "MetadataUpdateFailed",
        }
    }
}

/// What makes a reconcile fail as a whole (its status could not be written).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] ConnectionStoreError),
}

impl ReconcileError {
    /// The metrics category: writing `compass-connection` (its spec or its
    /// status) failed, so the status does not tell what the cycle found.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Store(_) => "StatusWriteFailed",
        }
    }
    /// What the next run makes of it (see [`next_run`](super::decide::next_run)).
    pub fn write_failure(&self) -> WriteFailure {
        match self {
            ReconcileError::Store(ConnectionStoreError::Conflict) => WriteFailure::Conflict,
            ReconcileError::Store(ConnectionStoreError::Gone) => WriteFailure::Gone,
            ReconcileError::Store(_) => WriteFailure::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_retries_a_deletion_waits_and_other_write_failures_back_off() {
        let forbidden = || {
            kube::Error::Api(Box::new(
                kube::core::Status::failure("forbidden", "Forbidden").with_code(403),
            ))
        };
        for (error, failure) in [
            (ConnectionStoreError::Conflict, WriteFailure::Conflict),
            (ConnectionStoreError::Gone, WriteFailure::Gone),
            (
                ConnectionStoreError::Api {
                    action: "update",
                    source: forbidden(),
                },
                WriteFailure::Other,
            ),
            (
                ConnectionStoreError::StatusForbidden {
                    source: forbidden(),
                },
                WriteFailure::Other,
            ),
        ] {
            let error = ReconcileError::Store(error);
            assert_eq!(error.write_failure(), failure, "{error}");
            assert_eq!(error.category(), "StatusWriteFailed");
        }
    }

    #[test]
    fn a_failed_sync_leaves_the_state_its_kind_says() {
        let compass = || CompassError::NullData {
            operation: "applicationsForRuntime",
        };
        let forbidden = kube::Error::Api(Box::new(
            kube::core::Status::failure("forbidden", "Forbidden").with_code(403),
        ));
        for (error, state, category) in [
            (
                SyncError::Fetch(compass()),
                ConnectionState::SynchronizationFailed,
                "NullData",
            ),
            (
                SyncError::Labels(compass()),
                ConnectionState::MetadataUpdateFailed,
                "MetadataUpdateFailed",
            ),
            (
                SyncError::ReadCluster(ReadError::List {
                    what: "Applications",
                    source: forbidden.into(),
                }),
                ConnectionState::ResourceApplicationFailed,
                "KubernetesAPI",
            ),
        ] {
            assert_eq!(
                (error.state(), error.category()),
                (state, category),
                "{error}"
            );
        }
    }
}
