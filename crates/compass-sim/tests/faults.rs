//! Every fault kind does what it says, only for its operation, and clears.

mod common;

use std::time::{Duration, Instant};

use common::*;
use compass_sim::{Endpoint, Fault, FaultKind, FaultTimes, Outcome};
use serde_json::{json, Value};

const RUNTIME: &str = "runtime-f";
const RUNTIME_QUERY: &str = "query($id: ID!) { runtime(id: $id) { id } }";

struct Setup {
    sim: compass_sim::CompassSim,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let creds = connect(&sim, RUNTIME).await;
    let http = client(&sim, Some(&creds));
    Setup { sim, http }
}

impl Setup {
    async fn runtime(&self) -> (u16, Value) {
        gql(
            &self.http,
            self.sim.director_url(),
            RUNTIME_QUERY,
            json!({ "id": RUNTIME }),
            &tenant_header(),
        )
        .await
    }

    async fn assert_healthy(&self) {
        let (status, body) = self.runtime().await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["runtime"]["id"], RUNTIME, "{body}");
    }
}

#[tokio::test]
async fn http_500_and_503_hit_the_next_n_requests_then_clear() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::Http500, FaultTimes::Next(1));
    let (status, body) = s.runtime().await;
    assert_eq!(status, 500, "{body}");
    s.assert_healthy().await;

    s.sim
        .inject_fault("runtime", FaultKind::Http503, FaultTimes::Next(2));
    assert_eq!(s.runtime().await.0, 503);
    assert_eq!(s.runtime().await.0, 503);
    s.assert_healthy().await;
    assert!(s.sim.faults().is_empty());
}

#[tokio::test]
async fn a_graphql_error_fault_answers_200_with_an_errors_array() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::GraphqlError, FaultTimes::Next(1));
    let (status, body) = s.runtime().await;
    assert_eq!(status, 200);
    assert!(body["data"].is_null());
    assert!(first_error(&body).contains("injected fault"), "{body}");
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_null_data_fault_answers_data_null_without_errors() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::NullData, FaultTimes::Next(1));
    let (status, body) = s.runtime().await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "data": null }));
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_malformed_json_fault_answers_a_body_that_does_not_parse() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::MalformedJson, FaultTimes::Next(1));
    let response = s
        .http
        .post(s.sim.director_url())
        .header("Tenant", TENANT)
        .json(&json!({ "query": RUNTIME_QUERY, "variables": { "id": RUNTIME } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = response.text().await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "parsed: {text}"
    );
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_delay_fault_delays_and_then_answers_normally() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::Delay { ms: 400 }, FaultTimes::Next(1));
    let started = Instant::now();
    s.assert_healthy().await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    s.assert_healthy().await;
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn a_drop_connection_fault_closes_the_connection_unanswered() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::DropConnection, FaultTimes::Next(1));
    let result = s
        .http
        .post(s.sim.director_url())
        .header("Tenant", TENANT)
        .json(&json!({ "query": RUNTIME_QUERY, "variables": { "id": RUNTIME } }))
        .send()
        .await;
    let error = result.expect_err("a dropped connection is no answer");
    assert!(!error.is_timeout(), "{error:?}");
    s.assert_healthy().await;
}

#[tokio::test]
async fn an_open_fault_stays_until_cleared_and_touches_only_its_operation() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::Http503, FaultTimes::UntilCleared);
    for _ in 0..3 {
        assert_eq!(s.runtime().await.0, 503);
    }
    let (status, body) = gql(
        &s.http,
        s.sim.director_url(),
        "query($rt: ID!) { applicationsForRuntime(runtimeID: $rt) { totalCount } }",
        json!({ "rt": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert_eq!(status, 200, "another operation is not affected: {body}");
    s.sim.clear_faults();
    s.assert_healthy().await;
}

#[tokio::test]
async fn faults_hit_the_token_secured_connector_without_spending_the_token() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let token = sim.issue_token(RUNTIME).unwrap();
    sim.inject_fault("configuration", FaultKind::Http503, FaultTimes::Next(1));
    let http = client(&sim, None);
    let (status, _) = gql(
        &http,
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    assert_eq!(status, 503);
    let creds = connect_with_key(&sim, &token, &key(KeyKind::EcdsaP256)).await;
    assert!(creds.cert_pem.contains("CERTIFICATE"));
}

#[tokio::test]
async fn a_fault_can_be_limited_to_one_endpoint_and_is_logged() {
    let s = setup().await;
    let mut fault = Fault::new(
        "configuration",
        FaultKind::Http500,
        FaultTimes::UntilCleared,
    );
    fault.endpoint = Some(Endpoint::ConnectorToken);
    s.sim.inject(fault);
    let (status, _) = gql(
        &s.http,
        s.sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "the cert-secured Connector is not affected");
    s.sim.clear_faults();

    s.sim
        .inject_fault("*", FaultKind::Http500, FaultTimes::Next(1));
    assert_eq!(s.runtime().await.0, 500);
    let last = s.sim.request_log().pop().unwrap();
    assert_eq!(
        last.outcome,
        Outcome::Fault {
            fault: "http500".into()
        }
    );
    assert_eq!(last.operations, vec!["runtime"]);
}

#[tokio::test]
async fn a_drop_connection_fault_also_closes_an_http1_connection() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let creds = connect(&sim, RUNTIME).await;
    let http1 = client_http1(&sim, Some(&creds));
    sim.inject_fault("runtime", FaultKind::DropConnection, FaultTimes::Next(1));
    let body = json!({ "query": RUNTIME_QUERY, "variables": { "id": RUNTIME } });
    let dropped = http1
        .post(sim.director_url())
        .header("Tenant", TENANT)
        .json(&body)
        .send()
        .await;
    assert!(dropped.is_err(), "expected no answer, got {dropped:?}");
    let (status, answer) = gql(
        &http1,
        sim.director_url(),
        RUNTIME_QUERY,
        json!({ "id": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["runtime"]["id"], RUNTIME);
}
