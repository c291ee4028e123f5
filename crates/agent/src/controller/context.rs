//! Everything a reconcile needs (clients, stores, settings, telemetry), and
//! what the agent remembers between reconciles: the backoff, where the
//! configuration was read from, and a spent token's answer.

use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use kube::Client;

use super::connection::PendingSigning;
use super::decide::{self, Backoff, Cause, NextRunInput, Run};
use super::metrics::{AgentMetrics, ControllerMetrics};
use super::progress::{CycleProgress, Wait};
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
use crate::telemetry::health::Readiness;

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
    pub readiness: Arc<Readiness>,
    /// Whether cycles record their outcomes, and what the one in flight
    /// waits for (see [`CycleProgress`]).
    pub progress: Arc<CycleProgress>,
    pub events: EventRecorder,
    /// What the agent may do beyond its basic verbs (see `k8s::access`).
    pub access: Arc<Access>,
    /// What the agent remembers of failures (see [`decide::next_run`]).
    backoff: Mutex<Backoff>,
    /// Where the connection parameters were last read from (for the status).
    configuration_source: Mutex<Option<SourceOrigin>>,
    /// Survives `reset_backoff`: it is not a backoff, it is a spent token's worth.
    pending_signing: Mutex<Option<PendingSigning>>,
    /// A CA certificate that could not be stored yet (the client certificate
    /// that came with it was).
    pending_ca: Mutex<Option<String>>,
    /// The runtime id last read from the configuration, for request ids.
    runtime_id: Mutex<Option<String>>,
    /// The mTLS client of the certificate in use, kept across cycles: its
    /// connections to Compass stay open, so an idle cycle costs no TLS
    /// handshake. Replaced when the certificate changes.
    compass_http: Mutex<Option<KeptClient>>,
    /// When the certificate-secured Connector was last asked, and whether
    /// something calls for asking it at the next cycle.
    connector: Mutex<ConnectorChecks>,
}

struct KeptClient {
    certificate_pem: String,
    http: reqwest::Client,
}

#[derive(Default)]
struct ConnectorChecks {
    last: Option<Timestamp>,
    /// The Director refused the certificate: the Connector may tell why
    /// (new URLs) or renew.
    wanted: bool,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: &AgentMetrics,
        readiness: Arc<Readiness>,
        progress: Arc<CycleProgress>,
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
            readiness,
            progress,
            // Nothing remembered at start: the first cycle runs at once.
            backoff: Mutex::new(Backoff::default()),
            configuration_source: Mutex::new(None),
            pending_signing: Mutex::new(None),
            pending_ca: Mutex::new(None),
            runtime_id: Mutex::new(None),
            compass_http: Mutex::new(None),
            connector: Mutex::new(ConnectorChecks::default()),
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
        self.note_source(&parameters.origin);
        self.note_runtime_id(&parameters.runtime_id);
        Ok(parameters)
    }

    fn note_runtime_id(&self, runtime_id: &str) {
        *self.runtime_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime_id.to_string());
    }

    /// The `x-request-id` of one reconcile's Compass requests, as the original
    /// agent makes it: `<runtime id>_<uuid>` (Compass's logs are searched by
    /// it). The runtime id is read from the configuration once; while it
    /// cannot be read, the id starts with `_`, as the original's does.
    pub(super) async fn new_request_id(&self) -> String {
        let known = self
            .runtime_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
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

    fn note_source(&self, origin: &SourceOrigin) {
        let mut last = self
            .configuration_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(origin) {
            tracing::info!(source = %origin, "reading the connection configuration from {origin}");
            *last = Some(origin.clone());
        }
    }

    /// Reads the connection parameters, and says in the log when they come
    /// from another place than last time (e.g. the ConfigMap, there being no
    /// Secret).
    pub(super) async fn read_parameters(&self) -> Result<ConnectionParameters, SourceError> {
        let _waiting = self.progress.waiting(Wait::Configuration);
        let parameters = ConnectionParameters::read(&self.client, &self.source_location()).await?;
        self.note_source(&parameters.origin);
        self.note_runtime_id(&parameters.runtime_id);
        Ok(parameters)
    }

    pub(super) fn configuration_source(&self) -> Option<String> {
        self.configuration_source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(ToString::to_string)
    }

    pub(super) fn pending_signing(&self) -> MutexGuard<'_, Option<PendingSigning>> {
        self.pending_signing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn pending_ca(&self) -> Option<String> {
        self.pending_ca
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_pending_ca(&self, ca: Option<String>) {
        *self.pending_ca.lock().unwrap_or_else(|e| e.into_inner()) = ca;
    }

    /// When the last reconcile scheduled the next attempt (unknown after a restart).
    pub(super) fn next_attempt_at(&self) -> Option<Timestamp> {
        self.backoff().next_attempt_at
    }

    fn backoff(&self) -> MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut kept = self.compass_http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = kept.as_ref() {
            if kept.certificate_pem == credentials.certificate_pem() {
                return Ok(kept.http.clone());
            }
        }
        let http = crate::compass::graphql::build_http(&self.tls, Some(credentials))?;
        *kept = Some(KeptClient {
            certificate_pem: credentials.certificate_pem().to_string(),
            http: http.clone(),
        });
        Ok(http)
    }

    /// Whether this maintenance asks the Connector (see
    /// [`decide::connector_check_due`]).
    pub(super) fn connector_check_due(
        &self,
        now: Timestamp,
        renewal_due: bool,
        refresh_asked: bool,
    ) -> bool {
        let checks = self.connector.lock().unwrap_or_else(|e| e.into_inner());
        decide::connector_check_due(decide::ConnectorCheck {
            now,
            last: checks.last,
            interval: self.settings.connector_check_interval,
            renewal_due,
            refresh_asked,
            director_refused: checks.wanted,
        })
    }

    /// The Connector answered at `now`.
    pub(super) fn note_connector_checked(&self, now: Timestamp) {
        let mut checks = self.connector.lock().unwrap_or_else(|e| e.into_inner());
        checks.last = Some(now);
        checks.wanted = false;
    }

    /// The Director refused the certificate: ask the Connector next time.
    pub(super) fn want_connector_check(&self) {
        self.connector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wanted = true;
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
        let mut backoff = self.backoff();
        let started = std::time::Instant::now();
        let next = decide::next_run(NextRunInput {
            now,
            cause,
            backoff: *backoff,
            renewal_due_at,
            sync_period: settings.controller_sync_period,
            minimal_sync_time: settings.minimal_compass_sync_time,
            max_retry_delay: settings.max_retry_delay,
            jitter: rand::random(),
        });
        *backoff = next.backoff;
        let next_at = match next.run {
            Run::After(delay) => started.checked_add(delay),
            Run::OnChange => None,
        };
        match (cause, next_at) {
            // The cycle's outcome is in compass-connection.
            (Cause::Cycle(_), next_at) => self.progress.recorded(next_at),
            // It is not: the due time it answered stays.
            (Cause::WriteFailed(_) | Cause::Reset, Some(at)) => self.progress.due_at(at),
            (Cause::WriteFailed(_) | Cause::Reset, None) => {}
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
