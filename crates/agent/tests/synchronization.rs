//! Synchronization, end to end: Director applications in compass-sim become
//! Application resources and Secrets in a real apiserver, exactly as the
//! original agent writes them; and nothing is lost when Compass misbehaves.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use compass_runtime_agent::crd::application::{Application, ApplicationSpec, EntryType};
use compass_runtime_agent::crd::compass_connection::SyncOperation;
use compass_runtime_agent::crd::{ConnectionState, COMPASS_CONNECTION_NAME};
use compass_runtime_agent::sync::names;
use compass_sim::{FaultKind, FaultTimes};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use test_support::wait_for;

/// The Application of the Director's `shop`: its name normalized, as the
/// Director serves it (the runtime's isNormalized is "true") and today's
/// Kyma agent keeps it.
const SHOP: &str = "mp-shop";

const BUNDLE_OAUTH: &str = "6f2b6e2e-1b43-4e0a-a1c2-3f1b8a0c9d11";
const BUNDLE_BASIC: &str = "0d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6";

fn shop(api_name: &str, password: &str, extra_bundle: bool) -> compass_sim::Application {
    let mut bundles = vec![
        json!({
            "id": BUNDLE_OAUTH, "name": "Orders Bundle", "description": "Orders",
            "instanceAuthRequestInputSchema": "{\"type\":\"object\"}",
            "defaultInstanceAuth": {
                "credential": {"oauth": {"clientId": "client-1", "clientSecret": "s3cr3t", "url": "https://shop.example.com/oauth/token"}},
                "additionalHeaders": {"X-Tenant": ["t1"]},
                "additionalQueryParams": {"lang": ["en", "de"]},
                "requestAuth": {"csrf": {"tokenEndpointURL": "https://shop.example.com/csrf"}}
            },
            "apiDefinitions": [{"id": "api-1", "name": api_name, "targetURL": "https://shop.example.com/api/orders"}],
            "eventDefinitions": [{"id": "event-1", "name": "order.created"}]
        }),
        json!({
            "id": BUNDLE_BASIC, "name": "Customers",
            "defaultInstanceAuth": {"credential": {"basic": {"username": "admin", "password": password}}},
            "apiDefinitions": [{"id": "api-2", "name": "Customers API", "targetURL": "https://shop.example.com/api/customers"}]
        }),
    ];
    if extra_bundle {
        bundles.push(json!({"id": "bundle-3", "name": "Reports", "eventDefinitions": [{"id": "event-3", "name": "report.ready"}]}));
    }
    serde_json::from_value(json!({
        "id": "app-shop", "name": "shop", "providerName": "ACME", "auths": [{"id": "auth-1"}],
        "bundles": bundles
    }))
    .unwrap()
}

fn plain(id: &str, name: &str) -> compass_sim::Application {
    serde_json::from_value(json!({"id": id, "name": name, "bundles": [
        {"id": format!("{id}-b"), "name": "B", "defaultInstanceAuth": {"credential": {"basic": {"username": "u", "password": "p"}}},
         "apiDefinitions": [{"id": format!("{id}-api"), "name": "api", "targetURL": "https://x"}]}
    ]}))
    .unwrap()
}

fn applications(world: &World) -> Api<Application> {
    Api::all(world.client.clone())
}

fn secrets(world: &World) -> Api<Secret> {
    Api::namespaced(world.client.clone(), NS)
}

async fn secret_data(world: &World, name: &str) -> Option<BTreeMap<String, String>> {
    let secret = secrets(world).get_opt(name).await.unwrap()?;
    Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
    )
}

