//! Starting with loaded CAs, and the URLs handed out.

mod common;

use common::*;
use compass_sim::{CaPem, CompassSim, SimConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;

fn ca_files(name: &str) -> CaPem {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

#[tokio::test]
async fn loaded_client_and_server_cas_are_the_ones_used() {
    let client_ca = ca_files("my client CA");
    let server_ca = ca_files("my server CA");
    let sim = CompassSim::start(SimConfig {
        client_ca: Some(client_ca.clone()),
        server_ca: Some(server_ca.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.server_ca_pem().trim(), server_ca.cert_pem.trim());
    assert_eq!(sim.client_ca_pem().trim(), client_ca.cert_pem.trim());
    assert!(
        !format!("{client_ca:?}").contains("PRIVATE KEY"),
        "Debug shows the key"
    );

    sim.create_runtime("rt", TENANT).unwrap();
    let creds = connect(&sim, "rt").await;
    assert_eq!(creds.ca_pem.trim(), client_ca.cert_pem.trim());
    let (status, _) = gql(
        &client(&sim, Some(&creds)),
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn urls_use_the_listen_address_or_the_public_host() {
    let sim = start().await;
    assert!(sim.connector_url().starts_with("https://127.0.0.1:"));
    assert!(sim.connector_url().ends_with("/connector/graphql"));
    assert!(sim.director_url().ends_with("/director/graphql"));
    assert_ne!(sim.connector_url(), sim.cert_secured_connector_url());

    let named = CompassSim::start(SimConfig {
        public_host: Some("localhost".into()),
        admin_addr: None,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert!(named.connector_url().starts_with("https://localhost:"));
    assert_eq!(named.admin_url(), None);
    // The server certificate is valid for the name in the URLs.
    named.create_runtime("rt", TENANT).unwrap();
    let creds = connect(&named, "rt").await;
    assert!(creds.cert_pem.contains("CERTIFICATE"));
}

#[tokio::test]
async fn the_certificate_secured_urls_name_the_public_port_of_a_gateway_in_front() {
    let sim = CompassSim::start(SimConfig {
        public_mtls_port: Some(4443),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let urls = sim.urls();
    assert!(
        urls.director_url.starts_with("https://127.0.0.1:4443/"),
        "{urls:?}"
    );
    assert!(
        urls.cert_secured_connector_url
            .starts_with("https://127.0.0.1:4443/"),
        "{urls:?}"
    );
    assert!(
        !urls.connector_url.contains(":4443/"),
        "the token-secured Connector is not behind it: {urls:?}"
    );
    sim.shutdown().await;
}
