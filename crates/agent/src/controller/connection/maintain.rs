//! Maintaining the connection with the stored certificate: checked, asked of
//! the Connector when that matters, renewed when due; kept after a refusal
//! while it is valid, and replaced by a new token in the configuration only
//! once that token has connected.

use jiff::Timestamp;

use super::establish::{establish, Established};
use super::signing::{failed, failed_with_text, request_certificate, store_ca};
use super::token::{is_new_token, presented_digest};
use crate::certificates::{renewal, ClientCredentials};
use crate::compass::connector::ConnectorClient;
use crate::config::{ConnectionParameters, SourceOrigin};
use crate::controller::context::Context;
use crate::controller::decide::ConnectionOutcome;
use crate::controller::errors::ConnectionError;
use crate::controller::progress::Wait;
use crate::crd::compass_connection::{CompassConnection, ManagementInfo};
use crate::report::{report, Report};

/// What maintaining the connection with the stored certificate came to.
pub(super) enum MaintainOutcome {
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

/// The stored certificate, working (and renewed, if it was due).
pub(super) struct Maintained {
    pub credentials: ClientCredentials,
    pub management_info: Option<ManagementInfo>,
    pub renewed: bool,
    pub ca_problem: Option<(String, &'static str)>,
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

impl MaintainOutcome {
    /// The outcome for the status, and the credentials to work with.
    pub(super) fn into_connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
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

/// Maintains the connection with the stored certificate; when that fails
/// and the certificate is kept, connects anew with a new token in the
/// configuration, if there is one.
pub(super) async fn maintain_step(
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
    if spec.management_info.connector_url.is_empty() {
        return Err(ConnectionError::NoConnectorUrl);
    }
    let mut ca_problem = None;
    if credentials.ca_pem().trim().is_empty() {
        // Kept from a write that failed, or else the chain's CA.
        let unstored = ctx.remembered().unstored_ca();
        let ca = unstored.unwrap_or_else(|| credentials.ca_from_chain());
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
    ctx.remembered().note_connector_checked(now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compass::CompassError;
    use crate::config::NamespacedName;
    use crate::controller::errors::MAX_ERROR_LEN;

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
}
