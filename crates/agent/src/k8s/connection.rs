//! Reading and writing the `compass-connection` resource. Writes read the
//! object and replace it (see `k8s::replace`); the status goes through the
//! status subresource, or, on clusters with the original CRD (which has
//! none), with the object itself.

use std::sync::atomic::{AtomicU8, Ordering};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, Resource};
use serde_json::json;

use super::errors::{is_conflict, is_forbidden, is_not_found};
use super::replace::{apply_merge_patch, read_merge_replace};
use super::write_params;
use crate::crd::compass_connection::{
    CompassConnection, CompassConnectionSpec, CompassConnectionStatus, ConnectionState,
    ManagementInfo, COMPASS_CONNECTION_NAME,
};
use crate::crd::labels::PRESENTED_TOKEN_ANNOTATION;
use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionStoreError {
    #[error("cannot {action} CompassConnection {COMPASS_CONNECTION_NAME}")]
    Api {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("CompassConnection {COMPASS_CONNECTION_NAME} changed while it was being reconciled")]
    Conflict,
    #[error("CompassConnection {COMPASS_CONNECTION_NAME} is gone")]
    Gone,
    #[error("cannot write the status of CompassConnection {COMPASS_CONNECTION_NAME}: its CRD has a status subresource and the agent may not update compassconnections/status")]
    StatusForbidden {
        #[source]
        source: kube::Error,
    },
}

/// What a cycle writes to `compass-connection` besides its status.
#[derive(Clone, Copy, Debug)]
pub struct SpecUpdate<'a> {
    pub management_info: &'a ManagementInfo,
    pub clear_resync_now: bool,
    pub clear_refresh_credentials_now: bool,
    /// The digest of the one-time token just presented.
    pub presented_token: Option<&'a str>,
}

pub struct ConnectionStore {
    client: Client,
    api: Api<CompassConnection>,
    /// The same objects as JSON, for read-modify-replace.
    raw: Api<DynamicObject>,
    /// How the status is written: [`STATUS_UNKNOWN`] until the first write.
    status_mode: AtomicU8,
}

/// Not asked yet.
const STATUS_UNKNOWN: u8 = 0;
/// Through the status subresource (this project's CRD).
const STATUS_SUBRESOURCE: u8 = 1;
/// With the object: the CRD has no status subresource (Kyma's and the
/// original's), and Kyma's RBAC grants no `compassconnections/status`.
const STATUS_WITH_OBJECT: u8 = 2;

