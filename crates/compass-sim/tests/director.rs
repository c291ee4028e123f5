//! The Director over mTLS, as Compass's really is: the tenant of the caller's
//! SystemAuth, labels and their refusals, names normalized by the Director,
//! the data model on the wire, paging at every level with the Director's
//! bounds and cursors, lists in an order unrelated to creation, and errors
//! shaped as its error presenter shapes them.

mod common;

use std::collections::BTreeSet;

use common::*;
use compass_sim::model::{
    generate_applications, generate_bundle, ApiDefinition, AppAuth, Application, BasicCredential,
    Bundle, Credential, CsrfAuth, InstanceAuth, MultiMap, OAuthCredential, RequestAuth,
};
use compass_sim::{ApplicationNames, ListOrder};
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

/// The item of a JSON list with this `id`.
fn by_id<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|item| item["id"] == id))
        .unwrap_or_else(|| panic!("no {id:?} in {list}"))
}

fn sample_application() -> Application {
    Application {
        id: "app-orders".into(),
        name: "orders".into(),
        provider_name: Some("ACME".into()),
        description: Some("Orders system".into()),
        system_number: None,
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
    assert_eq!(app["name"], "mp-orders", "normalized by the Director");
    assert_eq!(app["providerName"], "ACME");
    assert_eq!(app["labels"], json!({"scenarios": ["DEFAULT"]}));
    let mut auths: Vec<&str> = app["auths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    auths.sort();
    assert_eq!(auths, ["auth-1", "auth-2"]);
    let basic = by_id(&app["bundles"]["data"], "b-basic");
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
    let oauth = by_id(&app["bundles"]["data"], "b-oauth");
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
        "mp-orders-renamed"
    );
    sim.remove_application(RUNTIME, "app-orders").unwrap();
    assert_eq!(director.apps(json!({})).await["totalCount"], 0);
}

#[tokio::test]
async fn every_level_pages_and_following_cursors_reaches_everything() {
    let sim = start().await;
    // The test pages to known positions (the big applications first).
    sim.set_list_order(ListOrder::Creation);
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

/// A query for the applications page size and cursor, and its answer.
async fn page_of(director: &Director, first: Value, after: Value) -> (u16, Value) {
    gql(
        &director.http,
        &director.url,
        "query($rt: ID!, $first: Int, $after: PageCursor) { applicationsForRuntime(runtimeID: $rt, first: $first, after: $after) { totalCount pageInfo { startCursor endCursor hasNextPage } data { id } } }",
        json!({ "rt": RUNTIME, "first": first, "after": after }),
        &[],
    )
    .await
}

/// As observed on Compass: `first` must be 1..200, 201 is `InvalidData`
/// (error_code 22); the first page's `startCursor` is `""`; cursors are
/// opaque base64; a cursor the Director did not issue is an `InternalError`
/// (error_code 10); every error at HTTP 200.
#[tokio::test]
async fn paging_has_the_directors_bounds_cursors_and_errors() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.set_applications(RUNTIME, generate_applications(3, 0, 0, 0))
        .unwrap();
    let director = Director::new(&sim).await;

    for first in [201, 0] {
        let (status, body) = page_of(&director, json!(first), Value::Null).await;
        assert_eq!(status, 200);
        assert_eq!(
            first_error_extensions(&body),
            json!({"error": "InvalidData", "error_code": 22}),
            "first: {first}: {body}"
        );
        assert_eq!(
            first_error(&body),
            "Invalid data [reason=page size must be between 1 and 200]"
        );
        assert!(body["data"].is_null(), "{body}");
    }

    let (_, body) = page_of(&director, json!(200), Value::Null).await;
    assert!(body.get("errors").is_none(), "200 is served: {body}");
    let (_, body) = page_of(&director, json!(2), Value::Null).await;
    let info = &body["data"]["applicationsForRuntime"]["pageInfo"];
    assert_eq!(info["startCursor"], "");
    assert_eq!(info["hasNextPage"], true);
    let cursor = info["endCursor"].as_str().unwrap().to_string();
    assert!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &cursor).is_ok(),
        "base64: {cursor}"
    );
    assert!(!cursor.contains('2'), "opaque: {cursor}");
    let (_, body) = page_of(&director, json!(2), json!(cursor)).await;
    let page = &body["data"]["applicationsForRuntime"];
    assert_eq!(page["pageInfo"]["startCursor"], json!(cursor));
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);

    for foreign in ["garbage!", "cGFnZS0y"] {
        let (status, body) = page_of(&director, json!(2), json!(foreign)).await;
        assert_eq!(status, 200);
        assert_eq!(
            first_error_extensions(&body),
            json!({"error": "InternalError", "error_code": 10}),
            "cursor {foreign}: {body}"
        );
        assert!(
            first_error(&body).starts_with("Internal Server Error [errorID="),
            "{body}"
        );
    }
}

