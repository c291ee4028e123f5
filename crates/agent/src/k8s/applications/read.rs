//! Reading the cluster's Applications and credential Secrets as summaries:
//! their metadata is listed, and only what the caches do not know is read in
//! full, page by page or by name.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::{ListParams, WatchParams};
use kube::Api;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::kept::{self, WatchFrom};
use super::ApplicationStore;
use crate::crd::application::Application;
use crate::crd::labels::SECRET_BUNDLE_LABEL;
use crate::k8s::errors::is_forbidden;
use crate::k8s::metadata_list::{self, ObjectMetadata};
use crate::k8s::metrics::ClusterRead;
use crate::sync::actual::{ListedMetadata, ListedSecret};
use crate::sync::{self, ActualApplication, ActualSecret, ActualState, ListedApplication};

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

/// Room in `list` for a page of `page` items and the `remaining` the list
/// says are still to come: exactly, once, when it says so (the apiserver
/// does only for lists without a selector); else by the usual doubling.
fn make_room<T>(list: &mut Vec<T>, page: usize, remaining: usize) {
    if remaining > 0 {
        list.reserve_exact(page + remaining);
    } else {
        list.reserve(page);
    }
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

/// Why the cluster's Applications and Secrets could not be read: the sync
/// cannot plan (and so deletes nothing).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot list {what}")]
    List {
        what: &'static str,
        #[source]
        source: ListError,
    },
    #[error("cannot read Application {name}")]
    Application {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
}

fn secret_read_error(name: String, source: kube::Error) -> ReadError {
    ReadError::Secret { name, source }
}

impl ApplicationStore {
    /// Every Application, and the Secrets in the integration namespace that carry
    /// a `bundleId` label (credentials and request parameters), summarized.
    /// When the agent may not list Secrets, none are read here
    /// (`secrets_listed` is false): see [`Self::read_named_secrets`].
    ///
    /// While the agent may watch both kinds, the state of a whole read is
    /// kept, and returned again (listing nothing) until a watch sees a change
    /// ([`super::kept`]).
    pub async fn read_actual(&self) -> Result<Arc<ActualState>, ReadError> {
        if let Some(kept) = self.kept.current() {
            self.metrics.record_cluster_read(ClusterRead::Kept);
            tracing::debug!("the cluster is as last read: nothing changed since (watched)");
            return Ok(kept);
        }
        // Both lists at the same time: a sync waits for the longer, not the sum.
        let (applications, secrets) = tokio::join!(self.read_applications(), self.list_secrets());
        let (applications, secrets) = match (applications, secrets) {
            (Ok(applications), Ok(secrets)) => (applications, secrets),
            (Err(error), _) | (_, Err(error)) => {
                self.kept.forget();
                return Err(error);
            }
        };
        self.metrics.record_cluster_read(ClusterRead::Listed);
        let (secrets, secrets_version) = match secrets {
            Some(listed) => (Some(listed.items), listed.version),
            None => (None, None),
        };
        let state = Arc::new(ActualState {
            applications: applications.items,
            secrets_listed: secrets.is_some(),
            secrets: secrets.unwrap_or_default(),
        });
        // Only a state read whole can be kept: one without the Secrets'
        // list depends on the names a sync wants.
        match (applications.version, secrets_version) {
            (Some(applications_version), Some(secrets_version))
                if self.access.watch_cluster_state.allowed() =>
            {
                let params = WatchParams::default().timeout(kept::WATCH_TIMEOUT_SECONDS);
                self.kept.keep(
                    Arc::clone(&state),
                    WatchFrom {
                        api: self.applications.clone(),
                        params: params.clone(),
                        version: applications_version,
                        what: "Applications",
                    },
                    WatchFrom {
                        api: self.secrets.clone(),
                        params: params.labels(SECRET_BUNDLE_LABEL),
                        version: secrets_version,
                        what: "credential Secrets",
                    },
                    &self.access,
                );
            }
            _ => self.kept.forget(),
        }
        Ok(state)
    }

    /// Without the right to list Secrets: reads, one by one, each Secret a
    /// wanted or an existing Application refers to. (Secrets that nothing
    /// refers to any more, left by a failed earlier sync, are found only by
    /// the list.)
    pub async fn read_named_secrets(
        &self,
        actual: &mut ActualState,
        wanted: impl IntoIterator<Item = String>,
    ) -> Result<(), ReadError> {
        if actual.secrets_listed {
            return Ok(());
        }
        let mut names: BTreeSet<String> = wanted.into_iter().collect();
        for application in actual
            .applications
            .iter()
            .filter(|a| a.is_managed_by_compass())
        {
            names.extend(application.referenced_secrets.iter().map(String::from));
        }
        let read = self
            .get_each(&self.secrets, names, secret_read_error)
            .await?;
        actual.secrets = read.into_iter().map(ActualSecret::from).collect();
        Ok(())
    }

    /// Lists the Applications' metadata, and reads in full only those that are
    /// new or changed since the last read (all of them the first time).
    async fn read_applications(&self) -> Result<Listed<Vec<Arc<ActualApplication>>>, ReadError> {
        let list_error = |source| ReadError::List {
            what: "Applications",
            source,
        };
        let (listed, version) = self
            .list_metadata::<ListedApplication>(
                self.applications.resource_url(),
                ListParams::default(),
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
            let listed = self
                .list_summarized::<Application, ActualApplication>(
                    self.applications.resource_url(),
                    ListParams::default(),
                )
                .await
                .map_err(list_error)?;
            // Not collected in place: that would keep the list's buffer of
            // whole summaries to hold one pointer each.
            summaries = sync::map_exact(listed, Arc::new);
        } else {
            let read = self
                .get_each(&self.applications, to_read, |name, source| {
                    ReadError::Application { name, source }
                })
                .await?;
            summaries.extend(
                read.into_iter()
                    .map(|a| Arc::new(ActualApplication::from(a))),
            );
        }
        self.summaries.lock().await.replace(&summaries);
        Ok(Listed {
            items: summaries,
            version,
        })
    }

    /// The credential Secrets, by label; `None` when the agent may not list
    /// Secrets (Kyma's RBAC for it grants no list). Their metadata is listed;
    /// the data is read only of those whose digest is not known for the
    /// version listed ([`SecretDigestCache`]), so an idle sync reads no data.
    async fn list_secrets(&self) -> Result<Option<Listed<Vec<ActualSecret>>>, ReadError> {
        if !self.access.list_credential_secrets.allowed() {
            return Ok(None);
        }
        let list_error = |source| ReadError::List {
            what: "credential Secrets",
            source,
        };
        let with_bundle_label = ListParams::default().labels(SECRET_BUNDLE_LABEL);
        // Each page is summarized as it comes, with the digests known: the
        // listed Secrets are never all held beside their summaries.
        let mut to_read: Vec<String> = Vec::new();
        // A list with a label selector does not say how many are to come:
        // room for as many as the last read found, made once.
        let mut secrets: Vec<ActualSecret> = {
            let mut digests = self.secret_digests();
            digests.begin_read();
            Vec::with_capacity(digests.len())
        };
        let version = match self
            .list_metadata_pages::<ListedSecret>(
                self.secrets.resource_url(),
                with_bundle_label.clone(),
                |page, remaining| {
                    make_room(&mut secrets, page.len(), remaining);
                    self.secret_digests()
                        .resolve(page, &mut secrets, &mut to_read);
                },
            )
            .await
        {
            Ok(version) => version,
            Err(ListError::Request(error)) if is_forbidden(&error) => {
                self.access.list_credential_secrets.refused(&error);
                return Ok(None);
            }
            Err(error) => return Err(list_error(error)),
        };
        let listed_count = secrets.len() + to_read.len();
        tracing::debug!(
            secrets = listed_count,
            read_in_full = to_read.len(),
            "credential Secrets listed"
        );
        if to_read.is_empty() {
            // Nothing new: the cache knew each one listed.
            self.secret_digests().forget_unseen();
        } else if read_secrets_by_name(to_read.len(), listed_count, self.list_page_size) {
            let read = self
                .get_each(&self.secrets, to_read, secret_read_error)
                .await?;
            let mut digests = self.secret_digests();
            digests.forget_unseen();
            secrets.extend(
                read.into_iter()
                    .map(|secret| digests.add(ListedSecret::from(secret))),
            );
        } else {
            secrets = Vec::new();
            self.secret_digests().clear();
            self.list_pages::<Secret, ListedSecret>(
                self.secrets.resource_url(),
                with_bundle_label,
                |page, remaining| {
                    make_room(&mut secrets, page.len(), remaining);
                    let mut digests = self.secret_digests();
                    secrets.extend(page.into_iter().map(|secret| digests.add(secret)));
                },
            )
            .await
            .map_err(list_error)?;
        }
        Ok(Some(Listed {
            items: secrets,
            version,
        }))
    }

    /// Reads each object by name, `concurrency` at a time. One gone since it
    /// was named is left out, as if it had not been named.
    async fn get_each<K>(
        &self,
        api: &Api<K>,
        names: impl IntoIterator<Item = String>,
        error: impl Fn(String, kube::Error) -> ReadError,
    ) -> Result<Vec<K>, ReadError>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        let error = &error;
        let read: Vec<Option<K>> = stream::iter(names)
            .map(|name| async move {
                api.get_opt(&name)
                    .await
                    .map_err(|source| error(name, source))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
    }

    /// Lists every object's metadata, page by page (five times
    /// `list_page_size` objects a page: see [`METADATA_PAGE_FACTOR`]),
    /// keeping a summary of each.
    async fn list_metadata<S: ListedSummary>(
        &self,
        url: &str,
        params: ListParams,
    ) -> Result<(Vec<S>, Option<String>), ListError> {
        let mut all = Vec::new();
        let version = self
            .list_metadata_pages::<S>(url, params, |page, remaining| {
                make_room(&mut all, page.len(), remaining);
                all.extend(page);
            })
            .await?;
        Ok((all, version))
    }

    /// Lists every object's metadata, page by page, in Kubernetes' protobuf
    /// where the server answers it (it does), else in JSON
    /// ([`metadata_list`]), handing each page's summaries to `each_page`.
    /// Returns the list's version.
    async fn list_metadata_pages<S: ListedSummary>(
        &self,
        url: &str,
        params: ListParams,
        each_page: impl FnMut(Vec<S>, usize),
    ) -> Result<Option<String>, ListError> {
        let request = kube::core::Request::new(url);
        // An object's metadata is a fraction of it: more fit in the same memory.
        let page_size = self.list_page_size.saturating_mul(METADATA_PAGE_FACTOR);
        let read_page = |params: ListParams| {
            let request = &request;
            async move {
                let mut page_request = request.list_metadata(&params)?;
                page_request.headers_mut().insert(
                    http::header::ACCEPT,
                    http::HeaderValue::from_static(metadata_list::ACCEPT),
                );
                page_request.extensions_mut().insert("list");
                let answer = self
                    .client
                    .send(page_request.map(kube::client::Body::from))
                    .await?;
                let protobuf =
                    metadata_list::is_protobuf(answer.headers().get(http::header::CONTENT_TYPE));
                let status = answer.status();
                let body = answer.into_body().collect_bytes().await?;
                if status.is_client_error() || status.is_server_error() {
                    return Err(api_error(status, protobuf, body).into());
                }
                if protobuf {
                    let mut items = Vec::new();
                    let end = metadata_list::decode_page(body, |meta| items.push(S::from(meta)))
                        .map_err(ListError::Protobuf)?;
                    Ok(ListPage {
                        items,
                        version: end.resource_version,
                        continue_token: end.continue_token,
                        remaining: end.remaining_item_count,
                    })
                } else {
                    let page: SummaryPage<ListedMetadata, S> =
                        serde_json::from_slice(&body).map_err(kube::Error::SerdeError)?;
                    Ok(ListPage::from(page))
                }
            }
        };
        page_through(params, page_size, read_page, each_page).await
    }

    /// Lists every whole object, page by page (`list_page_size` objects a
    /// page: the bound of one response's memory), keeping a summary of each.
    async fn list_summarized<K, S>(
        &self,
        url: &str,
        params: ListParams,
    ) -> Result<Vec<S>, ListError>
    where
        K: DeserializeOwned,
        S: From<K>,
    {
        let mut all = Vec::new();
        self.list_pages::<K, S>(url, params, |page, remaining| {
            make_room(&mut all, page.len(), remaining);
            all.extend(page);
        })
        .await?;
        Ok(all)
    }

    /// Lists every whole object, page by page, handing each page's
    /// summaries to `each_page` with how many objects the list says are
    /// still to come (room for all of them can be made once, not by
    /// doubling).
    async fn list_pages<K, S>(
        &self,
        url: &str,
        params: ListParams,
        each_page: impl FnMut(Vec<S>, usize),
    ) -> Result<(), ListError>
    where
        K: DeserializeOwned,
        S: From<K>,
    {
        let request = kube::core::Request::new(url);
        let read_page = |params: ListParams| {
            let request = &request;
            async move {
                let mut page_request = request.list(&params)?;
                page_request.extensions_mut().insert("list");
                let page: SummaryPage<K, S> = self.client.request(page_request).await?;
                Ok(ListPage::from(page))
            }
        };
        page_through(params, self.list_page_size, read_page, each_page)
            .await
            .map(|_version| ())
    }
}

/// What the agent keeps of an object of a metadata-only list, made from
/// the list in either encoding.
trait ListedSummary: From<ListedMetadata> + for<'a> From<ObjectMetadata<'a>> {}

impl<S: From<ListedMetadata> + for<'a> From<ObjectMetadata<'a>>> ListedSummary for S {}

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Request(#[from] kube::Error),
    #[error("cannot read the API server's protobuf answer")]
    Protobuf(#[source] metadata_list::DecodeError),
}

impl From<kube::core::request::Error> for ListError {
    fn from(error: kube::core::request::Error) -> ListError {
        ListError::Request(kube::Error::BuildRequest(error))
    }
}

/// What a list read, with the list's version (`None` when the server gave
/// none): a watch from it sees every change made after the list.
struct Listed<T> {
    items: T,
    version: Option<String>,
}

/// One page of a list, summarized.
struct ListPage<S> {
    items: Vec<S>,
    version: Option<String>,
    continue_token: Option<String>,
    /// How many objects are still to come, when the server says.
    remaining: Option<i64>,
}

impl<K, S> From<SummaryPage<K, S>> for ListPage<S> {
    fn from(page: SummaryPage<K, S>) -> ListPage<S> {
        ListPage {
            items: page.items,
            version: page
                .metadata
                .resource_version
                .filter(|version| !version.is_empty()),
            continue_token: page.metadata.continue_.filter(|token| !token.is_empty()),
            remaining: page.metadata.remaining_item_count,
        }
    }
}

/// Reads a list page by page, `page_size` objects a page, handing each
/// page's summaries to `each_page` with how many objects the list says are
/// still to come (room for all of them can be made once, not by doubling).
/// Returns the list's version: the first page's, which the later pages
/// (read with its continue token) are a snapshot of.
async fn page_through<S, Page>(
    params: ListParams,
    page_size: u32,
    mut read_page: impl FnMut(ListParams) -> Page,
    mut each_page: impl FnMut(Vec<S>, usize),
) -> Result<Option<String>, ListError>
where
    Page: std::future::Future<Output = Result<ListPage<S>, ListError>>,
{
    let mut params = params.limit(page_size.max(1));
    let mut version = None;
    loop {
        let page = read_page(params.clone()).await?;
        if version.is_none() {
            version = page.version;
        }
        let remaining = page
            .remaining
            .and_then(|count| usize::try_from(count).ok())
            .unwrap_or(0);
        each_page(page.items, remaining);
        match page.continue_token {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(version),
        }
    }
}

/// The API server's error answer as kube reports it: its `Status`, in JSON
/// or in protobuf, else its text with the status code.
fn api_error(code: http::StatusCode, protobuf: bool, body: bytes::Bytes) -> kube::Error {
    let decoded = if protobuf {
        metadata_list::decode_status(body.clone())
    } else {
        serde_json::from_slice::<kube::core::Status>(&body).ok()
    };
    let status = decoded.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body);
        kube::core::Status::failure(text.trim(), "Failed to parse error data")
            .with_code(code.as_u16())
    });
    kube::Error::Api(status.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(
            page.items[0].referenced_secrets.iter().collect::<Vec<_>>(),
            ["shop-b"]
        );
        assert!(page.items[0].is_managed_by_compass());
        assert!(!page.items[1].is_managed_by_compass());
    }

    #[test]
    fn a_metadata_page_is_read_without_managed_fields_or_annotations() {
        let page: SummaryPage<ListedMetadata, ListedSecret> = serde_json::from_value(json!({
            "kind": "PartialObjectMetadataList",
            "metadata": {"continue": "", "resourceVersion": "9"},
            "items": [{
                "kind": "PartialObjectMetadata",
                "metadata": {
                    "name": "shop-bundle", "namespace": "kyma-system", "uid": "s-1",
                    "resourceVersion": "7", "creationTimestamp": "2026-12-02T10:00:00Z",
                    "labels": {"app": "shop", "bundleId": "b-1"},
                    "annotations": {"note": "x"},
                    "ownerReferences": [{"apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                        "kind": "Application", "name": "shop", "uid": "a-1"}],
                    "managedFields": [{"manager": "compass-runtime-agent", "operation": "Update",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:password": {}}}}]
                }
            }]
        }))
        .unwrap();
        let secret = &page.items[0];
        assert_eq!(
            secret.uid,
            Some(crate::sync::compact::CompactText::new("s-1"))
        );
        assert_eq!(
            secret.resource_version,
            Some(crate::sync::compact::CompactText::new("7"))
        );
        assert_eq!(secret.summary.name(), "shop-bundle");
        assert!(secret.summary.is_the_agents());
        assert!(secret.summary.is_owned_by("a-1"));
        assert_eq!(secret.summary.data_hash, None);
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
    fn an_object_that_does_not_parse_fails_the_page() {
        let result = serde_json::from_value::<SummaryPage<Application, ActualApplication>>(
            json!({"metadata": {}, "items": [{"metadata": {"name": 5}}]}),
        );
        assert!(result.is_err());
    }
}
