//! The Director over mTLS: tenant and identity checks, labels, the data model
//! on the wire, and paging at every level.

mod common;

use std::collections::BTreeSet;

use common::*;
use compass_sim::model::{
    generate_applications, generate_bundle, ApiDefinition, AppAuth, Application, BasicCredential,
    Bundle, Credential, CsrfAuth, InstanceAuth, MultiMap, OAuthCredential, RequestAuth,
};
use serde_json::{json, Value};

const RUNTIME: &str = "runtime-d";

const APPS: &str = r#"
query Apps($rt: ID!, $first: Int, $after: PageCursor, $bFirst: Int, $bAfter: PageCursor,
           $aFirst: Int, $aAfter: PageCursor, $eFirst: Int, $eAfter: PageCursor) {
  applicationsForRuntime(runtimeID: $rt, first: $first, after: $after) {
    totalCount
    pageInfo { startCursor endCursor hasNextPage }
    data {
      id name providerName description labels auths { id }
      bundles(first: $bFirst, after: $bAfter) {
        totalCount
        pageInfo { startCursor endCursor hasNextPage }
        data {
          id name description instanceAuthRequestInputSchema
          defaultInstanceAuth {
            credential {
              ... on BasicCredentialData { username password }
              ... on OAuthCredentialData { clientId clientSecret url }
            }
            additionalHeaders additionalQueryParams
            requestAuth { csrf { tokenEndpointURL } }
          }
          apiDefinitions(first: $aFirst, after: $aAfter) {
            totalCount
            pageInfo { startCursor endCursor hasNextPage }
            data { id name description targetURL }
          }
          eventDefinitions(first: $eFirst, after: $eAfter) {
            totalCount
            pageInfo { startCursor endCursor hasNextPage }
            data { id name description }
          }
        }
      }
    }
  }
}"#;

struct Director {
    http: reqwest::Client,
    url: String,
}

impl Director {
    async fn new(sim: &compass_sim::CompassSim) -> Director {
        let creds = connect(sim, RUNTIME).await;
        Director {
            http: client(sim, Some(&creds)),
            url: sim.director_url().to_string(),
        }
    }

