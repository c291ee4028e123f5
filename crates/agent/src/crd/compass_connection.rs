//! `CompassConnection` (compass.kyma-project.io/v1alpha1): the one cluster-scoped
//! resource, named `compass-connection`, in which the agent reports the state of
//! the Runtime's connection to Compass.
//!
//! JSON field names are those of the original Go component, so that existing
//! objects, dashboards and scripts keep working. Timestamps serialize as `null`
//! when unset, as the original does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name of the single CompassConnection the agent owns.
pub const COMPASS_CONNECTION_NAME: &str = "compass-connection";

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "compass.kyma-project.io",
    version = "v1alpha1",
    kind = "CompassConnection",
    plural = "compassconnections",
    singular = "compassconnection",
    status = "CompassConnectionStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.connectionState"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.synchronizationStatus.lastAttempt"}"#,
    printcolumn = r#"{"name":"Certificate Expiry","type":"date","jsonPath":".status.connectionStatus.certificateStatus.notAfter"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CompassConnectionSpec {
    pub management_info: ManagementInfo,
    /// Set to `true` to synchronize at once; the agent clears it when done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync_now: bool,
    /// Set to `true` to renew the client certificate at once; cleared when done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_credentials_now: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ManagementInfo {
    /// The Director's GraphQL URL.
    #[serde(rename = "directorUrl")]
    pub director_url: String,
    /// The certificate-secured Connector URL.
    #[serde(rename = "connectorUrl")]
    pub connector_url: String,
}

/// `status.connectionState`: the values of the original component.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConnectionState {
    /// The connection was established; no synchronization has finished yet.
    #[default]
    Connected,
    ConnectionFailed,
    ConnectionMaintenanceFailed,
    SynchronizationFailed,
    ResourceApplicationFailed,
    MetadataUpdateFailed,
    Synchronized,
}

impl ConnectionState {
    pub const ALL: [ConnectionState; 7] = [
        ConnectionState::Connected,
        ConnectionState::ConnectionFailed,
        ConnectionState::ConnectionMaintenanceFailed,
        ConnectionState::SynchronizationFailed,
        ConnectionState::ResourceApplicationFailed,
        ConnectionState::MetadataUpdateFailed,
        ConnectionState::Synchronized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "Connected",
            ConnectionState::ConnectionFailed => "ConnectionFailed",
            ConnectionState::ConnectionMaintenanceFailed => "ConnectionMaintenanceFailed",
            ConnectionState::SynchronizationFailed => "SynchronizationFailed",
            ConnectionState::ResourceApplicationFailed => "ResourceApplicationFailed",
            ConnectionState::MetadataUpdateFailed => "MetadataUpdateFailed",
            ConnectionState::Synchronized => "Synchronized",
        }
    }

    /// Whether the Runtime holds a working connection in this state (every state
    /// after establishment except the two connection failures).
    pub fn is_connected(self) -> bool {
        !matches!(
            self,
            ConnectionState::ConnectionFailed | ConnectionState::ConnectionMaintenanceFailed
        )
    }
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompassConnectionStatus {
    pub connection_state: ConnectionState,
    pub connection_status: ConnectionStatus,
    /// `null` until the first synchronization, as in the original.
    #[serde(default)]
    pub synchronization_status: Option<SynchronizationStatus>,
    /// Standard conditions: `Connected`, `CertificateValid`, `Synchronized`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// When the connection was established (a certificate was first acquired with a token).
    #[serde(default)]
    pub established: Option<Time>,
    /// When the client certificate was last renewed.
    #[serde(default)]
    pub renewed: Option<Time>,
    /// When the connection was last checked (cert-secured `configuration` call).
    #[serde(default)]
    pub last_sync: Option<Time>,
    /// When that check last succeeded.
    #[serde(default)]
    pub last_success: Option<Time>,
    pub certificate_status: CertificateStatus,
    /// Empty when the last attempt succeeded. Always written, so that a merge
    /// patch clears an old error.
    #[serde(default)]
    pub error: String,
    /// Where the connection parameters were last read from, e.g. `ConfigMap
    /// kyma-system/compass-agent-configuration` (beyond the original).
    #[serde(default)]
    pub configuration_source: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default)]
    pub acquired: Option<Time>,
    #[serde(default)]
    pub not_before: Option<Time>,
    #[serde(default)]
    pub not_after: Option<Time>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SynchronizationStatus {
    #[serde(default)]
    pub last_attempt: Option<Time>,
    #[serde(default)]
    pub last_successful_fetch: Option<Time>,
    #[serde(default)]
    pub last_successful_application: Option<Time>,
    #[serde(default)]
    pub error: String,
    /// The outcome for each Application of the last synchronization (beyond
    /// the original): at most 100, failures first, then changes, so that the
    /// status of a large runtime stays far below the API server's size limit.
    #[serde(default)]
    pub applications: Vec<ApplicationSyncResult>,
    /// How many results are not in `applications` (beyond the original).
    /// Written also when 0: the status is written as a merge patch, and a
    /// count left out would keep the last one.
    #[serde(default)]
    pub applications_not_listed: u32,
}

/// The most per-Application results the status lists (about 200 bytes each).
pub const MAX_LISTED_RESULTS: usize = 100;

/// What the last synchronization did to one Application.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSyncResult {
    /// The Application's name (the Director application's name).
    pub name: String,
    /// The Director application id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application_id: String,
    pub operation: SyncOperation,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SyncOperation {
    Created,
    Updated,
    Deleted,
    Unchanged,
    Failed,
}
