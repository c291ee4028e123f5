//! Reading the cluster's Applications and credential Secrets, and carrying out
//! a sync plan: each Application independently, a bounded number at a time.

use std::marker::PhantomData;
use std::sync::Arc;

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource};
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::access::Access;
use super::errors::{is_conflict, is_forbidden, is_not_found};
use super::metrics::KubernetesMetrics;
use super::replace::{apply_merge_patch, CONFLICT_RETRIES};
use crate::crd::application::Application;
use crate::crd::compass_connection::{ApplicationSyncResult, SyncOperation};
use crate::crd::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, SECRET_BUNDLE_LABEL};
use crate::k8s::write_params;
use crate::report::report;
use crate::sync::actual::{ListedSecret, SecretDigestCache};
use crate::sync::pending::UnpackError;
use crate::sync::{
    ActualApplication, ActualSecret, ActualState, ApplicationAction, ApplicationPlan,
    ListedApplication, PackedApplication, Plan, SecretAction, SummaryCache, WantedSecret,
};

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

/// Whether the credential Secrets whose digest is not known (`unknown` of the
/// `listed`) are read one by one by name rather than by listing them all in
/// full. A GET costs a round trip but moves one Secret; a full list moves
/// every labelled Secret's data, a page per request. So: by name when few are
/// unknown (one edited by hand, a few written by someone else), at most a
/// quarter of them and no more than one list page; in full when most are
/// (the first sync after a start, a swap back from the Go agent, which
/// rewrites them all), where a GET each would cost a request per Secret.
fn read_secrets_by_name(unknown: usize, listed: usize, page_size: u32) -> bool {
    unknown.saturating_mul(4) <= listed && unknown <= page_size as usize
}

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

/// Why the cluster's Applications and Secrets could not be read: the sync
/// cannot plan (and so deletes nothing).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot list {what}")]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Application {name}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Secret {name}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
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

pub struct ApplicationWriter {
    client: Client,
    applications: Api<Application>,
    /// The same as JSON, for read-modify-replace (see `k8s::replace`).
    raw_applications: Api<DynamicObject>,
    access: Arc<Access>,
    /// The Application summaries of the last read (see [`SummaryCache`]).
    summaries: tokio::sync::Mutex<SummaryCache>,
    secrets: Api<Secret>,
    /// The digests of the credential Secrets' data as last read or written
    /// (see [`SecretDigestCache`]); never held across an await.
    secret_digests: std::sync::Mutex<SecretDigestCache>,
    concurrency: usize,
    /// Objects per list call: bounds the memory of one response (its text and
    /// its parsed objects) however many objects the cluster holds.
    list_page_size: u32,
    metrics: Arc<KubernetesMetrics>,
}

impl ApplicationWriter {
    pub fn new(
        client: Client,
        integration_namespace: &str,
        concurrency: usize,
        list_page_size: u32,
        metrics: Arc<KubernetesMetrics>,
        access: Arc<Access>,
    ) -> Self {
        ApplicationWriter {
            client: client.clone(),
            applications: Api::all(client.clone()),
            raw_applications: Api::all_with(
                client.clone(),
                &ApiResource::erase::<Application>(&()),
            ),
            access,
            summaries: tokio::sync::Mutex::new(SummaryCache::default()),
            secrets: Api::namespaced(client, integration_namespace),
            secret_digests: std::sync::Mutex::new(SecretDigestCache::default()),
            concurrency: concurrency.max(1),
            list_page_size,
            metrics,
        }
    }

    /// Every Application, and the Secrets in the integration namespace that carry
    /// a `bundleId` label (credentials and request parameters), summarized.
    /// When the agent may not list Secrets, none are read here
    /// (`secrets_listed` is false): see [`Self::read_named_secrets`].
    pub async fn read_actual(&self) -> Result<ActualState, ApplyError> {
        // Both lists at the same time: a sync waits for the longer, not the sum.
        let (applications, secrets) = tokio::join!(self.read_applications(), self.list_secrets());
        let secrets = secrets?;
        Ok(ActualState {
            applications: applications?,
            secrets_listed: secrets.is_some(),
            secrets: secrets.unwrap_or_default(),
        })
    }

