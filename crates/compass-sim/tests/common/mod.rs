//! Helpers for the integration tests: a plain reqwest client that trusts the
//! simulator's server CA, GraphQL calls, CSRs, and the token → certificate flow.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use compass_sim::{CompassSim, SimConfig, Subject};
use rcgen::{CertificateParams, KeyPair};
use serde_json::{json, Value};

pub const TENANT: &str = "tenant-a";

pub const CONFIGURATION: &str = "query { configuration { token { token } certificateSigningRequestInfo { subject keyAlgorithm } managementPlaneInfo { directorURL certificateSecuredConnectorURL } } }";
pub const SIGN: &str = "mutation Sign($csr: String!) { signCertificateSigningRequest(csr: $csr) { certificateChain caCertificate clientCertificate } }";
pub const REVOKE: &str = "mutation { revokeCertificate }";

pub async fn start() -> CompassSim {
    CompassSim::start(SimConfig::default())
        .await
        .expect("compass-sim starts")
}

/// A runtime's client credentials, as the agent would keep them.
#[derive(Clone)]
pub struct Credentials {
    pub key_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
    pub ca_pem: String,
}

/// A reqwest client trusting only the simulator's server CA, presenting the
/// given credentials when asked.
pub fn client(sim: &CompassSim, creds: Option<&Credentials>) -> reqwest::Client {
    client_builder(sim, creds).build().unwrap()
}

/// The same client speaking HTTP/1.1 only.
pub fn client_http1(sim: &CompassSim, creds: Option<&Credentials>) -> reqwest::Client {
    client_builder(sim, creds).http1_only().build().unwrap()
}

fn client_builder(sim: &CompassSim, creds: Option<&Credentials>) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(sim.server_ca_pem().as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(30));
    if let Some(creds) = creds {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", creds.cert_pem, creds.key_pem).as_bytes())
                .unwrap();
        builder = builder.identity(identity);
    }
    builder
}

/// POSTs a GraphQL request; returns the status and the body as JSON (or as a
/// JSON string when the body is not JSON).
pub async fn gql(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request is answered");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The first GraphQL error message, or "" when there is none.
pub fn first_error(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn unb64(text: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("a base64 string"))
        .expect("valid base64");
    String::from_utf8(bytes).unwrap()
}

pub enum KeyKind {
    Rsa2048,
    Rsa4096,
    EcdsaP256,
}

pub fn key(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
        }
        KeyKind::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096).unwrap()
        }
        KeyKind::EcdsaP256 => KeyPair::generate().unwrap(),
    }
}

/// base64 of the PEM CSR for `subject` signed with `key`.
pub fn csr(subject: &Subject, key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.distinguished_name();
    b64(&params.serialize_request(key).unwrap().pem().unwrap())
}

/// The token-secured flow: configuration with `token`, then a CSR with the
/// handed-out subject and the returned token. Panics with the answer on error.
pub async fn connect_with_key(sim: &CompassSim, token: &str, key: &KeyPair) -> Credentials {
    let http = client(sim, None);
    let (status, config) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", token)],
    )
    .await;
    assert_eq!(status, 200, "configuration: {config}");
    let cfg = &config["data"]["configuration"];
    let subject = Subject::parse(
        cfg["certificateSigningRequestInfo"]["subject"]
            .as_str()
            .unwrap_or_else(|| panic!("no subject in {config}")),
    )
    .unwrap();
    let csr_token = cfg["token"]["token"].as_str().unwrap().to_string();
    let (status, signed) = gql(
        &http,
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&subject, key) }),
        &[("Connector-Token", &csr_token)],
    )
    .await;
    assert_eq!(status, 200, "sign: {signed}");
    let result = &signed["data"]["signCertificateSigningRequest"];
    assert!(result.is_object(), "sign refused: {signed}");
    Credentials {
        key_pem: key.serialize_pem(),
        cert_pem: unb64(&result["clientCertificate"]),
        chain_pem: unb64(&result["certificateChain"]),
        ca_pem: unb64(&result["caCertificate"]),
    }
}

/// A new runtime-scoped token and the full flow with an RSA-2048 key.
pub async fn connect(sim: &CompassSim, runtime_id: &str) -> Credentials {
    let token = sim.issue_token(runtime_id).unwrap();
    connect_with_key(sim, &token, &key(KeyKind::Rsa2048)).await
}

pub fn tenant_header() -> [(&'static str, &'static str); 1] {
    [("Tenant", TENANT)]
}

/// The CN of a PEM certificate: the SystemAuth it was issued for.
pub fn common_name_of(cert_pem: &str) -> String {
    let der = pem::parse(cert_pem).expect("PEM").into_contents();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    cn
}

/// The serial number of a PEM certificate, lower-case hex.
pub fn serial_of(cert_pem: &str) -> String {
    let der = pem::parse(cert_pem).expect("PEM").into_contents();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
    hex::encode(cert.raw_serial())
}

/// The `extensions` of the first GraphQL error.
pub fn first_error_extensions(body: &Value) -> Value {
    body["errors"][0]["extensions"].clone()
}
