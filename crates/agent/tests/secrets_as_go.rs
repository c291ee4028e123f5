//! Credential Secrets are the objects the Go agent writes (`makeSecret` in
//! `internal/kyma/secrets/repository.go`): labels `app` and `bundleId` only,
//! no annotation, one owner reference `{apiVersion, kind, name, uid}`, type
//! `Opaque` (what the apiserver makes of Go's, which has none), the data. So a
//! swap in either direction rewrites no Secret: the Go agent's unconditional
//! Update of each one changes nothing, and this agent takes the Go agent's
//! Secrets over as they are. And without a digest on the Secrets, an idle
//! sync still reads their metadata only.
//!
//! The agent talks to the apiserver through a recording proxy here, so that
//! the tests see which requests it makes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body as AxumBody;
use axum::extract::Request as AxumRequest;
use axum::response::{IntoResponse, Response as AxumResponse};
use common::*;
use compass_runtime_agent::crd::application::Application;
use compass_runtime_agent::crd::compass_connection::SyncOperation;
use compass_runtime_agent::crd::{ConnectionState, COMPASS_CONNECTION_NAME};
use compass_runtime_agent::k8s::FIELD_MANAGER;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// The Application of the Director's `shop` (names are normalized, as the
/// Director serves them).
const SHOP: &str = "mp-shop";
const BUNDLE_OAUTH: &str = "6f2b6e2e-1b43-4e0a-a1c2-3f1b8a0c9d11";
const BUNDLE_BASIC: &str = "0d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6";
const PLAIN_APPS: usize = 5;

/// `shop`: an OAuth bundle with request parameters, a Basic one.
fn shop() -> compass_sim::Application {
    serde_json::from_value(json!({
        "id": "app-shop", "name": "shop", "auths": [{"id": "auth-1"}],
        "bundles": [
            {
                "id": BUNDLE_OAUTH, "name": "Orders Bundle",
                "defaultInstanceAuth": {
                    "credential": {"oauth": {"clientId": "client-1", "clientSecret": "s3cr3t", "url": "https://shop.example.com/oauth/token"}},
                    "additionalHeaders": {"X-Tenant": ["t1"]},
                    "additionalQueryParams": {"lang": ["en", "de"]}
                },
                "apiDefinitions": [{"id": "api-1", "name": "Orders API", "targetURL": "https://shop.example.com/api/orders"}]
            },
            {
                "id": BUNDLE_BASIC, "name": "Customers",
                "defaultInstanceAuth": {"credential": {"basic": {"username": "admin", "password": "pw"}}},
                "apiDefinitions": [{"id": "api-2", "name": "Customers API", "targetURL": "https://shop.example.com/api/customers"}]
            }
        ]
    }))
    .unwrap()
}

/// `app-<i>`: one bundle of Basic credentials.
fn plain(i: usize) -> compass_sim::Application {
    let id = format!("id-{i}");
    serde_json::from_value(json!({"id": id, "name": format!("app-{i}"), "bundles": [
        {"id": format!("{id}-b"), "name": "B", "defaultInstanceAuth": {"credential": {"basic": {"username": "u", "password": "p"}}},
         "apiDefinitions": [{"id": format!("{id}-api"), "name": "api", "targetURL": "https://x"}]}
    ]}))
    .unwrap()
}