    async fn apps(&self, vars: Value) -> Value {
        let mut variables = json!({ "rt": RUNTIME });
        variables
            .as_object_mut()
            .unwrap()
            .extend(vars.as_object().unwrap().clone());
        let (status, body) = gql(&self.http, &self.url, APPS, variables, &tenant_header()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"]["applicationsForRuntime"].clone()
    }
}

fn sample_application() -> Application {
    Application {
        id: "app-orders".into(),
        name: "orders".into(),
        provider_name: Some("ACME".into()),
        description: Some("Orders system".into()),
        labels: serde_json::from_value(json!({"scenarios": ["DEFAULT"]})).unwrap(),
        auths: vec![
            AppAuth {
                id: "auth-1".into(),
            },
            AppAuth {
                id: "auth-2".into(),
            },
        ],
        bundles: vec![
            Bundle {
                id: "b-basic".into(),
                name: "Orders API".into(),
                description: None,
                instance_auth_request_input_schema: Some(r#"{"type":"string"}"#.into()),
                default_instance_auth: Some(InstanceAuth {
                    credential: Some(Credential::Basic(BasicCredential {
                        username: "user".into(),
                        password: "pass".into(),
                    })),
                    additional_headers: Some(MultiMap::from([(
                        "X-Api".to_string(),
                        vec!["1".to_string(), "2".to_string()],
                    )])),
                    additional_query_params: Some(MultiMap::from([(
                        "q".to_string(),
                        vec!["v".to_string()],
                    )])),
                    request_auth: Some(RequestAuth {
                        csrf: Some(CsrfAuth {
                            token_endpoint_url: "https://csrf.example.com".into(),
                        }),
                    }),
                }),
                api_definitions: vec![ApiDefinition {
                    id: "api-1".into(),
                    name: "orders-v1".into(),
                    description: Some("v1".into()),
                    target_url: "https://orders.example.com/v1".into(),
                }],
                event_definitions: vec![],
            },
            Bundle {
                id: "b-oauth".into(),
                name: "Orders Events".into(),
                description: Some("events".into()),
                instance_auth_request_input_schema: None,
                default_instance_auth: Some(InstanceAuth {
                    credential: Some(Credential::Oauth(OAuthCredential {
                        client_id: "cid".into(),
                        client_secret: "csecret".into(),
                        url: "https://oauth.example.com/token".into(),
                    })),
                    ..InstanceAuth::default()
                }),
                api_definitions: vec![],
                event_definitions: vec![],
            },
        ],
    }
}

#[tokio::test]
async fn applications_come_back_with_every_field_the_agent_reads() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.put_application(RUNTIME, sample_application()).unwrap();
    let director = Director::new(&sim).await;
    let page = director.apps(json!({})).await;
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(page["pageInfo"]["startCursor"], "");
    let app = &page["data"][0];
    assert_eq!(app["providerName"], "ACME");
    assert_eq!(app["labels"], json!({"scenarios": ["DEFAULT"]}));
    assert_eq!(app["auths"], json!([{"id": "auth-1"}, {"id": "auth-2"}]));
    let basic = &app["bundles"]["data"][0];
    assert_eq!(
        basic["instanceAuthRequestInputSchema"],
        r#"{"type":"string"}"#
    );
    assert_eq!(
        basic["defaultInstanceAuth"],
        json!({
            "credential": {"username": "user", "password": "pass"},
            "additionalHeaders": {"X-Api": ["1", "2"]},
            "additionalQueryParams": {"q": ["v"]},
            "requestAuth": {"csrf": {"tokenEndpointURL": "https://csrf.example.com"}}
        })
    );
    assert_eq!(
        basic["apiDefinitions"]["data"][0],
        json!({"id": "api-1", "name": "orders-v1", "description": "v1", "targetURL": "https://orders.example.com/v1"})
    );
    let oauth = &app["bundles"]["data"][1];
    assert_eq!(
        oauth["defaultInstanceAuth"]["credential"],
        json!({"clientId": "cid", "clientSecret": "csecret", "url": "https://oauth.example.com/token"})
    );
    assert!(oauth["defaultInstanceAuth"]["requestAuth"].is_null());
    assert!(oauth["description"] == "events");

    // Changes and removals show on the next read.
    let mut changed = sample_application();
    changed.name = "orders-renamed".into();
    sim.put_application(RUNTIME, changed).unwrap();
    assert_eq!(
        director.apps(json!({})).await["data"][0]["name"],
        "orders-renamed"
    );
    sim.remove_application(RUNTIME, "app-orders").unwrap();
    assert_eq!(director.apps(json!({})).await["totalCount"], 0);
}

#[tokio::test]
async fn every_level_pages_and_following_cursors_reaches_everything() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let mut big_bundles = generate_applications(1, 250, 1, 0).remove(0);
    big_bundles.id = "app-many-bundles".into();
    let mut big_apis = generate_applications(1, 0, 0, 0).remove(0);
    big_apis.id = "app-many-apis".into();
    big_apis.bundles = vec![generate_bundle("bundle-many-apis", 0, 450, 230)];
    let mut apps = vec![big_bundles, big_apis];
    apps.extend(generate_applications(448, 1, 1, 1));
    sim.set_applications(RUNTIME, apps).unwrap();
    let director = Director::new(&sim).await;

    // Applications: default page size 200.
    let mut app_ids = Vec::new();
    let mut sizes = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = director
            .apps(json!({ "after": after, "bFirst": 1, "aFirst": 1, "eFirst": 1 }))
            .await;
        assert_eq!(page["totalCount"], 450);
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        app_ids.extend(data.iter().map(|a| a["id"].as_str().unwrap().to_string()));
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(sizes, vec![200, 200, 50]);
    assert_eq!(app_ids.iter().collect::<BTreeSet<_>>().len(), 450);

