//! Carrying out a sync plan: the creates, replaces and deletes of
//! Applications and their Secrets, each Application on its own, a replace
//! tried again when the object changed under it.

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, DynamicObject, Preconditions};
use kube::Resource;
use serde::Deserialize;
use serde_json::json;

use super::ApplicationStore;
use crate::crd::application::Application;
use crate::crd::compass_connection::{ApplicationSyncResult, SyncOperation};
use crate::crd::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::k8s::errors::{is_conflict, is_not_found};
use crate::k8s::replace::{apply_merge_patch, read_merge_replace};
use crate::k8s::write_params;
use crate::report::report;
use crate::sync::wanted::UnpackError;
use crate::sync::{
    ActualApplication, ActualSecret, ApplicationAction, ApplicationPlan, PackedApplication, Plan,
    SecretAction, WantedSecret,
};

/// What the apiserver's answer to a Secret write is read for: the uid and
/// resourceVersion under which the digest of the data just written is known
/// (the rest of the answer, data and `managedFields` included, is skipped).
#[derive(Debug, Default, Deserialize)]
struct Written {
    #[serde(default)]
    metadata: WrittenMetadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenMetadata {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// Why one Application (or one of its Secrets) could not be written; the
/// others go on.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot read back the Application to write")]
    Unpack(#[source] UnpackError),
    #[error("cannot create Application")]
    Create(#[source] kube::Error),
    #[error("cannot read Application before updating it")]
    ReadBeforeUpdate(#[source] kube::Error),
    #[error("cannot update Application")]
    Update(#[source] kube::Error),
    #[error("cannot read the updated Application")]
    DecodeUpdated(#[source] serde_json::Error),
    #[error("the API server returned the Application without a uid")]
    NoUid,
    #[error("cannot delete Application")]
    Delete(#[source] kube::Error),
    #[error("Application {name} was deleted and made anew since the sync read it; the new one is left alone (the next sync decides about it)")]
    MadeAnewSinceRead { name: String },
    #[error("cannot write Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("a Secret named {name:?} exists and is not the agent's (it has neither the agent's labels nor the Go agent's); it is left alone")]
    ForeignSecret { name: String },
}

/// What applying a plan did: the result for each Application, and which
/// Applications were replaced by one under a new name.
#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub results: Vec<ApplicationSyncResult>,
    pub replaced: Vec<Replacement>,
}

impl ApplyOutcome {
    fn of(result: ApplicationSyncResult) -> ApplyOutcome {
        ApplyOutcome {
            results: vec![result],
            replaced: Vec::new(),
        }
    }
}

/// An Application deleted after the same Director application was written
/// under its new name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub old: String,
    pub new: String,
}

impl ApplicationStore {
    /// Carries out the plan; one Application's failure does not stop the others.
    pub async fn apply(&self, plan: Plan) -> ApplyOutcome {
        let secret_writes = plan
            .applications
            .iter()
            .flat_map(|app| &app.secrets)
            .filter(|secret| !matches!(secret, SecretAction::Delete(_)))
            .count();
        self.secret_digests().reserve(secret_writes);
        let planned = plan.applications.len();
        // Each outcome folded in as it comes: not all of them collected first.
        let mut all = stream::iter(plan.applications)
            .map(|app_plan| self.apply_one(app_plan))
            .buffer_unordered(self.concurrency)
            .fold(
                ApplyOutcome {
                    results: Vec::with_capacity(planned),
                    replaced: Vec::new(),
                },
                |mut all, outcome| async move {
                    all.results.extend(outcome.results);
                    all.replaced.extend(outcome.replaced);
                    all
                },
            )
            .await;
        all.results.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    async fn apply_one(&self, plan: ApplicationPlan) -> ApplyOutcome {
        // The result takes the plan's name and id, not copies of them: an
        // idle sync makes 10,000 results.
        let result = |plan: ApplicationPlan, operation, error: String| ApplicationSyncResult {
            name: plan.name,
            application_id: plan.application_id,
            operation,
            error,
        };
        let written = match &plan.action {
            ApplicationAction::Refused(message) => {
                let message = message.clone();
                return ApplyOutcome::of(result(plan, SyncOperation::Failed, message));
            }
            ApplicationAction::Delete => self
                .delete_application(
                    &plan.name,
                    plan.existing_uid.as_deref(),
                    plan.secrets.iter().map(SecretAction::secret_name),
                )
                .await
                .map(|_| SyncOperation::Deleted),
            ApplicationAction::Create(app) => match self.create_application(app).await {
                Ok(uid) => self
                    .write_secrets(&plan, &uid)
                    .await
                    .map(|_| SyncOperation::Created),
                Err(error) => Err(error),
            },
            ApplicationAction::Update(app) => match self.update_application(app).await {
                Ok(uid) => self
                    .write_secrets(&plan, &uid)
                    .await
                    .map(|_| SyncOperation::Updated),
                Err(error) => Err(error),
            },
            ApplicationAction::Unchanged => match plan.existing_uid.as_deref() {
                Some(uid) if !plan.secrets.is_empty() => self
                    .write_secrets(&plan, uid)
                    .await
                    .map(|_| SyncOperation::Updated),
                _ => Ok(SyncOperation::Unchanged),
            },
        };
        let operation = match written {
            Ok(operation) => operation,
            Err(error) => {
                let error = report(&error);
                tracing::warn!(application = %plan.name, %error, "cannot synchronize application");
                return ApplyOutcome::of(result(plan, SyncOperation::Failed, error));
            }
        };
        let mut outcome = ApplyOutcome::default();
        // Only now that the Application under its current name is written.
        for old in &plan.replaces {
            let deleted = self
                .delete_application(
                    &old.name,
                    old.uid.as_deref(),
                    old.secrets.iter().map(String::as_str),
                )
                .await;
            let (operation, error) = match deleted {
                Ok(()) => {
                    tracing::info!(old = %old.name, new = %plan.name, "Application replaced by one under the Director application's current name");
                    outcome.replaced.push(Replacement {
                        old: old.name.clone(),
                        new: plan.name.clone(),
                    });
                    (SyncOperation::Deleted, String::new())
                }
                Err(error) => {
                    let error = report(&error);
                    tracing::warn!(old = %old.name, new = %plan.name, %error, "cannot delete the Application under an old name");
                    (SyncOperation::Failed, error)
                }
            };
            outcome.results.push(ApplicationSyncResult {
                name: old.name.clone(),
                application_id: plan.application_id.clone(),
                operation,
                error,
            });
        }
        outcome.results.push(result(plan, operation, String::new()));
        outcome
    }

    async fn create_application(&self, packed: &PackedApplication) -> Result<String, WriteError> {
        let app = &unpack(packed)?;
        let created = self
            .counted(
                "Application",
                "create",
                self.applications.create(&write_params(), app),
            )
            .await
            .map_err(WriteError::Create)?;
        self.remember(&created).await;
        uid_of(&created)
    }

    /// Writes the fields the agent owns into the Application as it is now,
    /// keeping everything else (status, encodeUrl, others' labels, fields our
    /// types do not know): read, change, replace at the version read.
    async fn update_application(&self, packed: &PackedApplication) -> Result<String, WriteError> {
        let app = &unpack(packed)?;
        let name = app.metadata.name.as_deref().unwrap_or_default();
        let owned = owned_fields(app);
        read_merge_replace(
            || async move {
                self.raw_applications
                    .get_opt(name)
                    .await
                    .map_err(WriteError::ReadBeforeUpdate)
            },
            |current: &mut DynamicObject| merge_owned(current, &owned),
            |current| async move {
                let stored = self
                    .counted(
                        "Application",
                        "update",
                        self.raw_applications
                            .replace(name, &write_params(), &current),
                    )
                    .await
                    .map_err(WriteError::Update)?;
                let stored: Application = serde_json::to_value(stored)
                    .and_then(serde_json::from_value)
                    .map_err(WriteError::DecodeUpdated)?;
                self.remember(&stored).await;
                uid_of(&stored)
            },
            // Deleted by someone since the sync read it: the Director still wants it.
            || self.create_application(packed),
            // Changed by someone between our read and our write.
            |error| matches!(error, WriteError::Update(source) if is_conflict(source)),
        )
        .await
    }

    /// Deletes the Application's Secrets, then the Application; only the
    /// Application of uid `uid` (the one the sync read).
    async fn delete_application(
        &self,
        name: &str,
        uid: Option<&str>,
        secrets: impl Iterator<Item = &str>,
    ) -> Result<(), WriteError> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // Someone may have deleted it and made one anew under that name since
        // the read (another writer during a hand-over, an operator): that one
        // is not ours to delete, nor the Secrets it may use. A dry run checks
        // the uid before the Secrets go; the delete itself checks it again.
        if params.preconditions.is_some() {
            let check = DeleteParams {
                dry_run: true,
                ..params.clone()
            };
            match self.applications.delete(name, &check).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) if is_conflict(&error) => {
                    return Err(WriteError::MadeAnewSinceRead {
                        name: name.to_string(),
                    })
                }
                Err(error) => return Err(WriteError::Delete(error)),
            }
        }
        for secret in secrets {
            self.delete_secret(secret)
                .await
                .map_err(|source| WriteError::Secret {
                    name: secret.to_string(),
                    source,
                })?;
        }
        match self
            .counted(
                "Application",
                "delete",
                self.applications.delete(name, &params),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) if is_conflict(&error) => Err(WriteError::MadeAnewSinceRead {
                name: name.to_string(),
            }),
            Err(error) => Err(WriteError::Delete(error)),
        }
    }

    async fn delete_secret(&self, name: &str) -> Result<(), kube::Error> {
        match self
            .counted(
                "Secret",
                "delete",
                self.secrets.delete(name, &DeleteParams::default()),
            )
            .await
        {
            Err(error) if is_not_found(&error) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn write_secrets(
        &self,
        plan: &ApplicationPlan,
        owner_uid: &str,
    ) -> Result<(), WriteError> {
        for action in &plan.secrets {
            let name = action.secret_name();
            let failed = |source| WriteError::Secret {
                name: name.to_string(),
                source,
            };
            match action {
                SecretAction::Create(secret) => {
                    let body = secret_body(secret, &plan.name, owner_uid);
                    match self
                        .counted("Secret", "create", self.send_secret(&body, false))
                        .await
                    {
                        // There after all (not listed: it lacks the labels
                        // the agent lists by): replaced only if it is ours.
                        Err(error) if is_conflict(&error) => {
                            self.replace_secret(secret, &plan.name, owner_uid).await?
                        }
                        other => self.remember_secret(secret, other.map_err(failed)?),
                    }
                }
                SecretAction::Update(secret) => {
                    self.replace_secret(secret, &plan.name, owner_uid).await?
                }
                SecretAction::Delete(name) => self.delete_secret(name).await.map_err(failed)?,
            }
        }
        Ok(())
    }

    /// Replaces a Secret whole, so keys of a former credential type go too;
    /// never someone else's Secret of that name.
    async fn replace_secret(
        &self,
        secret: &WantedSecret,
        app: &str,
        owner_uid: &str,
    ) -> Result<(), WriteError> {
        let failed = |source| WriteError::Secret {
            name: secret.name().to_string(),
            source,
        };
        let mut body = secret_body(secret, app, owner_uid);
        match self.secrets.get_opt(secret.name()).await.map_err(failed)? {
            Some(current)
                if !ActualSecret::from_metadata(current.metadata.clone()).is_the_agents() =>
            {
                Err(WriteError::ForeignSecret {
                    name: secret.name().to_string(),
                })
            }
            Some(current) => {
                body.metadata.resource_version = current.metadata.resource_version;
                let written = self
                    .counted("Secret", "update", self.send_secret(&body, true))
                    .await
                    .map_err(failed)?;
                self.remember_secret(secret, written);
                Ok(())
            }
            None => {
                let written = self
                    .counted("Secret", "create", self.send_secret(&body, false))
                    .await
                    .map_err(failed)?;
                self.remember_secret(secret, written);
                Ok(())
            }
        }
    }

    /// The digest of the data just written stands for the Secret at the
    /// resourceVersion the write returned: the next sync need not read it.
    fn remember_secret(&self, secret: &WantedSecret, written: Written) {
        let WrittenMetadata {
            uid,
            resource_version,
        } = written.metadata;
        if let (Some(uid), Some(resource_version)) = (uid, resource_version) {
            self.secret_digests()
                .insert(&uid, &resource_version, secret.data_hash());
        }
    }

    /// Creates or replaces a Secret, reading of the apiserver's answer (the
    /// whole Secret again, `managedFields` included) only its uid and
    /// resourceVersion: a first sync writes thousands.
    async fn send_secret(&self, body: &Secret, replace: bool) -> Result<Written, kube::Error> {
        let request = kube::core::Request::new(self.secrets.resource_url());
        let data = serde_json::to_vec(body).map_err(kube::Error::SerdeError)?;
        let params = write_params();
        let name = body.metadata.name.as_deref().unwrap_or_default();
        let mut http_request = match replace {
            true => request.replace(name, &params, data),
            false => request.create(&params, data),
        }
        .map_err(kube::Error::BuildRequest)?;
        http_request
            .extensions_mut()
            .insert(if replace { "replace" } else { "create" });
        self.client.request::<Written>(http_request).await
    }

    /// The apiserver answers a write with the object as stored: its summary
    /// saves reading it again at the next sync.
    async fn remember(&self, written: &Application) {
        self.summaries
            .lock()
            .await
            .insert(ActualApplication::from(written));
    }

    async fn counted<T>(
        &self,
        kind: &'static str,
        verb: &'static str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        let result = call.await;
        self.metrics.record_write(kind, verb, result.is_ok());
        result
    }
}

/// The spec fields the agent writes (as a merge patch); everything else in
/// the spec is someone else's.
fn owned_fields(app: &Application) -> serde_json::Value {
    let spec = &app.spec;
    json!({
        "spec": {
            "description": spec.description,
            "skipVerify": spec.skip_verify,
            "labels": spec.labels,
            "services": spec.services,
            "compassMetadata": spec.compass_metadata,
        }
    })
}

/// The Secret a create or update of `wanted` sends (an update replaces the
/// Secret whole), owned by the Application `app` of uid `owner_uid`.
pub fn secret_body(wanted: &WantedSecret, app: &str, owner_uid: &str) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(wanted.name().to_string());
    // As the Go agent's `makeSecret`: labels `app` and `bundleId`, no
    // annotation, one owner reference of apiVersion, kind, name and uid,
    // the data; `type` as the apiserver defaults Go's (which has none).
    secret.metadata.labels = Some(wanted.labels());
    secret.metadata.owner_references = Some(vec![OwnerReference {
        api_version: Application::api_version(&()).into_owned(),
        kind: Application::kind(&()).into_owned(),
        name: app.to_string(),
        uid: owner_uid.to_string(),
        ..OwnerReference::default()
    }]);
    secret.type_ = Some("Opaque".into());
    secret.data = Some(
        wanted
            .data()
            .iter()
            .map(|(key, value)| (key.to_string(), ByteString(value.to_vec())))
            .collect(),
    );
    secret
}

/// What an update makes of the Application as it is now (`current`): the
/// agent's managed-by label set, the spec fields it owns (`wanted`'s)
/// merged in, everything else kept. The write in `update_application`, for
/// `compass-runtime-agent diff` to tell which fields it changes.
pub fn updated_application(current: &mut DynamicObject, wanted: &Application) {
    merge_owned(current, &owned_fields(wanted));
}

fn merge_owned(current: &mut DynamicObject, owned: &serde_json::Value) {
    current
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    apply_merge_patch(&mut current.data, owned);
}

fn unpack(packed: &PackedApplication) -> Result<Application, WriteError> {
    packed.unpack().map_err(WriteError::Unpack)
}

fn uid_of(app: &Application) -> Result<String, WriteError> {
    app.metadata.uid.clone().ok_or(WriteError::NoUid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_to_a_secret_write_is_read_for_its_uid_and_resource_version() {
        let written: Written = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "shop-b1", "uid": "u-1", "resourceVersion": "42",
                "managedFields": [{"manager": "compass-runtime-agent"}]},
            "data": {"password": "cHc="}, "type": "Opaque"
        }))
        .unwrap();
        assert_eq!(written.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(written.metadata.resource_version.as_deref(), Some("42"));
    }
}
