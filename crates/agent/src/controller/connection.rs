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
use super::progress::Wait;
use crate::certificates::{self, renewal, ClientCredentials, KeyAlgorithm, Subject};
use crate::compass::connector::{ConnectorClient, CsrInfo};
use crate::config::{ConnectionParameters, SourceOrigin};
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
    let (outcome, credentials) = match step {
        Step::Establish => establish_step(ctx, request_id, &mut presented_token)
            .await
            .into_connected(),
        Step::Maintain | Step::Wait(_) => {
            let maintained =
                maintain_step(ctx, connection, request_id, now, &mut presented_token).await;
            if let MaintainOutcome::Maintained(maintained) = &maintained {
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
            }
            maintained.into_connected()
        }
    };
    Connected {
        outcome,
        credentials,
        presented_token,
    }
}

/// What establishing the connection with the configured token came to.
enum EstablishOutcome {
    Established(Established),
    /// The agent holds no working credentials: only the token can help, at
    /// the next attempt.
    Failed(ConnectionError),
}

/// What maintaining the connection with the stored certificate came to.
enum MaintainOutcome {
    /// The certificate works (and was renewed, if due).
    Maintained(Maintained),
    /// The certificate can no longer work (expired, gone from its Secret):
    /// the next cycle connects anew with the configured token.
    NeedsNewConnection(ConnectionError),
    /// Compass refused, and the configuration holds no new token: the
    /// certificate is kept and retried while it is valid.
    KeptAfterRefusal(ConnectionError),
    /// Any other failure, and no new token: the certificate is kept.
    Failed(ConnectionError),
    /// Maintenance failed, and the new token in the configuration connected.
    NewTokenConnected(Established),
    /// Maintenance failed (`error`), and so did the new token in the
    /// configuration from `origin` (`second`): the certificate is kept.
    NewTokenFailed {
        error: ConnectionError,
        origin: SourceOrigin,
        second: ConnectionError,
    },
}

/// What a failed maintenance leads to, before anything else is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterMaintenanceError {
    /// The credentials can no longer work: connect anew with the token.
    ConnectAnew,
    /// The certificate is kept; a new token in the configuration is tried.
    KeepCertificate,
}

fn after_maintenance_error(error: &ConnectionError) -> AfterMaintenanceError {
    if error.requires_new_connection() {
        AfterMaintenanceError::ConnectAnew
    } else {
        AfterMaintenanceError::KeepCertificate
    }
}

/// The outcome of a failed maintenance when the configuration holds no new
/// token: a refusal is told apart, for its way out.
fn without_new_token(error: ConnectionError) -> MaintainOutcome {
    if error.is_refusal() {
        MaintainOutcome::KeptAfterRefusal(error)
    } else {
        MaintainOutcome::Failed(error)
    }
}

/// Whether the configured `token` is not the one last presented, as the
/// CompassConnection records its digest (`recorded`): the operator's signal
/// to connect anew. With none recorded, any token counts as new.
fn is_new_token(recorded: Option<&str>, token: &str) -> bool {
    recorded != Some(token_digest(token).as_str())
}

/// A failure for the status: its bounded text and category.
fn failed(error: &ConnectionError, credentials_gone: bool) -> ConnectionOutcome {
    failed_with_text(&report(error), error, credentials_gone)
}

fn failed_with_text(
    text: &str,
    error: &ConnectionError,
    credentials_gone: bool,
) -> ConnectionOutcome {
    ConnectionOutcome::Failed {
        error: bounded(text, MAX_ERROR_LEN),
        category: error.category(),
        credentials_gone,
    }
}

impl EstablishOutcome {
    /// The outcome for the status, and the credentials to work with.
    fn into_connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
        match self {
            EstablishOutcome::Established(established) => established.into_connected(),
            EstablishOutcome::Failed(error) => (failed(&error, true), None),
        }
    }
}

