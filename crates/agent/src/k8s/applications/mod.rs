//! The cluster's Applications and their credential Secrets, through one
//! [`ApplicationStore`]: `read` lists and summarizes them (with the caches
//! that spare an idle sync the reading), `kept` keeps what a read found while
//! watches see no change (sparing an idle sync the listing), `apply` carries
//! out a sync plan, each Application independently, a bounded number at a
//! time.

mod apply;
mod kept;
mod read;

pub use apply::{secret_body, updated_application, ApplyOutcome, Replacement, WriteError};
pub use read::{ListError, ReadError};

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client};

use super::access::Access;
use super::metrics::KubernetesMetrics;
use crate::crd::application::Application;
use crate::sync::actual::SecretDigestCache;
use crate::sync::SummaryCache;

pub struct ApplicationStore {
    client: Client,
    applications: Api<Application>,
    /// The same as JSON, for read-modify-replace (see `k8s::replace`).
    raw_applications: Api<DynamicObject>,
    access: Arc<Access>,
    /// The state of the last whole read while nothing changed it (see
    /// [`kept`]).
    kept: kept::KeptState,
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

impl ApplicationStore {
    pub fn new(
        client: Client,
        integration_namespace: &str,
        concurrency: usize,
        list_page_size: u32,
        metrics: Arc<KubernetesMetrics>,
        access: Arc<Access>,
    ) -> Self {
        ApplicationStore {
            client: client.clone(),
            applications: Api::all(client.clone()),
            raw_applications: Api::all_with(
                client.clone(),
                &ApiResource::erase::<Application>(&()),
            ),
            access,
            kept: kept::KeptState::default(),
            summaries: tokio::sync::Mutex::new(SummaryCache::default()),
            secrets: Api::namespaced(client, integration_namespace),
            secret_digests: std::sync::Mutex::new(SecretDigestCache::default()),
            concurrency: concurrency.max(1),
            list_page_size,
            metrics,
        }
    }

    /// Whether the next read returns the last one's state without listing
    /// (both watches have begun and seen no change).
    pub fn keeps_cluster_state(&self) -> bool {
        self.kept.is_kept()
    }

    /// Makes the next read list the cluster, whatever was kept.
    pub fn forget_kept_state(&self) {
        self.kept.forget();
    }

    fn secret_digests(&self) -> std::sync::MutexGuard<'_, SecretDigestCache> {
        // A panic while it was held left nothing half-done worth refusing:
        // at worst a digest is missing, and the Secret is read again.
        self.secret_digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
