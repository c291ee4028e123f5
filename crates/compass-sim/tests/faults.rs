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

#[tokio::test]
async fn http_401_and_403_refuse_with_a_graphql_shaped_body() {
    let s = setup().await;
    s.sim
        .inject_fault("runtime", FaultKind::Http401, FaultTimes::Next(1));
    s.sim
        .inject_fault("runtime", FaultKind::Http403, FaultTimes::Next(1));
    let (status, body) = s.runtime().await;
    assert_eq!(status, 401, "{body}");
    assert!(first_error(&body).contains("refused"), "{body}");
    assert_eq!(s.runtime().await.0, 403);
    s.assert_healthy().await;
}

const PAGE_QUERY: &str = "query($id: ID!, $after: PageCursor) {
  applicationsForRuntime(runtimeID: $id, first: 2, after: $after) {
    data { id } pageInfo { endCursor hasNextPage } totalCount
  }
}";

impl Setup {
    async fn page(&self, after: Option<&str>) -> Value {
        let (status, body) = gql(
            &self.http,
            self.sim.director_url(),
            PAGE_QUERY,
            json!({ "id": RUNTIME, "after": after }),
            &tenant_header(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["applicationsForRuntime"].clone()
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_null_list_fault_answers_a_page_whose_list_is_null() {
    let s = setup().await;
    let apps = compass_sim::model::generate_applications(3, 0, 0, 0);
    s.sim.set_applications(RUNTIME, apps).unwrap();
    s.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::NullList,
        FaultTimes::Next(1),
    );
    let page = s.page(None).await;
    assert!(page["data"].is_null(), "{page}");
    assert_eq!(
        page["totalCount"], 3,
        "the rest of the page is served: {page}"
    );
    assert_eq!(ids(&s.page(None).await).len(), 2);
}

#[tokio::test]
async fn remove_first_application_shifts_the_pages_after_the_first() {
    let s = setup().await;
    let apps = compass_sim::model::generate_applications(5, 0, 0, 0);
    s.sim.set_applications(RUNTIME, apps).unwrap();
    // In the Director's order: the first removed is the first served.
    let all = s.sim.served_application_ids(RUNTIME).unwrap();
    s.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::RemoveFirstApplication,
        FaultTimes::Next(1),
    );
    // The first page passes, and leaves the fault in place.
    let first = s.page(None).await;
    assert_eq!(ids(&first), all[..2]);
    assert_eq!(s.sim.faults().len(), 1);
    // The second: the first application goes, so the page starts one later.
    let cursor = first["pageInfo"]["endCursor"].as_str().unwrap().to_string();
    let second = s.page(Some(&cursor)).await;
    assert_eq!(ids(&second), all[3..5], "{second}");
    assert_eq!(second["totalCount"], 4);
    assert!(s.sim.faults().is_empty());
}

#[tokio::test]
async fn a_redirect_fault_points_at_plain_http_and_an_oversized_one_never_ends_its_json() {
    let s = setup().await;
    s.sim.inject_fault(
        "configuration",
        FaultKind::RedirectToHttp { port: 9 },
        FaultTimes::Next(1),
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([reqwest::Certificate::from_pem(s.sim.server_ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let response = no_redirects
        .post(s.sim.connector_url())
        .header("Connector-Token", "t")
        .json(&json!({ "query": CONFIGURATION }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(
        response.headers()["location"],
        "http://127.0.0.1:9/connector/graphql"
    );

    s.sim.inject_fault(
        "runtime",
        FaultKind::Oversized { megabytes: 3 },
        FaultTimes::Next(1),
    );
    let body = s
        .http
        .post(s.sim.director_url())
        .header("Tenant", TENANT)
        .json(&json!({ "query": RUNTIME_QUERY, "variables": { "id": RUNTIME } }))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body.len() >= 3 << 20, "{}", body.len());
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    s.assert_healthy().await;
}

#[tokio::test]
async fn a_slow_answer_shows_the_state_from_when_the_request_came() {
    let s = std::sync::Arc::new(setup().await);
    let apps = compass_sim::model::generate_applications(2, 0, 0, 0);
    s.sim.set_applications(RUNTIME, apps).unwrap();
    let all = s.sim.served_application_ids(RUNTIME).unwrap();
    s.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::SlowAnswer { ms: 1_500 },
        FaultTimes::Next(1),
    );
    let asking = tokio::spawn({
        let s = s.clone();
        async move { s.page(None).await }
    });
    // The fault is taken when the request comes: from then on, a change
    // does not reach that answer.
    while !s.sim.faults().is_empty() {
        tokio::task::yield_now().await;
    }
    s.sim.remove_application(RUNTIME, &all[0]).unwrap();
    assert_eq!(
        ids(&s.page(None).await),
        all[1..],
        "a later request sees the change"
    );
    assert!(!asking.is_finished(), "the slow answer is held");
    assert_eq!(
        ids(&asking.await.unwrap()),
        all,
        "the slow answer is from before"
    );
}