/// As observed on Compass: lists do not come in the order of creation. The
/// order is stable for a seed (paging sees every item once), another seed
/// gives another order, and `ListOrder::Creation` asks for the old one.
#[tokio::test]
async fn lists_come_in_an_order_unrelated_to_creation_that_a_seed_reproduces() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.set_applications(RUNTIME, generate_applications(8, 8, 8, 8))
        .unwrap();
    let director = Director::new(&sim).await;
    let created: Vec<String> = sim
        .applications(RUNTIME)
        .unwrap()
        .iter()
        .map(|a| a.id.clone())
        .collect();
    let bundle_of_first = |page: &Value, app: &str| -> Vec<String> {
        by_id(&page["data"], app)["bundles"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    let ids_of = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let apis_of = |page: &Value| -> Vec<String> {
        by_id(&page["data"], "app-00000")["bundles"]["data"][0]["apiDefinitions"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };

    sim.set_list_order(ListOrder::Seeded(1));
    let one = director.apps(json!({})).await;
    assert_eq!(ids_of(&one), sim.served_application_ids(RUNTIME).unwrap());
    assert_eq!(
        ids_of(&director.apps(json!({})).await),
        ids_of(&one),
        "stable"
    );
    assert_ne!(ids_of(&one), created, "not the order of creation");
    let created_bundles: Vec<String> = sim.applications(RUNTIME).unwrap()[0]
        .bundles
        .iter()
        .map(|b| b.id.clone())
        .collect();
    assert_ne!(bundle_of_first(&one, "app-00000"), created_bundles);
    let mut sorted = ids_of(&one);
    sorted.sort();
    assert_eq!(sorted, created, "the same applications");

    // Page by page, each application once, in the same order.
    let mut paged = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = director.apps(json!({ "first": 3, "after": after })).await;
        paged.extend(ids_of(&page));
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(paged, ids_of(&one));

    sim.set_list_order(ListOrder::Seeded(2));
    let two = director.apps(json!({})).await;
    assert_ne!(ids_of(&two), ids_of(&one), "another seed, another order");
    assert_ne!(apis_of(&two), apis_of(&one));
    sim.set_list_order(ListOrder::Seeded(1));
    assert_eq!(
        director.apps(json!({})).await,
        one,
        "the seed reproduces the order"
    );

    sim.set_list_order(ListOrder::Creation);
    let creation = director.apps(json!({})).await;
    assert_eq!(ids_of(&creation), created);
    assert_eq!(bundle_of_first(&creation, "app-00000"), created_bundles);
}

/// As observed on Compass: the Director serves the names normalized when the
/// runtime's `isNormalized` label is missing or `"true"` (it sets `"true"` on
/// every new runtime), `<name>-<systemNumber>` for an application with a
/// system number; `application(id)` serves the name as registered.
#[tokio::test]
async fn application_names_come_normalized_as_the_runtimes_label_says() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    assert_eq!(
        sim.runtime_labels(RUNTIME).unwrap()["isNormalized"],
        "true",
        "set on every new runtime"
    );
    let mut numbered = generate_applications(1, 0, 0, 0).remove(0);
    numbered.id = "numbered".into();
    numbered.name = "ERP System".into();
    numbered.system_number = Some("4711".into());
    let mut plain = generate_applications(1, 0, 0, 0).remove(0);
    plain.id = "plain".into();
    plain.name = "Café Orders".into();
    sim.set_applications(RUNTIME, vec![numbered, plain])
        .unwrap();
    let director = Director::new(&sim).await;
    let names = |page: Value| -> (Value, Value) {
        (
            by_id(&page["data"], "plain")["name"].clone(),
            by_id(&page["data"], "numbered")["name"].clone(),
        )
    };
    let normalized = (json!("mp-caf-orders"), json!("mp-erp-system-4711"));
    assert_eq!(names(director.apps(json!({})).await), normalized);
    sim.delete_runtime_label(RUNTIME, "isNormalized").unwrap();
    assert_eq!(
        names(director.apps(json!({})).await),
        normalized,
        "label missing"
    );
    for value in [json!("false"), json!(true), json!("True")] {
        sim.set_runtime_label(RUNTIME, "isNormalized", value.clone())
            .unwrap();
        assert_eq!(
            names(director.apps(json!({})).await),
            (json!("Café Orders"), json!("ERP System-4711")),
            "isNormalized: {value}"
        );
    }
    let (_, body) = gql(
        &director.http,
        &director.url,
        "{ application(id: \"numbered\") { name systemNumber } }",
        json!({}),
        &[],
    )
    .await;
    assert_eq!(
        body["data"]["application"],
        json!({"name": "ERP System", "systemNumber": "4711"})
    );
    // A runtime registered with its own isNormalized keeps it.
    sim.create_runtime_with(compass_sim::RuntimeSpec {
        labels: serde_json::from_value(json!({"isNormalized": "false"})).unwrap(),
        ..compass_sim::RuntimeSpec::new("runtime-old", TENANT)
    })
    .unwrap();
    assert_eq!(
        sim.runtime_labels("runtime-old").unwrap()["isNormalized"],
        "false"
    );
    // The old behaviour on request: the names as registered.
    sim.set_runtime_label(RUNTIME, "isNormalized", json!("true"))
        .unwrap();
    sim.set_application_names(ApplicationNames::AsRegistered);
    assert_eq!(
        names(director.apps(json!({})).await),
        (json!("Café Orders"), json!("ERP System"))
    );
}

/// As observed on Compass: the tenant a request acts in is its SystemAuth's;
/// the `Tenant` header, missing or wrong, changes nothing. Another tenant's
/// runtime does not exist for the caller.
#[tokio::test]
async fn the_tenant_comes_from_the_callers_system_auth_not_the_header() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    sim.create_runtime("runtime-elsewhere", "tenant-b").unwrap();
    let director = Director::new(&sim).await;
    let query = "query($id: ID!) { runtime(id: $id) { id } }";
    for headers in [
        vec![],
        vec![("Tenant", "tenant-b")],
        vec![("Tenant", TENANT)],
    ] {
        let (status, body) = gql(
            &director.http,
            &director.url,
            query,
            json!({ "id": RUNTIME }),
            &headers,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["data"]["runtime"]["id"], RUNTIME,
            "{headers:?}: {body}"
        );
        let (_, body) = gql(
            &director.http,
            &director.url,
            query,
            json!({ "id": "runtime-elsewhere" }),
            &headers,
        )
        .await;
        assert!(body["data"]["runtime"].is_null(), "{headers:?}: {body}");
        assert!(body.get("errors").is_none(), "{body}");
    }
    let (_, body) = gql(
        &director.http,
        &director.url,
        "query($rt: ID!) { applicationsForRuntime(runtimeID: $rt) { totalCount } }",
        json!({ "rt": "runtime-elsewhere" }),
        &[("Tenant", "tenant-b")],
    )
    .await;
    assert_eq!(
        first_error_extensions(&body),
        json!({"error": "InvalidData", "error_code": 22}),
        "{body}"
    );
    // The log keeps the header as sent.
    let sent: Vec<Option<String>> = sim
        .request_log()
        .iter()
        .filter(|e| e.endpoint == compass_sim::log::Endpoint::Director)
        .map(|e| e.caller.tenant.clone())
        .collect();
    assert_eq!(sent[0], None);
    assert_eq!(sent[2].as_deref(), Some("tenant-b"));
}

