//! The connection, end to end: a real apiserver, compass-sim over real TLS and
//! the agent, asserting what an operator sees in the CompassConnection, the
//! Secrets and compass-sim.

mod common;

use std::time::{Duration, Instant};

use common::*;
use compass_runtime_agent::crd::labels::PRESENTED_TOKEN_ANNOTATION;
use compass_runtime_agent::crd::{ConnectionState, COMPASS_CONNECTION_NAME};
use compass_sim::{Endpoint, Fault, FaultKind, FaultTimes};
use kube::api::{DeleteParams, Patch, PatchParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cluster_with_a_configuration_secret_gets_connected_and_synchronized() {
    let mut world = World::new().await;
    let token = world.configure_with_fresh_token().await;
    let started = Instant::now();
    world.start_agent().await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    eprintln!("time from start to Synchronized: {:?}", started.elapsed());
    // Every request the agent sent to Compass carried the reconcile's request
    // id, and the one-time token shows nowhere in what Compass logged.
    let log = world.sim.request_log();
    assert!(!log.is_empty());
    // `<runtime id>_<uuid>`, as the Go agent makes it.
    assert!(
        log.iter()
            .all(|e| e.request_id.as_deref().is_some_and(|id| id
                .strip_prefix(&format!("{RUNTIME_ID}_"))
                .is_some_and(|uuid| uuid.len() == 36))),
        "x-request-id on every request: {log:?}"
    );
    let logged = format!("{log:?}");
    assert!(
        !logged.contains(&token),
        "the token appears in the request log"
    );

    let status = connection.status.unwrap();
    assert!(status.connection_status.established.is_some());
    let certificate = &status.connection_status.certificate_status;
    assert!(certificate.not_after.is_some() && certificate.not_before.is_some());
    assert_eq!(
        connection.spec.management_info.director_url,
        world.sim.director_url()
    );
    assert_eq!(
        connection.spec.management_info.connector_url,
        world.sim.cert_secured_connector_url()
    );
    let conditions: Vec<_> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Connected", "True"),
            ("CertificateValid", "True"),
            ("Synchronized", "True")
        ]
    );

    let secret = world
        .certificate_secret()
        .await
        .expect("the client certificate Secret exists");
    assert!(secret["key"].contains("PRIVATE KEY"));
    assert!(
        director_accepts(&world.sim, &secret["key"], &secret["crtChain"]).await,
        "the stored certificate authenticates to the Director"
    );
    let ca =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(world.client.clone(), CA_NS)
            .get("ca-certificates")
            .await
            .expect("the CA Secret exists");
    let ca_pem = String::from_utf8(ca.data.unwrap()["cacert"].0.clone()).unwrap();
    assert_eq!(ca_pem.trim(), world.sim.client_ca_pem().trim());
    // Health endpoints as a kubelet sees them.
    let health = world.agent().endpoints.health;
    let get = |path: &str| reqwest::get(format!("http://{health}{path}"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(
        get("/readyz").await.unwrap().status(),
        200,
        "ready with a valid certificate"
    );
    // Metrics tell the same story.
    let metrics = world.metrics_text().await;
    assert!(
        metrics.contains(r#"compass_runtime_agent_connection_state{state="Synchronized"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"compass_runtime_agent_connection_establishments_total{outcome="Success"} 1"#
        ),
        "{metrics}"
    );
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_config_map_works_as_well() {
    let mut world = World::new().await;
    world.use_config_map();
    let token = world.sim.issue_token(RUNTIME_ID).unwrap();
    world.write_config_map(world.config_values(&token)).await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configuration_the_state_is_connection_failed_until_it_is_added() {
    let mut world = World::new().await;
    world.start_agent().await;
    let health = world.agent().endpoints.health;
    let readyz = reqwest::get(format!("http://{health}/readyz"))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503, "not ready without a certificate");
    let failed = world
        .wait_for_state(ConnectionState::ConnectionFailed, LONG)
        .await;
    let error = failed.status.unwrap().connection_status.error;
    assert!(
        error.contains("kyma-system/compass-agent-configuration")
            && error.contains("does not exist"),
        "the error names the missing source: {error}"
    );
    world.configure_with_fresh_token().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_with_a_missing_key_or_bad_url_is_a_clear_error() {
    let mut world = World::new().await;
    let mut values = world.config_values("token");
    values.remove("TENANT");
    values.insert("CONNECTOR_URL".into(), "::not a url".into());
    world.write_config_secret(values).await;
    world.start_agent().await;
    let failed = world
        .wait_for_connection("an error naming TENANT", LONG, |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.connection_status.error.contains("TENANT"))
        })
        .await;
    assert_eq!(
        failed.status.unwrap().connection_state,
        ConnectionState::ConnectionFailed
    );
    let mut values = world.config_values("token");
    values.insert("CONNECTOR_URL".into(), "::not a url".into());
    world.write_config_secret(values).await;
    world
        .wait_for_connection("an error naming the URL", LONG, |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.connection_status.error.contains("::not a url"))
        })
        .await;
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_fails_and_a_fresh_one_connects() {
    let mut world = World::new().await;
    let token = world.sim.issue_token(RUNTIME_ID).unwrap();
    world.write_config_secret(world.config_values(&token)).await;
    // Spend it before the agent can.
    let spender = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(world.sim.server_ca_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let spent = spender
        .post(world.sim.connector_url())
        .header("Connector-Token", &token)
        .json(&serde_json::json!({"query": "{ configuration { token { token } } }"}))
        .send()
        .await
        .unwrap();
    assert!(spent.status().is_success());
    world.start_agent().await;
    let failed = world
        .wait_for_connection("a token error", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionFailed
                    && s.connection_status.error.contains("configuration")
            })
        })
        .await;
    assert!(
        world.certificate_secret().await.is_none(),
        "no credentials without a valid token"
    );
    eprintln!(
        "spent token error: {}",
        failed.status.unwrap().connection_status.error
    );
    world.configure_with_fresh_token().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_before_they_expire() {
    let mut world = World::new().await;
    world.sim.set_cert_validity(Duration::from_secs(20));
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    let first = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let first_not_after = first
        .status
        .unwrap()
        .connection_status
        .certificate_status
        .not_after
        .unwrap();
    // Certificates are told apart by their content: Compass gives each the
    // serial number 2.
    let first_crt = world.certificate_secret().await.unwrap()["crt"].clone();

    // Until two renewals happened, sample the stored certificate: it must always be valid.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stored = vec![first_crt.clone()];
    while stored.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "fewer than two renewals within 60 s: {} certificates",
            stored.len()
        );
        let secret = world.certificate_secret().await.unwrap();
        let pem = pem::parse(&secret["crt"]).unwrap().into_contents();
        let (_, cert) = x509_parser::parse_x509_certificate(&pem).unwrap();
        assert!(
            cert.validity().is_valid(),
            "the stored certificate expired before it was renewed"
        );
        if stored.last() != Some(&secret["crt"]) {
            stored.push(secret["crt"].clone());
        }
        let state = world.state().await.unwrap();
        assert!(
            state.is_connected(),
            "the connection broke during renewal: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connection = world.connection().await.unwrap();
    let status = connection.status.unwrap().connection_status;
    assert!(status.renewed.is_some(), "renewed is set");
    assert!(
        status.certificate_status.not_after.unwrap().0 > first_not_after.0,
        "notAfter moved"
    );
    assert_eq!(
        world.csr_count(),
        3,
        "one CSR to connect and one per renewal"
    );
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_credentials_now_renews_at_once_and_is_cleared() {
    let mut world = World::new().await;
    world.settings.controller_sync_period = Duration::from_secs(60);
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let before = world.certificate_secret().await.unwrap()["crt"].clone();
    world.ask_for_renewal().await;
    let renewed = world
        .wait_for_connection("the flag cleared after a renewal", SHORT, |c| {
            !c.spec.refresh_credentials_now
                && c.status
                    .as_ref()
                    .is_some_and(|s| s.connection_status.renewed.is_some())
        })
        .await;
    assert!(!renewed.spec.refresh_credentials_now);
    let after = world.certificate_secret().await.unwrap()["crt"].clone();
    assert_ne!(before, after, "a new certificate is stored");
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_connection_resource_connects_anew_with_the_configured_token() {
    let mut world = World::connected().await;
    let first = world.connection().await.expect("compass-connection exists");
    let old_uid = first.metadata.uid.clone();
    world.configure_with_fresh_token().await;
    world
        .connections()
        .delete(COMPASS_CONNECTION_NAME, &DeleteParams::default())
        .await
        .unwrap();
    let recreated = world
        .wait_for_connection("a new, synchronized CompassConnection", LONG, |c| {
            c.metadata.uid != old_uid
                && c.status.as_ref().map(|s| s.connection_state)
                    == Some(ConnectionState::Synchronized)
        })
        .await;
    assert!(recreated
        .status
        .unwrap()
        .connection_status
        .established
        .is_some());
    assert_eq!(world.csr_count(), 2, "the second connection made a new CSR");
    world.stop_agent().await;
}

/// The digest of the last presented token the agent records on the
/// CompassConnection.
fn presented_token(connection: &compass_runtime_agent::crd::CompassConnection) -> Option<String> {
    connection
        .metadata
        .annotations
        .as_ref()?
        .get(PRESENTED_TOKEN_ANNOTATION)
        .cloned()
}

async fn stored_ca(world: &World) -> String {
    let ca =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(world.client.clone(), CA_NS)
            .get("ca-certificates")
            .await
            .expect("the CA Secret exists");
    String::from_utf8(ca.data.unwrap()["cacert"].0.clone()).unwrap()
}

/// Tokens presented: `configuration` on the token-secured Connector (the
/// signing step that follows uses the token it answers with).
fn token_requests(world: &World) -> usize {
    world
        .sim
        .request_log()
        .iter()
        .filter(|e| {
            matches!(e.endpoint, Endpoint::ConnectorToken)
                && e.operations.iter().any(|o| o == "configuration")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refusals_keeps_the_certificate_and_spends_no_token() {
    // The Connector asked at every cycle (as the original agent asks it), so
    // that its refusals meet every maintenance.
    let mut world = World::connected_with(|settings| {
        settings.connector_check_interval = Duration::ZERO;
    })
    .await;
    let credentials = world.certificate_secret().await.unwrap();
    // As after an upgrade from the original agent: no token recorded yet.
    // The token in the configuration is then taken as the one presented,
    // so a failing Connector does not make the agent try the spent token.
    world
        .connections()
        .patch(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {PRESENTED_TOKEN_ANNOTATION: null}}
            })),
        )
        .await
        .unwrap();
    let adopted = world
        .wait_for_connection("the configured token recorded as presented", LONG, |c| {
            presented_token(c).is_some()
        })
        .await;
    world.sim.clear_request_log();
    let connections_before = world.csr_count();
    for (kind, times) in [(FaultKind::Http401, 2), (FaultKind::Http403, 1)] {
        world.sim.inject(Fault {
            endpoint: Some(Endpoint::ConnectorCert),
            ..Fault::new("*", kind, FaultTimes::Next(times))
        });
    }
    let refused = world
        .wait_for_connection("the refusal reported", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionMaintenanceFailed
                    && s.connection_status.error.contains("401")
            })
        })
        .await;
    eprintln!(
        "refusal as reported: {}",
        refused.status.unwrap().connection_status.error
    );
    assert_eq!(
        world.certificate_secret().await.unwrap(),
        credentials,
        "the certificate is kept while refused"
    );
    // The burst passes (three refusals), the same certificate works again.
    let deadline = Instant::now() + LONG;
    while !world.sim.faults().is_empty() {
        assert!(Instant::now() < deadline, "the agent stopped trying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(world.certificate_secret().await.unwrap(), credentials);
    assert_eq!(token_requests(&world), 0, "no token was presented");
    assert_eq!(world.csr_count(), connections_before, "no new certificate");
    assert_eq!(
        presented_token(&world.connection().await.unwrap()),
        presented_token(&adopted)
    );
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_keeps_working_and_a_new_token_replaces_it() {
    let mut world = World::connected().await;
    let before = world.certificate_secret().await.unwrap();
    let first_token = presented_token(&world.connection().await.unwrap());
    assert!(first_token.is_some(), "the token presented is recorded");
    assert_eq!(
        world.sim.revoke_runtime_certificates(RUNTIME_ID).unwrap(),
        1
    );
    // Revoked: it still works for the configuration and the Director, but
    // Compass refuses to renew it. Without a new token, the agent says so and
    // keeps it.
    world.ask_for_renewal().await;
    let failed = world
        .wait_for_connection("the refused renewal reported", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionMaintenanceFailed
                    && s.connection_status.error.contains("revoked")
            })
        })
        .await;
    assert!(failed.spec.refresh_credentials_now, "the request stays");
    let error = failed.status.unwrap().connection_status.error;
    assert!(
        error.contains("a new one-time token in the configuration connects anew"),
        "the status shows the way out: {error}"
    );
    assert_eq!(world.certificate_secret().await.unwrap(), before);
    assert_eq!(
        token_requests(&world),
        1,
        "only the first connection's token"
    );

    // The operator's signal: a new token in the configuration.
    world.configure_with_fresh_token().await;
    let now = world
        .wait_for_new_certificate(&before["crt"], "the new token")
        .await;
    assert_ne!(now["crt"], before["crt"]);
    assert!(director_accepts(&world.sim, &now["key"], &now["crtChain"]).await);
    assert_eq!(
        token_requests(&world),
        2,
        "the new token was presented once"
    );
    let connection = world.connection().await.unwrap();
    assert!(!connection.spec.refresh_credentials_now, "answered");
    assert_ne!(presented_token(&connection), first_token);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_ca_rotation_a_new_token_brings_a_new_certificate_and_ca() {
    let mut world = World::connected().await;
    let before = world.certificate_secret().await.unwrap();
    let old_ca = stored_ca(&world).await;
    world.sim.rotate_ca().unwrap();
    // The old certificate is refused with a GraphQL error; no new token yet.
    world
        .wait_for_connection("the refusal reported", LONG, |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.connection_state == ConnectionState::ConnectionMaintenanceFailed)
        })
        .await;
    assert_eq!(world.certificate_secret().await.unwrap(), before);
    world.configure_with_fresh_token().await;
    let now = world
        .wait_for_new_certificate(&before["crt"], "the CA rotation and a new token")
        .await;
    assert!(director_accepts(&world.sim, &now["key"], &now["crtChain"]).await);
    let ca_pem = stored_ca(&world).await;
    assert_eq!(
        ca_pem.trim(),
        world.sim.client_ca_pem().trim(),
        "the new CA is stored"
    );
    assert_ne!(ca_pem, old_ca);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_faults_are_reported_keep_credentials_back_off_and_recover() {
    // The Connector asked at every cycle, so that its faults meet every
    // maintenance.
    let mut world = World::connected_with(|settings| {
        settings.connector_check_interval = Duration::ZERO;
    })
    .await;
    let credentials = world.certificate_secret().await.unwrap();

    for (kind, needle) in [
        (FaultKind::Http500, "HTTP status 500"),
        (FaultKind::MalformedJson, "not JSON"),
        (FaultKind::Delay { ms: 5_000 }, "no answer"),
    ] {
        world.sim.clear_request_log();
        world
            .sim
            .inject_fault("configuration", kind, FaultTimes::UntilCleared);
        let failed = world
            .wait_for_connection(
                &format!("ConnectionMaintenanceFailed for {kind:?}"),
                LONG,
                |c| {
                    c.status.as_ref().is_some_and(|s| {
                        s.connection_state == ConnectionState::ConnectionMaintenanceFailed
                            && s.connection_status.error.contains(needle)
                    })
                },
            )
            .await;
        assert!(failed
            .status
            .unwrap()
            .connection_status
            .error
            .contains("configuration"));
        assert_eq!(
            world.certificate_secret().await.unwrap(),
            credentials,
            "credentials are untouched"
        );
        world.sim.clear_faults();
        world
            .wait_for_state(ConnectionState::Synchronized, LONG)
            .await;
    }

    // Backoff: during 12 s of failures, attempts are spaced ever wider.
    world.sim.clear_request_log();
    world.sim.inject_fault(
        "configuration",
        FaultKind::Http503,
        FaultTimes::UntilCleared,
    );
    let observe = Instant::now();
    world
        .wait_for_state(ConnectionState::ConnectionMaintenanceFailed, LONG)
        .await;
    while observe.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let attempts = world
        .sim
        .request_log()
        .iter()
        .filter(|e| e.operations.iter().any(|o| o == "configuration"))
        .count();
    eprintln!("configuration attempts in 12 s of failures: {attempts}");
    assert!(attempts >= 2, "the agent kept trying: {attempts}");
    assert!(
        attempts <= 6,
        "without backoff there would be ~12 attempts (one per second); found {attempts}"
    );
    world.sim.clear_faults();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(world.certificate_secret().await.unwrap(), credentials);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_keeps_its_certificate() {
    let mut world = World::connected().await;
    let first = world.connection().await.expect("compass-connection exists");
    let credentials = world.certificate_secret().await.unwrap();
    world.stop_agent().await;
    let last_attempt = first
        .status
        .unwrap()
        .synchronization_status
        .unwrap()
        .last_attempt
        .unwrap();

    world.start_agent().await;
    world
        .wait_for_connection("a synchronization after the restart", LONG, |c| {
            c.status
                .as_ref()
                .and_then(|s| s.synchronization_status.as_ref())
                .and_then(|s| s.last_attempt.clone())
                .is_some_and(|t| t.0 > last_attempt.0)
                && c.status.as_ref().map(|s| s.connection_state)
                    == Some(ConnectionState::Synchronized)
        })
        .await;
    assert_eq!(world.csr_count(), 1, "no new CSR after the restart");
    assert_eq!(world.certificate_secret().await.unwrap(), credentials);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    shared_reference_absent,
    ignore = "../shared/kyma-crds (the original Kyma CRDs) is absent; with CI set this test runs and fails"
)]
async fn the_original_crd_without_status_subresource_still_works() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/kyma-crds/compassconnections.compass.kyma-project.io.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the original CRD {} cannot be read ({e}): this test checks against it",
            path.display()
        )
    });
    let original: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_yaml::from_str(&text).unwrap();
    assert!(
        original.spec.versions[0].subresources.is_none(),
        "the original has no status subresource"
    );
    let mut crds = compass_runtime_agent::crd::all();
    crds[0] = original;
    let mut world = World::with_crds(crds).await;
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert!(connection
        .status
        .unwrap()
        .connection_status
        .certificate_status
        .not_after
        .is_some());
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_algorithm_the_connector_asks_for_is_honoured() {
    let mut world = World::new().await;
    world.sim.set_strict(true);
    world.sim.set_key_algorithm(RUNTIME_ID, "rsa4096").unwrap();
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let crt = world.certificate_secret().await.unwrap()["crt"].clone();
    let der = pem::parse(&crt).unwrap().into_contents();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    match cert.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 4096),
        other => panic!("expected RSA, found {other:?}"),
    }
    world.stop_agent().await;
}

