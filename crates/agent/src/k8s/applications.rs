//! Reading the cluster's Applications and credential Secrets, and carrying out
//! a sync plan: each Application independently, a bounded number at a time.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, Patch};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource};
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::crd::application::{Application, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use super::crd::compass_connection::{ApplicationSyncResult, SyncOperation};
use crate::k8s::{patch_params, write_params};
use crate::sync::convert::{DATA_HASH_ANNOTATION, SECRET_BUNDLE_LABEL};
use crate::sync::{
    ActualApplication, ActualSecret, ActualState, ApplicationAction, ApplicationPlan,
    ListedApplication, PackedApplication, Plan, SecretAction, SummaryCache, WantedSecret,
};
use crate::telemetry::metrics::Metrics;

/// One page of a list whose items are summarized as they are parsed: a page
/// of whole objects is never in memory at once, only its text and one object.
#[derive(Deserialize)]
#[serde(bound(deserialize = "K: DeserializeOwned, S: From<K>"))]
struct SummaryPage<K, S> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default, deserialize_with = "summarize_each::<_, K, S>")]
    items: Vec<S>,
    #[serde(skip)]
    object: PhantomData<K>,
}

fn summarize_each<'de, D, K, S>(deserializer: D) -> Result<Vec<S>, D::Error>
where
    D: Deserializer<'de>,
    K: DeserializeOwned,
    S: From<K>,
{
    struct Items<K, S>(PhantomData<(K, S)>);

    impl<'de, K: DeserializeOwned, S: From<K>> Visitor<'de> for Items<K, S> {
        type Value = Vec<S>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of objects")
        }

        fn visit_unit<E>(self) -> Result<Vec<S>, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<S>, A::Error> {
            let mut summaries = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(object) = seq.next_element::<K>()? {
                summaries.push(S::from(object));
            }
            Ok(summaries)
        }
    }

    deserializer.deserialize_any(Items(PhantomData))
}

/// How many more objects a metadata-only list page holds than a full one.
const METADATA_PAGE_FACTOR: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot list {what}: {source}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Application {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub struct ApplicationWriter {
    client: Client,
    applications: Api<Application>,
    /// The Application summaries of the last read (see [`SummaryCache`]).
    summaries: tokio::sync::Mutex<SummaryCache>,
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
            client: client.clone(),
            applications: Api::all(client.clone()),
            summaries: tokio::sync::Mutex::new(SummaryCache::default()),
            secrets: Api::namespaced(client, integration_namespace),
            concurrency: concurrency.max(1),
            list_page_size,
            metrics,
        }
    }

    /// Every Application, and the Secrets in the integration namespace that carry
    /// a `bundleId` label (credentials and request parameters), summarized.
    pub async fn read_actual(&self) -> Result<ActualState, ApplyError> {
        // Both lists at the same time: a sync waits for the longer, not the sum.
        let (applications, secrets) = tokio::join!(self.read_applications(), self.read_secrets());
        Ok(ActualState {
            applications: applications?,
            secrets: secrets?,
        })
    }

    /// Lists the Applications' metadata, and reads in full only those that are
    /// new or changed since the last read (all of them the first time).
    async fn read_applications(&self) -> Result<Vec<Arc<ActualApplication>>, ApplyError> {
        let list_error = |source| ApplyError::List {
            what: "Applications",
            source,
        };
        let listed = self
            .list_summarized::<PartialObjectMeta<Application>, ListedApplication>(
                self.applications.resource_url(),
                ListParams::default(),
                true,
            )
            .await
            .map_err(list_error)?;
        let listed_count = listed.len();
        let (mut summaries, to_read) = self.summaries.lock().await.reuse(listed);
        tracing::debug!(
            applications = listed_count,
            read_in_full = to_read.len(),
            "Applications listed"
        );
        if to_read.len() > self.list_page_size as usize {
            // Many to read: one list in pages costs less than a GET each.
            summaries = self
                .list_summarized::<Application, ActualApplication>(
                    self.applications.resource_url(),
                    ListParams::default(),
                    false,
                )
                .await
                .map_err(list_error)?
                .into_iter()
                .map(Arc::new)
                .collect();
        } else {
            let read: Vec<Result<Option<Application>, ApplyError>> = stream::iter(to_read)
                .map(|name| async move {
                    self.applications
                        .get_opt(&name)
                        .await
                        .map_err(|source| ApplyError::Read { name, source })
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            for application in read {
                // Gone since the list: as if it had not been listed.
                if let Some(application) = application? {
                    summaries.push(Arc::new(ActualApplication::from(application)));
                }
            }
        }
        self.summaries.lock().await.replace(&summaries);
        Ok(summaries)
    }

    async fn read_secrets(&self) -> Result<Vec<ActualSecret>, ApplyError> {
        let list_error = |source| ApplyError::List {
            what: "credential Secrets",
            source,
        };
        let with_bundle_label = ListParams::default().labels(SECRET_BUNDLE_LABEL);
        // Metadata only: Secrets this agent wrote carry a digest of their data.
        let secrets = self
            .list_summarized::<PartialObjectMeta<Secret>, ActualSecret>(
                self.secrets.resource_url(),
                with_bundle_label.clone(),
                true,
            )
            .await
            .map_err(list_error)?;
        if secrets.iter().all(|secret| secret.data_hash.is_some()) {
            return Ok(secrets);
        }
        // Some were written by someone else (e.g. the Go agent): their data
        // is needed, so read the Secrets once in full.
        self.list_summarized::<Secret, ActualSecret>(
            self.secrets.resource_url(),
            with_bundle_label,
            false,
        )
        .await
        .map_err(list_error)
    }

    /// Lists every object, page by page (`list_page_size` objects a page, five
    /// times as many when only their metadata is listed: the bound of one
    /// response's memory), keeping a summary of each.
    async fn list_summarized<K, S>(
        &self,
        url: &str,
        params: ListParams,
        metadata_only: bool,
    ) -> Result<Vec<S>, kube::Error>
    where
        K: DeserializeOwned,
        S: From<K>,
    {
        let request = kube::core::Request::new(url);
        let page_size = match metadata_only {
            // An object's metadata is a fraction of it: more fit in the same memory.
            true => self.list_page_size.saturating_mul(METADATA_PAGE_FACTOR),
            false => self.list_page_size,
        };
        let mut params = params.limit(page_size.max(1));
        let mut all = Vec::new();
        loop {
            let mut page_request = if metadata_only {
                request.list_metadata(&params)
            } else {
                request.list(&params)
            }
            .map_err(kube::Error::BuildRequest)?;
            page_request.extensions_mut().insert("list");
            let page: SummaryPage<K, S> = self.client.request(page_request).await?;
            all.extend(page.items);
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(all),
            }
        }
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

    async fn create_application(&self, packed: &PackedApplication) -> Result<String, String> {
        let app = &unpack(packed)?;
        let created = self
            .counted(
                "Application",
                "create",
                self.applications.create(&write_params(), app),
            )
            .await
            .map_err(|e| format!("cannot create Application: {}", describe(&e)))?;
        self.remember(&created).await;
        uid_of(&created)
    }

    async fn update_application(&self, packed: &PackedApplication) -> Result<String, String> {
        let app = &unpack(packed)?;
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
                    .patch(&name, &patch_params(), &Patch::Merge(&patch)),
            )
            .await
            .map_err(|e| format!("cannot update Application: {}", describe(&e)))?;
        self.remember(&updated).await;
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
                        .counted("Secret", "create", self.send_secret(&body, false))
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
                self.counted("Secret", "update", self.send_secret(&body, true))
                    .await
            }
            None => {
                self.counted("Secret", "create", self.send_secret(&body, false))
                    .await
            }
        }
    }

    /// Creates or replaces a Secret without parsing the apiserver's answer
    /// (the whole Secret again, `managedFields` included): nothing here needs
    /// it, and a first sync writes thousands.
    async fn send_secret(&self, body: &Secret, replace: bool) -> Result<(), kube::Error> {
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
        self.client
            .request::<serde::de::IgnoredAny>(http_request)
            .await
            .map(|_| ())
    }

    fn secret(&self, wanted: &WantedSecret, app: &str, owner_uid: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(wanted.name.clone());
        secret.metadata.labels = Some(wanted.labels());
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
                .map(|(key, value)| (key.to_string(), ByteString(value.to_vec())))
                .collect(),
        );
        secret
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

