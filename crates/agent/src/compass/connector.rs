//! The Compass Connector: trades a one-time token (or a valid client
//! certificate) for configuration and a signed client certificate.

use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::graphql::decode_response;
use super::{CompassError, GraphqlClient};

const CONFIGURATION: &str = "query Configuration {
  configuration {
    token { token }
    certificateSigningRequestInfo { subject keyAlgorithm }
    managementPlaneInfo { directorURL certificateSecuredConnectorURL }
  }
}";

const SIGN_CSR: &str = "mutation SignCertificateSigningRequest($csr: String!) {
  signCertificateSigningRequest(csr: $csr) { certificateChain caCertificate clientCertificate }
}";

const REVOKE: &str = "mutation RevokeCertificate { revokeCertificate }";

/// The Connector's `configuration`.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    pub token: Option<Token>,
    pub certificate_signing_request_info: Option<CsrInfo>,
    pub management_plane_info: Option<ManagementPlaneInfo>,
}

#[derive(Deserialize, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CsrInfo {
    pub subject: String,
    pub key_algorithm: String,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagementPlaneInfo {
    #[serde(rename = "directorURL")]
    pub director_url: Option<String>,
    #[serde(rename = "certificateSecuredConnectorURL")]
    pub certificate_secured_connector_url: Option<String>,
}

/// `signCertificateSigningRequest`: each field base64 of PEM.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificationResult {
    pub certificate_chain: String,
    pub ca_certificate: String,
    pub client_certificate: String,
}

/// A Connector endpoint: token-secured (`CONNECTOR_URL`) or certificate-secured
/// (mTLS, the URL the Connector returns), depending on the client it wraps.
#[derive(Clone)]
pub struct ConnectorClient {
    graphql: GraphqlClient,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigurationData {
    configuration: Configuration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignData {
    sign_certificate_signing_request: CertificationResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeData {
    revoke_certificate: bool,
}

impl ConnectorClient {
    pub fn new(graphql: GraphqlClient) -> ConnectorClient {
        ConnectorClient { graphql }
    }

    /// `configuration`; with `token` on the token-secured endpoint (which spends it).
    pub async fn configuration(&self, token: Option<&str>) -> Result<Configuration, CompassError> {
        let data: ConfigurationData = self
            .graphql
            .execute(
                "configuration",
                CONFIGURATION,
                json!({}),
                &token_header(token),
            )
            .await?;
        Ok(data.configuration)
    }

    /// `signCertificateSigningRequest` for a PEM CSR (sent as base64 of the PEM).
    pub async fn sign_csr(
        &self,
        csr_pem: &str,
        token: Option<&str>,
    ) -> Result<CertificationResult, CompassError> {
        let csr = base64::engine::general_purpose::STANDARD.encode(csr_pem);
        let data: SignData = self
            .graphql
            .execute(
                "signCertificateSigningRequest",
                SIGN_CSR,
                json!({ "csr": csr }),
                &token_header(token),
            )
            .await?;
        Ok(data.sign_certificate_signing_request)
    }

    /// `revokeCertificate`: revokes the certificate this client presents.
    pub async fn revoke_certificate(&self) -> Result<bool, CompassError> {
        let data: RevokeData = self
            .graphql
            .execute("revokeCertificate", REVOKE, json!({}), &[])
            .await?;
        Ok(data.revoke_certificate)
    }
}

/// Decodes a `configuration` answer body into what
/// [`ConnectorClient::configuration`] returns. Pure, for tests and fuzzing.
pub fn decode_configuration(body: &[u8]) -> Result<Configuration, CompassError> {
    decode_response::<ConfigurationData>("configuration", body).map(|data| data.configuration)
}

/// Decodes a `signCertificateSigningRequest` answer body into what
/// [`ConnectorClient::sign_csr`] returns. Pure, for tests and fuzzing.
pub fn decode_sign_result(body: &[u8]) -> Result<CertificationResult, CompassError> {
    decode_response::<SignData>("signCertificateSigningRequest", body)
        .map(|data| data.sign_certificate_signing_request)
}

/// Decodes a `revokeCertificate` answer body into what
/// [`ConnectorClient::revoke_certificate`] returns. Pure, for tests and fuzzing.
pub fn decode_revoke_result(body: &[u8]) -> Result<bool, CompassError> {
    decode_response::<RevokeData>("revokeCertificate", body).map(|data| data.revoke_certificate)
}

fn token_header(token: Option<&str>) -> Vec<(&'static str, &str)> {
    token
        .map(|token| vec![("Connector-Token", token)])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_answers_decode_into_what_the_client_returns() {
        let configuration = decode_configuration(
            br#"{"data":{"configuration":{"token":{"token":"t"},
                "certificateSigningRequestInfo":{"subject":"CN=r","keyAlgorithm":"rsa2048"},
                "managementPlaneInfo":{"directorURL":"https://d","certificateSecuredConnectorURL":null}}}}"#,
        )
        .unwrap();
        assert_eq!(
            configuration
                .certificate_signing_request_info
                .unwrap()
                .subject,
            "CN=r"
        );
        let signed = decode_sign_result(
            br#"{"data":{"signCertificateSigningRequest":{"certificateChain":"a","caCertificate":"b","clientCertificate":"c"}}}"#,
        )
        .unwrap();
        assert_eq!(signed.client_certificate, "c");
        assert!(decode_revoke_result(br#"{"data":{"revokeCertificate":true}}"#).unwrap());
        assert!(decode_revoke_result(br#"{"data":{"configuration":null}}"#).is_err());
    }
}