/// An admission policy that refuses every write to the client certificate
/// Secret: what an operator gets from a missing RBAC rule or a strict policy.
/// Which writes to a frozen Secret are refused.
#[derive(Clone, Copy, PartialEq)]
enum Refused {
    /// All, dry runs included: the agent's check before spending a token
    /// sees it.
    Every,
    /// Real writes only: the check passes, the write after it fails (a
    /// policy or a quota that bites between the two).
    RealWritesOnly,
}

/// Makes the apiserver refuse writes to the Secret `name` in `namespace`,
/// with a ValidatingAdmissionPolicy named `policy` (its binding too).
async fn freeze_secret(world: &World, namespace: &str, name: &str, refused: Refused, policy: &str) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use kube::api::PostParams;
    let mut expression =
        format!("object.metadata.namespace != '{namespace}' || object.metadata.name != '{name}'");
    if refused == Refused::RealWritesOnly {
        expression = format!("request.dryRun == true || {expression}");
    }
    let policy_object: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["secrets"]
            }]},
            "validations": [{
                "expression": expression,
                "message": format!("the Secret {name} is frozen")
            }]
        }
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"]}
    }))
    .unwrap();
    kube::Api::<ValidatingAdmissionPolicy>::all(world.client.clone())
        .create(&PostParams::default(), &policy_object)
        .await
        .expect("the policy is created");
    kube::Api::<ValidatingAdmissionPolicyBinding>::all(world.client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("the binding is created");
    // Policies take effect asynchronously: wait until a write is refused
    // (a real create of a Secret that does not exist yet; deleted if it passed).
    let secrets = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        world.client.clone(),
        namespace,
    );
    let dry_run = refused == Refused::Every;
    test_support::wait_for("the policy to refuse writes", SHORT, || async {
        if secrets.get_opt(name).await.unwrap().is_some() {
            // Exists: an update of it must be refused.
            let mut existing = secrets.get(name).await.unwrap();
            existing.metadata.managed_fields = None;
            let params = PostParams {
                dry_run,
                ..PostParams::default()
            };
            let refused = secrets.replace(name, &params, &existing).await.is_err();
            return refused.then_some(());
        }
        let mut secret = k8s_openapi::api::core::v1::Secret::default();
        secret.metadata.name = Some(name.into());
        let params = PostParams {
            dry_run,
            ..PostParams::default()
        };
        match secrets.create(&params, &secret).await {
            Err(_) => Some(()),
            Ok(_) => {
                if !dry_run {
                    secrets
                        .delete(name, &DeleteParams::default())
                        .await
                        .unwrap();
                }
                None
            }
        }
    })
    .await;
}

