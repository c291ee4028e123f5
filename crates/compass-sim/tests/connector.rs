//! The Connector over real TLS with a plain reqwest client: the token → CSR →
//! certificate → mTLS flow, and every refusal.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use compass_sim::Subject;
use serde_json::json;

const RUNTIME: &str = "runtime-1";

/// The subject the Connector hands out to a holder of a token of
/// `system_auth`: the CN is the SystemAuth, not the runtime.
fn expected_subject(system_auth: &str) -> Subject {
    Subject::parse(&format!(
        "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN={system_auth}"
    ))
    .unwrap()
}

#[tokio::test]
async fn token_csr_certificate_and_mtls_flow_works_and_a_token_is_single_use() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let token = sim.issue_token(RUNTIME).unwrap();
    let system_auth = sim.token_system_auth(&token).unwrap();
    assert!(
        uuid::Uuid::parse_str(&system_auth).is_ok(),
        "a SystemAuth id is a UUID: {system_auth}"
    );
    let http = client(&sim, None);

    let (status, config) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    assert_eq!(status, 200);
    let cfg = &config["data"]["configuration"];
    assert_eq!(
        cfg["certificateSigningRequestInfo"]["subject"],
        format!("O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL,CN={system_auth}")
    );
    assert_eq!(
        cfg["certificateSigningRequestInfo"]["keyAlgorithm"],
        "rsa2048"
    );
    assert_eq!(
        cfg["managementPlaneInfo"]["directorURL"],
        sim.director_url()
    );
    assert_eq!(
        cfg["managementPlaneInfo"]["certificateSecuredConnectorURL"],
        sim.cert_secured_connector_url()
    );
    let csr_token = cfg["token"]["token"].as_str().unwrap();
    assert_ne!(csr_token, token);
    assert_eq!(
        sim.token_system_auth(csr_token).as_deref(),
        Some(system_auth.as_str()),
        "the new token is for the same SystemAuth"
    );

    // The first token is spent.
    let (_, again) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    assert!(
        first_error(&again).contains("already been used"),
        "second use of a token: {again}"
    );

    let key = key(KeyKind::Rsa2048);
    let (_, signed) = gql(
        &http,
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&expected_subject(&system_auth), &key) }),
        &[("Connector-Token", csr_token)],
    )
    .await;
    let result = &signed["data"]["signCertificateSigningRequest"];
    let cert_pem = unb64(&result["clientCertificate"]);
    let ca_pem = unb64(&result["caCertificate"]);
    let chain_pem = unb64(&result["certificateChain"]);
    assert_eq!(chain_pem, format!("{cert_pem}{ca_pem}"));
    assert_eq!(ca_pem, sim.client_ca_pem());
    assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // The CSR token is one-time too.
    let (_, reused) = gql(
        &http,
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&expected_subject(&system_auth), &key) }),
        &[("Connector-Token", csr_token)],
    )
    .await;
    assert!(
        first_error(&reused).contains("already been used"),
        "{reused}"
    );

    // The certificate authenticates on the mTLS endpoints.
    let creds = Credentials {
        key_pem: key.serialize_pem(),
        cert_pem,
        chain_pem,
        ca_pem,
    };
    assert_eq!(serial_of(&creds.cert_pem), "02", "Compass's serial number");
    let mtls = client(&sim, Some(&creds));
    let (status, cert_config) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{cert_config}");
    assert_eq!(
        cert_config["data"]["configuration"]["managementPlaneInfo"]["directorURL"],
        sim.director_url()
    );
    let (status, runtime) = gql(
        &mtls,
        sim.director_url(),
        "query($id: ID!) { runtime(id: $id) { id name labels } }",
        json!({ "id": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(runtime["data"]["runtime"]["id"], RUNTIME, "{runtime}");

    let certs = sim.certificates();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].runtime_id, RUNTIME);
    assert_eq!(certs[0].system_auth, system_auth);
    assert_eq!(common_name_of(&creds.cert_pem), system_auth);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_token_from_the_cert_secured_configuration_signs_on_the_token_endpoint() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let creds = connect(&sim, RUNTIME).await;
    let mtls = client(&sim, Some(&creds));
    let (_, config) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    let token = config["data"]["configuration"]["token"]["token"]
        .as_str()
        .unwrap();
    let (_, signed) = gql(
        &client(&sim, None),
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&expected_subject(&common_name_of(&creds.cert_pem)), &key(KeyKind::EcdsaP256)) }),
        &[("Connector-Token", token)],
    )
    .await;
    assert!(
        signed["data"]["signCertificateSigningRequest"]["clientCertificate"].is_string(),
        "{signed}"
    );
}

