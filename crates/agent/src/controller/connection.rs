//! Establishing the connection with the one-time token, and maintaining it
//! with the stored certificate (renewing it when due).

use jiff::Timestamp;

use super::context::Context;
use super::decide::{ConnectionOutcome, Step};
use super::errors::ConnectionError;
use crate::certificates::{self, renewal, ClientCredentials, KeyAlgorithm, Subject};
use crate::compass::connector::{ConnectorClient, CsrInfo};
use crate::config::ConnectionParameters;
use crate::crd::compass_connection::{CompassConnection, ManagementInfo};
use crate::report::{report, Report};

/// Longest error text written to the status.
pub(super) const MAX_ERROR_LEN: usize = 2000;

/// The outcome for the status, and the credentials to work with.
pub(super) struct Connected {
    pub outcome: ConnectionOutcome,
    pub credentials: Option<ClientCredentials>,
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
    let failed = |error: &ConnectionError, credentials_gone: bool| ConnectionOutcome::Failed {
        error: crate::report::bounded(&report(error), MAX_ERROR_LEN),
        category: error.category(),
        credentials_gone,
    };
    match step {
        Step::Establish => match establish(ctx, request_id).await {
            Ok(established) => {
                tracing::info!(subject = %established.credentials.info().subject, "connection to Compass established");
                ctx.metrics.record_establishment(true);
                Connected {
                    outcome: ConnectionOutcome::Established {
                        certificate: established.credentials.info().clone(),
                        management_info: established.management_info,
                    },
                    credentials: Some(established.credentials),
                }
            }
            Err(error) => {
                tracing::warn!(error = %Report(&error), category = error.category(), "cannot establish the connection to Compass");
                ctx.metrics.record_establishment(false);
                Connected {
                    outcome: failed(&error, true),
                    credentials: None,
                }
            }
        },
        Step::Maintain | Step::Wait(_) => {
            match maintain(ctx, &connection.spec, request_id, now).await {
                Ok(maintained) => {
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
                    Connected {
                        outcome: ConnectionOutcome::Maintained {
                            certificate: maintained.credentials.info().clone(),
                            renewed: maintained.renewed,
                            management_info: maintained.management_info,
                        },
                        credentials: Some(maintained.credentials),
                    }
                }
                Err(error) => {
                    let gone = error.requires_new_connection();
                    tracing::warn!(error = %Report(&error), category = error.category(), credentials_gone = gone, "cannot maintain the connection to Compass");
                    Connected {
                        outcome: failed(&error, gone),
                        credentials: None,
                    }
                }
            }
        }
    }
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
    )?)
}
