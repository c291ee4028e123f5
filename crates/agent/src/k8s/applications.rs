//! Reading the cluster's Applications and credential Secrets, and carrying out
//! a sync plan: each Application independently, a bounded number at a time.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;

use super::crd::application::{Application, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use super::crd::compass_connection::{ApplicationSyncResult, SyncOperation};
use crate::sync::convert::{DATA_HASH_ANNOTATION, SECRET_BUNDLE_LABEL};
use crate::sync::{
    ActualState, ApplicationAction, ApplicationPlan, Plan, SecretAction, WantedSecret,
};
use crate::telemetry::metrics::Metrics;

/// Lists every object, page by page, dropping `managedFields` (a third of a
/// typical object, never used here) as each page arrives.
async fn list_lean<T, F, Fut>(
    params: ListParams,
    page_size: u32,
    mut fetch_page: F,
) -> Result<Vec<T>, kube::Error>
where
    T: Resource + Clone,
    F: FnMut(ListParams) -> Fut,
    Fut: std::future::Future<Output = Result<kube::core::ObjectList<T>, kube::Error>>,
{
    let mut all = Vec::new();
    let mut params = params.limit(page_size.max(1));
    loop {
        let page = fetch_page(params.clone()).await?;
        all.extend(page.items.into_iter().map(|mut item| {
            item.meta_mut().managed_fields = None;
            item
        }));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(all),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

pub struct ApplicationWriter {
    applications: Api<Application>,
    secrets: Api<Secret>,
    concurrency: usize,
    /// Objects per list call: bounds the memory of one response (its text and
    /// its parsed objects) however many objects the cluster holds.
    list_page_size: u32,
    metrics: Arc<Metrics>,
}

impl ApplicationWriter {
    pub fn new(
        client: Client,
        integration_namespace: &str,
        concurrency: usize,
        list_page_size: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        ApplicationWriter {
            applications: Api::all(client.clone()),
            secrets: Api::namespaced(client, integration_namespace),
            concurrency: concurrency.max(1),
            list_page_size,
            metrics,
        }
    }

    /// Every Application, and the Secrets in the integration namespace that carry
    /// a `bundleId` label (credentials and request parameters).
    pub async fn read_actual(&self) -> Result<ActualState, ApplyError> {
        let applications = list_lean(
            ListParams::default(),
            self.list_page_size,
            |page| async move { self.applications.list(&page).await },
        )
        .await
        .map_err(|source| ApplyError::List {
            what: "Applications",
            source,
        })?;
        // Metadata only: Secrets this agent wrote carry a digest of their data.
        let list_error = |source| ApplyError::List {
            what: "credential Secrets",
            source,
        };
        let with_bundle_label = ListParams::default().labels(SECRET_BUNDLE_LABEL);
        let summaries = list_lean(
            with_bundle_label.clone(),
            self.list_page_size,
            |page| async move { self.secrets.list_metadata(&page).await },
        )
        .await
        .map_err(list_error)?;
        let has_hash = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            meta.annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(DATA_HASH_ANNOTATION))
        };
        let secrets = if summaries.iter().all(|s| has_hash(&s.metadata)) {
            summaries
                .into_iter()
                .map(|summary| Secret {
                    metadata: summary.metadata,
                    ..Secret::default()
                })
                .collect()
        } else {
            // Some were written by someone else (e.g. the Go agent): their
            // data is needed, so read the Secrets once in full.
            list_lean(with_bundle_label, self.list_page_size, |page| async move {
                self.secrets.list(&page).await
            })
            .await
            .map_err(list_error)?
        };
        Ok(ActualState {
            applications,
            secrets,
        })
    }

    /// Carries out the plan; one Application's failure does not stop the others.
    pub async fn apply(&self, plan: Plan) -> Vec<ApplicationSyncResult> {
        let mut results: Vec<ApplicationSyncResult> = stream::iter(plan.applications)
            .map(|app_plan| self.apply_one(app_plan))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.sort_by(|a, b| a.name.cmp(&b.name));
        results
    }

    async fn apply_one(&self, plan: ApplicationPlan) -> ApplicationSyncResult {
        let result = |operation, error: String| ApplicationSyncResult {
            name: plan.name.clone(),
            application_id: plan.application_id.clone(),
            operation,
            error,
        };
        let outcome = match &plan.action {
            ApplicationAction::Conflict(message) => {
                return result(SyncOperation::Failed, message.clone())
            }
            ApplicationAction::Delete => self
                .delete_application(&plan)
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
        match outcome {
            Ok(operation) => result(operation, String::new()),
            Err(error) => {
                tracing::warn!(application = %plan.name, %error, "cannot synchronize application");
                result(SyncOperation::Failed, error)
            }
        }
    }

    async fn create_application(&self, app: &Application) -> Result<String, String> {
        let created = self
            .counted(
                "Application",
                "create",
                self.applications.create(&PostParams::default(), app),
            )
            .await
            .map_err(|e| format!("cannot create Application: {}", describe(&e)))?;
        uid_of(&created)
    }

    async fn update_application(&self, app: &Application) -> Result<String, String> {
        let name = app.metadata.name.clone().unwrap_or_default();
        let spec = &app.spec;
        // Only the fields the agent owns; others (status, encodeUrl, …) stay.
        let patch = json!({
            "metadata": { "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE } },
            "spec": {
                "description": spec.description,
                "skipVerify": spec.skip_verify,
                "labels": spec.labels,
                "services": spec.services,
                "compassMetadata": spec.compass_metadata,
            }
        });
        let updated = self
            .counted(
                "Application",
                "update",
                self.applications
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            .map_err(|e| format!("cannot update Application: {}", describe(&e)))?;
        uid_of(&updated)
    }

    async fn delete_application(&self, plan: &ApplicationPlan) -> Result<(), String> {
        self.write_secrets(plan, "").await?;
        match self
            .counted(
                "Application",
                "delete",
                self.applications
                    .delete(&plan.name, &DeleteParams::default()),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(format!("cannot delete Application: {}", describe(&e))),
        }
    }

    async fn write_secrets(&self, plan: &ApplicationPlan, owner_uid: &str) -> Result<(), String> {
        for action in &plan.secrets {
            let name = action.secret_name();
            let outcome = match action {
                SecretAction::Create(secret) => {
                    let body = self.secret(secret, &plan.name, owner_uid);
                    match self
                        .counted(
                            "Secret",
                            "create",
                            self.secrets.create(&PostParams::default(), &body),
                        )
                        .await
                    {
                        Err(kube::Error::Api(status)) if status.code == 409 => {
                            self.replace_secret(secret, &plan.name, owner_uid).await
                        }
                        other => other.map(|_| ()),
                    }
                }
                SecretAction::Update(secret) => {
                    self.replace_secret(secret, &plan.name, owner_uid).await
                }
                SecretAction::Delete(name) => {
                    match self
                        .counted(
                            "Secret",
                            "delete",
                            self.secrets.delete(name, &DeleteParams::default()),
                        )
                        .await
                    {
                        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
            };
            outcome.map_err(|e| format!("cannot write Secret {name}: {}", describe(&e)))?;
        }
        Ok(())
    }

    /// Replaces a Secret whole, so keys of a former credential type go too.
    async fn replace_secret(
        &self,
        secret: &WantedSecret,
        app: &str,
        owner_uid: &str,
    ) -> Result<(), kube::Error> {
        let mut body = self.secret(secret, app, owner_uid);
        match self.secrets.get_opt(&secret.name).await? {
            Some(current) => {
                body.metadata.resource_version = current.metadata.resource_version;
                self.counted(
                    "Secret",
                    "update",
                    self.secrets
                        .replace(&secret.name, &PostParams::default(), &body),
                )
                .await
                .map(|_| ())
            }
            None => self
                .counted(
                    "Secret",
                    "create",
                    self.secrets.create(&PostParams::default(), &body),
                )
                .await
                .map(|_| ()),
        }
    }

    fn secret(&self, wanted: &WantedSecret, app: &str, owner_uid: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(wanted.name.clone());
        secret.metadata.labels = Some(wanted.labels.clone());
        secret.metadata.annotations = Some(std::collections::BTreeMap::from([(
            DATA_HASH_ANNOTATION.to_string(),
            wanted.data_hash(),
        )]));
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
                .data
                .iter()
                .map(|(key, value)| (key.clone(), ByteString(value.clone())))
                .collect(),
        );
        secret
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

fn uid_of(app: &Application) -> Result<String, String> {
    app.metadata
        .uid
        .clone()
        .ok_or_else(|| "the API server returned the Application without a uid".to_string())
}

/// The API server's own message (it names the field it refused), not Debug noise.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
