//! Establishing the connection with the one-time token, and maintaining it
//! with the stored certificate (renewing it when due).
//!
//! A certificate that is still valid is kept, whatever Compass answers: a
//! refusal may pass (an ingress or auth proxy misbehaving for a while), so
//! maintenance is retried with it. Only a certificate that can no longer
//! work (expired, gone from its Secret) sends the agent back to the
//! configured token. The operator's way out of a certificate Compass will
//! not renew (revoked, or from a rotated CA) is a new one-time token in the
//! configuration source: when maintenance fails and the token there is not
//! the one last presented, the agent connects anew with it, and the old
//! certificate is replaced only once the new one is stored and checked.

use jiff::Timestamp;

use super::context::Context;
use super::decide::{ConnectionOutcome, Step};
use super::errors::ConnectionError;
use crate::certificates::{self, renewal, ClientCredentials, KeyAlgorithm, Subject};
use crate::compass::connector::{ConnectorClient, CsrInfo};
use crate::config::ConnectionParameters;
use crate::crd::compass_connection::{CompassConnection, ManagementInfo};
use crate::crd::labels::PRESENTED_TOKEN_ANNOTATION;
use crate::report::{bounded, report, Report};

/// Longest error text written to the status.
pub(super) const MAX_ERROR_LEN: usize = 2000;

/// The category of a failure to store the credentials.
const STORAGE_CATEGORY: &str = "CredentialsStorage";

/// The outcome for the status, the credentials to work with, and the token
/// presented on the way (its digest, for the CompassConnection).
pub(super) struct Connected {
    pub outcome: ConnectionOutcome,
    pub credentials: Option<ClientCredentials>,
    pub presented_token: Option<String>,
}

/// A digest of a one-time token: what the CompassConnection records of the
/// token last presented, so that a new one is recognized (never the token).
pub(super) fn token_digest(token: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(token.as_bytes()))
}