#[tokio::test]
async fn renewal_on_the_cert_secured_connector_needs_the_same_subject() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let creds = connect(&sim, RUNTIME).await;
    let mtls = client(&sim, Some(&creds));
    let new_key = key(KeyKind::Rsa2048);

    let system_auth = common_name_of(&creds.cert_pem);
    let mut other = expected_subject(&system_auth);
    other.organization = "Other".into();
    let (_, refused) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        SIGN,
        json!({ "csr": csr(&other, &new_key) }),
        &[],
    )
    .await;
    assert!(
        first_error(&refused).contains("CSR: Invalid organization provided."),
        "{refused}"
    );

    let (_, renewed) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        SIGN,
        json!({ "csr": csr(&expected_subject(&system_auth), &new_key) }),
        &[],
    )
    .await;
    let result = &renewed["data"]["signCertificateSigningRequest"];
    let renewed_creds = Credentials {
        key_pem: new_key.serialize_pem(),
        cert_pem: unb64(&result["clientCertificate"]),
        chain_pem: unb64(&result["certificateChain"]),
        ca_pem: unb64(&result["caCertificate"]),
    };
    assert_ne!(renewed_creds.cert_pem, creds.cert_pem);
    assert_eq!(
        common_name_of(&renewed_creds.cert_pem),
        system_auth,
        "a renewed certificate names the same SystemAuth"
    );
    let (status, _) = gql(
        &client(&sim, Some(&renewed_creds)),
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sim.certificates().len(), 2);
}

#[tokio::test]
async fn a_csr_with_a_wrong_subject_is_refused_naming_the_field() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let http = client(&sim, None);
    // The runtime's id is not the CN: the token's SystemAuth is.
    for cn in ["someone-else", RUNTIME] {
        let token = sim.issue_token(RUNTIME).unwrap();
        let mut wrong = expected_subject(&sim.token_system_auth(&token).unwrap());
        wrong.common_name = cn.into();
        let (status, body) = gql(
            &http,
            sim.connector_url(),
            SIGN,
            json!({ "csr": csr(&wrong, &key(KeyKind::EcdsaP256)) }),
            &[("Connector-Token", &token)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            first_error(&body),
            "Error while signing Certificate Signing Request: CSR: Invalid common name provided.",
            "CN {cn}"
        );
        assert!(body["data"].is_null(), "{body}");
    }

    let token = sim.issue_token(RUNTIME).unwrap();
    let mut wrong_country = expected_subject(&sim.token_system_auth(&token).unwrap());
    wrong_country.country = "DE".into();
    let (_, body) = gql(
        &http,
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&wrong_country, &key(KeyKind::EcdsaP256)) }),
        &[("Connector-Token", &token)],
    )
    .await;
    assert!(
        first_error(&body).ends_with("CSR: Invalid country provided."),
        "{body}"
    );
}

#[tokio::test]
async fn a_csr_with_a_bad_signature_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let good = unb64(&serde_json::Value::String(csr(
        &expected_subject("any"),
        &key(KeyKind::EcdsaP256),
    )));
    let mut der = pem::parse(&good).unwrap().into_contents();
    // The signature is the last element; corrupt its last byte.
    let last = der.len() - 1;
    der[last] ^= 0x55;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let token = sim.issue_token(RUNTIME).unwrap();
    let (_, body) = gql(
        &client(&sim, None),
        sim.connector_url(),
        SIGN,
        json!({ "csr": b64(&tampered) }),
        &[("Connector-Token", &token)],
    )
    .await;
    assert!(
        first_error(&body).contains("CSR signature invalid"),
        "tampered CSR: {body}"
    );

    let token = sim.issue_token(RUNTIME).unwrap();
    let (_, body) = gql(
        &client(&sim, None),
        sim.connector_url(),
        SIGN,
        json!({ "csr": "not base64 at all!" }),
        &[("Connector-Token", &token)],
    )
    .await;
    assert!(first_error(&body).contains("base64"), "{body}");
}