/// The field managers recorded in an object's `managedFields`: what
/// `kubectl get -o yaml --show-managed-fields` shows an operator.
fn managers(object: &impl ResourceExt) -> BTreeSet<String> {
    object
        .managed_fields()
        .iter()
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

fn only_the_agent() -> BTreeSet<String> {
    BTreeSet::from(["compass-runtime-agent".to_string()])
}

/// One field of every Application and of every Secret in the integration
/// namespace, by kind and name.
async fn field_by_object(
    world: &World,
    field: fn(&kube::api::ObjectMeta) -> Option<String>,
) -> BTreeMap<String, String> {
    let apps = applications(world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let secrets = secrets(world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let app_fields = apps
        .iter()
        .map(|a| (format!("app/{}", a.name_any()), field(&a.metadata)));
    let secret_fields = secrets
        .iter()
        .map(|s| (format!("secret/{}", s.name_any()), field(&s.metadata)));
    app_fields
        .chain(secret_fields)
        .map(|(key, value)| (key, value.expect("set by the apiserver")))
        .collect()
}

/// The resourceVersion of every Application and Secret: a write shows.
async fn resource_versions(world: &World) -> BTreeMap<String, String> {
    field_by_object(world, |meta| meta.resource_version.clone()).await
}

/// The uid of every Application and Secret: a delete and re-create shows.
async fn uids(world: &World) -> BTreeMap<String, String> {
    field_by_object(world, |meta| meta.uid.clone()).await
}

/// Asks for a synchronization now and waits until one has finished: the
/// status was written for the generation that carried `resyncNow` (timestamps
/// have whole seconds, so two syncs in one second would look the same).
async fn resync(world: &World) -> compass_runtime_agent::crd::CompassConnection {
    let patched = world
        .connections()
        .patch(
            COMPASS_CONNECTION_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resyncNow": true}})),
        )
        .await
        .unwrap();
    let generation = patched
        .metadata
        .generation
        .expect("the apiserver sets a generation");
    world
        .wait_for_connection("a synchronization for resyncNow", LONG, |c| {
            !c.spec.resync_now
                && c.status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .is_some_and(|g| g >= generation)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_applications_become_applications_and_secrets_with_the_original_content() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, shop("Orders API", "pw", false))
        .unwrap();
    let connection = resync(&world).await;
    assert_eq!(
        connection.status.unwrap().connection_state,
        ConnectionState::Synchronized
    );

    let app = applications(&world)
        .get(SHOP)
        .await
        .expect("Application shop exists");
    assert_eq!(
        app.labels()["applicationconnector.kyma-project.io/managed-by"],
        "compass-runtime-agent"
    );
    let spec = &app.spec;
    assert_eq!(spec.description, "Description not provided");
    assert!(!spec.skip_verify);
    assert_eq!(spec.labels.as_ref().unwrap()["connected-app"], SHOP);
    let metadata = spec.compass_metadata.as_ref().unwrap();
    assert_eq!(
        (
            metadata.application_id.as_str(),
            metadata.authentication.client_ids.clone()
        ),
        ("app-shop", vec!["auth-1".to_string()])
    );

    let orders = spec
        .services
        .iter()
        .find(|s| s.id == BUNDLE_OAUTH)
        .expect("the OAuth bundle's service");
    assert_eq!(
        orders.name,
        names::service_name("Orders Bundle", BUNDLE_OAUTH)
    );
    assert_eq!(orders.display_name, "Orders Bundle");
    assert_eq!(orders.description, "Orders");
    assert_eq!(
        orders.auth_create_parameter_schema.as_deref(),
        Some("{\"type\":\"object\"}")
    );
    let api = &orders.entries[0];
    assert_eq!(
        (api.entry_type, api.id.as_str(), api.name.as_str()),
        (EntryType::Api, "api-1", "Orders API")
    );
    assert_eq!(api.target_url, "https://shop.example.com/api/orders");
    assert_eq!(
        api.central_gateway_url,
        "http://central-application-gateway.kyma-system.svc.cluster.local:8082/mp-shop/orders-bundle/orders-api"
    );
    let credentials = api.credentials.as_ref().unwrap();
    let secret_name = format!("{SHOP}-{BUNDLE_OAUTH}");
    assert_eq!(credentials.credential_type, "OAuth");
    assert_eq!(credentials.secret_name, secret_name);
    assert_eq!(
        credentials.authentication_url,
        "https://shop.example.com/oauth/token"
    );
    assert_eq!(
        credentials.csrf_info.as_ref().unwrap().token_endpoint_url,
        "https://shop.example.com/csrf"
    );
    assert_eq!(
        api.request_parameters_secret_name,
        format!("params-{SHOP}-{BUNDLE_OAUTH}")
    );
    let event = &orders.entries[1];
    assert_eq!(
        (event.entry_type, event.id.as_str(), event.name.as_str()),
        (EntryType::Events, "event-1", "order.created")
    );

    let oauth = secret_data(&world, &secret_name)
        .await
        .expect("the OAuth Secret exists");
    assert_eq!(
        oauth,
        BTreeMap::from([
            ("clientId".into(), "client-1".into()),
            ("clientSecret".into(), "s3cr3t".into())
        ])
    );
    let params = secret_data(&world, &format!("params-{SHOP}-{BUNDLE_OAUTH}"))
        .await
        .expect("the parameters Secret exists");
    assert_eq!(params["headers"], r#"{"X-Tenant":["t1"]}"#);
    assert_eq!(params["queryParameters"], r#"{"lang":["en","de"]}"#);
    let basic = secret_data(&world, &format!("{SHOP}-{BUNDLE_BASIC}"))
        .await
        .expect("the Basic Secret exists");
    assert_eq!(
        basic,
        BTreeMap::from([
            ("password".into(), "pw".into()),
            ("username".into(), "admin".into())
        ])
    );
    let secret = secrets(&world).get(&secret_name).await.unwrap();
    assert_eq!(secret.labels()["app"], SHOP);
    assert_eq!(secret.labels()["bundleId"], BUNDLE_OAUTH);
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("Application", SHOP, app.metadata.uid.as_ref())
    );
    // Who wrote what is on record under the agent's name, not "unknown".
    assert_eq!(managers(&app), only_the_agent());
    assert_eq!(managers(&secret), only_the_agent());
    let certificates = secrets(&world)
        .get("cluster-client-certificates")
        .await
        .unwrap();
    assert_eq!(managers(&certificates), only_the_agent());
    let connection = world.connection().await.unwrap();
    assert!(managers(&connection).contains("compass-runtime-agent"));
    world.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_changes_are_applied_and_unreferenced_secrets_removed() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, shop("Orders API", "pw", false))
        .unwrap();
    resync(&world).await;
    // Renamed API, a new bundle, a changed password, and the OAuth bundle loses its credentials.
    let mut changed = shop("Orders API v2", "new-pw", true);
    changed.bundles[0].default_instance_auth = None;
    world.sim.put_application(RUNTIME_ID, changed).unwrap();
    resync(&world).await;

    let app = applications(&world).get(SHOP).await.unwrap();
    assert_eq!(
        managers(&app),
        only_the_agent(),
        "updates too are on record under the agent's name"
    );
    assert_eq!(app.spec.services.len(), 3);
    let orders = app
        .spec
        .services
        .iter()
        .find(|s| s.id == BUNDLE_OAUTH)
        .unwrap();
    assert_eq!(orders.entries[0].name, "Orders API v2");
    assert!(orders.entries[0]
        .central_gateway_url
        .ends_with("/mp-shop/orders-bundle/orders-api-v2"));
    assert!(orders.entries[0].credentials.is_none());
    assert!(app.spec.services.iter().any(|s| s.id == "bundle-3"));
    assert_eq!(
        secret_data(&world, &format!("{SHOP}-{BUNDLE_BASIC}"))
            .await
            .unwrap()["password"],
        "new-pw"
    );
    let replaced = secrets(&world)
        .get(&format!("{SHOP}-{BUNDLE_BASIC}"))
        .await
        .unwrap();
    assert_eq!(managers(&replaced), only_the_agent());
    assert!(
        secret_data(&world, &format!("{SHOP}-{BUNDLE_OAUTH}"))
            .await
            .is_none(),
        "the OAuth Secret is gone"
    );
    assert!(
        secret_data(&world, &format!("params-{SHOP}-{BUNDLE_OAUTH}"))
            .await
            .is_none(),
        "the parameters Secret is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_applications_are_deleted_and_foreign_ones_left_alone() {
    let mut world = World::new().await;
    // Only resyncNow synchronizes here, so the result of the deletion is the one read.
    world.settings.controller_sync_period = Duration::from_secs(600);
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let mut foreign = Application::new(
        "foreign",
        ApplicationSpec {
            description: "not from Compass".into(),
            ..Default::default()
        },
    );
    foreign.spec.services = vec![];
    applications(&world)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-a", "a"))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-b", "b"))
        .unwrap();
    resync(&world).await;
    assert!(applications(&world)
        .get_opt("mp-b")
        .await
        .unwrap()
        .is_some());
    world.sim.remove_application(RUNTIME_ID, "app-b").unwrap();
    let connection = resync(&world).await;

    assert!(
        applications(&world)
            .get_opt("mp-b")
            .await
            .unwrap()
            .is_none(),
        "b is deleted"
    );
    assert!(
        secret_data(&world, "mp-b-app-b-b").await.is_none(),
        "b's Secret is deleted"
    );
    assert!(
        applications(&world)
            .get_opt("mp-a")
            .await
            .unwrap()
            .is_some(),
        "a stays"
    );
    let foreign_now = applications(&world)
        .get("foreign")
        .await
        .expect("the foreign Application stays");
    assert_eq!(foreign_now.spec.description, "not from Compass");
    let results = connection
        .status
        .unwrap()
        .synchronization_status
        .unwrap()
        .applications;
    assert!(
        results
            .iter()
            .any(|r| r.name == "mp-b" && r.operation == SyncOperation::Deleted),
        "{results:?}"
    );
}

/// Every list of the runtime's applications as the Director serves them now
/// (ids only, nested), asked with the agent's stored certificate.
async fn director_order(world: &World) -> serde_json::Value {
    let stored = world.certificate_secret().await.expect("the certificate");
    let identity = reqwest::Identity::from_pem(
        format!("{}\n{}", stored["key"], stored["crtChain"]).as_bytes(),
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(world.sim.server_ca_pem().as_bytes()).unwrap(),
        )
        .identity(identity)
        .build()
        .unwrap();
    let body: serde_json::Value = client
        .post(world.sim.director_url())
        .json(&json!({
            "query": "query($id: ID!) { applicationsForRuntime(runtimeID: $id) { data { id auths { id } bundles { data { id apiDefinitions { data { id } } eventDefinitions { data { id } } } } } } }",
            "variables": { "id": RUNTIME_ID }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["applicationsForRuntime"]["data"].clone()
}

/// Each list of the Director's answer by where it is (`applications`,
/// `<app> auths`, `<app> bundles`, `<bundle> apiDefinitions`, …), its ids in
/// the order served.
fn served_lists(apps: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let ids = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut lists = BTreeMap::from([("applications".to_string(), ids(apps))]);
    for app in apps.as_array().unwrap() {
        let app_id = app["id"].as_str().unwrap();
        lists.insert(format!("{app_id} auths"), ids(&app["auths"]));
        lists.insert(format!("{app_id} bundles"), ids(&app["bundles"]["data"]));
        for bundle in app["bundles"]["data"].as_array().unwrap() {
            let bundle_id = bundle["id"].as_str().unwrap();
            for kind in ["apiDefinitions", "eventDefinitions"] {
                lists.insert(format!("{bundle_id} {kind}"), ids(&bundle[kind]["data"]));
            }
        }
    }
    lists
}

/// The Director orders its lists by random ids, not by creation: the same
/// content may come in another order. It is the same content: the same
/// Applications, and nothing written for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_director_content_in_another_order_gives_the_same_applications_and_no_write() {
    let world = World::connected().await;
    world.sim.set_list_order(compass_sim::ListOrder::Seeded(1));
    let mut apps = compass_sim::model::generate_applications(6, 4, 3, 2);
    for app in &mut apps {
        for n in 1..=3 {
            app.auths.push(compass_sim::model::AppAuth {
                id: format!("{}-auth-{n}", app.id),
            });
        }
    }
    world.sim.set_applications(RUNTIME_ID, apps).unwrap();
    resync(&world).await;
    let order_one = director_order(&world).await;
    let applications_before = applications(&world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(applications_before.len(), 6);
    let before = resource_versions(&world).await;
    let writes_before = world.agent().metrics.kubernetes.successful_writes();

    world.sim.set_list_order(compass_sim::ListOrder::Seeded(2));
    let (one, two) = (
        served_lists(&order_one),
        served_lists(&director_order(&world).await),
    );
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        two.keys().collect::<Vec<_>>()
    );
    for kind in [
        "applications",
        " auths",
        " bundles",
        " apiDefinitions",
        " eventDefinitions",
    ] {
        let of_kind = |lists: &BTreeMap<String, Vec<String>>| -> Vec<Vec<String>> {
            lists
                .iter()
                .filter(|(key, _)| key.ends_with(kind))
                .map(|(_, ids)| ids.clone())
                .collect()
        };
        assert_ne!(of_kind(&one), of_kind(&two), "another order of{kind}");
        let sorted = |lists: Vec<Vec<String>>| -> Vec<Vec<String>> {
            lists
                .into_iter()
                .map(|mut ids| {
                    ids.sort();
                    ids
                })
                .collect()
        };
        assert_eq!(
            sorted(of_kind(&one)),
            sorted(of_kind(&two)),
            "the same{kind}"
        );
    }
    let connection = resync(&world).await;
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes() - writes_before,
        0,
        "the agent wrote for a new order of the same content"
    );
    assert_eq!(resource_versions(&world).await, before);
    let applications_after = applications(&world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let specs = |apps: &[Application]| -> BTreeMap<String, ApplicationSpec> {
        apps.iter()
            .map(|a| (a.name_any(), a.spec.clone()))
            .collect()
    };
    assert_eq!(specs(&applications_after), specs(&applications_before));
    let results = connection
        .status
        .unwrap()
        .synchronization_status
        .unwrap()
        .applications;
    assert!(
        results
            .iter()
            .all(|r| r.operation == SyncOperation::Unchanged),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_director_makes_no_writes() {
    let world = World::connected().await;
    for i in 0..5 {
        world
            .sim
            .put_application(RUNTIME_ID, shop("Orders API", "pw", false))
            .unwrap();
        world
            .sim
            .put_application(RUNTIME_ID, plain(&format!("id-{i}"), &format!("app-{i}")))
            .unwrap();
    }
    resync(&world).await;
    let before = resource_versions(&world).await;
    let writes_before = world.agent().metrics.kubernetes.successful_writes();
    let connection = resync(&world).await;
    let after = resource_versions(&world).await;
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes() - writes_before,
        0,
        "the agent wrote during an unchanged sync"
    );
    // Every answer was the last sync's: none was parsed again.
    assert_eq!(world.agent().metrics.controller.applications_recalled(), 6);
    assert_eq!(
        before, after,
        "resourceVersions changed during an unchanged sync"
    );
    let results = connection
        .status
        .unwrap()
        .synchronization_status
        .unwrap()
        .applications;
    assert_eq!(results.len(), 6);
    assert!(
        results
            .iter()
            .all(|r| r.operation == SyncOperation::Unchanged),
        "{results:?}"
    );

    // Secrets as the Go agent leaves them (no data digest): taking them over
    // compares their data and still writes nothing.
    for secret in secrets(&world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let patch = json!({"metadata": {"annotations": null}});
        secrets(&world)
            .patch(
                &secret.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap();
    }
    let before = resource_versions(&world).await;
    let writes_before = world.agent().metrics.kubernetes.successful_writes();
    resync(&world).await;
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes() - writes_before,
        0,
        "taking over Go-written Secrets wrote"
    );
    assert_eq!(before, resource_versions(&world).await);
}

/// The agent remembers what it read and wrote and, at the next sync, reads
/// in full only the Applications whose resourceVersion moved: an edit made
/// in the cluster must still be seen and undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_edited_in_the_cluster_is_restored_at_the_next_sync() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, shop("Orders API", "pw", false))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("id-crm", "crm"))
        .unwrap();
    resync(&world).await;
    // Once more, so that both Applications are known from a read as well,
    // and both Director answers remembered: this sync parses neither.
    resync(&world).await;
    assert_eq!(world.agent().metrics.controller.applications_recalled(), 2);
    let original = applications(&world).get(SHOP).await.unwrap();

    let edit = json!({"spec": {"description": "edited by hand", "services": []}});
    applications(&world)
        .patch(SHOP, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let connection = resync(&world).await;

    let restored = applications(&world).get(SHOP).await.unwrap();
    assert_eq!(restored.spec.description, original.spec.description);
    assert_eq!(restored.spec.services, original.spec.services);
    let results = connection
        .status
        .unwrap()
        .synchronization_status
        .unwrap()
        .applications;
    let outcome = |name: &str| results.iter().find(|r| r.name == name).map(|r| r.operation);
    assert_eq!(outcome(SHOP), Some(SyncOperation::Updated), "{results:?}");
    assert_eq!(
        outcome("mp-crm"),
        Some(SyncOperation::Unchanged),
        "{results:?}"
    );
    // The Director's answer for the shop was remembered, but the cluster no
    // longer held what it wanted: only the crm was recalled.
    assert_eq!(world.agent().metrics.controller.applications_recalled(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_at_every_level_is_followed() {
    let mut world = World::new().await;
    world.settings.director_page_size = 200;
    world.settings.kubernetes_list_page_size = 200;
    world.configure_with_fresh_token().await;
    let mut apps = compass_sim::model::generate_applications(449, 1, 1, 0);
    let mut big = plain("app-big", "big");
    big.bundles = (0..250)
        .map(|i| {
            serde_json::from_value(json!({"id": format!("big-b{i}"), "name": format!("B{i}")}))
                .unwrap()
        })
        .collect();
    big.bundles[249].api_definitions = (0..450)
        .map(|i| serde_json::from_value(json!({"id": format!("big-api{i}"), "name": format!("api {i}"), "targetURL": "https://x"})).unwrap())
        .collect();
    apps.push(big);
    world.sim.set_applications(RUNTIME_ID, apps).unwrap();
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, Duration::from_secs(240))
        .await;
    let all = applications(&world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 450, "every application of every page");
    let big = all.iter().find(|a| a.name_any() == "mp-big").unwrap();
    assert_eq!(big.spec.services.len(), 250, "every bundle page");
    let last = big
        .spec
        .services
        .iter()
        .find(|s| s.id == "big-b249")
        .unwrap();
    assert_eq!(last.entries.len(), 450, "every API definition page");

    // The cluster side is read in pages too (200 per list call here): a second
    // sync sees all 450 Applications and has nothing to do.
    let writes_before = world.agent().metrics.kubernetes.successful_writes();
    let connection = resync(&world).await;
    assert_eq!(
        connection.status.unwrap().connection_state,
        ConnectionState::Synchronized
    );
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes(),
        writes_before,
        "an unchanged sync over several list pages writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn director_faults_fail_the_sync_delete_nothing_and_recover() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-a", "a"))
        .unwrap();
    resync(&world).await;
    for (kind, needle) in [
        (FaultKind::Http500, "HTTP status 500"),
        (FaultKind::GraphqlError, "GraphQL error"),
        (FaultKind::NullData, "no data"),
        (FaultKind::MalformedJson, "not JSON"),
        (FaultKind::Delay { ms: 5_000 }, "no answer"),
    ] {
        world
            .sim
            .inject_fault("applicationsForRuntime", kind, FaultTimes::UntilCleared);
        // The Director "lost" the application, but the fetch fails: nothing may be deleted.
        world.sim.remove_application(RUNTIME_ID, "app-a").unwrap();
        let failed = world
            .wait_for_connection(&format!("SynchronizationFailed for {kind:?}"), LONG, |c| {
                c.status.as_ref().is_some_and(|s| {
                    s.connection_state == ConnectionState::SynchronizationFailed
                        && s.synchronization_status
                            .as_ref()
                            .is_some_and(|s| s.error.contains(needle))
                })
            })
            .await;
        assert!(failed
            .status
            .unwrap()
            .synchronization_status
            .unwrap()
            .error
            .contains("applicationsForRuntime"));
        assert!(
            applications(&world)
                .get_opt("mp-a")
                .await
                .unwrap()
                .is_some(),
            "a failed fetch deleted an Application"
        );
        world
            .sim
            .put_application(RUNTIME_ID, plain("app-a", "a"))
            .unwrap();
        world.sim.clear_faults();
        world
            .wait_for_state(ConnectionState::Synchronized, LONG)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_application_that_cannot_be_written_does_not_stop_the_others() {
    let world = World::connected().await;
    // The Director's names as they are: one that Kubernetes refuses. (Compass's
    // Director would normalize it under this label: a Director that serves
    // the names as registered is asked for.)
    world
        .sim
        .set_application_names(compass_sim::ApplicationNames::AsRegistered);
    world
        .sim
        .set_runtime_label(RUNTIME_ID, names::IS_NORMALIZED_LABEL, json!("true"))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-ok", "fine"))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-bad", "Not_A_Valid_Name"))
        .unwrap();
    // Synchronized, as the Go agent reports it: the sync ran; the failure is
    // named in the status.
    let connection = world
        .wait_for_connection("Synchronized with the failure named", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::Synchronized
                    && s.synchronization_status
                        .as_ref()
                        .is_some_and(|sync| sync.error.contains("Not_A_Valid_Name"))
            })
        })
        .await;
    assert!(
        applications(&world)
            .get_opt("fine")
            .await
            .unwrap()
            .is_some(),
        "the valid application is synchronized"
    );
    let sync = connection.status.unwrap().synchronization_status.unwrap();
    assert!(sync.error.contains("Not_A_Valid_Name"), "{}", sync.error);
    let bad = sync
        .applications
        .iter()
        .find(|r| r.name == "Not_A_Valid_Name")
        .unwrap();
    assert_eq!(bad.operation, SyncOperation::Failed);
    assert!(!bad.error.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_labels_are_set_once_and_not_resent() {
    let world = World::connected().await;
    let labels = world.sim.runtime_labels(RUNTIME_ID).unwrap();
    assert_eq!(
        labels["runtime_eventServiceUrl"],
        "https://gateway.kyma.local"
    );
    assert_eq!(labels["runtime_consoleUrl"], "https://console.kyma.local");
    resync(&world).await;
    resync(&world).await;
    let sets = world
        .sim
        .request_log()
        .iter()
        .filter(|e| e.operations.iter().any(|o| o == "setRuntimeLabel"))
        .count();
    assert_eq!(sets, 2, "one setRuntimeLabel per label, never repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_costs_the_director_one_request_for_a_page_of_applications() {
    let world = World::connected().await;
    for i in 0..3 {
        world
            .sim
            .put_application(RUNTIME_ID, plain(&format!("id-{i}"), &format!("app-{i}")))
            .unwrap();
    }
    resync(&world).await;
    world.sim.clear_request_log();
    resync(&world).await;
    let director: Vec<Vec<String>> = world
        .sim
        .request_log()
        .into_iter()
        .filter(|e| e.endpoint == compass_sim::log::Endpoint::Director)
        .map(|e| e.operations)
        .collect();
    // The runtime's labels (isNormalized, the URLs) come with the first page.
    assert_eq!(
        director,
        vec![vec![
            "runtime".to_string(),
            "applicationsForRuntime".to_string()
        ]],
        "one request, as the original makes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_now_synchronizes_at_once() {
    let mut world = World::new().await;
    world.settings.controller_sync_period = Duration::from_secs(600);
    world.settings.minimal_compass_sync_time = Duration::from_secs(300);
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-now", "now"))
        .unwrap();
    resync(&world).await;
    assert!(
        applications(&world)
            .get_opt("mp-now")
            .await
            .unwrap()
            .is_some(),
        "resyncNow synchronized without waiting"
    );
}

// ---------------------------------------------------------------------------
// Application names as today's Kyma agent gives them
// ---------------------------------------------------------------------------

/// A Director application with one Basic-credential bundle of id `bundle`.
fn with_credentials(id: &str, name: &str, bundle: &str) -> compass_sim::Application {
    serde_json::from_value(json!({"id": id, "name": name, "bundles": [
        {"id": bundle, "name": "B", "defaultInstanceAuth": {"credential": {"basic": {"username": "u", "password": format!("pw-{id}")}}},
         "apiDefinitions": [{"id": format!("{id}-api"), "name": "api", "targetURL": "https://x"}]}
    ]}))
    .unwrap()
}

async fn application_names(world: &World) -> BTreeSet<String> {
    applications(world)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.name_any())
        .collect()
}

fn set_is_normalized(world: &World, value: Option<serde_json::Value>) {
    match value {
        Some(value) => world
            .sim
            .set_runtime_label(RUNTIME_ID, names::IS_NORMALIZED_LABEL, value)
            .unwrap(),
        None => {
            world
                .sim
                .delete_runtime_label(RUNTIME_ID, names::IS_NORMALIZED_LABEL)
                .unwrap();
        }
    }
}

/// Against Compass as it is, the label changes nothing the agent writes: the
/// Director normalizes the names when the label is missing or "true" (and
/// appends a system number), the agent when it is anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_director_the_names_are_the_same_whatever_the_runtime_label() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, plain("a-1", "Shop_Orders"))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("a-2", "mp-crm"))
        .unwrap();
    let mut numbered = plain("a-3", "ERP");
    numbered.system_number = Some("4711".into());
    world.sim.put_application(RUNTIME_ID, numbered).unwrap();
    resync(&world).await;
    let expected = BTreeSet::from([
        "mp-shop-orders".to_string(),
        "mp-crm".to_string(),
        "mp-erp-4711".to_string(),
    ]);
    assert_eq!(application_names(&world).await, expected);
    let before = resource_versions(&world).await;
    for value in [
        None,
        Some(json!("false")),
        Some(json!("True")),
        Some(json!(true)),
        Some(json!("true")),
    ] {
        set_is_normalized(&world, value.clone());
        let connection = resync(&world).await;
        let status = connection.status.unwrap();
        assert_eq!(
            status.synchronization_status.unwrap().error,
            "",
            "{value:?}"
        );
        assert_eq!(application_names(&world).await, expected, "{value:?}");
        assert_eq!(
            resource_versions(&world).await,
            before,
            "no write for {value:?}"
        );
    }
}

/// The agent's own rule, which a Director that serves the names as
/// registered shows (Compass's Director normalizes them itself: see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_normalized_unless_the_runtime_label_is_normalized_is_the_string_true() {
    let world = World::connected().await;
    world
        .sim
        .set_application_names(compass_sim::ApplicationNames::AsRegistered);
    set_is_normalized(&world, None);
    world
        .sim
        .put_application(RUNTIME_ID, plain("a-1", "Shop_Orders"))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("a-2", "mp-crm"))
        .unwrap();
    // No label: normalized.
    resync(&world).await;
    let normalized = BTreeSet::from(["mp-shop-orders".to_string(), "mp-crm".to_string()]);
    assert_eq!(application_names(&world).await, normalized);
    let before = resource_versions(&world).await;
    // "false", "True" and a JSON boolean true all mean: normalize. Nothing moves.
    for value in [json!("false"), json!("True"), json!(true)] {
        set_is_normalized(&world, Some(value.clone()));
        let connection = resync(&world).await;
        assert_eq!(
            connection.status.unwrap().connection_state,
            ConnectionState::Synchronized,
            "{value}"
        );
        assert_eq!(application_names(&world).await, normalized, "{value}");
        assert_eq!(
            resource_versions(&world).await,
            before,
            "no write for {value}"
        );
    }
    // The string "true": the Director's names as they are. "Shop_Orders" is
    // no Kubernetes name: that application fails, the other is kept.
    set_is_normalized(&world, Some(json!("true")));
    let connection = resync(&world).await;
    let status = connection.status.unwrap();
    assert_eq!(status.connection_state, ConnectionState::Synchronized);
    assert!(
        status
            .synchronization_status
            .as_ref()
            .unwrap()
            .error
            .starts_with("1 of 2 applications could not be synchronized: Shop_Orders: "),
        "{:?}",
        status.synchronization_status
    );
    let results = status.synchronization_status.unwrap().applications;
    let failed = results.iter().find(|r| r.application_id == "a-1").unwrap();
    assert_eq!(failed.operation, SyncOperation::Failed);
    assert!(
        failed.error.contains("not a valid Kubernetes object name"),
        "{failed:?}"
    );
    // mp-crm is its own normal form: the same name either way.
    assert!(application_names(&world).await.contains("mp-crm"));
    assert!(
        application_names(&world).await.contains("mp-shop-orders"),
        "the old Application of a-1 stays while the new one cannot be written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_label_goes_away_applications_are_renamed_new_first_and_no_shared_secret_is_lost()
{
    let mut world = World::new().await;
    // A Director that serves the names as registered: Compass's normalizes
    // them itself when the label is "true", and nothing is renamed.
    world
        .sim
        .set_application_names(compass_sim::ApplicationNames::AsRegistered);
    world.settings.minimal_compass_sync_time = Duration::from_secs(1);
    set_is_normalized(&world, Some(json!("true")));
    // Its normal form is "mp-" + itself with '.' → '-': both names begin with
    // the same 26 characters, so their credential Secrets have one name.
    let long = "mp-mp-mp-mp-mp-mp-mp-mp-mp-shop.v1";
    world
        .sim
        .put_application(RUNTIME_ID, with_credentials("a-shop", "shop", BUNDLE_BASIC))
        .unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, with_credentials("a-long", long, BUNDLE_OAUTH))
        .unwrap();
    world.configure_with_fresh_token().await;
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(
        application_names(&world).await,
        BTreeSet::from(["shop".to_string(), long.to_string()])
    );
    let old_shop_secret = names::credentials_secret_name("shop", BUNDLE_BASIC);
    let shared = names::credentials_secret_name(long, BUNDLE_OAUTH);
    let new_long = names::normalize_application_name(long);
    assert_eq!(
        names::credentials_secret_name(&new_long, BUNDLE_OAUTH),
        shared
    );
    let shared_before = secret_data(&world, &shared)
        .await
        .expect("the shared Secret");

    // Every Application event from now on, in order.
    let events = common::drop_in::ApplicationEvents::start(&world.client).await;
    set_is_normalized(&world, None);
    resync(&world).await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(
        application_names(&world).await,
        BTreeSet::from(["mp-shop".to_string(), new_long.clone()])
    );
    let seen = events.stop();
    for (new, old) in [("mp-shop", "shop"), (new_long.as_str(), long)] {
        let created = seen.iter().position(|e| e == &format!("added {new}"));
        let deleted = seen.iter().position(|e| e == &format!("deleted {old}"));
        assert!(
            matches!((created, deleted), (Some(c), Some(d)) if c < d),
            "{new} must be created before {old} is deleted: {seen:?}"
        );
    }
    // The old one's Secret is gone, the new one's is there.
    assert_eq!(secret_data(&world, &old_shop_secret).await, None);
    let new_shop_secret = names::credentials_secret_name("mp-shop", BUNDLE_BASIC);
    assert!(secret_data(&world, &new_shop_secret).await.is_some());
    // The shared Secret is kept, with its data, and belongs to the new one.
    assert_eq!(
        secret_data(&world, &shared).await.as_ref(),
        Some(&shared_before)
    );
    let secret = secrets(&world).get(&shared).await.unwrap();
    assert_eq!(secret.labels()["app"], new_long);
    let owner = applications(&world).get(&new_long).await.unwrap();
    assert_eq!(
        secret
            .owner_references()
            .iter()
            .map(|o| o.uid.clone())
            .collect::<Vec<_>>(),
        vec![owner.uid().unwrap()]
    );
    // The operator is told.
    let events_api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(world.client.clone(), "default");
    test_support::wait_for("an ApplicationReplaced Event", SHORT, || async {
        let list = events_api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let notes: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("ApplicationReplaced"))
            .filter_map(|e| e.note.clone())
            .collect();
        if notes
            .iter()
            .any(|n| n.contains("shop was replaced by mp-shop"))
        {
            Ok(())
        } else {
            Err(format!("{notes:?}"))
        }
    })
    .await;
    world.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_fail_every_application_of_the_group_the_others_sync_and_nothing_flips() {
    let world = World::connected().await;
    for (id, name) in [("d-1", "Shop"), ("d-2", "shop"), ("d-3", "crm")] {
        world
            .sim
            .put_application(RUNTIME_ID, plain(id, name))
            .unwrap();
    }
    let connection = resync(&world).await;
    let status = connection.status.unwrap();
    assert_eq!(status.connection_state, ConnectionState::Synchronized);
    let sync = status.synchronization_status.unwrap();
    assert!(
        sync.error
            .starts_with("2 of 3 applications could not be synchronized: "),
        "{}",
        sync.error
    );
    let results = sync.applications;
    for id in ["d-1", "d-2"] {
        let result = results.iter().find(|r| r.application_id == id).unwrap();
        assert_eq!(result.operation, SyncOperation::Failed, "{result:?}");
        assert!(
            result.error.contains("mp-shop")
                && result.error.contains("d-1")
                && result.error.contains("d-2"),
            "{result:?}"
        );
    }
    assert_eq!(
        application_names(&world).await,
        BTreeSet::from(["mp-crm".to_string()])
    );
    // The runtime is labelled all the same (the original sets no labels then).
    let labels = world.sim.runtime_labels(RUNTIME_ID).unwrap();
    assert!(labels.contains_key("runtime_eventServiceUrl"), "{labels:?}");
    // Again, in the other order: still nothing for either, no write.
    let before = resource_versions(&world).await;
    world.sim.remove_application(RUNTIME_ID, "d-1").unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, plain("d-1", "Shop"))
        .unwrap();
    resync(&world).await;
    assert_eq!(resource_versions(&world).await, before);
    assert_eq!(
        application_names(&world).await,
        BTreeSet::from(["mp-crm".to_string()])
    );
}

/// A World whose agent reads the Director two applications per page, with
/// six applications (three pages), all synchronized.
async fn six_applications_in_pages_of_two() -> World {
    let mut world = World::new().await;
    world.settings.director_page_size = 2;
    world.configure_with_fresh_token().await;
    let apps = (1..=6)
        .map(|i| with_credentials(&format!("app-{i}"), &format!("app{i}"), &format!("b{i}")))
        .collect();
    world.sim.set_applications(RUNTIME_ID, apps).unwrap();
    world.start_agent().await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(application_names(&world).await.len(), 6);
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_removed_between_two_page_requests_costs_no_other_application() {
    let world = six_applications_in_pages_of_two().await;
    let before = uids(&world).await;
    // Between the first and the second page the Director loses its first
    // application: every later page shifts by one, and one live application
    // falls between the pages.
    world.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::RemoveFirstApplication,
        FaultTimes::Next(1),
    );
    // The first in the Director's order, which is not the order of creation.
    let first = world.sim.served_application_ids(RUNTIME_ID).unwrap()[0].clone();
    let removed = world
        .sim
        .applications(RUNTIME_ID)
        .unwrap()
        .into_iter()
        .find(|a| a.id == first)
        .unwrap()
        .name;
    resync(&world).await;
    assert!(world.sim.faults().is_empty(), "the fault struck");
    let gone = world
        .sim
        .applications(RUNTIME_ID)
        .unwrap()
        .iter()
        .all(|a| a.name != removed);
    assert!(gone, "the Director lost {removed}");
    let connection = world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    let after = uids(&world).await;
    // The removed application went, with its Secret; every other object is
    // the very same (a delete and re-create would show a new uid).
    let expected: BTreeMap<_, _> = before
        .iter()
        .filter(|(key, _)| !key.contains(&removed))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        expected.len(),
        before.len() - 2,
        "one Application and its Secret fewer: {before:?}"
    );
    assert_eq!(after, expected);
    let log = world.sim.request_log();
    let pages = log
        .iter()
        .filter(|e| e.operations.iter().any(|o| o == "applicationsForRuntime"))
        .count();
    eprintln!("pages requested for the sync with the removal: {pages}");
    assert!(connection.status.unwrap().synchronization_status.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_list_of_applications_deletes_nothing_and_says_so() {
    let world = six_applications_in_pages_of_two().await;
    let before = uids(&world).await;
    world.sim.inject_fault(
        "applicationsForRuntime",
        FaultKind::NullList,
        FaultTimes::UntilCleared,
    );
    let failed = world
        .wait_for_connection("a sync that skipped deletions", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::SynchronizationFailed
                    && s.synchronization_status
                        .as_ref()
                        .is_some_and(|s| s.error.contains("no Application was deleted"))
            })
        })
        .await;
    eprintln!(
        "status with null lists: {}",
        failed.status.unwrap().synchronization_status.unwrap().error
    );
    let null_answers = world
        .sim
        .request_log()
        .iter()
        .filter(
            |e| matches!(&e.outcome, compass_sim::Outcome::Fault { fault } if fault == "nullList"),
        )
        .count();
    assert!(
        null_answers >= 3,
        "the list was asked for again: {null_answers}"
    );
    assert_eq!(uids(&world).await, before, "nothing deleted or re-created");
    world.sim.clear_faults();
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    assert_eq!(uids(&world).await, before, "the same objects afterwards");
}

/// A Secret in the integration namespace that is not the agent's: no labels
/// of the agent or of the Go agent.
fn someone_elses_secret(name: &str) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
        "stringData": {"mine": "keep me"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_the_wanted_name_that_is_someone_elses_is_never_overwritten() {
    let world = World::connected().await;
    secrets(&world)
        .create(&PostParams::default(), &someone_elses_secret("mp-app9-b9"))
        .await
        .unwrap();
    let before = secrets(&world).get("mp-app9-b9").await.unwrap();
    world
        .sim
        .put_application(RUNTIME_ID, with_credentials("app-9", "app9", "b9"))
        .unwrap();
    let failed = world
        .wait_for_connection("the Secret conflict reported", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::Synchronized
                    && s.synchronization_status
                        .as_ref()
                        .is_some_and(|s| s.error.contains("mp-app9-b9"))
            })
        })
        .await;
    let sync = failed.status.unwrap().synchronization_status.unwrap();
    eprintln!("status with someone else's Secret: {}", sync.error);
    let result = sync
        .applications
        .iter()
        .find(|r| r.name == "mp-app9")
        .unwrap();
    assert_eq!(result.operation, SyncOperation::Failed);
    let after = secrets(&world).get("mp-app9-b9").await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
    assert_eq!(after.data, before.data);
}