    // Bundles of the first application, 100 at a time, re-reading its page.
    let mut bundle_ids = BTreeSet::new();
    let mut b_after = Value::Null;
    let mut pages = 0;
    loop {
        let page = director
            .apps(json!({ "first": 1, "bFirst": 100, "bAfter": b_after, "aFirst": 1, "eFirst": 1 }))
            .await;
        let bundles = &page["data"][0]["bundles"];
        assert_eq!(bundles["totalCount"], 250);
        let data = bundles["data"].as_array().unwrap();
        assert!(data.len() <= 100, "a bundle page of {} > 100", data.len());
        bundle_ids.extend(data.iter().map(|b| b["id"].as_str().unwrap().to_string()));
        pages += 1;
        if bundles["pageInfo"]["hasNextPage"] == false {
            break;
        }
        b_after = bundles["pageInfo"]["endCursor"].clone();
    }
    assert_eq!((pages, bundle_ids.len()), (3, 250));

    // API and event definitions of the big bundle (second application).
    let second = director
        .apps(json!({ "first": 1, "bFirst": 1, "aFirst": 1, "eFirst": 1 }))
        .await["pageInfo"]["endCursor"]
        .clone();
    let mut api_ids = BTreeSet::new();
    let mut event_ids = BTreeSet::new();
    let (mut a_after, mut e_after) = (Value::Null, Value::Null);
    let (mut a_done, mut e_done) = (false, false);
    while !(a_done && e_done) {
        let page = director
            .apps(json!({
                "first": 1, "after": second, "bFirst": 1,
                "aFirst": 200, "aAfter": a_after, "eFirst": 200, "eAfter": e_after
            }))
            .await;
        let bundle = &page["data"][0]["bundles"]["data"][0];
        assert_eq!(bundle["id"], "bundle-many-apis");
        let apis = &bundle["apiDefinitions"];
        let events = &bundle["eventDefinitions"];
        assert_eq!(apis["totalCount"], 450);
        assert_eq!(events["totalCount"], 230);
        if !a_done {
            let data = apis["data"].as_array().unwrap();
            assert!(data.len() <= 200);
            api_ids.extend(data.iter().map(|a| a["id"].as_str().unwrap().to_string()));
            a_done = apis["pageInfo"]["hasNextPage"] == false;
            a_after = apis["pageInfo"]["endCursor"].clone();
        }
        if !e_done {
            let data = events["data"].as_array().unwrap();
            assert!(data.len() <= 200);
            event_ids.extend(data.iter().map(|e| e["id"].as_str().unwrap().to_string()));
            e_done = events["pageInfo"]["hasNextPage"] == false;
            e_after = events["pageInfo"]["endCursor"].clone();
        }
    }
    assert_eq!(api_ids.len(), 450);
    assert_eq!(event_ids.len(), 230);
}