#[tokio::test]
async fn strict_mode_refuses_a_key_of_the_wrong_algorithm() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.set_key_algorithm(RUNTIME, "rsa4096").unwrap();

    // Compass itself does not check the key: without strict mode it passes.
    let creds = connect_with_key(
        &sim,
        &sim.issue_token(RUNTIME).unwrap(),
        &key(KeyKind::Rsa2048),
    )
    .await;
    assert!(creds.cert_pem.contains("BEGIN CERTIFICATE"));

    sim.set_strict(true);
    let http = client(&sim, None);
    let token = sim.issue_token(RUNTIME).unwrap();
    let system_auth = sim.token_system_auth(&token).unwrap();
    let (_, config) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    let cfg = &config["data"]["configuration"];
    assert_eq!(
        cfg["certificateSigningRequestInfo"]["keyAlgorithm"],
        "rsa4096"
    );
    let (_, body) = gql(
        &http,
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&expected_subject(&system_auth), &key(KeyKind::Rsa2048)) }),
        &[("Connector-Token", cfg["token"]["token"].as_str().unwrap())],
    )
    .await;
    assert!(
        first_error(&body).contains("rsa4096 was asked for, the CSR has a 2048-bit RSA key"),
        "{body}"
    );

    let token = sim.issue_token(RUNTIME).unwrap();
    let creds = connect_with_key(&sim, &token, &key(KeyKind::Rsa4096)).await;
    assert!(creds.cert_pem.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.set_token_ttl(Duration::from_secs(60));
    let token = sim.issue_token(RUNTIME).unwrap();
    sim.advance_clock(Duration::from_secs(61));
    let (status, body) = gql(
        &client(&sim, None),
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(first_error(&body).contains("token expired at"), "{body}");
}

#[tokio::test]
async fn a_missing_or_unknown_token_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let http = client(&sim, None);
    let (_, body) = gql(&http, sim.connector_url(), CONFIGURATION, json!({}), &[]).await;
    assert!(first_error(&body).contains("token not provided"), "{body}");
    let (_, body) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", "made-up")],
    )
    .await;
    assert!(first_error(&body).contains("unknown token"), "{body}");
}

/// As in Compass: a revoked certificate keeps working until it expires, but
/// is not renewed.
#[tokio::test]
async fn a_revoked_certificate_keeps_working_but_is_not_renewed() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let creds = connect(&sim, RUNTIME).await;
    let mtls = client(&sim, Some(&creds));
    let (_, revoked) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        REVOKE,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(revoked["data"]["revokeCertificate"], true, "{revoked}");
    assert!(sim.certificates()[0].revoked);

    let (status, body) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let subject = Subject::parse(
        body["data"]["configuration"]["certificateSigningRequestInfo"]["subject"]
            .as_str()
            .unwrap_or_else(|| panic!("configuration answers: {body}")),
    )
    .unwrap();
    let (status, body) = gql(
        &mtls,
        sim.director_url(),
        "query($id: ID!) { runtime(id: $id) { id } }",
        json!({ "id": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert_eq!(
        (status, &body["data"]["runtime"]["id"]),
        (200, &json!(RUNTIME)),
        "{body}"
    );

    // The renewal is refused, with a GraphQL error.
    let (status, body) = gql(
        &mtls,
        sim.cert_secured_connector_url(),
        SIGN,
        json!({ "csr": csr(&subject, &key(KeyKind::Rsa2048)) }),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        first_error(&body).contains("has been revoked: it cannot be renewed"),
        "{body}"
    );

    // Revoking by runtime through the library API does the same.
    let fresh = connect(&sim, RUNTIME).await;
    assert_eq!(sim.revoke_runtime_certificates(RUNTIME).unwrap(), 1);
    assert!(sim.certificates().iter().all(|c| c.revoked));
    let _ = fresh;
}

#[tokio::test]
async fn revoke_needs_a_certificate() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let token = sim.issue_token(RUNTIME).unwrap();
    let (_, body) = gql(
        &client(&sim, None),
        sim.connector_url(),
        REVOKE,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    assert!(
        first_error(&body).contains("needs the client certificate"),
        "{body}"
    );
}

#[tokio::test]
async fn a_certificate_from_a_rotated_out_ca_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let old_ca = sim.client_ca_pem();
    let creds = connect(&sim, RUNTIME).await;
    let new_ca = sim.rotate_ca().unwrap();
    assert_ne!(old_ca, new_ca);

    // Compass answers it with a GraphQL error, at HTTP 200.
    let (status, body) = gql(
        &client(&sim, Some(&creds)),
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        first_error(&body).contains("not issued by the current client CA"),
        "{body}"
    );
    assert!(body["data"].is_null(), "{body}");

    // A new certificate comes from the new CA and works.
    let fresh = connect(&sim, RUNTIME).await;
    assert_eq!(fresh.ca_pem, new_ca);
    let (status, _) = gql(
        &client(&sim, Some(&fresh)),
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.set_cert_validity(Duration::from_secs(5));
    let creds = connect(&sim, RUNTIME).await;
    let cert = pem::parse(&creds.cert_pem).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.contents()).unwrap();
    let validity = parsed.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        5
    );

    sim.advance_clock(Duration::from_secs(6));
    let (status, body) = gql(
        &client(&sim, Some(&creds)),
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 401);
    assert!(first_error(&body).contains("expired at"), "{body}");
}