/// The agent's writer, driven by the test itself, so that the test can act
/// between the sync's read and its writes. It lists the cluster at every
/// read, as the agent does without watches: a test that edits by hand and
/// reads at once is not at the mercy of when a watch event arrives.
fn writer(world: &World) -> compass_runtime_agent::k8s::applications::ApplicationStore {
    use compass_runtime_agent::k8s::access::Access;
    store(world, Access::everything().for_one_read(), Arc::default())
}

/// The agent's writer with the RBAC `access` (watches or not), counting
/// into `metrics`.
fn store(
    world: &World,
    access: compass_runtime_agent::k8s::access::Access,
    metrics: Arc<compass_runtime_agent::k8s::metrics::KubernetesMetrics>,
) -> compass_runtime_agent::k8s::applications::ApplicationStore {
    use compass_runtime_agent::k8s::applications::ApplicationStore;
    ApplicationStore::new(world.client.clone(), NS, 4, 100, metrics, Arc::new(access))
}

/// The Director application `name` (id `id`) with one bundle `bundle` of Basic
/// credentials, converted as the agent converts it (bundles are paged apart,
/// so they are put in after decoding).
fn wanted_with_credentials(
    id: &str,
    name: &str,
    bundle: &str,
) -> compass_runtime_agent::sync::WantedApplication {
    use compass_runtime_agent::sync::{self, ConversionSettings};
    let mut director_app: compass_runtime_agent::compass::model::Application =
        serde_json::from_value(json!({"id": id, "name": name})).unwrap();
    director_app.bundles = vec![serde_json::from_value(json!({
        "id": bundle, "name": "B",
        "defaultInstanceAuth": {"credential": {
            "__typename": "BasicCredentialData", "username": "u", "password": "pw"
        }}
    }))
    .unwrap()];
    let conversion = ConversionSettings {
        central_gateway_url: "http://central-application-gateway.kyma-system:8082".into(),
        skip_apps_tls_verify: false,
        normalize_application_names: true,
    };
    sync::to_wanted_application(&director_app, &conversion)
}

