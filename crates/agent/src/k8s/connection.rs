//! Reading and writing the `compass-connection` resource. Status goes through
//! the status subresource; on clusters that still have the original CRD
//! (without one) it falls back to patching the whole object.

use std::sync::atomic::{AtomicBool, Ordering};

use kube::api::Patch;
use kube::{Api, Client};
use serde_json::json;

use super::crd::compass_connection::{
    CompassConnection, CompassConnectionSpec, CompassConnectionStatus, ConnectionState,
    ManagementInfo, COMPASS_CONNECTION_NAME,
};
use super::{patch_params, write_params};

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
        match self.api.create(&write_params(), &connection).await {
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

    /// Writes the status of the object that was reconciled (`uid`). If that
    /// object was deleted and recreated meanwhile, nothing is written and
    /// `Gone` is returned: its successor must connect anew, not inherit a
    /// `Synchronized`. The uid is checked on a fresh read whose
    /// resourceVersion then guards the write (a uid in a status patch is no
    /// precondition: the apiserver takes a status write's metadata from the
    /// stored object).
    pub async fn write_status(
        &self,
        uid: Option<&str>,
        status: &CompassConnectionStatus,
    ) -> Result<(), ConnectionStoreError> {
        // Someone may write between our read and our write (a user setting
        // resyncNow): read again and retry a few times.
        for _ in 0..5 {
            let version = self.version_of(uid).await?;
            let patch = json!({
                "metadata": { "resourceVersion": version },
                "status": status,
            });
            match self.patch_status_once(&patch).await {
                Err(ConnectionStoreError::Conflict) => continue,
                other => return other,
            }
        }
        Err(ConnectionStoreError::Conflict)
    }

    /// The resourceVersion of `compass-connection`, if it is still the object `uid`.
    async fn version_of(&self, uid: Option<&str>) -> Result<String, ConnectionStoreError> {
        let current = self
            .api
            .get_opt(COMPASS_CONNECTION_NAME)
            .await
            .map_err(|source| ConnectionStoreError::Api {
                action: "read",
                source,
            })?
            .ok_or(ConnectionStoreError::Gone)?;
        if uid.is_some() && current.metadata.uid.as_deref() != uid {
            return Err(ConnectionStoreError::Gone);
        }
        Ok(current.metadata.resource_version.unwrap_or_default())
    }

    async fn patch_status_once(
        &self,
        patch: &serde_json::Value,
    ) -> Result<(), ConnectionStoreError> {
        let params = patch_params();
        let failed = |source| ConnectionStoreError::Api {
            action: "write the status of",
            source,
        };
        if self.status_subresource.load(Ordering::Relaxed) {
            match self
                .api
                .patch_status(COMPASS_CONNECTION_NAME, &params, &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(error)) if error.code == 409 => {
                    return Err(ConnectionStoreError::Conflict)
                }
                // Either the object is gone or the CRD has no status
                // subresource (the original's); the plain patch tells which.
                Err(kube::Error::Api(error)) if error.code == 404 => {}
                Err(source) => return Err(failed(source)),
            }
        }
        match self
            .api
            .patch(COMPASS_CONNECTION_NAME, &params, &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                if self.status_subresource.swap(false, Ordering::Relaxed) {
                    tracing::info!("the CompassConnection CRD has no status subresource; writing status with the object");
                }
                Ok(())
            }
            Err(kube::Error::Api(error)) if error.code == 409 => {
                Err(ConnectionStoreError::Conflict)
            }
            Err(kube::Error::Api(error)) if error.code == 404 => Err(ConnectionStoreError::Gone),
            Err(source) => Err(failed(source)),
        }
    }

    /// Writes `spec.managementInfo` and clears the one-shot flags, if the object
    /// is still the version that was reconciled (a flag set meanwhile is not lost).
    pub async fn update_spec(
        &self,
        uid: Option<&str>,
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
        // A precondition: the patch fails with a conflict if the object
        // changed. Without the reconciled version, the current one, if the
        // object is still the reconciled one (not a successor of that name).
        let version = match resource_version {
            Some(version) => version.to_string(),
            None => self.version_of(uid).await?,
        };
        let patch = json!({ "spec": spec, "metadata": { "resourceVersion": version } });
        match self
            .api
            .patch(
                COMPASS_CONNECTION_NAME,
                &patch_params(),
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