async fn thaw(world: &World, policy: &str) {
    kube::Api::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>::all(
        world.client.clone(),
    )
    .delete(policy, &DeleteParams::default())
    .await
    .expect("the binding is deleted");
}

/// With the Secret `namespace/name` refusing every write (dry runs
/// included), the agent reports it and keeps the token; once the Secret can
/// be written, the same token connects.
async fn the_token_waits_while_a_secret_cannot_be_written(namespace: &str, name: &str) {
    let mut world = World::new().await;
    let policy = format!("freeze-{name}");
    freeze_secret(&world, namespace, name, Refused::Every, &policy).await;
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    let failed = world
        .wait_for_connection(&format!("ConnectionFailed about {name}"), LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionFailed
                    && s.connection_status.error.contains(name)
            })
        })
        .await;
    let error = failed.status.unwrap().connection_status.error;
    assert!(
        error.contains("one-time token was not used") && error.contains("is frozen"),
        "{error}"
    );
    assert_eq!(token_requests(&world), 0, "the token was presented");

    // Fixed by the operator: the same token connects.
    thaw(&world, &policy).await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(token_requests(&world), 1);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_not_spent_while_the_certificate_cannot_be_stored() {
    the_token_waits_while_a_secret_cannot_be_written(NS, "cluster-client-certificates").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_not_spent_while_the_ca_cannot_be_stored() {
    the_token_waits_while_a_secret_cannot_be_written(CA_NS, "ca-certificates").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_cannot_be_stored_after_the_token_is_spent_is_retried_with_the_certificate_in_use(
) {
    let mut world = World::new().await;
    // The check before spending the token passes; the real write fails.
    freeze_secret(
        &world,
        CA_NS,
        "ca-certificates",
        Refused::RealWritesOnly,
        "freeze-ca",
    )
    .await;
    world.configure_with_fresh_token().await;
    world
        .sim
        .put_application(
            RUNTIME_ID,
            serde_json::from_value(serde_json::json!({"id": "app-a", "name": "a"})).unwrap(),
        )
        .unwrap();
    world.start_agent().await;
    let failed = world
        .wait_for_connection("the CA reported as not stored", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::ConnectionMaintenanceFailed
                    && s.connection_status
                        .error
                        .contains("CA certificate is not stored")
            })
        })
        .await;
    eprintln!(
        "status with the CA not stored: {}",
        failed.status.unwrap().connection_status.error
    );
    let stored = world
        .certificate_secret()
        .await
        .expect("the client certificate is stored");
    assert!(director_accepts(&world.sim, &stored["key"], &stored["crtChain"]).await);
    // The certificate is in use meanwhile: the Applications are synchronized.
    test_support::wait_for("the Application synchronized", LONG, || async {
        kube::Api::<compass_runtime_agent::crd::Application>::all(world.client.clone())
            .get_opt("mp-a")
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;

    thaw(&world, "freeze-ca").await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(
        stored_ca(&world).await.trim(),
        world.sim.client_ca_pem().trim()
    );
    assert_eq!(
        token_requests(&world),
        1,
        "the spent token was never tried again"
    );
    assert_eq!(
        world.csr_count(),
        1,
        "the first certificate is the one in use"
    );
    assert_eq!(world.certificate_secret().await.unwrap(), stored);
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_step_that_fails_does_not_waste_the_one_time_token() {
    let mut world = World::new().await;
    world.configure_with_fresh_token().await;
    // The Connector spends the token on `configuration`; the signing after it
    // fails twice on the way.
    world.sim.inject_fault(
        "signCertificateSigningRequest",
        FaultKind::Http503,
        FaultTimes::Next(2),
    );
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let token_calls: Vec<_> = world
        .sim
        .request_log()
        .into_iter()
        .filter(|entry| matches!(entry.endpoint, compass_sim::Endpoint::ConnectorToken))
        .map(|entry| (entry.operations.join(","), entry.outcome))
        .collect();
    let configurations = token_calls
        .iter()
        .filter(|(operations, _)| operations == "configuration")
        .count();
    assert_eq!(
        configurations, 1,
        "the token was presented once, no new token was needed: {token_calls:?}"
    );
    assert_eq!(
        token_calls.len(),
        4,
        "configuration, two failed signings, one signing: {token_calls:?}"
    );
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_for_a_deleted_connection_never_lands_on_its_successor() {
    use compass_runtime_agent::crd::CompassConnectionStatus;
    use compass_runtime_agent::k8s::connection::{ConnectionStore, ConnectionStoreError};
    let world = World::new().await;
    let store = ConnectionStore::new(world.client.clone());
    store.create_initial().await.unwrap();
    let old = world.connection().await.unwrap();
    // Deleted and recreated while a reconcile of the old one is in flight.
    world
        .connections()
        .delete(COMPASS_CONNECTION_NAME, &DeleteParams::default())
        .await
        .unwrap();
    test_support::wait_for("the old object to be gone", SHORT, || async {
        world.connection().await.is_none().then_some(())
    })
    .await;
    store.create_initial().await.unwrap();
    let synchronized = CompassConnectionStatus {
        connection_state: ConnectionState::Synchronized,
        ..CompassConnectionStatus::default()
    };
    let late = store
        .write_status(old.metadata.uid.as_deref(), &synchronized)
        .await;
    assert!(matches!(late, Err(ConnectionStoreError::Gone)), "{late:?}");
    let successor = world.connection().await.unwrap();
    assert_ne!(successor.metadata.uid, old.metadata.uid);
    assert_ne!(
        successor.status.map(|s| s.connection_state),
        Some(ConnectionState::Synchronized),
        "the successor must connect anew, not inherit Synchronized"
    );
    // The successor's own reconcile writes as usual.
    store
        .write_status(successor.metadata.uid.as_deref(), &synchronized)
        .await
        .unwrap();
    assert_eq!(world.state().await, Some(ConnectionState::Synchronized));
}