/// `count` Director applications with credentials (`app-1`, …), with
/// their Applications' and their first Secrets' names.
fn wanted_applications(
    count: usize,
) -> (
    Vec<compass_runtime_agent::sync::WantedApplication>,
    Vec<String>,
    Vec<String>,
) {
    let wanted: Vec<_> = (1..=count)
        .map(|i| wanted_with_credentials(&format!("app-{i}"), &format!("app{i}"), &format!("b{i}")))
        .collect();
    let application_names = wanted
        .iter()
        .map(|w| w.application.metadata.name.clone().unwrap())
        .collect();
    let secret_names = wanted
        .iter()
        .map(|w| w.secrets[0].name().to_string())
        .collect();
    (wanted, application_names, secret_names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_someone_else_creates_between_read_and_write_is_left_alone() {
    use compass_runtime_agent::sync::{self, Deletions};
    let world = World::new().await;
    let writer = writer(&world);
    let wanted = wanted_with_credentials("app-9", "app9", "b9");
    let secret_name = wanted.secrets[0].name().to_string();
    let actual = writer.read_actual().await.unwrap();
    let plan = sync::plan(vec![wanted], &actual, Deletions::Allowed);
    // Between the read and the write, someone creates a Secret of that name:
    // the agent's create meets a 409.
    secrets(&world)
        .create(&PostParams::default(), &someone_elses_secret(&secret_name))
        .await
        .unwrap();
    let before = secrets(&world).get(&secret_name).await.unwrap();
    let outcome = writer.apply(plan).await;
    let result = &outcome.results[0];
    assert_eq!(result.operation, SyncOperation::Failed, "{result:?}");
    assert!(result.error.contains("not the agent's"), "{}", result.error);
    let after = secrets(&world).get(&secret_name).await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
    assert_eq!(after.data, before.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_made_anew_between_read_and_delete_is_left_alone_with_its_secrets() {
    use compass_runtime_agent::sync::{self, Deletions};
    let world = World::new().await;
    let writer = writer(&world);
    let wanted = wanted_with_credentials("app-8", "app8", "b8");
    let name = wanted.application.metadata.name.clone().unwrap();
    let secret_name = wanted.secrets[0].name().to_string();
    let written = writer
        .apply(sync::plan(
            vec![wanted],
            &writer.read_actual().await.unwrap(),
            Deletions::Allowed,
        ))
        .await;
    assert_eq!(written.results[0].operation, SyncOperation::Created);
    // The Director no longer has it: the plan deletes the Application and
    // its Secret.
    let nothing: Vec<sync::WantedApplication> = Vec::new();
    let plan = sync::plan(
        nothing,
        &writer.read_actual().await.unwrap(),
        Deletions::Allowed,
    );
    assert_eq!(plan.applications.len(), 1, "{plan:#?}");
    // Between the read and the delete, someone deletes it and makes their
    // own under that name (the test apiserver runs no garbage collector, so
    // the Secret stays, as it would for a moment in a cluster).
    let old = applications(&world).get(&name).await.unwrap();
    applications(&world)
        .delete(&name, &Default::default())
        .await
        .unwrap();
    let theirs: Application = serde_json::from_value(json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {"description": "made by hand", "services": []}
    }))
    .unwrap();
    let theirs = applications(&world)
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    assert_ne!(theirs.uid(), old.uid());
    let outcome = writer.apply(plan).await;
    let result = &outcome.results[0];
    assert_eq!(result.operation, SyncOperation::Failed, "{result:?}");
    assert!(result.error.contains("made anew"), "{}", result.error);
    let after = applications(&world).get(&name).await.unwrap();
    assert_eq!(after.uid(), theirs.uid(), "their Application is kept");
    assert!(
        secrets(&world)
            .get_opt(&secret_name)
            .await
            .unwrap()
            .is_some(),
        "no Secret deleted before the Application's uid was checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_connected_the_sync_needs_only_the_runtime_id_and_tenant() {
    let world = World::connected().await;
    // The operator removes the spent token (and the Connector URL).
    let token = String::new();
    let mut values = world.config_values(&token);
    values.remove("TOKEN");
    values.remove("CONNECTOR_URL");
    world.write_config_secret(values).await;
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-late", "late"))
        .unwrap();
    let connection = resync(&world).await;
    let status = connection.status.unwrap();
    assert_eq!(
        status.connection_state,
        ConnectionState::Synchronized,
        "{status:#?}"
    );
    assert!(applications(&world)
        .get_opt("mp-late")
        .await
        .unwrap()
        .is_some());
}

/// The Director answers for a runtime it does not know as Compass does:
/// `runtime` is null without an error, `applicationsForRuntime` an
/// `InvalidData` error with its extensions. The sync fails in the
/// Director's words, and nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_the_director_does_not_know_fails_the_sync_in_its_words_and_deletes_nothing() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, plain("app-kept", "kept"))
        .unwrap();
    resync(&world).await;
    let before = uids(&world).await;
    assert!(before.contains_key("app/mp-kept"), "{before:?}");
    let mut values = world.config_values("");
    values.remove("TOKEN");
    values.insert("RUNTIME_ID".into(), "no-such-runtime".into());
    world.write_config_secret(values).await;
    let failed = world
        .wait_for_connection("a sync failed with the Director's reason", LONG, |c| {
            c.status.as_ref().is_some_and(|s| {
                s.connection_state == ConnectionState::SynchronizationFailed
                    && s.synchronization_status
                        .as_ref()
                        .is_some_and(|sync| sync.error.contains("runtime does not exist"))
            })
        })
        .await;
    let error = failed.status.unwrap().synchronization_status.unwrap().error;
    assert!(
        error.contains("Invalid data [reason=runtime does not exist]"),
        "{error}"
    );
    assert_eq!(uids(&world).await, before, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_gone_from_the_director_takes_no_secret_that_is_not_the_agents() {
    let world = World::connected().await;
    world
        .sim
        .put_application(RUNTIME_ID, with_credentials("app-7", "app7", "b7"))
        .unwrap();
    resync(&world).await;
    assert!(secret_data(&world, "mp-app7-b7").await.is_some());
    // Someone puts their own Secret under that name (with just a bundleId
    // label, so the agent's list finds it).
    secrets(&world)
        .delete("mp-app7-b7", &Default::default())
        .await
        .unwrap();
    let mut theirs = someone_elses_secret("mp-app7-b7");
    theirs.metadata.labels = Some(BTreeMap::from([("bundleId".into(), "b7".into())]));
    secrets(&world)
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let before = secrets(&world).get("mp-app7-b7").await.unwrap();
    // The application goes from the Director: its Application goes, their Secret stays.
    world.sim.remove_application(RUNTIME_ID, "app-7").unwrap();
    resync(&world).await;
    assert!(applications(&world)
        .get_opt("mp-app7")
        .await
        .unwrap()
        .is_none());
    let after = secrets(&world)
        .get_opt("mp-app7-b7")
        .await
        .unwrap()
        .expect("their Secret is still there");
    assert_eq!(after.uid(), before.uid());
    assert_eq!(after.data, before.data);
}

/// A runtime with more Applications than the status lists: the status names
/// the first hundred (failures and changes first) and counts the rest, so it
/// stays far below the API server's size limit at any number of Applications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_lists_at_most_a_hundred_results_and_counts_the_rest() {
    use compass_runtime_agent::crd::compass_connection::MAX_LISTED_RESULTS;
    let world = World::connected().await;
    let apps = compass_sim::model::generate_applications(130, 1, 1, 0);
    world
        .sim
        .set_applications(RUNTIME_ID, apps)
        .expect("the applications are set");
    let connection = resync(&world).await;
    let status = connection.status.unwrap();
    assert_eq!(status.connection_state, ConnectionState::Synchronized);
    let sync = status.synchronization_status.unwrap();
    assert_eq!(sync.applications.len(), MAX_LISTED_RESULTS);
    assert_eq!(sync.applications_not_listed, 30);
    assert!(sync
        .applications
        .iter()
        .all(|r| r.operation == SyncOperation::Created));
    assert_eq!(application_names(&world).await.len(), 130);
    let size = serde_json::to_vec(&sync).unwrap().len();
    assert!(size < 64 * 1024, "the status holds {size} bytes");
}

/// After a restart the agent remembers nothing of the cluster: with more
/// Applications to read than a list page holds, it reads them with one list
/// in pages instead of one GET each. What it reads that way must be what it
/// would have remembered: an unchanged runtime is not rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_that_lists_the_applications_in_full_rewrites_nothing() {
    let mut world = World::connected_with(|settings| settings.kubernetes_list_page_size = 2).await;
    let apps = compass_sim::model::generate_applications(7, 2, 1, 0);
    world
        .sim
        .set_applications(RUNTIME_ID, apps)
        .expect("the applications are set");
    resync(&world).await;
    assert_eq!(application_names(&world).await.len(), 7);
    let before = resource_versions(&world).await;

    world.stop_agent().await;
    world.start_agent().await;
    let connection = resync(&world).await;

    let status = connection.status.unwrap();
    assert_eq!(status.connection_state, ConnectionState::Synchronized);
    let results = status.synchronization_status.unwrap().applications;
    assert_eq!(results.len(), 7, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.operation == SyncOperation::Unchanged),
        "{results:?}"
    );
    assert_eq!(
        resource_versions(&world).await,
        before,
        "an unchanged runtime read in full after a restart is not rewritten"
    );
}

/// An idle read of the cluster (metadata listed, in protobuf where the API
/// server speaks it, and only what changed read again) sees what a first
/// read sees (every object read whole, in JSON), after edits by hand to an
/// Application's spec and to a Secret's data, labels and owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_read_of_the_cluster_sees_what_a_whole_read_sees_after_edits_by_hand() {
    use compass_runtime_agent::sync::{self, Deletions};
    let world = World::new().await;
    let writer = writer(&world);
    let (wanted, application_names, secret_names) = wanted_applications(3);
    let written = writer
        .apply(sync::plan(
            wanted,
            &writer.read_actual().await.unwrap(),
            Deletions::Allowed,
        ))
        .await;
    assert!(
        written
            .results
            .iter()
            .all(|r| r.operation == SyncOperation::Created),
        "{written:?}"
    );
    // Read once, so that the next read knows every object it lists.
    let before = writer.read_actual().await.unwrap();

    let merge = |patch: serde_json::Value| Patch::Merge(patch);
    let params = PatchParams::default();
    // A Secret's data, its labels, its owner: one edit each.
    let edits = [
        json!({"stringData": {"password": "edited"}}),
        json!({"metadata": {"labels": {"bundleId": "edited"}}}),
        json!({"metadata": {"ownerReferences": null}}),
    ];
    for (name, edit) in secret_names.iter().zip(edits) {
        secrets(&world)
            .patch(name, &params, &merge(edit))
            .await
            .unwrap();
    }
    applications(&world)
        .patch(
            &application_names[0],
            &params,
            &merge(json!({"spec": {"description": "edited by hand"}})),
        )
        .await
        .unwrap();

    let idle = writer.read_actual().await.unwrap();
    let whole = self::writer(&world).read_actual().await.unwrap();
    let (before, idle, whole) = (as_planned(&before), as_planned(&idle), as_planned(&whole));
    assert_eq!(idle, whole);
    // And each edit was seen.
    assert_ne!(
        before.0[&application_names[0]],
        idle.0[&application_names[0]]
    );
    for name in &secret_names {
        assert_ne!(before.1[name], idle.1[name], "{name}");
    }
    assert_eq!(
        before.0[&application_names[1]],
        idle.0[&application_names[1]]
    );
}

