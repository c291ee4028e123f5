//! The admin HTTP API, driven the way the README's curl examples do.

mod common;

use common::*;
use compass_sim::{CompassSim, Scenario, SimConfig};
use serde_json::{json, Value};

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn new(sim: &CompassSim) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: sim.admin_url().expect("admin API is on").to_string(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

#[tokio::test]
async fn the_admin_api_drives_a_whole_scenario() {
    let sim = start().await;
    let admin = Admin::new(&sim);
    assert!(admin.base.starts_with("http://127.0.0.1:"));

    let (status, info) = admin.get("/admin/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["urls"]["directorUrl"], sim.director_url());
    let (_, server_ca) = admin.get("/admin/server-ca.pem").await;
    assert_eq!(server_ca.as_str().unwrap(), sim.server_ca_pem());

    let (status, runtime) = admin
        .post(
            "/admin/runtimes",
            json!({"id": "rt-admin", "tenant": TENANT, "labels": {"scenarios": ["DEFAULT"]}}),
        )
        .await;
    assert_eq!(status, 201, "{runtime}");
    // The CN is each token's SystemAuth.
    assert_eq!(
        runtime["subject"],
        "O=Org,OU=OrgUnit,L=Locality,ST=State,C=PL"
    );
    assert_eq!(runtime["labels"]["isNormalized"], "true");
    let (status, _) = admin
        .post(
            "/admin/runtimes",
            json!({"id": "rt-admin", "tenant": TENANT}),
        )
        .await;
    assert_eq!(status, 409);

    let (status, body) = admin
        .put(
            "/admin/runtimes/rt-admin/applications/app-1",
            json!({
                "name": "orders",
                "bundles": [{
                    "id": "b1", "name": "Orders",
                    "defaultInstanceAuth": {"credential": {"basic": {"username": "u", "password": "p"}}},
                    "apiDefinitions": [{"id": "api1", "name": "orders", "targetURL": "https://orders"}]
                }]
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = admin
        .put(
            "/admin/runtimes/rt-admin/applications/app-1",
            json!({"name": "orders-v2"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, apps) = admin.get("/admin/runtimes/rt-admin/applications").await;
    assert_eq!(apps[0]["name"], "orders-v2");
    let (status, bad) = admin
        .put(
            "/admin/runtimes/rt-admin/applications/app-2",
            json!({"name": "x", "bundels": []}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("bundels"), "{bad}");

    let (status, settings) = admin
        .put(
            "/admin/settings",
            json!({"certValidity": "1h", "tokenTtl": "5m", "strict": true,
                   "listOrder": {"seeded": 7}, "applicationNames": "asRegistered"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(settings["certValidity"], "1h");
    assert_eq!(settings["strict"], true);
    assert_eq!(settings["listOrder"], json!({"seeded": 7}));
    assert_eq!(settings["applicationNames"], "asRegistered");
    assert_eq!(sim.settings().list_order, compass_sim::ListOrder::Seeded(7));
    let (_, settings) = admin
        .put(
            "/admin/settings",
            json!({"listOrder": "creation", "applicationNames": "normalizedByDirector"}),
        )
        .await;
    assert_eq!(settings["listOrder"], "creation");
    assert_eq!(sim.settings().token_ttl.as_secs(), 300);

    let (status, issued) = admin
        .post("/admin/runtimes/rt-admin/tokens", json!({}))
        .await;
    assert_eq!(status, 201);
    let token = issued["token"].as_str().unwrap();
    assert_eq!(issued["connectorUrl"], sim.connector_url());
    let creds = connect_with_key(&sim, token, &key(KeyKind::Rsa2048)).await;

    // The agent labels the runtime; the admin API reads it back.
    let (_, labelled) = gql(
        &client(&sim, Some(&creds)),
        sim.director_url(),
        "mutation { setRuntimeLabel(runtimeID: \"rt-admin\", key: \"runtime_consoleUrl\", value: \"https://console\") { key } }",
        json!({}),
        &tenant_header(),
    )
    .await;
    assert!(labelled.get("errors").is_none(), "{labelled}");
    let (_, labels) = admin.get("/admin/runtimes/rt-admin/labels").await;
    assert_eq!(
        labels,
        json!({"scenarios": ["DEFAULT"], "isNormalized": "true", "runtime_consoleUrl": "https://console"})
    );

    let (_, certs) = admin.get("/admin/certificates").await;
    let fingerprint = certs[0]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(certs[0]["runtimeId"], "rt-admin");
    assert_eq!(certs[0]["serial"], "02");
    let (_, runtime) = admin.get("/admin/runtimes/rt-admin").await;
    assert_eq!(certs[0]["systemAuth"], runtime["systemAuths"][0]);
    let (status, _) = admin
        .post(
            &format!("/admin/certificates/{fingerprint}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert!(sim.certificates()[0].revoked);
    // Revoked, it still works (it is not renewed; tests/connector.rs).
    let (status, _) = gql(
        &client(&sim, Some(&creds)),
        sim.cert_secured_connector_url(),
        CONFIGURATION,
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    let (status, rotated) = admin.post("/admin/ca/rotate", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(rotated["caGeneration"], 2);
    assert_eq!(
        rotated["clientCaPem"].as_str().unwrap(),
        sim.client_ca_pem()
    );

    let (status, _) = admin
        .post(
            "/admin/faults",
            json!({"operation": "configuration", "kind": "http503", "times": 1}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, faults) = admin.get("/admin/faults").await;
    assert_eq!(faults[0]["kind"], "http503");
    let (status, _) = admin.delete("/admin/faults").await;
    assert_eq!(status, 204);
    assert!(sim.faults().is_empty());

    let (_, log) = admin.get("/admin/requests").await;
    let ops: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operations"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        vec![
            "configuration",
            "signCertificateSigningRequest",
            "setRuntimeLabel",
            "configuration"
        ]
    );
    assert_eq!(log[3]["outcome"]["result"], "ok");
    assert!(!log.to_string().contains(token));
    let (status, _) = admin.delete("/admin/requests").await;
    assert_eq!(status, 204);

    let (status, _) = admin
        .delete("/admin/runtimes/rt-admin/applications/app-1")
        .await;
    assert_eq!(status, 204);
    let (status, missing) = admin
        .delete("/admin/runtimes/rt-admin/applications/app-1")
        .await;
    assert_eq!(status, 404, "{missing}");
    let (status, _) = admin.get("/admin/runtimes/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_clock_can_be_advanced_and_runtimes_patched() {
    let sim = start().await;
    let admin = Admin::new(&sim);
    admin
        .post("/admin/runtimes", json!({"id": "rt", "tenant": TENANT}))
        .await;
    let (status, patched) = admin
        .call(
            reqwest::Method::PATCH,
            "/admin/runtimes/rt",
            Some(json!({"keyAlgorithm": "rsa4096"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["keyAlgorithm"], "rsa4096");
    let token = sim.issue_token("rt").unwrap();
    let (status, clock) = admin
        .post("/admin/clock/advance", json!({"by": "2h"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(clock["clockOffset"], "2h");
    let (_, body) = gql(
        &client(&sim, None),
        sim.connector_url(),
        CONFIGURATION,
        json!({}),
        &[("Connector-Token", &token)],
    )
    .await;
    assert!(first_error(&body).contains("expired"), "{body}");
}

#[tokio::test]
async fn a_scenario_seeds_at_start_and_through_the_admin_api() {
    let scenario = Scenario::parse(
        r#"
settings: { certValidity: 10m }
runtimes:
  - id: rt-seeded
    tenant: tenant-a
    applications:
      - { id: a1, name: first }
    generate: { applications: 5, bundlesPerApplication: 2, apisPerBundle: 3 }
"#,
    )
    .unwrap();
    let sim = CompassSim::start(SimConfig {
        scenario: Some(scenario),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.applications("rt-seeded").unwrap().len(), 6);
    assert_eq!(sim.settings().cert_validity.as_secs(), 600);

    let admin = Admin::new(&sim);
    let response = admin
        .http
        .post(format!("{}/admin/scenario", admin.base))
        .body("runtimes:\n  - id: rt-more\n    tenant: t\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(sim.runtimes().len(), 2);
}
