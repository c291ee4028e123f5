//! The Connector: `configuration`, `signCertificateSigningRequest`,
//! `revokeCertificate`, served on the token-secured and the
//! certificate-secured endpoint with the same schema.

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Error, Object, Result, Schema, SimpleObject};

use crate::ca::ClientIdentity;
use crate::state::{Shared, SystemAuthIdentity};

pub type ConnectorSchema = Schema<ConnectorQuery, ConnectorMutation, EmptySubscription>;

/// Who calls the Connector: a token holder or a client certificate.
#[derive(Debug, Clone)]
pub enum ConnectorCaller {
    /// Token-secured endpoint; the `Connector-Token` header, if any.
    Token(Option<String>),
    /// Certificate-secured endpoint; a verified client certificate and the
    /// SystemAuth its CN names.
    Certificate {
        certificate: ClientIdentity,
        identity: SystemAuthIdentity,
    },
}

pub fn schema_without_data() -> ConnectorSchema {
    Schema::build(ConnectorQuery, ConnectorMutation, EmptySubscription).finish()
}

#[derive(SimpleObject)]
pub struct Token {
    token: String,
}

#[derive(SimpleObject)]
pub struct CertificationResult {
    certificate_chain: String,
    ca_certificate: String,
    client_certificate: String,
}

#[derive(SimpleObject)]
pub struct ManagementPlaneInfo {
    #[graphql(name = "directorURL")]
    director_url: Option<String>,
    #[graphql(name = "certificateSecuredConnectorURL")]
    certificate_secured_connector_url: Option<String>,
}

#[derive(SimpleObject)]
pub struct CertificateSigningRequestInfo {
    subject: String,
    key_algorithm: String,
}

#[derive(SimpleObject)]
pub struct Configuration {
    token: Option<Token>,
    certificate_signing_request_info: Option<CertificateSigningRequestInfo>,
    management_plane_info: Option<ManagementPlaneInfo>,
}

fn parts<'a>(ctx: &'a Context<'_>) -> Result<(&'a Arc<Shared>, &'a ConnectorCaller)> {
    Ok((ctx.data::<Arc<Shared>>()?, ctx.data::<ConnectorCaller>()?))
}

/// The SystemAuth the caller acts as; a token is spent doing so.
fn authenticate(shared: &Shared, caller: &ConnectorCaller) -> Result<SystemAuthIdentity> {
    match caller {
        ConnectorCaller::Token(token) => shared.spend_token(token.as_deref()).map_err(Error::new),
        ConnectorCaller::Certificate { identity, .. } => Ok(identity.clone()),
    }
}

pub struct ConnectorQuery;

#[Object(name = "Query")]
impl ConnectorQuery {
    /// Spends the token (token-secured) and returns a new one for the same
    /// SystemAuth (with a token or a certificate alike), the subject to
    /// request (its CN the SystemAuth's id) and the URLs of the Director and
    /// the certificate-secured Connector.
    async fn configuration(&self, ctx: &Context<'_>) -> Result<Configuration> {
        let (shared, caller) = parts(ctx)?;
        let identity = authenticate(shared, caller)?;
        let (subject, key_algorithm) = shared
            .csr_info(&identity)
            .map_err(|e| Error::new(e.to_string()))?;
        let token = shared.issue_token_for(&identity).map_err(Error::new)?;
        Ok(Configuration {
            token: Some(Token { token }),
            certificate_signing_request_info: Some(CertificateSigningRequestInfo {
                subject,
                key_algorithm,
            }),
            management_plane_info: Some(ManagementPlaneInfo {
                director_url: Some(shared.urls.director_url.clone()),
                certificate_secured_connector_url: Some(
                    shared.urls.cert_secured_connector_url.clone(),
                ),
            }),
        })
    }
}

pub struct ConnectorMutation;

#[Object(name = "Mutation")]
impl ConnectorMutation {
    /// Signs a CSR (base64 of PEM) whose subject carries the handed-out values.
    async fn sign_certificate_signing_request(
        &self,
        ctx: &Context<'_>,
        csr: String,
    ) -> Result<CertificationResult> {
        let (shared, caller) = parts(ctx)?;
        if let ConnectorCaller::Certificate { certificate, .. } = caller {
            if certificate.revoked {
                return Err(Error::new(format!(
                    "{}: it cannot be renewed",
                    crate::ca::CertRefusal::Revoked {
                        fingerprint: certificate.fingerprint.clone()
                    }
                )));
            }
        }
        let identity = authenticate(shared, caller)?;
        let result = shared.sign_csr(&identity, &csr).map_err(Error::new)?;
        Ok(CertificationResult {
            certificate_chain: result.certificate_chain,
            ca_certificate: result.ca_certificate,
            client_certificate: result.client_certificate,
        })
    }

    /// Revokes the certificate the request was made with.
    async fn revoke_certificate(&self, ctx: &Context<'_>) -> Result<bool> {
        let (shared, caller) = parts(ctx)?;
        match caller {
            ConnectorCaller::Token(_) => Err(Error::new(
                "Failed to authenticate with certificate: revokeCertificate needs the client certificate; call it on the certificate-secured Connector",
            )),
            ConnectorCaller::Certificate { certificate, .. } => {
                shared
                    .revoke_certificate(&certificate.fingerprint)
                    .map_err(|e| Error::new(format!("Failed to add hash to revocation list: {e}")))?;
                Ok(true)
            }
        }
    }
}