/// The cluster as a read found it, each object by name in its debug form:
/// what a plan sees.
fn as_planned(
    state: &compass_runtime_agent::sync::ActualState,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let applications = state
        .applications
        .iter()
        .map(|a| (a.name.clone(), format!("{a:?}")))
        .collect();
    let secrets = state
        .secrets
        .iter()
        .map(|s| (s.name().to_string(), format!("{s:?}")))
        .collect();
    (applications, secrets)
}

/// With the right to watch (this project's RBAC), a read after which the
/// watches saw no change returns that read's state and lists nothing; each
/// change by hand (a Secret's data, an Application's spec, a new
/// Application, a deleted Secret), and the agent's own writes, is read by
/// the first read after its watch event, and what it reads is what a store
/// that lists every time reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_cluster_is_not_listed_again_and_each_change_by_hand_is_read() {
    use compass_runtime_agent::k8s::access::Access;
    use compass_runtime_agent::k8s::metrics::{ClusterRead, KubernetesMetrics};
    use compass_runtime_agent::sync::{self, Deletions};
    let world = World::new().await;
    let metrics = Arc::new(KubernetesMetrics::default());
    let store = store(&world, Access::everything(), metrics.clone());
    let listing = writer(&world);
    let (wanted, application_names, secret_names) = wanted_applications(2);
    let empty = store.read_actual().await.unwrap();
    assert_eq!(metrics.cluster_reads(ClusterRead::Listed), 1);
    let written = store
        .apply(sync::plan(wanted, &empty, Deletions::Allowed))
        .await;
    assert!(
        written
            .results
            .iter()
            .all(|r| r.operation == SyncOperation::Created),
        "{written:?}"
    );
    drop(empty);

    // Reads until one sees what a listing store sees: the watch events of a
    // change forget the kept state, and the read after lists.
    let read_until_as_listed = |what: &'static str| {
        let (store, listing) = (&store, &listing);
        async move {
            let expected = as_planned(&listing.read_actual().await.unwrap());
            wait_for(what, SHORT, || async {
                let read = store.read_actual().await.unwrap();
                as_planned(&read) == expected
            })
            .await;
            expected
        }
    };
    let mut before = read_until_as_listed("the agent's own writes to be read").await;
    for name in application_names.iter().chain(&secret_names) {
        assert!(
            before.0.contains_key(name) || before.1.contains_key(name),
            "{name} read after the writes"
        );
    }

    // Nothing changes: once both watches have begun, a read is the last
    // read's state, and lists nothing.
    wait_for("both watches to begin", SHORT, || async {
        store.keeps_cluster_state()
    })
    .await;
    let listed = metrics.cluster_reads(ClusterRead::Listed);
    let kept = metrics.cluster_reads(ClusterRead::Kept);
    let first = store.read_actual().await.unwrap();
    let second = store.read_actual().await.unwrap();
    assert!(Arc::ptr_eq(&first, &second), "the kept state itself");
    assert_eq!(as_planned(&first), before);
    assert_eq!(metrics.cluster_reads(ClusterRead::Listed), listed);
    assert_eq!(metrics.cluster_reads(ClusterRead::Kept), kept + 2);
    drop((first, second));

    // Each change by hand is read.
    let params = PatchParams::default();
    let merge = |patch: serde_json::Value| Patch::Merge(patch);
    secrets(&world)
        .patch(
            &secret_names[0],
            &params,
            &merge(json!({"stringData": {"password": "edited"}})),
        )
        .await
        .unwrap();
    let after = read_until_as_listed("a Secret's data edited by hand to be read").await;
    assert_ne!(after.1[&secret_names[0]], before.1[&secret_names[0]]);
    before = after;

    applications(&world)
        .patch(
            &application_names[0],
            &params,
            &merge(json!({"spec": {"description": "edited by hand"}})),
        )
        .await
        .unwrap();
    let after = read_until_as_listed("an Application's spec edited by hand to be read").await;
    assert_ne!(
        after.0[&application_names[0]],
        before.0[&application_names[0]]
    );
    before = after;

    let foreign: Application = serde_json::from_value(json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "made-by-hand"},
        "spec": {"description": "not from Compass"}
    }))
    .unwrap();
    applications(&world)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let after = read_until_as_listed("an Application created by hand to be read").await;
    assert!(after.0.contains_key("made-by-hand"));
    assert!(!before.0.contains_key("made-by-hand"));

    secrets(&world)
        .delete(&secret_names[1], &Default::default())
        .await
        .unwrap();
    let after = read_until_as_listed("a Secret deleted by hand to be missed").await;
    assert!(!after.1.contains_key(&secret_names[1]));

    // And, the changes read, the state is kept again.
    wait_for("the watches to begin again", SHORT, || async {
        store.keeps_cluster_state()
    })
    .await;
    let listed = metrics.cluster_reads(ClusterRead::Listed);
    assert_eq!(as_planned(&store.read_actual().await.unwrap()), after);
    assert_eq!(metrics.cluster_reads(ClusterRead::Listed), listed);
}