#[tokio::test]
async fn a_bad_cursor_or_page_size_is_a_graphql_error() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let director = Director::new(&sim).await;
    let (_, body) = gql(
        &director.http,
        &director.url,
        "query($rt: ID!) { applicationsForRuntime(runtimeID: $rt, after: \"garbage\") { totalCount } }",
        json!({ "rt": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert!(
        first_error(&body).contains("cursor is not correct"),
        "{body}"
    );
    let (_, body) = gql(
        &director.http,
        &director.url,
        "query($rt: ID!) { applicationsForRuntime(runtimeID: $rt, first: 0) { totalCount } }",
        json!({ "rt": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert!(
        first_error(&body).contains("page size must be positive"),
        "{body}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_tenant_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let director = Director::new(&sim).await;
    let query = "query($id: ID!) { runtime(id: $id) { id } }";
    let (status, body) = gql(
        &director.http,
        &director.url,
        query,
        json!({ "id": RUNTIME }),
        &[("Tenant", "tenant-b")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        first_error(&body),
        "Tenant header \"tenant-b\" is not the tenant of runtime \"runtime-d\""
    );
    assert!(body["data"]["runtime"].is_null());
    let (status, body) = gql(
        &director.http,
        &director.url,
        query,
        json!({ "id": RUNTIME }),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        first_error(&body).contains("missing Tenant header"),
        "{body}"
    );
}

#[tokio::test]
async fn a_certificate_of_another_runtime_is_refused() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.create_runtime("runtime-other", TENANT).unwrap();
    let director = Director::new(&sim).await;
    let (status, body) = gql(
        &director.http,
        &director.url,
        "query($rt: ID!) { applicationsForRuntime(runtimeID: $rt) { totalCount } }",
        json!({ "rt": "runtime-other" }),
        &tenant_header(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        first_error(&body),
        "access denied: the client certificate belongs to runtime \"runtime-d\", not to runtime \"runtime-other\""
    );
    assert!(body["data"].is_null(), "{body}");
    let (_, body) = gql(
        &director.http,
        &director.url,
        "mutation { setRuntimeLabel(runtimeID: \"runtime-other\", key: \"k\", value: \"v\") { key } }",
        json!({}),
        &tenant_header(),
    )
    .await;
    assert!(first_error(&body).contains("access denied"), "{body}");
    assert!(sim.runtime_labels("runtime-other").unwrap().is_empty());
}

#[tokio::test]
async fn runtime_labels_are_read_and_set() {
    let sim = start().await;
    sim.create_runtime_with(compass_sim::RuntimeSpec {
        labels: serde_json::from_value(json!({"scenarios": ["DEFAULT"]})).unwrap(),
        ..compass_sim::RuntimeSpec::new(RUNTIME, TENANT)
    })
    .unwrap();
    let director = Director::new(&sim).await;
    let (_, body) = gql(
        &director.http,
        &director.url,
        "mutation($rt: ID!, $k: String!, $v: Any!) { setRuntimeLabel(runtimeID: $rt, key: $k, value: $v) { key value } }",
        json!({ "rt": RUNTIME, "k": "runtime_eventServiceUrl", "v": "https://gateway.kyma.local" }),
        &tenant_header(),
    )
    .await;
    assert_eq!(
        body["data"]["setRuntimeLabel"],
        json!({"key": "runtime_eventServiceUrl", "value": "https://gateway.kyma.local"})
    );
    let (_, body) = gql(
        &director.http,
        &director.url,
        "query($rt: ID!) { runtime(id: $rt) { id name labels all: labels filtered: labels(key: \"scenarios\") } }",
        json!({ "rt": RUNTIME }),
        &tenant_header(),
    )
    .await;
    let runtime = &body["data"]["runtime"];
    assert_eq!(runtime["name"], RUNTIME);
    assert_eq!(
        runtime["labels"],
        json!({"scenarios": ["DEFAULT"], "runtime_eventServiceUrl": "https://gateway.kyma.local"})
    );
    assert_eq!(runtime["filtered"], json!({"scenarios": ["DEFAULT"]}));
    assert_eq!(
        sim.runtime_labels(RUNTIME).unwrap()["runtime_eventServiceUrl"],
        "https://gateway.kyma.local"
    );
}

/// The Go agent's query also selects `group` and `version` of API and event
/// definitions (nullable in Compass's schema); the simulator must accept it,
/// or the Go agent never synchronizes against it.
#[tokio::test]
async fn the_go_agents_group_and_version_fields_are_accepted_and_null() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let mut app = sample_application();
    app.bundles[1].event_definitions = vec![compass_sim::model::EventDefinition {
        id: "ev-1".into(),
        name: "order.created".into(),
        description: None,
    }];
    sim.put_application(RUNTIME, app).unwrap();
    let director = Director::new(&sim).await;
    let query = r#"query Apps($rt: ID!) {
      applicationsForRuntime(runtimeID: $rt) { data { bundles { data {
        apiDefinitions { data { id group version { value deprecated deprecatedSince forRemoval } } }
        eventDefinitions { data { id group version { value deprecated deprecatedSince forRemoval } } }
      } } } }
    }"#;
    let (status, body) = gql(
        &director.http,
        &director.url,
        query,
        json!({ "rt": RUNTIME }),
        &tenant_header(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    let bundles = &body["data"]["applicationsForRuntime"]["data"][0]["bundles"]["data"];
    let api = &bundles[0]["apiDefinitions"]["data"][0];
    assert_eq!(api, &json!({"id": "api-1", "group": null, "version": null}));
    let event = &bundles[1]["eventDefinitions"]["data"][0];
    assert_eq!(
        event,
        &json!({"id": "ev-1", "group": null, "version": null})
    );
}
