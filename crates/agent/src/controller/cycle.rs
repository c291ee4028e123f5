//! One reconcile of `compass-connection`: establish or maintain the connection,
//! then synchronize Applications, then report. Decisions come from `decide`;
//! this file does the I/O around them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::Client;
use tracing::Instrument;

use super::decide::{self, Step};
use super::errors::{ConnectionError, ReconcileError, SyncError};
use super::metrics::{AgentMetrics, ControllerMetrics};
use crate::certificates::{self, renewal, ClientCredentials, KeyAlgorithm, Subject};
use crate::compass::connector::{ConnectorClient, CsrInfo};
use crate::compass::director::{DirectorClient, RuntimeLabelValues};
use crate::compass::metrics::CompassMetrics;
use crate::compass::{GraphqlClient, TlsSettings};
use crate::config::{
    ConnectionParameters, Settings, SourceError, SourceKind, SourceLocation, SourceOrigin,
};
use crate::crd::compass_connection::{
    CertificateStatus, CompassConnection, CompassConnectionStatus, ConnectionState, ManagementInfo,
    SyncOperation, SynchronizationStatus,
};
use crate::k8s::access::Access;
use crate::k8s::applications::{ApplicationWriter, ApplyOutcome, Replacement};
use crate::k8s::connection::{initial_status, ConnectionStore, ConnectionStoreError};
use crate::k8s::credentials_store::CredentialsStore;
use crate::k8s::events::EventRecorder;
use crate::sync::{self, names, ConversionSettings, PendingApplication};
use crate::telemetry::health::Readiness;

pub const EVENTS_URL_LABEL: &str = "runtime_eventServiceUrl";
pub const CONSOLE_URL_LABEL: &str = "runtime_consoleUrl";

/// Longest error text written to the status.
const MAX_ERROR_LEN: usize = 2000;

/// What the agent remembers between reconciles (lost on restart, by design:
/// everything that matters is in the cluster).
#[derive(Default)]
struct Memory {
    consecutive_failures: u32,
    next_attempt_at: Option<Timestamp>,
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub connections: ConnectionStore,
    pub credentials: CredentialsStore,
    pub applications: ApplicationWriter,
    pub tls: TlsSettings,
    pub conversion: ConversionSettings,
    pub metrics: Arc<ControllerMetrics>,
    compass_metrics: Arc<CompassMetrics>,
    pub readiness: Arc<Readiness>,
    pub events: EventRecorder,
    /// What the agent may do beyond its basic verbs (see `k8s::access`).
    pub access: Arc<Access>,
    memory: Mutex<Memory>,
    /// Where the connection parameters were last read from (for the status).
    configuration_source: Mutex<Option<SourceOrigin>>,
    /// Survives `reset_backoff`: it is not a backoff, it is a spent token's worth.
    pending_signing: Mutex<Option<PendingSigning>>,
}

/// What the Connector's token-secured `configuration` answered to the
/// configured one-time token. The Connector spends that token on
/// `configuration`; keeping the answer until the certificate is signed means a
/// signing step that fails on the way (a timeout, a 503) is retried with it
/// instead of wasting the operator's token.
#[derive(Clone)]
struct PendingSigning {
    /// A digest of the connection parameters it was obtained with: a changed
    /// configuration (e.g. a new token) is used instead.
    parameters_digest: String,
    csr_token: String,
    csr_info: CsrInfo,
    management_info: ManagementInfo,
}

