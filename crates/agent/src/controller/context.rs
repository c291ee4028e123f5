//! Everything a reconcile needs (clients, stores, settings, metrics, progress),
//! and what it remembers between runs ([`Remembered`]).

use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use kube::Client;

use super::certificate_in_use::CertificateInUse;
use super::decide::{self, Cause, NextRunInput, Run};
use super::metrics::{AgentMetrics, ControllerMetrics};
use super::progress::{CycleProgress, Wait};
use super::remembered::Remembered;
use crate::certificates::{renewal, CertificateInfo, ClientCredentials};
use crate::compass::metrics::CompassMetrics;
use crate::compass::{CompassError, GraphqlClient, TlsSettings};
use crate::config::{
    ConnectionParameters, RuntimeParameters, Settings, SourceError, SourceKind, SourceLocation,
    SourceOrigin,
};
use crate::k8s::access::Access;
use crate::k8s::applications::ApplicationStore;
use crate::k8s::connection::ConnectionStore;
use crate::k8s::credentials_store::CredentialsStore;
use crate::k8s::events::EventRecorder;
use crate::sync::ConversionSettings;

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub connections: ConnectionStore,
    pub credentials: CredentialsStore,
    pub applications: ApplicationStore,
    pub tls: TlsSettings,
    pub conversion: ConversionSettings,
    pub metrics: Arc<ControllerMetrics>,
    compass_metrics: Arc<CompassMetrics>,
    /// The certificate the reconcile works with, for `/readyz`.
    pub certificate_in_use: Arc<CertificateInUse>,
    /// Whether cycles record their outcomes, and what the one in flight
    /// waits for (see [`CycleProgress`]), for `/healthz` and the metrics.
    pub progress: Arc<CycleProgress>,
    pub events: EventRecorder,
    /// What the agent may do beyond its basic verbs (see `k8s::access`).
    pub access: Arc<Access>,
    /// What the reconcile remembers between runs.
    remembered: Mutex<Remembered>,
}

impl Context {
    /// What a reconcile needs, from the API server's `client`, the
    /// `settings`, the `metrics` to record into and what the RBAC allows
    /// (`access`). Fails when `APP_COMPASS_CA_BUNDLE` cannot be read.
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: &AgentMetrics,
        access: Arc<Access>,
    ) -> Result<Context, std::io::Error> {
        let extra_roots_pem = match &settings.compass_ca_bundle {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot read APP_COMPASS_CA_BUNDLE {}: {e}", path.display()),
                )
            })?),
            None => None,
        };
        Ok(Context {
            connections: ConnectionStore::new(client.clone()),
            credentials: CredentialsStore::new(
                client.clone(),
                settings.cluster_certificates_secret.clone(),
                settings.ca_certificates_secret.clone(),
            ),
            applications: ApplicationStore::new(
                client.clone(),
                &settings.integration_namespace,
                settings.apply_concurrency,
                settings.kubernetes_list_page_size,
                metrics.kubernetes.clone(),
                access.clone(),
            ),
            tls: TlsSettings {
                skip_verify: settings.skip_compass_tls_verify,
                extra_roots_pem,
                request_timeout: settings.compass_request_timeout,
                allow_http: settings.compass_allow_http,
                max_response_bytes: settings.compass_max_response_size,
            },
            conversion: ConversionSettings {
                central_gateway_url: settings.central_gateway_service_url.clone(),
                skip_apps_tls_verify: settings.skip_apps_tls_verify,
                // Decided per sync by the runtime's labels.
                normalize_application_names: true,
            },
            events: EventRecorder::new(client.clone(), access.clone()),
            access,
            client,
            settings,
            metrics: metrics.controller.clone(),
            compass_metrics: metrics.compass.clone(),
            certificate_in_use: Arc::default(),
            progress: Arc::default(),
            // Nothing remembered at start: the first cycle runs at once.
            remembered: Mutex::new(Remembered::default()),
        })
    }

    /// Where the connection parameters are read from.
    pub fn source_location(&self) -> SourceLocation {
        SourceLocation {
            kind: self.settings.agent_configuration_source,
            name: self.settings.agent_configuration_secret.clone(),
            may_read_config_map: self.settings.agent_configuration_source != SourceKind::Secret
                && self.access.read_source_config_map,
        }
    }

    /// Reads what a synchronization needs of the configuration (the runtime
    /// and the tenant; not the token).
    pub(super) async fn read_runtime_parameters(&self) -> Result<RuntimeParameters, SourceError> {
        let _waiting = self.progress.waiting(Wait::Configuration);
        let parameters = RuntimeParameters::read(&self.client, &self.source_location()).await?;
        self.note_read(&parameters.origin, &parameters.runtime_id);
        Ok(parameters)
    }

    /// What the reconcile remembers between runs. Never held across an
    /// `await`.
    pub(super) fn remembered(&self) -> MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_read(&self, origin: &SourceOrigin, runtime_id: &str) {
        let mut remembered = self.remembered();
        if remembered.note_source(origin) {
            tracing::info!(source = %origin, "reading the connection configuration from {origin}");
        }
        remembered.note_runtime_id(runtime_id);
    }

    /// The `x-request-id` of one reconcile's Compass requests, as the original
    /// agent makes it: `<runtime id>_<uuid>` (Compass's logs are searched by
    /// it). The runtime id is read from the configuration once; while it
    /// cannot be read, the id starts with `_`, as the original's does.
    pub(super) async fn new_request_id(&self) -> String {
        let known = self.remembered().runtime_id();
        let runtime_id = match known {
            Some(runtime_id) => runtime_id,
            None => self
                .read_runtime_parameters()
                .await
                .map(|parameters| parameters.runtime_id)
                .unwrap_or_default(),
        };
        request_id(&runtime_id, uuid::Uuid::new_v4())
    }

    /// Reads the connection parameters, and says in the log when they come
    /// from another place than last time (e.g. the ConfigMap, there being no
    /// Secret).
    pub(super) async fn read_parameters(&self) -> Result<ConnectionParameters, SourceError> {
        let _waiting = self.progress.waiting(Wait::Configuration);
        let parameters = ConnectionParameters::read(&self.client, &self.source_location()).await?;
        self.note_read(&parameters.origin, &parameters.runtime_id);
        Ok(parameters)
    }

    /// When the last reconcile scheduled the next attempt (unknown after a restart).
    pub(super) fn next_attempt_at(&self) -> Option<Timestamp> {
        self.remembered().backoff.next_attempt_at
    }

    /// Forget failures: the next attempt may come at once (after the minimal
    /// sync time). Each caller is a [`Cause::Reset`]: the configuration source
    /// changed (watched, or polled where it may not be watched), the
    /// operator deleted `compass-connection`, or a new leader term starts.
    pub fn reset_backoff(&self) {
        self.schedule(Timestamp::now(), Cause::Reset, None);
    }

    /// A client for `url`: with `credentials`, over the kept mTLS client of
    /// that certificate (built the first time, and anew after a renewal);
    /// without, one of its own (the token-secured Connector, seldom used).
    pub(super) fn graphql(
        &self,
        url: &str,
        credentials: Option<&ClientCredentials>,
        request_id: &str,
    ) -> Result<GraphqlClient, CompassError> {
        let client = match credentials {
            Some(credentials) => {
                GraphqlClient::with_http(self.compass_http(credentials)?, url, &self.tls)?
            }
            None => GraphqlClient::new(url, &self.tls, None)?,
        };
        Ok(client
            .with_request_id(request_id)
            .with_metrics(self.compass_metrics.clone())
            .with_query_logging(self.settings.query_logging))
    }

    fn compass_http(
        &self,
        credentials: &ClientCredentials,
    ) -> Result<reqwest::Client, CompassError> {
        self.remembered()
            .compass_http(credentials.certificate_pem(), || {
                crate::compass::graphql::build_http(&self.tls, Some(credentials))
            })
    }

    /// Whether this maintenance asks the Connector (see
    /// [`decide::connector_check_due`]).
    pub(super) fn connector_check_due(
        &self,
        now: Timestamp,
        renewal_due: bool,
        refresh_asked: bool,
    ) -> bool {
        let check = self.remembered().connector_check(
            now,
            self.settings.connector_check_interval,
            renewal_due,
            refresh_asked,
        );
        decide::connector_check_due(check)
    }
}

