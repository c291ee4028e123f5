//! Establishing the connection: the configured one-time token traded for a
//! certificate, stored before it is used. The Connector's answer to the
//! token is remembered until the certificate is signed, so that the token,
//! spent by that answer, is never presented twice.

use super::signing::{failed, request_certificate, store_ca};
use super::token::token_digest;
use crate::certificates::ClientCredentials;
use crate::compass::connector::ConnectorClient;
use crate::config::ConnectionParameters;
use crate::controller::context::Context;
use crate::controller::decide::ConnectionOutcome;
use crate::controller::errors::ConnectionError;
use crate::controller::progress::Wait;
use crate::controller::remembered::AnswerToToken;
use crate::crd::compass_connection::ManagementInfo;
use crate::report::Report;

/// What establishing the connection with the configured token came to.
pub(super) enum EstablishOutcome {
    Established(Established),
    /// The agent holds no working credentials: only the token can help, at
    /// the next attempt.
    Failed(ConnectionError),
}

impl EstablishOutcome {
    /// The outcome for the status, and the credentials to work with.
    pub(super) fn into_connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
        match self {
            EstablishOutcome::Established(established) => established.into_connected(),
            EstablishOutcome::Failed(error) => (failed(&error, true), None),
        }
    }
}

/// A certificate traded for the token, stored.
pub(super) struct Established {
    credentials: ClientCredentials,
    management_info: ManagementInfo,
    /// Why the CA could not be stored, if it could not.
    ca_problem: Option<(String, &'static str)>,
}

impl Established {
    pub(super) fn log(&self) {
        tracing::info!(subject = %self.credentials.info().subject, "connection to Compass established");
    }

    pub(super) fn into_connected(self) -> (ConnectionOutcome, Option<ClientCredentials>) {
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

/// Reads the configuration and trades its token for a certificate.
pub(super) async fn establish_step(
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

/// Trades the one-time token of `parameters` for a certificate; records its
/// digest in `presented` once it is presented.
pub(super) async fn establish(
    ctx: &Context,
    parameters: &ConnectionParameters,
    request_id: &str,
    presented: &mut Option<String>,
) -> Result<Established, ConnectionError> {
    {
        let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
        ctx.credentials.check_writable().await?;
    }
    let connector =
        ConnectorClient::new(ctx.graphql(&parameters.connector_url, None, request_id)?);
    let digest = parameters_digest(parameters);
    let kept = ctx.remembered().answer_to_token(&digest);
    let answer = match kept {
        Some(answer) => {
            tracing::info!("signing with the Connector's answer to the configured token from an earlier attempt (the token itself is spent)");
            answer
        }
        None => {
            *presented = Some(token_digest(&parameters.token));
            let answer = {
                let _waiting = ctx.progress.waiting(Wait::Connector);
                configure_with_token(&connector, &parameters.token, digest).await?
            };
            // Kept until the Connector has signed: a signing step that fails
            // on the way, or a cycle abandoned at its deadline during it, is
            // retried with this answer (the token itself is spent).
            ctx.remembered().keep_answer_to_token(answer.clone());
            answer
        }
    };
    let signed = {
        let _waiting = ctx.progress.waiting(Wait::Signing);
        request_certificate(&connector, &answer.csr_info, Some(&answer.csr_token)).await
    };
    match signed {
        Ok(credentials) => {
            // The answer's token is spent by the signing.
            ctx.remembered().forget_answer_to_token();
            // Persisted before it is used: a crash now loses nothing.
            {
                let _waiting = ctx.progress.waiting(Wait::CredentialsSecrets);
                ctx.credentials.save_client(&credentials).await?;
            }
            ctx.metrics.record_establishment(true);
            let ca_problem = store_ca(ctx, credentials.ca_pem()).await;
            Ok(Established {
                credentials,
                management_info: answer.management_info,
                ca_problem,
            })
        }
        // Kept for the next attempt.
        Err(ConnectionError::Compass(error)) if error.is_transient() => {
            Err(ConnectionError::Compass(error))
        }
        Err(error) => {
            ctx.remembered().forget_answer_to_token();
            Err(error)
        }
    }
}

/// The token-secured `configuration`: spends the one-time token.
async fn configure_with_token(
    connector: &ConnectorClient,
    token: &str,
    parameters_digest: String,
) -> Result<AnswerToToken, ConnectionError> {
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
    Ok(AnswerToToken {
        parameters_digest,
        csr_token,
        csr_info,
        management_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compass::CompassError;
    use crate::report::report;

    #[test]
    fn a_failed_establishment_leaves_no_credentials() {
        let error = ConnectionError::Compass(CompassError::Timeout {
            operation: "configuration",
            url: "https://connector.example/graphql".into(),
        });
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
}