fn parameters_digest(parameters: &ConnectionParameters) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    for part in [
        &parameters.connector_url,
        &parameters.runtime_id,
        &parameters.tenant,
        &parameters.token,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

struct Established {
    credentials: ClientCredentials,
    management_info: ManagementInfo,
}

struct Maintained {
    credentials: ClientCredentials,
    management_info: Option<ManagementInfo>,
    renewed: bool,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: &AgentMetrics,
        readiness: Arc<Readiness>,
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
            applications: ApplicationWriter::new(
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
            memory: Mutex::new(Memory::default()),
            configuration_source: Mutex::new(None),
            pending_signing: Mutex::new(None),
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

    /// Reads the connection parameters, and says in the log when they come
    /// from another place than last time (e.g. the ConfigMap, there being no
    /// Secret).
    async fn read_parameters(&self) -> Result<ConnectionParameters, SourceError> {
        let parameters = ConnectionParameters::read(&self.client, &self.source_location()).await?;
        let mut last = self
            .configuration_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&parameters.origin) {
            tracing::info!(source = %parameters.origin, "reading the connection configuration from {}", parameters.origin);
            *last = Some(parameters.origin.clone());
        }
        Ok(parameters)
    }

    fn configuration_source(&self) -> Option<String> {
        self.configuration_source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(ToString::to_string)
    }

    fn pending_signing(&self) -> MutexGuard<'_, Option<PendingSigning>> {
        self.pending_signing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget failures: the next attempt may come at once (after the minimal
    /// sync time). Called when the operator changes the configuration or
    /// deletes `compass-connection`.
    pub fn reset_backoff(&self) {
        *self.memory() = Memory::default();
    }

    fn graphql(
        &self,
        url: &str,
        credentials: Option<&ClientCredentials>,
        request_id: &str,
    ) -> Result<GraphqlClient, ConnectionError> {
        Ok(GraphqlClient::new(url, &self.tls, credentials)?
            .with_request_id(request_id)
            .with_metrics(self.compass_metrics.clone())
            .with_query_logging(self.settings.query_logging))
    }
}

/// The reconcile entry point for the kube-runtime controller.
pub async fn reconcile(
    connection: Arc<CompassConnection>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("reconcile", request_id = %request_id, runtime_id = tracing::field::Empty);
    // The controller's cache may lag behind our own last writes (a spec write
    // is seen before the status write that followed it); acting on a stale
    // ConnectionFailed would spend the token again. Read the object fresh.
    let fresh = match ctx.connections.get().await {
        Ok(Some(fresh)) => fresh,
        Ok(None) => return Ok(Action::await_change()),
        Err(error) => {
            tracing::warn!(%error, "cannot read compass-connection afresh; reconciling the controller's copy");
            connection.as_ref().clone()
        }
    };
    let result = reconcile_once(&fresh, &ctx, &request_id)
        .instrument(span)
        .await;
    ctx.metrics.record_reconcile(result.is_ok());
    result
}

/// After a reconcile failed as a whole (its status could not be written).
pub fn error_policy(
    _connection: Arc<CompassConnection>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    match error {
        ReconcileError::Store(ConnectionStoreError::Conflict) => {
            Action::requeue(Duration::from_millis(200))
        }
        ReconcileError::Store(ConnectionStoreError::Gone) => Action::await_change(),
        ReconcileError::Store(_) => {
            tracing::warn!(%error, "cannot record the reconcile; retrying");
            Action::requeue(ctx.note_failure(Timestamp::now()))
        }
    }
}

impl Context {
    /// Counts a failure and returns how long to wait before the next attempt.
    fn note_failure(&self, now: Timestamp) -> Duration {
        let mut memory = self.memory();
        memory.consecutive_failures = memory.consecutive_failures.saturating_add(1);
        let base = self
            .settings
            .minimal_compass_sync_time
            .max(Duration::from_secs(1));
        let delay = decide::backoff_delay(
            memory.consecutive_failures,
            base,
            self.settings.max_retry_delay,
            rand::random(),
        );
        memory.next_attempt_at = jiff::SignedDuration::try_from(delay)
            .ok()
            .and_then(|d| now.checked_add(d).ok());
        delay
    }

    /// Forgets failures and schedules the next attempt `delay` from `now`.
    /// Reconciles that our own writes trigger before then only wait: without
    /// this, every status write would start a new cycle after the minimal
    /// sync time instead of after the sync period.
    fn note_success(&self, now: Timestamp, delay: Duration) {
        let mut memory = self.memory();
        memory.consecutive_failures = 0;
        memory.next_attempt_at = jiff::SignedDuration::try_from(delay)
            .ok()
            .and_then(|d| now.checked_add(d).ok());
    }
}

async fn reconcile_once(
    connection: &CompassConnection,
    ctx: &Context,
    request_id: &str,
) -> Result<Action, ReconcileError> {
    let now = Timestamp::now();
    let spec = &connection.spec;
    let previous = connection.status.clone().unwrap_or_else(initial_status);
    let next_attempt_at = ctx.memory().next_attempt_at;
    let step = decide::next_step(
        now,
        spec,
        &previous,
        ctx.settings.minimal_compass_sync_time,
        next_attempt_at,
    );
    if let Step::Wait(delay) = step {
        return Ok(Action::requeue(delay));
    }

    let mut status = previous.clone();
    let mut management_info = spec.management_info.clone();
    let mut clear_refresh = false;
    let mut failure: Option<String> = None;
    status.connection_status.last_sync = Some(Time(now));

    let credentials = match step {
        Step::Establish => match establish(ctx, request_id).await {
            Ok(established) => {
                tracing::info!(subject = %established.credentials.info().subject, "connection to Compass established");
                ctx.metrics.record_establishment(true);
                management_info = established.management_info;
                let cs = &mut status.connection_status;
                cs.established = Some(Time(now));
                cs.last_success = Some(Time(now));
                cs.error.clear();
                cs.certificate_status = certificate_status(&established.credentials, now);
                status.connection_state = ConnectionState::Connected;
                // A fresh certificate also answers a pending renewal request.
                clear_refresh = spec.refresh_credentials_now;
                Some(established.credentials)
            }
            Err(error) => {
                tracing::warn!(%error, category = error.category(), "cannot establish the connection to Compass");
                ctx.metrics.record_establishment(false);
                status.connection_state = ConnectionState::ConnectionFailed;
                status.connection_status.error = bounded(&error.to_string());
                failure = Some(error.category().to_string());
                None
            }
        },
        Step::Maintain => match maintain(ctx, &connection.spec, request_id, now).await {
            Ok(maintained) => {
                let cs = &mut status.connection_status;
                cs.last_success = Some(Time(now));
                cs.error.clear();
                if maintained.renewed {
                    tracing::info!(not_after = %maintained.credentials.info().not_after, "client certificate renewed");
                    cs.renewed = Some(Time(now));
                    cs.certificate_status = certificate_status(&maintained.credentials, now);
                    clear_refresh = spec.refresh_credentials_now;
                    ctx.events
                        .publish_normal(
                            connection,
                            "CertificateRenewed",
                            "the client certificate was renewed",
                        )
                        .await;
                } else {
                    let acquired = cs.certificate_status.acquired.clone();
                    cs.certificate_status = certificate_status(&maintained.credentials, now);
                    cs.certificate_status.acquired = acquired.or(Some(Time(now)));
                }
                if let Some(info) = maintained.management_info {
                    management_info = info;
                }
                if !status.connection_state.is_connected() {
                    status.connection_state = ConnectionState::Connected;
                }
                Some(maintained.credentials)
            }
            Err(error) => {
                let state = if error.requires_new_connection() {
                    ConnectionState::ConnectionFailed
                } else {
                    ConnectionState::ConnectionMaintenanceFailed
                };
                tracing::warn!(%error, category = error.category(), next = %state, "cannot maintain the connection to Compass");
                status.connection_state = state;
                status.connection_status.error = bounded(&error.to_string());
                failure = Some(error.category().to_string());
                None
            }
        },
        Step::Wait(_) => unreachable!("handled above"),
    };

    let mut clear_resync = false;
    if let Some(credentials) = &credentials {
        ctx.readiness
            .set_certificate(credentials.info().not_before, credentials.info().not_after);
        ctx.metrics
            .set_certificate_not_after(credentials.info().not_after.as_second());
        if decide::sync_due(
            now,
            spec,
            status.synchronization_status.as_ref(),
            ctx.settings.minimal_compass_sync_time,
        ) {
            clear_resync = spec.resync_now;
            let synchronized = synchronize(
                ctx,
                credentials,
                &management_info,
                status.synchronization_status.take(),
                now,
                request_id,
            )
            .await;
            if let Some(category) = synchronized.failure {
                failure = Some(category.to_string());
            }
            status.connection_state = synchronized.state;
            status.synchronization_status = Some(synchronized.status);
            for replacement in &synchronized.replaced {
                ctx.events
                    .publish_about_application(
                        connection,
                        &replacement.new,
                        "ApplicationReplaced",
                        &format!(
                            "Application {} was replaced by {}: the Director application is named so now (see the runtime label isNormalized)",
                            replacement.old, replacement.new
                        ),
                    )
                    .await;
            }
        }
    } else if status.connection_state == ConnectionState::ConnectionFailed {
        ctx.readiness.clear();
    }

    if let Some(source) = ctx.configuration_source() {
        status.connection_status.configuration_source = source;
    }
    let certificate = credentials.as_ref().map(|c| c.info().clone());
    let error_text = current_error(&status);
    // Validity is judged now, not at the start of the reconcile: a certificate
    // issued during it is valid from a later second.
    status.conditions = decide::conditions(
        &previous.conditions,
        status.connection_state,
        &error_text,
        certificate.as_ref(),
        Timestamp::now(),
        connection.metadata.generation,
    );
    status.observed_generation = connection.metadata.generation;
    ctx.metrics.set_connection_state(status.connection_state);
    ctx.events
        .publish_outcome(
            connection,
            previous.connection_state,
            status.connection_state,
            failure.as_deref(),
            &error_text,
        )
        .await;

    let uid = connection.metadata.uid.as_deref();
    if management_info != spec.management_info || clear_resync || clear_refresh {
        let written = ctx
            .connections
            .update_spec(
                uid,
                connection.metadata.resource_version.as_deref(),
                &management_info,
                clear_resync,
                clear_refresh,
            )
            .await;
        let written = match written {
            // Someone changed the object meanwhile; keep what they set (a
            // flag stays for the next cycle), but record the URLs.
            Err(ConnectionStoreError::Conflict) => {
                ctx.connections
                    .update_spec(uid, None, &management_info, false, false)
                    .await
            }
            other => other,
        };
        if let Err(error) = written {
            // The status still tells what happened (e.g. that a token was spent).
            ctx.connections.write_status(uid, &status).await?;
            return Err(error.into());
        }
    }
    ctx.connections.write_status(uid, &status).await?;

    let delay = match failure {
        Some(_)
            if status.connection_state == ConnectionState::ConnectionFailed
                && step == Step::Maintain =>
        {
            // The certificate stopped working: connect anew without waiting
            // out a backoff.
            let delay = ctx.settings.minimal_compass_sync_time;
            ctx.note_success(now, delay);
            delay
        }
        Some(_) => ctx.note_failure(now),
        None => {
            let renewal = certificate.as_ref().map(|info| {
                renewal::renewal_due_at(
                    info,
                    ctx.settings.cert_validity_renewal_threshold,
                    ctx.settings.minimal_compass_sync_time,
                )
            });
            let delay =
                decide::requeue_after_success(now, ctx.settings.controller_sync_period, renewal);
            ctx.note_success(now, delay);
            delay
        }
    };
    Ok(Action::requeue(delay))
}

fn current_error(status: &CompassConnectionStatus) -> String {
    if !status.connection_status.error.is_empty() {
        return status.connection_status.error.clone();
    }
    status
        .synchronization_status
        .as_ref()
        .map(|s| s.error.clone())
        .unwrap_or_default()
}

fn certificate_status(credentials: &ClientCredentials, acquired: Timestamp) -> CertificateStatus {
    CertificateStatus {
        acquired: Some(Time(acquired)),
        not_before: Some(Time(credentials.info().not_before)),
        not_after: Some(Time(credentials.info().not_after)),
    }
}

/// Trades the configured one-time token for a certificate.
async fn establish(ctx: &Context, request_id: &str) -> Result<Established, ConnectionError> {
    let parameters = ctx.read_parameters().await?;
    tracing::Span::current().record("runtime_id", parameters.runtime_id.as_str());
    ctx.credentials.check_writable().await?;
    let connector =
        ConnectorClient::new(ctx.graphql(&parameters.connector_url, None, request_id)?);
    let digest = parameters_digest(&parameters);
    let pending = ctx
        .pending_signing()
        .take()
        .filter(|pending| pending.parameters_digest == digest);
    let pending = match pending {
        Some(pending) => {
            tracing::info!("signing with the Connector's answer to the configured token from an earlier attempt (the token itself is spent)");
            pending
        }
        None => configure_with_token(&connector, &parameters.token, digest).await?,
    };
    match request_certificate(&connector, &pending.csr_info, Some(&pending.csr_token)).await {
        Ok(credentials) => {
            // Persisted before it is used: a crash now loses nothing.
            ctx.credentials.save(&credentials).await?;
            Ok(Established {
                credentials,
                management_info: pending.management_info,
            })
        }
        Err(ConnectionError::Compass(error)) if error.is_transient() => {
            *ctx.pending_signing() = Some(pending);
            Err(ConnectionError::Compass(error))
        }
        Err(error) => Err(error),
    }
}

/// The token-secured `configuration`: spends the one-time token.
async fn configure_with_token(
    connector: &ConnectorClient,
    token: &str,
    parameters_digest: String,
) -> Result<PendingSigning, ConnectionError> {
    let configuration = connector.configuration(Some(token)).await?;
    let csr_token = configuration
        .token
        .as_ref()
        .map(|t| t.token.clone())
        .ok_or(ConnectionError::MissingField("token"))?;
    let csr_info = configuration
        .certificate_signing_request_info
        .clone()
        .ok_or(ConnectionError::MissingField(
            "certificateSigningRequestInfo",
        ))?;
    let plane = configuration
        .management_plane_info
        .clone()
        .ok_or(ConnectionError::MissingField("managementPlaneInfo"))?;
    let management_info = ManagementInfo {
        director_url: plane.director_url.ok_or(ConnectionError::MissingField(
            "managementPlaneInfo.directorURL",
        ))?,
        connector_url: plane.certificate_secured_connector_url.ok_or(
            ConnectionError::MissingField("managementPlaneInfo.certificateSecuredConnectorURL"),
        )?,
    };
    Ok(PendingSigning {
        parameters_digest,
        csr_token,
        csr_info,
        management_info,
    })
}

/// Checks the connection with the stored certificate and renews it when due.
async fn maintain(
    ctx: &Context,
    spec: &crate::crd::CompassConnectionSpec,
    request_id: &str,
    now: Timestamp,
) -> Result<Maintained, ConnectionError> {
    let credentials = ctx.credentials.load().await?;
    if now >= credentials.info().not_after {
        return Err(ConnectionError::CertificateExpired(
            credentials.info().not_after,
        ));
    }
    tracing::Span::current().record("runtime_id", credentials.info().common_name.as_str());
    if spec.management_info.connector_url.is_empty() {
        return Err(ConnectionError::NoConnectorUrl);
    }
    let connector = ConnectorClient::new(ctx.graphql(
        &spec.management_info.connector_url,
        Some(&credentials),
        request_id,
    )?);
    let configuration = connector.configuration(None).await?;
    let management_info = configuration
        .management_plane_info
        .as_ref()
        .and_then(|plane| {
            Some(ManagementInfo {
                director_url: plane.director_url.clone()?,
                connector_url: plane.certificate_secured_connector_url.clone()?,
            })
        });
    let due = renewal::renewal_due(
        credentials.info(),
        now,
        ctx.settings.cert_validity_renewal_threshold,
        ctx.settings.minimal_compass_sync_time,
    );
    if !(due || spec.refresh_credentials_now) {
        return Ok(Maintained {
            credentials,
            management_info,
            renewed: false,
        });
    }
    let csr_info =
        configuration
            .certificate_signing_request_info
            .ok_or(ConnectionError::MissingField(
                "certificateSigningRequestInfo",
            ))?;
    let renewed = request_certificate(&connector, &csr_info, None).await;
    ctx.metrics.record_renewal(renewed.is_ok());
    let renewed = renewed?;
    ctx.credentials.save(&renewed).await?;
    Ok(Maintained {
        credentials: renewed,
        management_info,
        renewed: true,
    })
}

/// Makes a key and CSR as the Connector asks, has it signed, and checks the
/// answer against the key and subject before anything is stored.
async fn request_certificate(
    connector: &ConnectorClient,
    csr_info: &CsrInfo,
    token: Option<&str>,
) -> Result<ClientCredentials, ConnectionError> {
    let subject = Subject::parse(&csr_info.subject).map_err(|e| {
        ConnectionError::Certificate(certificates::CertificateError::InvalidCertificate {
            what: "subject from the Connector",
            reason: e.to_string(),
        })
    })?;
    let algorithm = KeyAlgorithm::parse(&csr_info.key_algorithm)?;
    let for_key = subject.clone();
    let generated =
        tokio::task::spawn_blocking(move || certificates::generate_csr(&for_key, algorithm))
            .await
            .map_err(|e| ConnectionError::KeyGenerationTask(e.to_string()))??;
    let result = connector.sign_csr(&generated.csr_pem, token).await?;
    Ok(ClientCredentials::from_connector(
        generated.key_pem,
        &result.certificate_chain,
        &result.ca_certificate,
        &result.client_certificate,
        &subject,
    )?)
}

/// What a synchronization did.
struct SyncOutcome {
    state: ConnectionState,
    status: SynchronizationStatus,
    /// The category of its failure, if it failed.
    failure: Option<&'static str>,
    /// Applications replaced by one under a new name.
    replaced: Vec<Replacement>,
}

/// Fetches, plans, applies and labels. Never deletes anything unless the fetch
/// succeeded completely.
async fn synchronize(
    ctx: &Context,
    credentials: &ClientCredentials,
    management_info: &ManagementInfo,
    previous: Option<SynchronizationStatus>,
    now: Timestamp,
    request_id: &str,
) -> SyncOutcome {
    let started = Instant::now();
    let mut sync = previous.unwrap_or_default();
    sync.last_attempt = Some(Time(now));
    sync.error.clear();
    let outcome = synchronize_inner(
        ctx,
        credentials,
        management_info,
        &mut sync,
        now,
        request_id,
    )
    .await;
    ctx.metrics.record_sync(started.elapsed().as_secs_f64());
    let mut replaced = Vec::new();
    let (state, failure) = match outcome {
        Ok((ConnectionState::Synchronized, done)) => {
            replaced = done;
            (ConnectionState::Synchronized, None)
        }
        // Some Applications could not be written; the result of each is in the status.
        Ok((state, done)) => {
            replaced = done;
            (state, Some("ResourceApplicationFailed"))
        }
        Err(error) => {
            let state = match error {
                SyncError::Labels(_) => ConnectionState::MetadataUpdateFailed,
                SyncError::ReadCluster(_) => ConnectionState::ResourceApplicationFailed,
                SyncError::Configuration(_) | SyncError::Fetch(_) => {
                    ConnectionState::SynchronizationFailed
                }
            };
            tracing::warn!(%error, "synchronization failed");
            sync.error = bounded(&error.to_string());
            (state, Some(error.category()))
        }
    };
    if state == ConnectionState::Synchronized {
        ctx.metrics.set_last_successful_sync(now.as_second());
    }
    SyncOutcome {
        state,
        status: sync,
        failure,
        replaced,
    }
}

async fn synchronize_inner(
    ctx: &Context,
    credentials: &ClientCredentials,
    management_info: &ManagementInfo,
    sync: &mut SynchronizationStatus,
    now: Timestamp,
    request_id: &str,
) -> Result<(ConnectionState, Vec<Replacement>), SyncError> {
    let parameters = ctx.read_parameters().await?;
    let graphql = ctx
        .graphql(&management_info.director_url, Some(credentials), request_id)
        .map_err(|e| match e {
            ConnectionError::Compass(compass) => SyncError::Fetch(compass),
            other => SyncError::Fetch(crate::compass::CompassError::Tls {
                reason: other.to_string(),
            }),
        })?;
    let director = DirectorClient::new(
        graphql,
        &parameters.runtime_id,
        &parameters.tenant,
        ctx.settings.director_page_size,
    );
    // The Director and the cluster are read at the same time; nothing is
    // planned (so nothing deleted) unless the fetch succeeded completely.
    let fetch = async {
        let started = Instant::now();
        // Each Director application is converted and packed as it arrives:
        // the fetched forms of a thousand applications are never all in memory.
        let mut wanted = Vec::new();
        let mut conversion: Option<ConversionSettings> = None;
        let labels = director
            .for_each_application(|labels, app| {
                // The runtime's labels decide how Applications are named.
                let conversion = conversion.get_or_insert_with(|| ConversionSettings {
                    normalize_application_names: names::normalizes_application_names(labels),
                    ..ctx.conversion.clone()
                });
                let converted = sync::to_wanted_application(&app, conversion);
                wanted.push(PendingApplication::from(converted));
            })
            .await
            .map_err(SyncError::Fetch)?;
        Ok::<_, SyncError>((wanted, labels, started.elapsed()))
    };
    let read_cluster = async {
        let started = Instant::now();
        let actual = ctx.applications.read_actual().await?;
        Ok::<_, SyncError>((actual, started.elapsed()))
    };
    let (fetched, read) = tokio::join!(fetch, read_cluster);
    let (wanted, runtime_labels, fetch_time) = fetched?;
    sync.last_successful_fetch = Some(Time(now));
    let (mut actual, read_time) = read?;
    if !actual.secrets_listed {
        let wanted_secrets: Vec<String> = wanted
            .iter()
            .flat_map(|app| &app.secrets)
            .map(|secret| secret.name.clone())
            .collect();
        ctx.applications
            .read_named_secrets(&mut actual, wanted_secrets)
            .await?;
    }
    let wanted_count = wanted.len();
    let phase = Instant::now();
    let plan = sync::plan(wanted, &actual);
    drop(actual);
    let planned_writes = plan.writes();
    let ApplyOutcome { results, replaced } = ctx.applications.apply(plan).await;
    let apply_time = phase.elapsed();
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.operation == SyncOperation::Failed)
        .collect();
    tracing::info!(
        applications = wanted_count,
        writes = planned_writes,
        failed = failed.len(),
        fetch_ms = fetch_time.as_millis() as u64,
        read_cluster_ms = read_time.as_millis() as u64,
        apply_ms = apply_time.as_millis() as u64,
        "applications synchronized"
    );
    ctx.metrics.set_applications_managed(wanted_count);
    let state = if failed.is_empty() {
        sync.last_successful_application = Some(Time(now));
        ConnectionState::Synchronized
    } else {
        let names: Vec<String> = failed
            .iter()
            .map(|r| format!("{}: {}", r.name, r.error))
            .collect();
        sync.error = bounded(&format!(
            "{} of {} applications could not be synchronized: {}",
            failed.len(),
            results.len(),
            names.join("; ")
        ));
        ConnectionState::ResourceApplicationFailed
    };
    sync.applications = results;

    match label_runtime(ctx, &director, &runtime_labels).await {
        // A failed application is the more important news: keep it as the state.
        Err(error) if state == ConnectionState::Synchronized => Err(error),
        Err(error) => {
            sync.error = bounded(&format!("{}; {error}", sync.error));
            Ok((state, replaced))
        }
        Ok(()) => Ok((state, replaced)),
    }
}

/// Sets the Runtime's URL labels that are missing or differ, and no others.
/// `labels` are the Runtime's labels as read with the applications.
async fn label_runtime(
    ctx: &Context,
    director: &DirectorClient,
    labels: &RuntimeLabelValues,
) -> Result<(), SyncError> {
    for (key, value) in [
        (EVENTS_URL_LABEL, ctx.settings.runtime_events_url.as_str()),
        (CONSOLE_URL_LABEL, ctx.settings.runtime_console_url.as_str()),
    ] {
        if labels.get(key).and_then(|v| v.as_str()) != Some(value) {
            director
                .set_runtime_label(key, value)
                .await
                .map_err(SyncError::Labels)?;
        }
    }
    Ok(())
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_ERROR_LEN {
        return text.to_string();
    }
    let mut cut = MAX_ERROR_LEN;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}