/// Establishes (with the token) or maintains (with the certificate) the
/// connection, as `step` says; logs, counts and tells of a renewal.
pub(super) async fn connect(
    ctx: &Context,
    step: Step,
    connection: &CompassConnection,
    request_id: &str,
    now: Timestamp,
) -> Connected {
    let mut presented_token = None;
    let failed = |error: &ConnectionError, credentials_gone: bool| ConnectionOutcome::Failed {
        error: bounded(&report(error), MAX_ERROR_LEN),
        category: error.category(),
        credentials_gone,
    };
    let (outcome, credentials) = match step {
        Step::Establish => {
            let established = match ctx.read_parameters().await {
                Ok(parameters) => {
                    establish(ctx, &parameters, request_id, &mut presented_token).await
                }
                Err(error) => Err(error.into()),
            };
            match established {
                Ok(established) => established.connected(),
                Err(error) => {
                    tracing::warn!(error = %Report(&error), category = error.category(), "cannot establish the connection to Compass");
                    ctx.metrics.record_establishment(false);
                    (failed(&error, true), None)
                }
            }
        }
        Step::Maintain | Step::Wait(_) => {
            match maintain(ctx, &connection.spec, request_id, now).await {
                Ok(maintained) => {
                    if presented_digest(connection).is_none() {
                        // Connected before this agent recorded tokens (by the
                        // original, or an earlier version): the token in the
                        // configuration now is the one that was presented.
                        presented_token = ctx
                            .read_parameters()
                            .await
                            .ok()
                            .map(|parameters| token_digest(&parameters.token));
                    }
                    if maintained.renewed {
                        tracing::info!(not_after = %maintained.credentials.info().not_after, "client certificate renewed");
                        ctx.events
                            .publish_normal(
                                connection,
                                "CertificateRenewed",
                                "the client certificate was renewed",
                            )
                            .await;
                    }
                    (
                        ConnectionOutcome::Maintained {
                            certificate: maintained.credentials.info().clone(),
                            renewed: maintained.renewed,
                            management_info: maintained.management_info,
                            credentials_problem: maintained.ca_problem,
                        },
                        Some(maintained.credentials),
                    )
                }
                Err(error) if error.requires_new_connection() => {
                    tracing::warn!(error = %Report(&error), category = error.category(), "the client certificate can no longer work; connecting anew with the configured token");
                    (failed(&error, true), None)
                }
                Err(error) => {
                    tracing::warn!(error = %Report(&error), category = error.category(), "cannot maintain the connection to Compass; keeping the certificate");
                    match new_token(ctx, connection).await {
                        None if error.is_refusal() => {
                            // Tell the operator the way out of a certificate
                            // Compass no longer takes or renews.
                            let text = format!(
                                "{}; the client certificate is kept and retried while it is valid; a new one-time token in the configuration connects anew",
                                report(&error)
                            );
                            let outcome = ConnectionOutcome::Failed {
                                error: bounded(&text, MAX_ERROR_LEN),
                                category: error.category(),
                                credentials_gone: false,
                            };
                            (outcome, None)
                        }
                        None => (failed(&error, false), None),
                        Some(parameters) => {
                            tracing::info!(source = %parameters.origin, "a new one-time token is in the configuration: connecting anew with it");
                            match establish(ctx, &parameters, request_id, &mut presented_token)
                                .await
                            {
                                Ok(established) => established.connected(),
                                Err(second) => {
                                    tracing::warn!(error = %Report(&second), "the new one-time token did not connect either; keeping the certificate");
                                    ctx.metrics.record_establishment(false);
                                    let text = format!(
                                        "{}; the new one-time token in {} did not connect either: {}",
                                        report(&error),
                                        parameters.origin,
                                        report(&second)
                                    );
                                    let outcome = ConnectionOutcome::Failed {
                                        error: bounded(&text, MAX_ERROR_LEN),
                                        category: error.category(),
                                        credentials_gone: false,
                                    };
                                    (outcome, None)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Connected {
        outcome,
        credentials,
        presented_token,
    }
}

/// The connection parameters, when their token is not the one last
/// presented (as the CompassConnection records it): the operator's signal.
async fn new_token(ctx: &Context, connection: &CompassConnection) -> Option<ConnectionParameters> {
    let parameters = match ctx.read_parameters().await {
        Ok(parameters) => parameters,
        Err(error) => {
            tracing::debug!(error = %Report(&error), "no usable configuration to connect anew with");
            return None;
        }
    };
    (presented_digest(connection) != Some(&token_digest(&parameters.token))).then_some(parameters)
}

/// The digest of the token last presented, as the CompassConnection records it.
fn presented_digest(connection: &CompassConnection) -> Option<&String> {
    connection
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(PRESENTED_TOKEN_ANNOTATION))
}

/// What the Connector's token-secured `configuration` answered to the
/// configured one-time token. The Connector spends that token on
/// `configuration`; keeping the answer until the certificate is signed means a
/// signing step that fails on the way (a timeout, a 503) is retried with it
/// instead of wasting the operator's token.
#[derive(Clone)]
pub(super) struct PendingSigning {
    /// A digest of the connection parameters it was obtained with: a changed
    /// configuration (e.g. a new token) is used instead.
    parameters_digest: String,
    /// The token for the signing step; wiped from memory when dropped.
    csr_token: zeroize::Zeroizing<String>,
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

/// A certificate traded for the token, stored.
struct Established {
    credentials: ClientCredentials,
    management_info: ManagementInfo,
    /// Why the CA could not be stored, if it could not.
    ca_problem: Option<(String, &'static str)>,
}

impl Established {
    fn connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
        tracing::info!(subject = %self.credentials.info().subject, "connection to Compass established");
        (
            ConnectionOutcome::Established {
                certificate: self.credentials.info().clone(),
                management_info: self.management_info,
                credentials_problem: self.ca_problem,
            },
            Some(self.credentials),
        )
    }
}

struct Maintained {
    credentials: ClientCredentials,
    management_info: Option<ManagementInfo>,
    renewed: bool,
    ca_problem: Option<(String, &'static str)>,
}

/// Trades the one-time token of `parameters` for a certificate; records its
/// digest in `presented` once it is presented.
async fn establish(
    ctx: &Context,
    parameters: &ConnectionParameters,
    request_id: &str,
    presented: &mut Option<String>,
) -> Result<Established, ConnectionError> {
    tracing::Span::current().record("runtime_id", parameters.runtime_id.as_str());
    ctx.credentials.check_writable().await?;
    let connector =
        ConnectorClient::new(ctx.graphql(&parameters.connector_url, None, request_id)?);
    let digest = parameters_digest(parameters);
    let pending = ctx
        .pending_signing()
        .take()
        .filter(|pending| pending.parameters_digest == digest);
    let pending = match pending {
        Some(pending) => {
            tracing::info!("signing with the Connector's answer to the configured token from an earlier attempt (the token itself is spent)");
            pending
        }
        None => {
            *presented = Some(token_digest(&parameters.token));
            configure_with_token(&connector, &parameters.token, digest).await?
        }
    };
    match request_certificate(&connector, &pending.csr_info, Some(&pending.csr_token)).await {
        Ok(credentials) => {
            // Persisted before it is used: a crash now loses nothing.
            ctx.credentials.save_client(&credentials).await?;
            ctx.metrics.record_establishment(true);
            let ca_problem = store_ca(ctx, credentials.ca_pem()).await;
            Ok(Established {
                credentials,
                management_info: pending.management_info,
                ca_problem,
            })
        }
        Err(ConnectionError::Compass(error)) if error.is_transient() => {
            *ctx.pending_signing() = Some(pending);
            Err(ConnectionError::Compass(error))
        }
        Err(error) => Err(error),
    }
}

/// Stores the CA; when that fails, keeps it to store at the next cycle and
/// says why. The client certificate, stored already, stays in use: the
/// token that bought it is spent.
async fn store_ca(ctx: &Context, ca_pem: &str) -> Option<(String, &'static str)> {
    if ca_pem.trim().is_empty() {
        return None;
    }
    match ctx.credentials.save_ca(ca_pem).await {
        Ok(()) => {
            ctx.set_pending_ca(None);
            None
        }
        Err(error) => {
            tracing::warn!(error = %Report(&error), "cannot store the CA certificate; the client certificate is stored and in use; retrying at the next cycle");
            ctx.set_pending_ca(Some(ca_pem.to_string()));
            let text = format!(
                "the CA certificate is not stored yet (the client certificate is stored and in use; retrying): {}",
                report(&error)
            );
            Some((bounded(&text, MAX_ERROR_LEN), STORAGE_CATEGORY))
        }
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
        .map(|t| zeroize::Zeroizing::new(t.token.clone()))
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

/// Checks the connection with the stored certificate and renews it when due;
/// stores the CA when its Secret lacks it (a write that failed before).
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
    let mut ca_problem = None;
    if credentials.ca_pem().trim().is_empty() {
        // Kept from a write that failed, or else the chain's CA.
        let ca = ctx
            .pending_ca()
            .unwrap_or_else(|| credentials.ca_from_chain());
        ca_problem = store_ca(ctx, &ca).await;
    }
    let due = renewal::renewal_due(
        credentials.info(),
        now,
        ctx.settings.cert_validity_renewal_threshold,
        ctx.settings.minimal_compass_sync_time,
    );
    if !ctx.connector_check_due(now, due, spec.refresh_credentials_now) {
        // Nothing the Connector could say matters now: the certificate is
        // valid and not due, and the URLs were checked within the interval.
        return Ok(Maintained {
            credentials,
            management_info: None,
            renewed: false,
            ca_problem,
        });
    }
    let connector = ConnectorClient::new(ctx.graphql(
        &spec.management_info.connector_url,
        Some(&credentials),
        request_id,
    )?);
    let configuration = connector.configuration(None).await?;
    ctx.note_connector_checked(now);
    let management_info = configuration
        .management_plane_info
        .as_ref()
        .and_then(|plane| {
            Some(ManagementInfo {
                director_url: plane.director_url.clone()?,
                connector_url: plane.certificate_secured_connector_url.clone()?,
            })
        });
    if !(due || spec.refresh_credentials_now) {
        return Ok(Maintained {
            credentials,
            management_info,
            renewed: false,
            ca_problem,
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
    ctx.credentials.save_client(&renewed).await?;
    let ca_problem = store_ca(ctx, renewed.ca_pem()).await;
    Ok(Maintained {
        credentials: renewed,
        management_info,
        renewed: true,
        ca_problem,
    })
}

/// Makes a key and CSR as the Connector asks, has it signed, and checks the
/// answer against the key and subject before anything is stored.
async fn request_certificate(
    connector: &ConnectorClient,
    csr_info: &CsrInfo,
    token: Option<&str>,
) -> Result<ClientCredentials, ConnectionError> {
    let subject = Subject::parse(&csr_info.subject)
        .map_err(certificates::CertificateError::InvalidSubject)?;
    let algorithm = KeyAlgorithm::parse(&csr_info.key_algorithm)?;
    let for_key = subject.clone();
    let generated =
        tokio::task::spawn_blocking(move || certificates::generate_csr(&for_key, algorithm))
            .await
            .map_err(ConnectionError::KeyGenerationTask)??;
    let result = connector.sign_csr(&generated.csr_pem, token).await?;
    Ok(ClientCredentials::from_connector(
        generated.key_pem,
        &result.certificate_chain,
        &result.ca_certificate,
        &result.client_certificate,
        &subject,
        Timestamp::now(),
    )?)
}