/// Every credential Secret the Director input makes: name → (application,
/// bundle id, data).
fn expected_secrets() -> BTreeMap<String, (String, String, BTreeMap<String, String>)> {
    let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut expected = BTreeMap::from([
        (
            format!("{SHOP}-{BUNDLE_OAUTH}"),
            (
                SHOP.to_string(),
                BUNDLE_OAUTH.to_string(),
                data(&[("clientId", "client-1"), ("clientSecret", "s3cr3t")]),
            ),
        ),
        (
            format!("params-{SHOP}-{BUNDLE_OAUTH}"),
            (
                SHOP.to_string(),
                BUNDLE_OAUTH.to_string(),
                data(&[
                    ("headers", r#"{"X-Tenant":["t1"]}"#),
                    ("queryParameters", r#"{"lang":["en","de"]}"#),
                ]),
            ),
        ),
        (
            format!("{SHOP}-{BUNDLE_BASIC}"),
            (
                SHOP.to_string(),
                BUNDLE_BASIC.to_string(),
                data(&[("password", "pw"), ("username", "admin")]),
            ),
        ),
    ]);
    for i in 0..PLAIN_APPS {
        let app = format!("mp-app-{i}");
        let bundle = format!("id-{i}-b");
        expected.insert(
            format!("{app}-{bundle}"),
            (app, bundle, data(&[("password", "p"), ("username", "u")])),
        );
    }
    expected
}

/// One request the agent made to the apiserver.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    /// Asked for `PartialObjectMetadata` (a metadata-only get or list).
    metadata_only: bool,
}

/// A plain-HTTP proxy in front of the test apiserver (it forwards with the
/// admin client), recording each request.
struct Recorder {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(upstream: kube::Client) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = seen.clone();
        let router = axum::Router::new().fallback(move |request: AxumRequest| {
            let upstream = upstream.clone();
            let recorded = recorded.clone();
            async move { forward(upstream, recorded, request).await }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Recorder {
            address,
            seen,
            task,
        }
    }

    /// A client for the agent that goes through this proxy.
    fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.address).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// The requests on Secrets in the integration namespace since the last
    /// [`Recorder::clear`], but those on the agent's own certificate Secrets.
    fn credential_secret_requests(&self) -> Vec<Seen> {
        let collection = format!("/api/v1/namespaces/{NS}/secrets");
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| {
                seen.path == collection
                    || seen
                        .path
                        .strip_prefix(&format!("{collection}/"))
                        .is_some_and(|name| expected_secrets().contains_key(name))
            })
            .cloned()
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    upstream: kube::Client,
    recorded: Arc<Mutex<Vec<Seen>>>,
    request: AxumRequest,
) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let accept = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    recorded.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        metadata_only: accept.contains("as=PartialObjectMetadata"),
    });
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut forwarded = http::Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    for (name, value) in &parts.headers {
        let hop = [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONNECTION,
            http::header::TRANSFER_ENCODING,
            http::header::ACCEPT_ENCODING,
        ];
        if !hop.contains(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    let forwarded = forwarded
        .body(kube::client::Body::from(body.to_vec()))
        .unwrap();
    match upstream.send(forwarded).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for hop in [
                http::header::CONNECTION,
                http::header::TRANSFER_ENCODING,
                http::header::CONTENT_LENGTH,
            ] {
                parts.headers.remove(hop);
            }
            AxumResponse::from_parts(parts, AxumBody::new(body))
        }
        Err(error) => (http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// Stops the agent before its proxy, so that it does not log the proxy's end.
async fn drop_quietly(mut world: World, recorder: Recorder) {
    world.stop_agent().await;
    world.sim.shutdown().await;
    drop(recorder);
}

/// The agent connected and synchronized once, talking through a recorder.
async fn world_behind_recorder() -> (World, Recorder) {
    let mut world = World::new().await;
    world.configure_with_fresh_token().await;
    let recorder = Recorder::start(world.env.client().await).await;
    world.start_agent_as(recorder.client()).await;
    world
        .wait_for_state(ConnectionState::Synchronized, LONG)
        .await;
    (world, recorder)
}

fn put_director_applications(world: &World) {
    world.sim.put_application(RUNTIME_ID, shop()).unwrap();
    for i in 0..PLAIN_APPS {
        world.sim.put_application(RUNTIME_ID, plain(i)).unwrap();
    }
}

fn secrets(world: &World) -> Api<Secret> {
    Api::namespaced(world.client.clone(), NS)
}

async fn application_uid(world: &World, name: &str) -> String {
    Api::<Application>::all(world.client.clone())
        .get(name)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap()
}

/// The credential Secrets' resourceVersions, by name.
async fn resource_versions(world: &World) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    for name in expected_secrets().keys() {
        let secret = secrets(world).get(name).await.unwrap();
        versions.insert(name.clone(), secret.resource_version().unwrap());
    }
    versions
}

/// Asks for a synchronization now and waits until one has finished (the
/// status was written for the generation that carried `resyncNow`).
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
    let generation = patched.metadata.generation.unwrap();
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

/// The Secret the Go agent's `makeSecret` makes, as it sends it.
fn made_as_go_makes_it(
    name: &str,
    app: &str,
    app_uid: &str,
    bundle: &str,
    data: &BTreeMap<String, String>,
) -> Secret {
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": NS,
            "labels": {"app": app, "bundleId": bundle},
            "ownerReferences": [{
                "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
                "kind": "Application", "name": app, "uid": app_uid
            }]
        },
        "stringData": data
    }))
    .unwrap()
}