/// A role that grants list but no watch, though the agent was told at
/// start that it may watch (the role changed since): the watch's 403 turns
/// watching off with one log line, and every read lists, as without the
/// permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_watch_turns_keeping_off_and_every_read_lists() {
    use compass_runtime_agent::k8s::access::Access;
    use compass_runtime_agent::k8s::applications::ApplicationStore;
    use compass_runtime_agent::k8s::metrics::{ClusterRead, KubernetesMetrics};
    let world = World::new().await;
    // deploy/'s RBAC without `watch` on the Applications and the Secrets.
    let mut rbac = accounts::deploy_rbac();
    for object in &mut rbac {
        let rules = object
            .get_mut("rules")
            .and_then(|rules| rules.as_array_mut());
        for rule in rules.into_iter().flatten() {
            if let Some(verbs) = rule["verbs"].as_array_mut() {
                verbs.retain(|verb| verb != "watch");
            }
        }
    }
    accounts::apply_rbac(&world.client, &rbac).await;
    let account = "compass-runtime-agent";
    let token = accounts::service_account_token(&world.client, NS, account).await;
    let user = format!("system:serviceaccount:{NS}:{account}");
    let client = accounts::token_client(&world, &token, &user).await;
    let access = Arc::new(Access::everything());
    let metrics = Arc::new(KubernetesMetrics::default());
    let store = ApplicationStore::new(client, NS, 4, 100, metrics.clone(), access.clone());

    store.read_actual().await.unwrap();
    wait_for("the watch's 403 to turn watching off", SHORT, || async {
        !access.watch_cluster_state.allowed()
    })
    .await;
    for _ in 0..3 {
        store.read_actual().await.unwrap();
    }
    assert!(!store.keeps_cluster_state());
    assert_eq!(metrics.cluster_reads(ClusterRead::Listed), 4);
    assert_eq!(metrics.cluster_reads(ClusterRead::Kept), 0);
}

