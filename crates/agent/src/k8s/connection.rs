//! Reading and writing the `compass-connection` resource. Status goes through
//! the status subresource; on clusters that still have the original CRD
//! (without one) it falls back to patching the whole object.

use std::sync::atomic::{AtomicBool, Ordering};

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::crd::compass_connection::{
    CompassConnection, CompassConnectionSpec, CompassConnectionStatus, ConnectionState,
    ManagementInfo, COMPASS_CONNECTION_NAME,
};

#[derive(Debug, thiserror::Error)]
pub enum ConnectionStoreError {
    #[error("cannot {action} CompassConnection {COMPASS_CONNECTION_NAME}: {source}")]
    Api {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("CompassConnection {COMPASS_CONNECTION_NAME} changed while it was being reconciled")]
    Conflict,
    #[error("CompassConnection {COMPASS_CONNECTION_NAME} is gone")]
    Gone,
}

pub struct ConnectionStore {
    api: Api<CompassConnection>,
    status_subresource: AtomicBool,
}

/// The status a new resource starts with: not connected yet, so the first
/// reconcile establishes the connection with the configured token.
pub fn initial_status() -> CompassConnectionStatus {
    CompassConnectionStatus {
        connection_state: ConnectionState::ConnectionFailed,
        connection_status: super::crd::compass_connection::ConnectionStatus {
            error: "the connection has not been established yet".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl ConnectionStore {
    pub fn new(client: Client) -> ConnectionStore {
        ConnectionStore {
            api: Api::all(client),
            status_subresource: AtomicBool::new(true),
        }
    }

    pub fn api(&self) -> &Api<CompassConnection> {
        &self.api
    }

    pub async fn get(&self) -> Result<Option<CompassConnection>, ConnectionStoreError> {
        self.api
            .get_opt(COMPASS_CONNECTION_NAME)
            .await
            .map_err(|source| ConnectionStoreError::Api {
                action: "read",
                source,
            })
    }

    /// Creates `compass-connection` in the not-yet-connected state. An existing
    /// one is left as it is.
    pub async fn create_initial(&self) -> Result<(), ConnectionStoreError> {
        let mut connection = CompassConnection::new(
            COMPASS_CONNECTION_NAME,
            CompassConnectionSpec {
                management_info: ManagementInfo::default(),
                ..Default::default()
            },
        );
        connection.status = Some(initial_status());
        match self.api.create(&PostParams::default(), &connection).await {
            // With a status subresource the status of a create is dropped; the
            // controller reads a missing status as `initial_status()`. Writing
            // it here would race with the controller's first reconcile.
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(ConnectionStoreError::Api {
                action: "create",
                source,
            }),
        }
    }

    pub async fn write_status(
        &self,
        status: &CompassConnectionStatus,
    ) -> Result<(), ConnectionStoreError> {
        let patch = json!({ "status": status });
        let params = PatchParams::default();
        if self.status_subresource.load(Ordering::Relaxed) {
            match self
                .api
                .patch_status(COMPASS_CONNECTION_NAME, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(error)) if error.code == 404 => {
                    // Either the object is gone or the CRD has no status
                    // subresource (the original's); the plain patch tells which.
                    tracing::info!("the CompassConnection CRD has no status subresource; writing status with the object");
                    self.status_subresource.store(false, Ordering::Relaxed);
                }
                Err(source) => {
                    return Err(ConnectionStoreError::Api {
                        action: "write the status of",
                        source,
                    })
                }
            }
        }
        match self
            .api
            .patch(COMPASS_CONNECTION_NAME, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(error)) if error.code == 404 => Err(ConnectionStoreError::Gone),
            Err(source) => Err(ConnectionStoreError::Api {
                action: "write the status of",
                source,
            }),
        }
    }

    /// Writes `spec.managementInfo` and clears the one-shot flags, if the object
    /// is still the version that was reconciled (a flag set meanwhile is not lost).
    pub async fn update_spec(
        &self,
        resource_version: Option<&str>,
        management_info: &ManagementInfo,
        clear_resync_now: bool,
        clear_refresh_credentials_now: bool,
    ) -> Result<(), ConnectionStoreError> {
        let mut spec = json!({ "managementInfo": management_info });
        if clear_resync_now {
            spec["resyncNow"] = json!(false);
        }
        if clear_refresh_credentials_now {
            spec["refreshCredentialsNow"] = json!(false);
        }
        let mut patch = json!({ "spec": spec });
        if let Some(version) = resource_version {
            // A precondition: the patch fails with a conflict if the object changed.
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        match self
            .api
            .patch(
                COMPASS_CONNECTION_NAME,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(error)) if error.code == 409 => {
                Err(ConnectionStoreError::Conflict)
            }
            Err(kube::Error::Api(error)) if error.code == 404 => Err(ConnectionStoreError::Gone),
            Err(source) => Err(ConnectionStoreError::Api {
                action: "update the spec of",
                source,
            }),
        }
    }
}