/// What a swap shows of a Secret: the fields either agent writes, and the
/// version.
fn written_fields(secret: &Secret) -> serde_json::Value {
    json!({
        "labels": secret.metadata.labels,
        "annotations": secret.metadata.annotations,
        "ownerReferences": secret.metadata.owner_references,
        "type": secret.type_,
        "data": secret.data,
        "resourceVersion": secret.metadata.resource_version,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_secrets_are_the_go_agents_objects_and_an_idle_sync_reads_no_data() {
    let (world, recorder) = world_behind_recorder().await;
    put_director_applications(&world);
    resync(&world).await;

    // (a) Exactly what the Go agent writes.
    for (name, (app, bundle, data)) in expected_secrets() {
        let secret = secrets(&world).get(&name).await.unwrap();
        let labels: BTreeMap<String, String> = secret.labels().clone();
        assert_eq!(
            labels,
            BTreeMap::from([
                ("app".to_string(), app.clone()),
                ("bundleId".to_string(), bundle.clone())
            ]),
            "{name}: the labels"
        );
        assert!(
            secret.annotations().is_empty(),
            "{name}: no annotation expected, found {:?}",
            secret.annotations()
        );
        assert_eq!(
            secret.owner_references(),
            [OwnerReference {
                api_version: "applicationconnector.kyma-project.io/v1alpha1".into(),
                kind: "Application".into(),
                name: app.clone(),
                uid: application_uid(&world, &app).await,
                ..OwnerReference::default()
            }],
            "{name}: the owner references"
        );
        assert_eq!(secret.type_.as_deref(), Some("Opaque"), "{name}: the type");
        let found: BTreeMap<String, String> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect();
        assert_eq!(found, data, "{name}: the data");
    }

    // (b) An idle sync right after the writes: no write, and the Secrets'
    // metadata only (the digests of what was written are known).
    let versions = resource_versions(&world).await;
    let writes_before = world.agent().metrics.kubernetes.successful_writes();
    recorder.clear();
    resync(&world).await;
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes() - writes_before,
        0,
        "an idle sync wrote"
    );
    assert_eq!(resource_versions(&world).await, versions);
    let requests = recorder.credential_secret_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.query.contains("labelSelector=bundleId")),
        "the credential Secrets are listed: {requests:#?}"
    );
    assert!(
        requests.iter().all(|r| r.metadata_only),
        "an idle sync read Secret data: {requests:#?}"
    );

    // A Secret edited by hand: read alone (by name, not a list of every
    // Secret's data) and restored.
    let edited = format!("{SHOP}-{BUNDLE_BASIC}");
    secrets(&world)
        .patch(
            &edited,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "edited by hand"}})),
        )
        .await
        .unwrap();
    recorder.clear();
    resync(&world).await;
    let restored = secrets(&world).get(&edited).await.unwrap();
    assert_eq!(
        restored.data.unwrap()["password"].0,
        b"pw",
        "the edit is undone"
    );
    let requests = recorder.credential_secret_requests();
    let data_reads: Vec<&Seen> = requests
        .iter()
        .filter(|r| r.method == "GET" && !r.metadata_only)
        .collect();
    assert!(
        !data_reads.is_empty()
            && data_reads
                .iter()
                .all(|r| r.path.ends_with(&format!("/{edited}"))),
        "only the edited Secret's data is read: {requests:#?}"
    );
    // And the next idle sync is metadata-only again.
    recorder.clear();
    let writes_before = world.agent().metrics.kubernetes.successful_writes();
    resync(&world).await;
    assert_eq!(
        world.agent().metrics.kubernetes.successful_writes() - writes_before,
        0
    );
    let requests = recorder.credential_secret_requests();
    assert!(requests.iter().all(|r| r.metadata_only), "{requests:#?}");
    drop_quietly(world, recorder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_either_way_rewrites_no_secret() {
    let (mut world, recorder) = world_behind_recorder().await;
    put_director_applications(&world);
    resync(&world).await;
    world.stop_agent().await;

    // Swapped back to the Go agent: its Upsert is an unconditional Update of
    // `makeSecret`'s object, which changes nothing of what this agent wrote.
    let go = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    for (name, (app, bundle, data)) in expected_secrets() {
        let before = secrets(&world).get(&name).await.unwrap();
        let uid = application_uid(&world, &app).await;
        let after = secrets(&world)
            .replace(
                &name,
                &go,
                &made_as_go_makes_it(&name, &app, &uid, &bundle, &data),
            )
            .await
            .unwrap();
        assert_eq!(
            written_fields(&after),
            written_fields(&before),
            "{name}: the Go agent's update changed the Secret"
        );
    }

    // The Go agent's own Secrets (made anew, as it makes them), then this
    // agent again, starting with nothing in memory: it takes them over as
    // they are.
    for (name, (app, bundle, data)) in expected_secrets() {
        secrets(&world)
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        let uid = application_uid(&world, &app).await;
        secrets(&world)
            .create(&go, &made_as_go_makes_it(&name, &app, &uid, &bundle, &data))
            .await
            .unwrap();
    }
    let go_written: BTreeMap<String, serde_json::Value> = {
        let mut all = BTreeMap::new();
        for name in expected_secrets().keys() {
            let secret = secrets(&world).get(name).await.unwrap();
            all.insert(name.clone(), written_fields(&secret));
        }
        all
    };
    recorder.clear();
    world.start_agent_as(recorder.client()).await;
    let connection = resync(&world).await;
    let results = connection
        .status
        .unwrap()
        .synchronization_status
        .unwrap()
        .applications;
    assert!(
        results.iter().all(|r| r.operation != SyncOperation::Failed),
        "{results:?}"
    );
    for (name, fields) in &go_written {
        let secret = secrets(&world).get(name).await.unwrap();
        assert_eq!(
            &written_fields(&secret),
            fields,
            "{name}: a Secret the Go agent wrote was rewritten"
        );
    }
    let writes: BTreeSet<(String, String)> = recorder
        .credential_secret_requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.path))
        .collect();
    assert!(
        writes.is_empty(),
        "Secret writes after the swap: {writes:?}"
    );

    // Read once, their digests are known: the next sync reads no data.
    recorder.clear();
    resync(&world).await;
    let requests = recorder.credential_secret_requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.metadata_only),
        "{requests:#?}"
    );
    drop_quietly(world, recorder).await;
}