impl Context {
    /// The next run after `cause`, as [`decide::next_run`] decides it, and
    /// what it remembers for the reconciles that come before it (those our
    /// own writes trigger only wait: without this, every status write would
    /// start a new cycle after the minimal sync time instead of after the
    /// sync period).
    pub(super) fn schedule(
        &self,
        now: Timestamp,
        cause: Cause,
        certificate: Option<&CertificateInfo>,
    ) -> Run {
        let settings = &self.settings;
        let renewal_due_at = certificate.map(|info| {
            renewal::renewal_due_at(
                info,
                settings.cert_validity_renewal_threshold,
                settings.minimal_compass_sync_time,
            )
        });
        let mut remembered = self.remembered();
        let started = std::time::Instant::now();
        let next = decide::next_run(NextRunInput {
            now,
            cause,
            backoff: remembered.backoff,
            renewal_due_at,
            sync_period: settings.controller_sync_period,
            minimal_sync_time: settings.minimal_compass_sync_time,
            max_retry_delay: settings.max_retry_delay,
            jitter: rand::random(),
        });
        remembered.backoff = next.backoff;
        let next_at = match next.run {
            Run::After(delay) => started.checked_add(delay),
            Run::OnChange => None,
        };
        match (cause, next_at) {
            // The cycle's outcome is in compass-connection.
            (Cause::Cycle(_), next_at) => self.progress.recorded(next_at),
            // It is not (or there was no cycle): the due time it answered stays.
            (_, Some(at)) => self.progress.due_at(at),
            (_, None) => {}
        }
        next.run
    }
}

/// `<runtime id>_<uuid>`.
fn request_id(runtime_id: &str, id: uuid::Uuid) -> String {
    format!("{runtime_id}_{id}")
}

#[cfg(test)]
mod request_id_tests {
    use super::request_id;

    #[test]
    fn request_ids_start_with_the_runtime_id_as_the_original_agent_makes_them() {
        let id = uuid::Uuid::from_u128(0x1234);
        assert_eq!(
            request_id("runtime-1", id),
            "runtime-1_00000000-0000-0000-0000-000000001234"
        );
        assert_eq!(request_id("", id), "_00000000-0000-0000-0000-000000001234");
    }
}