impl MaintainOutcome {
    /// The outcome for the status, and the credentials to work with.
    fn into_connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
        match self {
            MaintainOutcome::Maintained(maintained) => (
                ConnectionOutcome::Maintained {
                    certificate: maintained.credentials.info().clone(),
                    renewed: maintained.renewed,
                    management_info: maintained.management_info,
                    credentials_problem: maintained.ca_problem,
                },
                Some(maintained.credentials),
            ),
            MaintainOutcome::NeedsNewConnection(error) => (failed(&error, true), None),
            MaintainOutcome::KeptAfterRefusal(error) => {
                // Tell the operator the way out of a certificate Compass no
                // longer takes or renews.
                let text = format!(
                    "{}; the client certificate is kept and retried while it is valid; a new one-time token in the configuration connects anew",
                    report(&error)
                );
                (failed_with_text(&text, &error, false), None)
            }
            MaintainOutcome::Failed(error) => (failed(&error, false), None),
            MaintainOutcome::NewTokenConnected(established) => established.into_connected(),
            MaintainOutcome::NewTokenFailed {
                error,
                origin,
                second,
            } => {
                let text = format!(
                    "{}; the new one-time token in {} did not connect either: {}",
                    report(&error),
                    origin,
                    report(&second)
                );
                (failed_with_text(&text, &error, false), None)
            }
        }
    }
}

/// Reads the configuration and trades its token for a certificate.
async fn establish_step(
    ctx: &Context,
    request_id: &str,
    presented_token: &mut Option<String>,
) -> EstablishOutcome {
    let established = match ctx.read_parameters().await {
        Ok(parameters) => establish(ctx, &parameters, request_id, presented_token).await,
        Err(error) => Err(error.into()),
    };
    match established {
        Ok(established) => {
            established.log();
            EstablishOutcome::Established(established)
        }
        Err(error) => {
            tracing::warn!(error = %Report(&error), category = error.category(), "cannot establish the connection to Compass");
            ctx.metrics.record_establishment(false);
            EstablishOutcome::Failed(error)
        }
    }
}