/// The status a new resource starts with: not connected yet, so the first
/// reconcile establishes the connection with the configured token.
pub fn initial_status() -> CompassConnectionStatus {
    CompassConnectionStatus {
        connection_state: ConnectionState::ConnectionFailed,
        connection_status: crate::crd::compass_connection::ConnectionStatus {
            error: "the connection has not been established yet".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl ConnectionStore {
    pub fn new(client: Client) -> ConnectionStore {
        ConnectionStore {
            api: Api::all(client.clone()),
            raw: Api::all_with(
                client.clone(),
                &ApiResource::erase::<CompassConnection>(&()),
            ),
            client,
            status_mode: AtomicU8::new(STATUS_UNKNOWN),
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
            Err(error) if is_conflict(&error) => Ok(()),
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
    /// resourceVersion then guards the write.
    pub async fn write_status(
        &self,
        uid: Option<&str>,
        status: &CompassConnectionStatus,
    ) -> Result<(), ConnectionStoreError> {
        let change = json!({ "status": status });
        // Someone may write between our read and our write (a user setting
        // resyncNow): read again and retry a few times.
        read_merge_replace(
            || async { self.read_raw(uid).await.map(Some) },
            |current: &mut DynamicObject| apply_merge_patch(&mut current.data, &change),
            |current| async move { self.replace_status(&current).await },
            // `read_raw` finds the object or says it is gone.
            || async { Err(ConnectionStoreError::Gone) },
            |error| matches!(error, ConnectionStoreError::Conflict),
        )
        .await
    }

    /// `compass-connection` as JSON, if it is still the object `uid`.
    async fn read_raw(&self, uid: Option<&str>) -> Result<DynamicObject, ConnectionStoreError> {
        let current = self
            .raw
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
        Ok(current)
    }

    /// Whether the CRD in the cluster has a status subresource, from the API
    /// server's discovery (which every authenticated user may read). A status
    /// write cannot tell: without the subresource, RBAC refuses an update of
    /// `compassconnections/status` that Kyma's role does not grant before the
    /// API server would answer 404.
    async fn status_mode(&self) -> u8 {
        let known = self.status_mode.load(Ordering::Relaxed);
        if known != STATUS_UNKNOWN {
            return known;
        }
        let gvk = GroupVersionKind::gvk(
            &CompassConnection::group(&()),
            &CompassConnection::version(&()),
            &CompassConnection::kind(&()),
        );
        let mode = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok((_, capabilities)) => {
                if capabilities
                    .subresources
                    .iter()
                    .any(|(resource, _)| resource.plural == "status")
                {
                    STATUS_SUBRESOURCE
                } else {
                    tracing::info!("the CompassConnection CRD has no status subresource; writing the status with the object");
                    STATUS_WITH_OBJECT
                }
            }
            Err(error) => {
                // Try the subresource; a 404 tells that there is none.
                tracing::warn!(error = %Report(&error), "cannot read the CompassConnection CRD from the API server's discovery");
                return STATUS_SUBRESOURCE;
            }
        };
        self.status_mode.store(mode, Ordering::Relaxed);
        mode
    }

    async fn replace_status(&self, object: &DynamicObject) -> Result<(), ConnectionStoreError> {
        let params = write_params();
        if self.status_mode().await == STATUS_SUBRESOURCE {
            match self
                .raw
                .replace_status(COMPASS_CONNECTION_NAME, &params, object)
                .await
            {
                Ok(_) => return Ok(()),
                Err(error) if is_conflict(&error) => return Err(ConnectionStoreError::Conflict),
                Err(error) if is_forbidden(&error) => {
                    return Err(ConnectionStoreError::StatusForbidden { source: error })
                }
                // Either the object is gone or the CRD lost its status
                // subresource since it was asked; the plain replace tells which.
                Err(error) if is_not_found(&error) => {}
                Err(source) => {
                    return Err(ConnectionStoreError::Api {
                        action: "write the status of",
                        source,
                    })
                }
            }
        }
        match self
            .raw
            .replace(COMPASS_CONNECTION_NAME, &params, object)
            .await
        {
            Ok(_) => {
                if self.status_mode.swap(STATUS_WITH_OBJECT, Ordering::Relaxed)
                    == STATUS_SUBRESOURCE
                {
                    tracing::info!("the CompassConnection CRD has no status subresource; writing the status with the object");
                }
                Ok(())
            }
            Err(error) if is_conflict(&error) => Err(ConnectionStoreError::Conflict),
            Err(error) if is_not_found(&error) => Err(ConnectionStoreError::Gone),
            Err(source) => Err(ConnectionStoreError::Api {
                action: "write the status of",
                source,
            }),
        }
    }

    /// Writes `spec.managementInfo`, clears the one-shot flags and records
    /// the presented token's digest, if the object is still the version that
    /// was reconciled (a flag set meanwhile is not lost). Without that
    /// version, the current one, if the object is still the reconciled one
    /// (not a successor of that name).
    pub async fn update_spec(
        &self,
        uid: Option<&str>,
        resource_version: Option<&str>,
        update: &SpecUpdate<'_>,
    ) -> Result<(), ConnectionStoreError> {
        let mut spec = json!({ "managementInfo": update.management_info });
        if update.clear_resync_now {
            spec["resyncNow"] = json!(false);
        }
        if update.clear_refresh_credentials_now {
            spec["refreshCredentialsNow"] = json!(false);
        }
        let mut current = self.read_raw(uid).await?;
        if resource_version.is_some()
            && current.metadata.resource_version.as_deref() != resource_version
        {
            return Err(ConnectionStoreError::Conflict);
        }
        if let Some(digest) = update.presented_token {
            current
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(PRESENTED_TOKEN_ANNOTATION.into(), digest.into());
        }
        apply_merge_patch(&mut current.data, &json!({ "spec": spec }));
        match self
            .raw
            .replace(COMPASS_CONNECTION_NAME, &write_params(), &current)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_conflict(&error) => Err(ConnectionStoreError::Conflict),
            Err(error) if is_not_found(&error) => Err(ConnectionStoreError::Gone),
            Err(source) => Err(ConnectionStoreError::Api {
                action: "update the spec of",
                source,
            }),
        }
    }
}