fn unpack(packed: &PackedApplication) -> Result<Application, String> {
    packed
        .unpack()
        .map_err(|e| format!("cannot read back the Application to write: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: serde_json::Value) -> SummaryPage<Application, ActualApplication> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_list_page_is_read_as_summaries_with_its_continue_token() {
        let page = page(json!({
            "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
            "kind": "ApplicationList",
            "metadata": {"continue": "next-page", "resourceVersion": "7"},
            "items": [
                {
                    "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                    "kind": "Application",
                    "metadata": {"name": "shop", "uid": "u-1", "managedFields": [{"manager": "x"}]},
                    "spec": {
                        "services": [{"id": "b", "name": "b", "displayName": "B", "description": "",
                            "providerDisplayName": "", "entries": [{"type": "API",
                            "credentials": {"type": "Basic", "secretName": "shop-b"}}]}],
                        "compassMetadata": {"applicationId": "app-1", "authentication": {"clientIds": []}}
                    }
                },
                {"metadata": {"name": "foreign"}, "spec": {}}
            ]
        }));
        assert_eq!(page.metadata.continue_.as_deref(), Some("next-page"));
        let names: Vec<_> = page.items.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["shop", "foreign"]);
        assert_eq!(page.items[0].uid.as_deref(), Some("u-1"));
        assert_eq!(page.items[0].referenced_secrets, ["shop-b"]);
        assert!(page.items[0].is_managed_by_compass());
        assert!(!page.items[1].is_managed_by_compass());
    }

    #[test]
    fn a_list_without_items_is_empty() {
        assert!(page(json!({"metadata": {}, "items": null}))
            .items
            .is_empty());
        assert!(page(json!({"metadata": {}})).items.is_empty());
    }

    #[test]
    fn an_object_that_does_not_parse_fails_the_page() {
        let result = serde_json::from_value::<SummaryPage<Application, ActualApplication>>(
            json!({"metadata": {}, "items": [{"metadata": {"name": 5}}]}),
        );
        assert!(result.is_err());
    }
}