/// Maintains the connection with the stored certificate; when that fails
/// and the certificate is kept, connects anew with a new token in the
/// configuration, if there is one.
async fn maintain_step(
    ctx: &Context,
    connection: &CompassConnection,
    request_id: &str,
    now: Timestamp,
    presented_token: &mut Option<String>,
) -> MaintainOutcome {
    let error = match maintain(ctx, &connection.spec, request_id, now).await {
        Ok(maintained) => return MaintainOutcome::Maintained(maintained),
        Err(error) => error,
    };
    if after_maintenance_error(&error) == AfterMaintenanceError::ConnectAnew {
        tracing::warn!(error = %Report(&error), category = error.category(), "the client certificate can no longer work; connecting anew with the configured token");
        return MaintainOutcome::NeedsNewConnection(error);
    }
    tracing::warn!(error = %Report(&error), category = error.category(), "cannot maintain the connection to Compass; keeping the certificate");
    let Some(parameters) = new_token(ctx, connection).await else {
        return without_new_token(error);
    };
    tracing::info!(source = %parameters.origin, "a new one-time token is in the configuration: connecting anew with it");
    match establish(ctx, &parameters, request_id, presented_token).await {
        Ok(established) => {
            established.log();
            MaintainOutcome::NewTokenConnected(established)
        }
        Err(second) => {
            tracing::warn!(error = %Report(&second), "the new one-time token did not connect either; keeping the certificate");
            ctx.metrics.record_establishment(false);
            MaintainOutcome::NewTokenFailed {
                error,
                origin: parameters.origin,
                second,
            }
        }
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
    is_new_token(
        presented_digest(connection).map(String::as_str),
        &parameters.token,
    )
    .then_some(parameters)
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
    fn log(&self) {
        tracing::info!(subject = %self.credentials.info().subject, "connection to Compass established");
    }

    fn into_connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
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
    {
        let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
        ctx.credentials.check_writable().await?;
    }
    let connector =
        ConnectorClient::new(ctx.graphql(&parameters.connector_url, None, request_id)?);
    let digest = parameters_digest(parameters);
    let pending = ctx
        .pending_signing()
        .clone()
        .filter(|pending| pending.parameters_digest == digest);
    let pending = match pending {
        Some(pending) => {
            tracing::info!("signing with the Connector's answer to the configured token from an earlier attempt (the token itself is spent)");
            pending
        }
        None => {
            *presented = Some(token_digest(&parameters.token));
            let pending = {
                let _waiting = ctx.progress.waiting(Wait::Connector);
                configure_with_token(&connector, &parameters.token, digest).await?
            };
            // Kept until the Connector has signed: a signing step that fails
            // on the way, or a cycle abandoned at its deadline during it, is
            // retried with this answer (the token itself is spent).
            *ctx.pending_signing() = Some(pending.clone());
            pending
        }
    };
    let signed = {
        let _waiting = ctx.progress.waiting(Wait::Signing);
        request_certificate(&connector, &pending.csr_info, Some(&pending.csr_token)).await
    };
    match signed {
        Ok(credentials) => {
            // The answer's token is spent by the signing.
            *ctx.pending_signing() = None;
            // Persisted before it is used: a crash now loses nothing.
            {
                let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
                ctx.credentials.save_client(&credentials).await?;
            }
            ctx.metrics.record_establishment(true);
            let ca_problem = store_ca(ctx, credentials.ca_pem()).await;
            Ok(Established {
                credentials,
                management_info: pending.management_info,
                ca_problem,
            })
        }
        // Kept for the next attempt.
        Err(ConnectionError::Compass(error)) if error.is_transient() => {
            Err(ConnectionError::Compass(error))
        }
        Err(error) => {
            *ctx.pending_signing() = None;
            Err(error)
        }
    }
}

/// Stores the CA; when that fails, keeps it to store at the next cycle and
/// says why. The client certificate, stored already, stays in use: the
/// token that bought it is spent.
async fn store_ca(ctx: &Context, ca_pem: &str) -> Option<(String, &'static str)> {
    if ca_pem.trim().is_empty() {
        return None;
    }
    let saved = {
        let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
        ctx.credentials.save_ca(ca_pem).await
    };
    match saved {
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
    let credentials = {
        let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
        ctx.credentials.load().await?
    };
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
    let configuration = {
        let _waiting = ctx.progress.waiting(Wait::Connector);
        connector.configuration(None).await?
    };
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
    let renewed = {
        let _waiting = ctx.progress.waiting(Wait::Signing);
        request_certificate(&connector, &csr_info, None).await
    };
    ctx.metrics.record_renewal(renewed.is_ok());
    let renewed = renewed?;
    {
        let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
        ctx.credentials.save_client(&renewed).await?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compass::CompassError;
    use crate::config::NamespacedName;

    fn timeout() -> ConnectionError {
        ConnectionError::Compass(CompassError::Timeout {
            operation: "configuration",
            url: "https://connector.example/graphql".into(),
        })
    }

    fn refused() -> ConnectionError {
        ConnectionError::Compass(CompassError::Refused {
            operation: "configuration",
            reason: "HTTP 403".into(),
        })
    }

    fn graphql_error() -> ConnectionError {
        ConnectionError::Compass(CompassError::GraphQl {
            operation: "signCertificateSigningRequest",
            messages: vec!["renewal refused".into()],
        })
    }

    fn expired() -> ConnectionError {
        ConnectionError::CertificateExpired(Timestamp::from_second(1_700_000_000).unwrap())
    }

    fn failure(outcome: MaintainOutcome) -> (String, &'static str, bool) {
        match outcome.into_connected() {
            (
                ConnectionOutcome::Failed {
                    error,
                    category,
                    credentials_gone,
                },
                None,
            ) => (error, category, credentials_gone),
            (other, _) => panic!("not a failure without credentials: {other:?}"),
        }
    }

    #[test]
    fn a_certificate_that_can_no_longer_work_connects_anew_others_are_kept() {
        for error in [expired(), ConnectionError::NoConnectorUrl] {
            assert_eq!(
                after_maintenance_error(&error),
                AfterMaintenanceError::ConnectAnew,
                "{error}"
            );
        }
        for error in [timeout(), refused(), graphql_error()] {
            assert_eq!(
                after_maintenance_error(&error),
                AfterMaintenanceError::KeepCertificate,
                "{error}"
            );
        }
    }

    #[test]
    fn a_certificate_that_can_no_longer_work_fails_with_its_credentials_gone() {
        let error = expired();
        let text = report(&error);
        assert_eq!(
            failure(MaintainOutcome::NeedsNewConnection(error)),
            (text, "CertificateExpired", true)
        );
    }

    #[test]
    fn without_a_new_token_a_refusal_keeps_the_certificate_and_says_the_way_out() {
        for error in [refused(), graphql_error()] {
            let text = report(&error);
            let category = error.category();
            let outcome = without_new_token(error);
            assert!(matches!(outcome, MaintainOutcome::KeptAfterRefusal(_)));
            assert_eq!(
                failure(outcome),
                (
                    format!("{text}; the client certificate is kept and retried while it is valid; a new one-time token in the configuration connects anew"),
                    category,
                    false
                )
            );
        }
    }

    #[test]
    fn without_a_new_token_another_failure_keeps_the_certificate_and_says_only_what_failed() {
        let error = timeout();
        let text = report(&error);
        let outcome = without_new_token(error);
        assert!(matches!(outcome, MaintainOutcome::Failed(_)));
        assert_eq!(failure(outcome), (text, "Timeout", false));
    }

    #[test]
    fn a_new_token_that_fails_too_is_told_after_the_first_failure_under_its_category() {
        let (error, second) = (refused(), timeout());
        let expected = format!(
            "{}; the new one-time token in Secret kyma-system/compass-agent-configuration did not connect either: {}",
            report(&error),
            report(&second)
        );
        let outcome = MaintainOutcome::NewTokenFailed {
            error,
            origin: SourceOrigin {
                kind: "Secret",
                name: NamespacedName {
                    namespace: "kyma-system".into(),
                    name: "compass-agent-configuration".into(),
                },
            },
            second,
        };
        assert_eq!(failure(outcome), (expected, "CredentialsRefused", false));
    }

    #[test]
    fn a_failed_establishment_leaves_no_credentials() {
        let error = timeout();
        let text = report(&error);
        match EstablishOutcome::Failed(error).into_connected() {
            (
                ConnectionOutcome::Failed {
                    error,
                    category,
                    credentials_gone,
                },
                None,
            ) => assert_eq!((error, category, credentials_gone), (text, "Timeout", true)),
            (other, _) => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn status_texts_are_bounded() {
        let error = ConnectionError::Compass(CompassError::Refused {
            operation: "configuration",
            reason: "x".repeat(3 * MAX_ERROR_LEN),
        });
        let (text, _, _) = failure(without_new_token(error));
        assert!(
            text.len() <= MAX_ERROR_LEN + '…'.len_utf8(),
            "{}",
            text.len()
        );
        assert!(text.ends_with('…'));
    }

    #[test]
    fn a_token_is_new_unless_its_digest_is_the_one_recorded() {
        let recorded = token_digest("token-1");
        assert!(!is_new_token(Some(&recorded), "token-1"));
        assert!(is_new_token(Some(&recorded), "token-2"));
        // Connected before tokens were recorded: the configured one is tried.
        assert!(is_new_token(None, "token-1"));
        // The digest, never the token, is what the resource holds.
        assert!(is_new_token(Some("token-1"), "token-1"));
    }
}