/// As observed on Compass: `runtime(id)` of an unknown id is `null` without
/// an error; `setRuntimeLabel` on `runtimeType` is `InvalidData`, on
/// `scenarios` or an unknown runtime an `InternalError`; a label value keeps
/// its JSON type.
#[tokio::test]
async fn runtime_queries_and_labels_answer_as_the_director_does() {
    let sim = start().await;
    sim.create_runtime(RUNTIME, TENANT).unwrap();
    let director = Director::new(&sim).await;
    let (status, body) = gql(
        &director.http,
        &director.url,
        "{ runtime(id: \"no-such-runtime\") { id } }",
        json!({}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": {"runtime": null}}));

    let set = "mutation($rt: ID!, $k: String!, $v: Any!) { setRuntimeLabel(runtimeID: $rt, key: $k, value: $v) { key value } }";
    for (runtime, key, error, code) in [
        (RUNTIME, "runtimeType", "InvalidData", 22),
        (RUNTIME, "scenarios", "InternalError", 10),
        ("no-such-runtime", "owner", "InternalError", 10),
    ] {
        let (status, body) = gql(
            &director.http,
            &director.url,
            set,
            json!({ "rt": runtime, "k": key, "v": "x" }),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            first_error_extensions(&body),
            json!({"error": error, "error_code": code}),
            "{runtime} {key}: {body}"
        );
        assert!(body["data"].is_null(), "{body}");
    }
    assert!(!sim
        .runtime_labels(RUNTIME)
        .unwrap()
        .contains_key("runtimeType"));

    for value in [
        json!(42),
        json!(1.5),
        json!(true),
        json!(["a"]),
        json!({"k": 1}),
    ] {
        let (_, body) = gql(
            &director.http,
            &director.url,
            set,
            json!({ "rt": RUNTIME, "k": "typed", "v": value }),
            &[],
        )
        .await;
        assert_eq!(body["data"]["setRuntimeLabel"]["value"], value, "{body}");
        let (_, body) = gql(
            &director.http,
            &director.url,
            "query($rt: ID!) { runtime(id: $rt) { labels(key: \"typed\") } }",
            json!({ "rt": RUNTIME }),
            &[],
        )
        .await;
        assert_eq!(body["data"]["runtime"]["labels"]["typed"], value);
        assert_eq!(sim.runtime_labels(RUNTIME).unwrap()["typed"], value);
    }
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
        json!({
            "scenarios": ["DEFAULT"],
            "isNormalized": "true",
            "runtime_eventServiceUrl": "https://gateway.kyma.local"
        })
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
    let with_api = bundles
        .as_array()
        .unwrap()
        .iter()
        .find(|b| !b["apiDefinitions"]["data"].as_array().unwrap().is_empty())
        .unwrap();
    let api = &with_api["apiDefinitions"]["data"][0];
    assert_eq!(api, &json!({"id": "api-1", "group": null, "version": null}));
    let with_event = bundles
        .as_array()
        .unwrap()
        .iter()
        .find(|b| !b["eventDefinitions"]["data"].as_array().unwrap().is_empty())
        .unwrap();
    let event = &with_event["eventDefinitions"]["data"][0];
    assert_eq!(
        event,
        &json!({"id": "ev-1", "group": null, "version": null})
    );
}