#[tokio::test]
async fn the_mtls_endpoints_refuse_a_request_without_certificate() {
    let sim = start().await;
    let http = client(&sim, None);
    for url in [sim.cert_secured_connector_url(), sim.director_url()] {
        let (status, body) = gql(&http, url, CONFIGURATION, json!({}), &[]).await;
        assert_eq!(status, 401, "{url}");
        assert!(
            first_error(&body).contains("no client certificate was presented"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_certificate_from_a_foreign_ca_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let other = start().await;
    other.create_runtime(RUNTIME, TENANT).unwrap();
    let foreign = connect(&other, RUNTIME).await;
    let (status, body) = gql(
        &client(&sim, Some(&foreign)),
        sim.director_url(),
        "{ runtime(id: \"runtime-1\") { id } }",
        json!({}),
        &tenant_header(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(first_error(&body).contains("current client CA"), "{body}");
}

#[tokio::test]
async fn the_request_log_names_operations_and_callers_but_no_secrets() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let token = sim.issue_token(RUNTIME).unwrap();
    let key = key(KeyKind::Rsa2048);
    let creds = connect_with_key(&sim, &token, &key).await;
    let mtls = client(&sim, Some(&creds));
    let response = mtls
        .post(sim.director_url())
        .header("Tenant", TENANT)
        .header("x-request-id", "req-42")
        .json(&json!({
            "query": "mutation($id: ID!, $k: String!, $v: Any!) { setRuntimeLabel(runtimeID: $id, key: $k, value: $v) { key value } }",
            "variables": {"id": RUNTIME, "k": "runtime_consoleUrl", "v": "https://console"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let log = sim.request_log();
    let ops: Vec<_> = log.iter().map(|e| e.operations.join(",")).collect();
    assert_eq!(
        ops,
        vec![
            "configuration",
            "signCertificateSigningRequest",
            "setRuntimeLabel"
        ]
    );
    assert!(log
        .iter()
        .all(|e| e.caller.runtime_id.as_deref() == Some(RUNTIME)));
    assert!(log[1].variables["csr"]
        .as_str()
        .unwrap()
        .starts_with("<csr: "));
    assert_eq!(log[2].request_id.as_deref(), Some("req-42"));
    assert_eq!(log[2].caller.tenant.as_deref(), Some(TENANT));
    assert_eq!(
        log[2].caller.certificate,
        Some(sim.certificates()[0].fingerprint.clone())
    );

    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(&token), "the token leaked into the log");
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key.serialized_der());
    assert!(!text.contains(&key_b64[..40]));
    assert!(!text.contains("BEGIN"), "PEM material in the log");

    sim.clear_request_log();
    assert!(sim.request_log().is_empty());
}

/// As observed on Compass: each token the Director issues for a runtime is a
/// SystemAuth of its own, and the certificate it leads to names that
/// SystemAuth in its CN (not the runtime id), always with serial number 2.
#[tokio::test]
async fn each_token_is_its_own_system_auth_and_names_the_certificate_it_leads_to() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let first = sim.issue_token(RUNTIME).unwrap();
    let second = sim.issue_token(RUNTIME).unwrap();
    let (first_auth, second_auth) = (
        sim.token_system_auth(&first).unwrap(),
        sim.token_system_auth(&second).unwrap(),
    );
    assert_ne!(first_auth, second_auth);
    let a = connect_with_key(&sim, &first, &key(KeyKind::Rsa2048)).await;
    let b = connect_with_key(&sim, &second, &key(KeyKind::Rsa2048)).await;
    assert_eq!(common_name_of(&a.cert_pem), first_auth);
    assert_eq!(common_name_of(&b.cert_pem), second_auth);
    assert_eq!(
        (serial_of(&a.cert_pem), serial_of(&b.cert_pem)),
        ("02".into(), "02".into())
    );
    let mut auths = vec![first_auth, second_auth];
    auths.sort();
    assert_eq!(sim.runtime(RUNTIME).unwrap().system_auths, auths);
    // Both act as the runtime.
    for creds in [&a, &b] {
        let (_, body) = gql(
            &client(&sim, Some(creds)),
            sim.director_url(),
            "query($id: ID!) { runtime(id: $id) { id } }",
            json!({ "id": RUNTIME }),
            &[],
        )
        .await;
        assert_eq!(body["data"]["runtime"]["id"], RUNTIME, "{body}");
    }
    // Told apart by their fingerprints, not their serial numbers.
    let certificates = sim.certificates();
    assert_eq!(certificates.len(), 2);
    assert_ne!(certificates[0].fingerprint, certificates[1].fingerprint);
    assert!(certificates.iter().all(|c| c.serial == "02"));
    sim.revoke_certificate(&certificates[0].fingerprint)
        .unwrap();
    assert_eq!(
        sim.certificates().iter().filter(|c| c.revoked).count(),
        1,
        "one revoked by its fingerprint"
    );
    // A runtime deleted takes its SystemAuths along: its certificates no
    // longer say who calls.
    sim.delete_runtime(RUNTIME).unwrap();
    let (status, body) = gql(
        &client(&sim, Some(&a)),
        sim.director_url(),
        "query($id: ID!) { runtime(id: $id) { id } }",
        json!({ "id": RUNTIME }),
        &[],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(first_error(&body).contains("is no SystemAuth"), "{body}");
}

/// As observed on Compass: every `configuration` call, with a token or with
/// the certificate, makes the Connector issue a new one-time token for the
/// same SystemAuth. (A SystemAuth holds one token: a newer one replaces an
/// unused older one, as the Director's source does.)
#[tokio::test]
async fn every_configuration_call_issues_a_new_token_for_the_same_system_auth() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let token = sim.issue_token(RUNTIME).unwrap();
    let system_auth = sim.token_system_auth(&token).unwrap();
    let creds = connect_with_key(&sim, &token, &key(KeyKind::Rsa2048)).await;
    let mtls = client(&sim, Some(&creds));
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, body) = gql(
            &mtls,
            sim.cert_secured_connector_url(),
            CONFIGURATION,
            json!({}),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let cfg = &body["data"]["configuration"];
        assert!(cfg["certificateSigningRequestInfo"]["subject"]
            .as_str()
            .unwrap()
            .ends_with(&format!(",CN={system_auth}")));
        let new = cfg["token"]["token"].as_str().unwrap().to_string();
        assert_eq!(sim.token_system_auth(&new), Some(system_auth.clone()));
        tokens.push(new);
    }
    assert_ne!(tokens[0], tokens[1], "a new token each time");
    let http = client(&sim, None);
    let (_, replaced) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &tokens[0])],
    )
    .await;
    assert!(
        first_error(&replaced).contains("a newer token was issued"),
        "{replaced}"
    );
    let (_, signed) = gql(
        &http,
        sim.connector_url(),
        SIGN,
        json!({ "csr": csr(&expected_subject(&system_auth), &key(KeyKind::EcdsaP256)) }),
        &[("Connector-Token", &tokens[1])],
    )
    .await;
    let cert = unb64(&signed["data"]["signCertificateSigningRequest"]["clientCertificate"]);
    assert_eq!(common_name_of(&cert), system_auth);
    let (_, used) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &tokens[1])],
    )
    .await;
    assert!(first_error(&used).contains("already been used"), "{used}");
}