/// A partition of the API server link while the state is kept: the HTTP/2
/// pings drop the silent connection with its watches, the kept state is
/// forgotten (not used across the partition), a read fails within its
/// deadline, and once the link heals the store lists and keeps again by
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_forgets_the_kept_state_and_keeping_resumes_after_it() {
    use compass_runtime_agent::k8s::access::Access;
    use compass_runtime_agent::k8s::applications::ApplicationStore;
    use compass_runtime_agent::k8s::client::{self, Deadlines, PING_AFTER_IDLE, PING_TIMEOUT};
    use compass_runtime_agent::k8s::metrics::{ClusterRead, KubernetesMetrics};
    use test_support::{FaultProxy, Mode};
    let world = World::new().await;
    let proxy = FaultProxy::tcp_to_apiserver(&world.env.kube_config())
        .await
        .unwrap();
    let metrics = Arc::new(KubernetesMetrics::default());
    let deadline = Duration::from_secs(5);
    let client = client::build(
        proxy.kube_config(world.env.kube_config()),
        Deadlines::for_request_timeout(deadline),
        metrics.clone(),
    )
    .unwrap();
    let store = ApplicationStore::new(
        client,
        NS,
        4,
        100,
        metrics.clone(),
        Arc::new(Access::everything()),
    );
    store.read_actual().await.unwrap();
    wait_for("both watches to begin", SHORT, || async {
        store.keeps_cluster_state()
    })
    .await;

    proxy.set_mode(Mode::BlackHole);
    let cut = tokio::time::Instant::now();
    wait_for(
        "the silent connection's watches to end",
        PING_AFTER_IDLE + PING_TIMEOUT + SHORT,
        || async { !store.keeps_cluster_state() },
    )
    .await;
    println!("the kept state forgotten {:?} after the cut", cut.elapsed());
    let listed = metrics.cluster_reads(ClusterRead::Listed);
    let kept = metrics.cluster_reads(ClusterRead::Kept);
    let started = tokio::time::Instant::now();
    let read = store.read_actual().await;
    assert!(read.is_err(), "a read across the partition fails");
    assert!(
        started.elapsed() < deadline * 4,
        "and within its deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(metrics.cluster_reads(ClusterRead::Kept), kept);

    proxy.set_mode(Mode::Pass);
    wait_for("a read after the partition", SHORT, || async {
        store.read_actual().await.is_ok()
    })
    .await;
    assert_eq!(metrics.cluster_reads(ClusterRead::Listed), listed + 1);
    wait_for("the watches to begin again", SHORT, || async {
        store.keeps_cluster_state()
    })
    .await;
    store.read_actual().await.unwrap();
    assert_eq!(metrics.cluster_reads(ClusterRead::Kept), kept + 1);
}