    /// Without the right to list Secrets: reads, one by one, each Secret a
    /// wanted or an existing Application refers to. (Secrets that nothing
    /// refers to any more, left by a failed earlier sync, are found only by
    /// the list.)
    pub async fn read_named_secrets(
        &self,
        actual: &mut ActualState,
        wanted: impl IntoIterator<Item = String>,
    ) -> Result<(), ApplyError> {
        if actual.secrets_listed {
            return Ok(());
        }
        let mut names: BTreeSet<String> = wanted.into_iter().collect();
        for application in actual
            .applications
            .iter()
            .filter(|a| a.is_managed_by_compass())
        {
            names.extend(application.referenced_secrets.iter().cloned());
        }
        let read: Vec<Option<Secret>> = stream::iter(names)
            .map(|name| async move {
                self.secrets
                    .get_opt(&name)
                    .await
                    .map_err(|source| ApplyError::ReadSecret { name, source })
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        actual.secrets = read.into_iter().flatten().map(ActualSecret::from).collect();
        Ok(())
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

    /// The credential Secrets, by label; `None` when the agent may not list
    /// Secrets (Kyma's RBAC for it grants no list). Their metadata is listed;
    /// the data is read only of those whose digest is not known for the
    /// version listed ([`SecretDigestCache`]), so an idle sync reads no data.
    async fn list_secrets(&self) -> Result<Option<Vec<ActualSecret>>, ApplyError> {
        if !self.access.list_credential_secrets.allowed() {
            return Ok(None);
        }
        let list_error = |source| ApplyError::List {
            what: "credential Secrets",
            source,
        };
        let with_bundle_label = ListParams::default().labels(SECRET_BUNDLE_LABEL);
        let listed = match self
            .list_summarized::<PartialObjectMeta<Secret>, ListedSecret>(
                self.secrets.resource_url(),
                with_bundle_label.clone(),
                true,
            )
            .await
        {
            Ok(listed) => listed,
            Err(error) if is_forbidden(&error) => {
                self.access.list_credential_secrets.refused(&error);
                return Ok(None);
            }
            Err(error) => return Err(list_error(error)),
        };
        let listed_count = listed.len();
        let (mut secrets, to_read) = self.secret_digests().reuse(listed);
        tracing::debug!(
            secrets = listed_count,
            read_in_full = to_read.len(),
            "credential Secrets listed"
        );
        if to_read.is_empty() {
            // Nothing new: the cache already holds exactly these.
        } else if read_secrets_by_name(to_read.len(), listed_count, self.list_page_size) {
            let read: Vec<Option<Secret>> = stream::iter(to_read)
                .map(|name| async move {
                    self.secrets
                        .get_opt(&name)
                        .await
                        .map_err(|source| ApplyError::ReadSecret { name, source })
                })
                .buffer_unordered(self.concurrency)
                .try_collect()
                .await?;
            // One gone since the list: as if it had not been listed.
            secrets.extend(read.into_iter().flatten().map(ListedSecret::from));
        } else {
            secrets = self
                .list_summarized::<Secret, ListedSecret>(
                    self.secrets.resource_url(),
                    with_bundle_label,
                    false,
                )
                .await
                .map_err(list_error)?;
        }
        self.secret_digests().replace(&secrets);
        Ok(Some(
            secrets.into_iter().map(|secret| secret.summary).collect(),
        ))
    }

    fn secret_digests(&self) -> std::sync::MutexGuard<'_, SecretDigestCache> {
        // A panic while it was held left nothing half-done worth refusing:
        // at worst a digest is missing, and the Secret is read again.
        self.secret_digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    pub async fn apply(&self, plan: Plan) -> ApplyOutcome {
        let outcomes: Vec<ApplyOutcome> = stream::iter(plan.applications)
            .map(|app_plan| self.apply_one(app_plan))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut all = ApplyOutcome::default();
        for outcome in outcomes {
            all.results.extend(outcome.results);
            all.replaced.extend(outcome.replaced);
        }
        all.results.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    async fn apply_one(&self, plan: ApplicationPlan) -> ApplyOutcome {
        let result = |operation, error: String| ApplicationSyncResult {
            name: plan.name.clone(),
            application_id: plan.application_id.clone(),
            operation,
            error,
        };
        let written = match &plan.action {
            ApplicationAction::Refused(message) => {
                return ApplyOutcome::of(result(SyncOperation::Failed, message.clone()))
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
                return ApplyOutcome::of(result(SyncOperation::Failed, error));
            }
        };
        let mut outcome = ApplyOutcome::of(result(operation, String::new()));
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
        let name = app.metadata.name.clone().unwrap_or_default();
        let owned = owned_fields(app);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .raw_applications
                .get_opt(&name)
                .await
                .map_err(WriteError::ReadBeforeUpdate)?;
            // Deleted by someone since the sync read it: the Director still wants it.
            let Some(mut current) = current else {
                return self.create_application(packed).await;
            };
            current
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
            apply_merge_patch(&mut current.data, &owned);
            let replaced = self
                .counted(
                    "Application",
                    "update",
                    self.raw_applications
                        .replace(&name, &write_params(), &current),
                )
                .await;
            match replaced {
                Ok(stored) => {
                    let stored: Application = serde_json::to_value(stored)
                        .and_then(serde_json::from_value)
                        .map_err(WriteError::DecodeUpdated)?;
                    self.remember(&stored).await;
                    return uid_of(&stored);
                }
                // Changed by someone between our read and our write: again.
                Err(error) if is_conflict(&error) && attempt < CONFLICT_RETRIES => {}
                Err(error) => return Err(WriteError::Update(error)),
            }
        }
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
                    let body = self.secret(secret, &plan.name, owner_uid);
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
            name: secret.name.clone(),
            source,
        };
        let mut body = self.secret(secret, app, owner_uid);
        match self.secrets.get_opt(&secret.name).await.map_err(failed)? {
            Some(current)
                if !ActualSecret::from_metadata(current.metadata.clone()).is_the_agents() =>
            {
                Err(WriteError::ForeignSecret {
                    name: secret.name.clone(),
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
                .insert(uid, resource_version, secret.data_hash());
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

    fn secret(&self, wanted: &WantedSecret, app: &str, owner_uid: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(wanted.name.clone());
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

fn unpack(packed: &PackedApplication) -> Result<Application, WriteError> {
    packed.unpack().map_err(WriteError::Unpack)
}

fn uid_of(app: &Application) -> Result<String, WriteError> {
    app.metadata.uid.clone().ok_or(WriteError::NoUid)
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
    fn few_unknown_secrets_are_read_by_name_most_by_one_list() {
        // One edited by hand among many: a GET.
        assert!(read_secrets_by_name(1, 400, 100));
        assert!(read_secrets_by_name(100, 400, 100));
        // All unknown (the first sync after a start, a swap back from the Go
        // agent), most, or more than a page of them: a list.
        assert!(!read_secrets_by_name(400, 400, 100));
        assert!(!read_secrets_by_name(101, 400, 100));
        assert!(!read_secrets_by_name(101, 4000, 100));
        assert!(!read_secrets_by_name(1, 3, 100));
    }

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

    #[test]
    fn an_object_that_does_not_parse_fails_the_page() {
        let result = serde_json::from_value::<SummaryPage<Application, ActualApplication>>(
            json!({"metadata": {}, "items": [{"metadata": {"name": 5}}]}),
        );
        assert!(result.is_err());
    }
}
