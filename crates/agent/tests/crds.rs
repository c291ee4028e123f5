//! The custom resources against a real kube-apiserver: what our Rust types
//! write comes back unchanged, the schema rejects what it should, the status
//! subresource and optimistic concurrency behave as the agent relies on, and the
//! types read and write objects under the ORIGINAL Kyma CRDs (which existing
//! clusters have installed) as well as objects the original Go agent wrote.
//!
//! Tests 1–5 and 7 share the binary's global apiserver (unique object names,
//! since both kinds are cluster-scoped); the original-CRD test starts its own.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use compass_runtime_agent::crd::{
    self,
    application::{
        Application, ApplicationSpec, ApplicationStatus, Authentication, CompassMetadata,
        Credentials, CsrfInfo, Entry, EntryType, InstallationStatus, Service,
    },
    compass_connection::{
        ApplicationSyncResult, CertificateStatus, CompassConnection, CompassConnectionSpec,
        CompassConnectionStatus, ConnectionState, ConnectionStatus, ManagementInfo, SyncOperation,
        SynchronizationStatus,
    },
    labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE},
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, Client};
use serde_json::{json, Value};
use test_support::TestEnv;
use tokio::sync::OnceCell;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Our CRDs are installed once into the global environment, by whichever test
/// gets there first (the others wait).
static OUR_CRDS_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// The shared apiserver (started on first use, off the async worker threads).
async fn global_env() -> &'static TestEnv {
    compass_runtime_agent::agent::install_crypto_provider();
    tokio::task::spawn_blocking(TestEnv::global)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A client of the shared apiserver, with our CRDs installed.
async fn global_client() -> Client {
    let client = global_env().await.client().await;
    OUR_CRDS_INSTALLED
        .get_or_init(|| async {
            test_support::install_crds(&client, &crd::all())
                .await
                .expect("our CRDs (crd::all()) install into the test apiserver");
        })
        .await;
    client
}

fn dynamic_api<K>(client: &Client) -> Api<DynamicObject>
where
    K: kube::Resource<DynamicType = ()>,
{
    Api::all_with(client.clone(), &ApiResource::erase::<K>(&()))
}

/// A whole-second timestamp (`metav1.Time` has second precision).
fn ts(rfc3339: &str) -> Option<Time> {
    Some(Time(rfc3339.parse().expect("a valid RFC 3339 timestamp")))
}

#[track_caller]
fn assert_unchanged<T: PartialEq + Debug>(what: &str, expected: &T, found: &T) {
    if expected != found {
        panic!(
            "{what} is not what was written.\n--- expected ---\n{expected:#?}\n--- found ---\n{found:#?}"
        );
    }
}

/// The API error of `result`, asserting its HTTP code.
#[track_caller]
fn expect_api_error<T: Debug>(what: &str, result: kube::Result<T>, code: u16) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                status.code, code,
                "{what}: expected HTTP {code}, found HTTP {} ({}: {})",
                status.code, status.reason, status.message
            );
            status
        }
        Err(other) => panic!("{what}: expected an API error with HTTP {code}, found {other}"),
        Ok(value) => {
            panic!("{what}: expected the apiserver to refuse with HTTP {code}, found it accepted: {value:#?}")
        }
    }
}

#[track_caller]
fn assert_message_mentions(what: &str, status: &Status, needles: &[&str]) {
    for needle in needles {
        assert!(
            status.message.contains(needle),
            "{what}: expected the error message to mention {needle:?}, found: {}",
            status.message
        );
    }
}

async fn delete_quietly<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Debug,
{
    let _ = api.delete(name, &DeleteParams::default()).await;
}

// ---------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------

fn full_spec() -> CompassConnectionSpec {
    CompassConnectionSpec {
        management_info: ManagementInfo {
            director_url: "https://compass-gateway.example.com/director/graphql".into(),
            connector_url: "https://compass-gateway-mtls.example.com/connector/graphql".into(),
        },
        resync_now: true,
        refresh_credentials_now: true,
    }
}

fn plain_spec() -> CompassConnectionSpec {
    CompassConnectionSpec {
        management_info: ManagementInfo {
            director_url: "https://director.example.com/graphql".into(),
            connector_url: "https://connector.example.com/graphql".into(),
        },
        resync_now: false,
        refresh_credentials_now: false,
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time("2025-03-04T05:06:07Z".parse().unwrap()),
        observed_generation: Some(1),
    }
}

/// Every field of the status set, every sync operation used once.
fn full_status() -> CompassConnectionStatus {
    CompassConnectionStatus {
        connection_state: ConnectionState::ResourceApplicationFailed,
        connection_status: ConnectionStatus {
            established: ts("2025-01-01T10:00:00Z"),
            renewed: ts("2025-02-01T10:00:00Z"),
            last_sync: ts("2025-03-04T05:06:00Z"),
            last_success: ts("2025-03-04T05:05:00Z"),
            certificate_status: CertificateStatus {
                acquired: ts("2025-02-01T10:00:01Z"),
                not_before: ts("2025-02-01T09:59:00Z"),
                not_after: ts("2025-05-02T10:00:00Z"),
            },
            error: "connection check failed: 503 Service Unavailable".into(),
            configuration_source: "ConfigMap kyma-system/compass-agent-configuration".into(),
        },
        synchronization_status: Some(SynchronizationStatus {
            last_attempt: ts("2025-03-04T05:06:07Z"),
            last_successful_fetch: ts("2025-03-04T05:06:03Z"),
            last_successful_application: ts("2025-03-04T04:06:07Z"),
            error: "1 of 5 applications failed".into(),
            applications: vec![
                ApplicationSyncResult {
                    name: "app-created".into(),
                    application_id: "11111111-1111-1111-1111-111111111111".into(),
                    operation: SyncOperation::Created,
                    error: String::new(),
                },
                ApplicationSyncResult {
                    name: "app-updated".into(),
                    application_id: "22222222-2222-2222-2222-222222222222".into(),
                    operation: SyncOperation::Updated,
                    error: String::new(),
                },
                ApplicationSyncResult {
                    name: "app-deleted".into(),
                    application_id: String::new(),
                    operation: SyncOperation::Deleted,
                    error: String::new(),
                },
                ApplicationSyncResult {
                    name: "app-unchanged".into(),
                    application_id: "44444444-4444-4444-4444-444444444444".into(),
                    operation: SyncOperation::Unchanged,
                    error: String::new(),
                },
                ApplicationSyncResult {
                    name: "app-failed".into(),
                    application_id: "55555555-5555-5555-5555-555555555555".into(),
                    operation: SyncOperation::Failed,
                    error: "creating Secret app-failed-oauth: forbidden".into(),
                },
            ],
            applications_not_listed: 7,
        }),
        conditions: vec![
            condition("Connected", "True", "Connected", "connected to Compass"),
            condition(
                "CertificateValid",
                "True",
                "CertificateValid",
                "valid until 2025-05-02T10:00:00Z",
            ),
            condition(
                "Synchronized",
                "False",
                "ResourceApplicationFailed",
                "1 of 5 applications failed",
            ),
        ],
        observed_generation: Some(1),
    }
}

/// Every timestamp unset (`null`), as before the first connection.
fn null_timestamps_status() -> CompassConnectionStatus {
    CompassConnectionStatus {
        connection_state: ConnectionState::ConnectionFailed,
        connection_status: ConnectionStatus {
            established: None,
            renewed: None,
            last_sync: None,
            last_success: None,
            certificate_status: CertificateStatus {
                acquired: None,
                not_before: None,
                not_after: None,
            },
            error: "no connector token".into(),
            configuration_source: String::new(),
        },
        synchronization_status: Some(SynchronizationStatus {
            last_attempt: None,
            last_successful_fetch: None,
            last_successful_application: None,
            error: String::new(),
            applications: vec![],
            applications_not_listed: 0,
        }),
        conditions: vec![],
        observed_generation: Some(1),
    }
}

fn full_application_spec() -> ApplicationSpec {
    ApplicationSpec {
        description: "Commerce backend, synchronized from Compass".into(),
        skip_installation: Some(false),
        skip_verify: true,
        encode_url: Some(false),
        labels: Some(BTreeMap::from([
            ("connected-app".into(), "commerce".into()),
            ("tier".into(), "backend".into()),
        ])),
        services: vec![
            Service {
                id: "bundle-1".into(),
                name: "orders".into(),
                identifier: Some("orders-identifier".into()),
                labels: Some(BTreeMap::from([("connected-app".into(), "commerce".into())])),
                display_name: "Orders".into(),
                description: "Orders API and events".into(),
                long_description: Some("The orders bundle, with OAuth and CSRF".into()),
                provider_display_name: "ACME".into(),
                auth_create_parameter_schema: Some(r#"{"type":"object"}"#.into()),
                entries: vec![
                    Entry {
                        entry_type: EntryType::Api,
                        id: "api-1".into(),
                        name: "orders-api".into(),
                        target_url: "https://commerce.example.com/orders".into(),
                        central_gateway_url:
                            "http://central-application-gateway.kyma-system:8082/commerce/orders/orders-api"
                                .into(),
                        gateway_url: Some("http://commerce-orders.kyma-integration".into()),
                        access_label: Some("commerce-orders".into()),
                        api_type: Some("OPEN_API".into()),
                        specification_url: Some("https://commerce.example.com/orders/spec".into()),
                        credentials: Some(Credentials {
                            credential_type: "OAuth".into(),
                            secret_name: "commerce-orders-oauth".into(),
                            authentication_url: "https://auth.example.com/oauth/token".into(),
                            csrf_info: Some(CsrfInfo {
                                token_endpoint_url: "https://commerce.example.com/csrf".into(),
                            }),
                        }),
                        request_parameters_secret_name: "commerce-orders-params".into(),
                    },
                    Entry {
                        entry_type: EntryType::Events,
                        id: "events-1".into(),
                        name: "orders-events".into(),
                        target_url: String::new(),
                        central_gateway_url: String::new(),
                        gateway_url: None,
                        access_label: None,
                        api_type: None,
                        specification_url: None,
                        credentials: None,
                        request_parameters_secret_name: String::new(),
                    },
                ],
                tags: Some(vec!["orders".into(), "v2".into()]),
            },
            Service {
                id: "bundle-2".into(),
                name: "stock".into(),
                identifier: None,
                labels: None,
                display_name: "Stock".into(),
                description: "Stock API, basic auth".into(),
                long_description: None,
                provider_display_name: String::new(),
                auth_create_parameter_schema: None,
                entries: vec![Entry {
                    entry_type: EntryType::Api,
                    id: "api-2".into(),
                    name: "stock-api".into(),
                    target_url: "https://commerce.example.com/stock".into(),
                    central_gateway_url: String::new(),
                    gateway_url: None,
                    access_label: None,
                    api_type: None,
                    specification_url: None,
                    credentials: Some(Credentials {
                        credential_type: "Basic".into(),
                        secret_name: "commerce-stock-basic".into(),
                        authentication_url: String::new(),
                        csrf_info: None,
                    }),
                    request_parameters_secret_name: String::new(),
                }],
                tags: None,
            },
        ],
        compass_metadata: Some(CompassMetadata {
            application_id: "99999999-9999-9999-9999-999999999999".into(),
            authentication: Authentication {
                client_ids: vec!["client-a".into(), "client-b".into()],
            },
        }),
        access_label: Some("commerce".into()),
        tenant: Some("tenant-a".into()),
        group: Some("group-a".into()),
        tags: Some(vec!["commerce".into()]),
        display_name: Some("Commerce".into()),
        provider_display_name: Some("ACME".into()),
        long_description: Some("The commerce backend of ACME".into()),
    }
}

fn managed_application(name: &str, spec: ApplicationSpec) -> Application {
    let mut app = Application::new(name, spec);
    app.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        ("team".to_string(), "integration".to_string()),
    ]));
    app
}

// ---------------------------------------------------------------------------
// 1. Version
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_version_is_printed() {
    let env = global_env().await;
    eprintln!("kube-apiserver under test: {}", env.server_version());
    assert!(
        env.server_version().starts_with("v1."),
        "expected a Kubernetes v1.x apiserver version, found {:?}",
        env.server_version()
    );
    let reported = env
        .client()
        .await
        .apiserver_version()
        .await
        .expect("GET /version");
    assert_eq!(
        reported.git_version,
        env.server_version(),
        "expected /version to report the version the harness announced (left), found the right"
    );
}

// ---------------------------------------------------------------------------
// 2. CompassConnection round trips
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compass_connection_with_every_field_set_round_trips_unchanged() {
    let client = global_client().await;
    let api: Api<CompassConnection> = Api::all(client.clone());
    let name = test_support::unique_name("cc-full");

    let created = api
        .create(
            &PostParams::default(),
            &CompassConnection::new(&name, full_spec()),
        )
        .await
        .expect("create a CompassConnection with every spec field set");
    assert_unchanged("the spec returned by create", &full_spec(), &created.spec);

    let mut with_status = created.clone();
    with_status.status = Some(full_status());
    let written = api
        .replace_status(&name, &PostParams::default(), &with_status)
        .await
        .expect("replace the status (status subresource) with every field set");
    assert_unchanged(
        "the status returned by replace_status",
        &Some(full_status()),
        &written.status,
    );

    let read = api
        .get(&name)
        .await
        .expect("read the CompassConnection back");
    assert_unchanged("the spec read back", &full_spec(), &read.spec);
    assert_unchanged("the status read back", &Some(full_status()), &read.status);

    // The agent's own write path: a merge patch of the whole status through the
    // subresource. Clearing every timestamp must take effect.
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": null_timestamps_status() })),
    )
    .await
    .expect("merge-patch the status to one with every timestamp unset");
    let read = api
        .get(&name)
        .await
        .expect("read the CompassConnection back");
    assert_unchanged(
        "the status read back after clearing the timestamps with a merge patch",
        &Some(null_timestamps_status()),
        &read.status,
    );
    assert_unchanged("the spec read back", &full_spec(), &read.spec);

    delete_quietly(&api, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compass_connection_with_null_timestamps_round_trips_unchanged() {
    let client = global_client().await;
    let api: Api<CompassConnection> = Api::all(client.clone());
    let name = test_support::unique_name("cc-null");

    let mut connection = api
        .create(
            &PostParams::default(),
            &CompassConnection::new(&name, plain_spec()),
        )
        .await
        .expect("create a CompassConnection");
    connection.status = Some(null_timestamps_status());
    api.replace_status(&name, &PostParams::default(), &connection)
        .await
        .expect("replace the status with every timestamp null");

    let read = api
        .get(&name)
        .await
        .expect("read the CompassConnection back");
    assert_unchanged("the spec read back", &plain_spec(), &read.spec);
    assert_unchanged(
        "the status read back",
        &Some(null_timestamps_status()),
        &read.status,
    );

    // What `kubectl get -o json` shows: the unset timestamps are kept as
    // `null`, as the original component writes them (the schema says nullable).
    let raw = dynamic_api::<CompassConnection>(&client)
        .get(&name)
        .await
        .expect("read the CompassConnection as raw JSON");
    let connection_status = &raw.data["status"]["connectionStatus"];
    for field in ["established", "renewed", "lastSync", "lastSuccess"] {
        assert_eq!(
            connection_status.get(field),
            Some(&Value::Null),
            "expected status.connectionStatus.{field} to be stored as null, found {:?} in {connection_status}",
            connection_status.get(field)
        );
    }
    let certificate_status = &connection_status["certificateStatus"];
    for field in ["acquired", "notBefore", "notAfter"] {
        assert_eq!(
            certificate_status.get(field),
            Some(&Value::Null),
            "expected status.connectionStatus.certificateStatus.{field} to be stored as null, found {:?} in {certificate_status}",
            certificate_status.get(field)
        );
    }

    // The state before the first synchronization: `synchronizationStatus: null`.
    let mut before_first_sync = null_timestamps_status();
    before_first_sync.synchronization_status = None;
    let mut latest = api.get(&name).await.expect("read the CompassConnection");
    latest.status = Some(before_first_sync.clone());
    api.replace_status(&name, &PostParams::default(), &latest)
        .await
        .expect("replace the status with synchronizationStatus null");
    let read = api
        .get(&name)
        .await
        .expect("read the CompassConnection back");
    assert_unchanged(
        "the status with synchronizationStatus null, read back",
        &Some(before_first_sync),
        &read.status,
    );

    delete_quietly(&api, &name).await;
}

// ---------------------------------------------------------------------------
// 3. Schema validation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_rejects_bad_objects_with_errors_that_name_the_field() {
    let client = global_client().await;
    let api: Api<CompassConnection> = Api::all(client.clone());
    let raw = dynamic_api::<CompassConnection>(&client);
    let name = test_support::unique_name("cc-invalid");

    let mut connection = api
        .create(
            &PostParams::default(),
            &CompassConnection::new(&name, plain_spec()),
        )
        .await
        .expect("create a valid CompassConnection");
    connection.status = Some(full_status());
    api.replace_status(&name, &PostParams::default(), &connection)
        .await
        .expect("write a valid status");

    // Every state our type can write is accepted.
    for state in ConnectionState::ALL {
        let written = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": { "connectionState": state } })),
            )
            .await
            .unwrap_or_else(|e| {
                panic!("expected the schema to accept connectionState {state}, found: {e}")
            });
        let found = written.status.map(|s| s.connection_state);
        assert_eq!(
            found,
            Some(state),
            "expected connectionState {state} to be stored, found {found:?}"
        );
    }

    // connectionStatus must be an object.
    let error = expect_api_error(
        "status.connectionStatus as a string",
        raw.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "connectionStatus": "fine, thanks" } })),
        )
        .await,
        422,
    );
    assert_eq!(
        error.reason, "Invalid",
        "expected reason Invalid, found {:?}",
        error.reason
    );
    assert_message_mentions(
        "status.connectionStatus as a string",
        &error,
        &["status.connectionStatus", "object"],
    );

    // connectionState is an enum of the original's values.
    let error = expect_api_error(
        "an unknown connectionState",
        raw.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "connectionState": "HalfConnected" } })),
        )
        .await,
        422,
    );
    assert_message_mentions(
        "an unknown connectionState",
        &error,
        &["status.connectionState", "HalfConnected", "Synchronized"],
    );

    // An unknown sync operation.
    let error = expect_api_error(
        "an unknown synchronization operation",
        raw.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "synchronizationStatus": {
                "applications": [{ "name": "x", "operation": "Exploded" }]
            } } })),
        )
        .await,
        422,
    );
    assert_message_mentions(
        "an unknown synchronization operation",
        &error,
        &[
            "status.synchronizationStatus.applications[0].operation",
            "Exploded",
        ],
    );

    // A timestamp that is not a date-time.
    let error = expect_api_error(
        "a timestamp that is not a date-time",
        raw.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "status": { "connectionStatus": { "established": "yesterday" } } }),
            ),
        )
        .await,
        422,
    );
    assert_message_mentions(
        "a timestamp that is not a date-time",
        &error,
        &["status.connectionStatus.established"],
    );

    // A spec without managementInfo.
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "compass.kyma-project.io/v1alpha1",
        "kind": "CompassConnection",
        "metadata": { "name": test_support::unique_name("cc-no-mgmt") },
        "spec": { "resyncNow": true },
    }))
    .unwrap();
    let error = expect_api_error(
        "a spec without managementInfo",
        raw.create(&PostParams::default(), &bad).await,
        422,
    );
    assert_message_mentions(
        "a spec without managementInfo",
        &error,
        &["spec.managementInfo", "Required value"],
    );

    // Nothing of the rejected writes reached the object.
    let read = api.get(&name).await.expect("read the CompassConnection");
    let mut expected = full_status();
    expected.connection_state = *ConnectionState::ALL.last().unwrap();
    assert_unchanged(
        "the status after the rejected writes",
        &Some(expected),
        &read.status,
    );

    // An Application entry of an unknown type.
    let apps = dynamic_api::<Application>(&client);
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "Application",
        "metadata": { "name": test_support::unique_name("app-invalid") },
        "spec": { "services": [{
            "id": "s", "name": "s", "displayName": "s", "description": "s",
            "providerDisplayName": "", "entries": [{ "type": "GraphQL" }]
        }] },
    }))
    .unwrap();
    let error = expect_api_error(
        "an Application entry of type GraphQL",
        apps.create(&PostParams::default(), &bad).await,
        422,
    );
    assert_message_mentions(
        "an Application entry of type GraphQL",
        &error,
        &["spec.services[0].entries[0].type", "GraphQL"],
    );

    delete_quietly(&api, &name).await;
}

// ---------------------------------------------------------------------------
// 4. Status subresource
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_spec_are_written_separately() {
    let client = global_client().await;
    let api: Api<CompassConnection> = Api::all(client.clone());
    let name = test_support::unique_name("cc-subresource");

    // A create drops the status (the agent's create_initial relies on it).
    let mut new = CompassConnection::new(&name, plain_spec());
    new.status = Some(full_status());
    let created = api
        .create(&PostParams::default(), &new)
        .await
        .expect("create a CompassConnection");
    assert_eq!(
        created.status, None,
        "expected the status of a create to be dropped (status subresource), found it stored"
    );
    assert_eq!(created.metadata.generation, Some(1));

    // A status write carrying a different spec changes only the status.
    let mut status_write = created.clone();
    status_write.spec = full_spec();
    status_write.status = Some(full_status());
    let after_status = api
        .replace_status(&name, &PostParams::default(), &status_write)
        .await
        .expect("replace_status");
    let read = api.get(&name).await.expect("read back");
    assert_unchanged(
        "the spec after a status write that carried another spec",
        &plain_spec(),
        &read.spec,
    );
    assert_unchanged(
        "the status after replace_status",
        &Some(full_status()),
        &read.status,
    );
    assert_eq!(
        read.metadata.generation,
        Some(1),
        "expected a status write to leave metadata.generation at 1, found {:?}",
        read.metadata.generation
    );

    let patched = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": { "resyncNow": true },
                "status": { "connectionState": "Synchronized" },
            })),
        )
        .await
        .expect("patch_status");
    assert_unchanged(
        "the spec after a status patch that carried spec.resyncNow",
        &plain_spec(),
        &patched.spec,
    );
    assert_eq!(
        patched.status.as_ref().map(|s| s.connection_state),
        Some(ConnectionState::Synchronized),
        "expected the status patch to take effect"
    );

    // A spec write carrying another status changes only the spec, and bumps
    // the generation the agent reports as observedGeneration.
    let mut spec_write = patched.clone();
    spec_write.spec = full_spec();
    spec_write.status = Some(null_timestamps_status());
    let after_spec = api
        .replace(&name, &PostParams::default(), &spec_write)
        .await
        .expect("replace (spec)");
    let mut expected_status = full_status();
    expected_status.connection_state = ConnectionState::Synchronized;
    let read = api.get(&name).await.expect("read back");
    assert_unchanged("the spec after replace", &full_spec(), &read.spec);
    assert_unchanged(
        "the status after a spec write that carried another status",
        &Some(expected_status.clone()),
        &read.status,
    );
    assert_eq!(
        read.metadata.generation,
        Some(2),
        "expected a spec change to bump metadata.generation to 2, found {:?}",
        read.metadata.generation
    );

    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "spec": { "resyncNow": false },
            "status": { "connectionState": "ConnectionFailed" },
        })),
    )
    .await
    .expect("patch (spec)");
    let read = api.get(&name).await.expect("read back");
    assert!(
        !read.spec.resync_now,
        "expected the spec patch to clear resyncNow, found it set"
    );
    assert_unchanged(
        "the status after a spec patch that carried status.connectionState",
        &Some(expected_status),
        &read.status,
    );
    assert!(
        after_status.metadata.resource_version != after_spec.metadata.resource_version,
        "expected every write to produce a new resourceVersion"
    );

    delete_quietly(&api, &name).await;
}

// ---------------------------------------------------------------------------
// 5. Optimistic concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_writer_with_a_stale_resource_version_gets_a_conflict() {
    let client = global_client().await;
    let api: Api<CompassConnection> = Api::all(client.clone());
    let name = test_support::unique_name("cc-conflict");
    api.create(
        &PostParams::default(),
        &CompassConnection::new(&name, plain_spec()),
    )
    .await
    .expect("create a CompassConnection");

    let mut first = api.get(&name).await.expect("first reader");
    let mut second = api.get(&name).await.expect("second reader");
    assert_eq!(
        first.metadata.resource_version, second.metadata.resource_version,
        "expected both readers to see the same resourceVersion"
    );

    first.spec.resync_now = true;
    api.replace(&name, &PostParams::default(), &first)
        .await
        .expect("the first writer's replace succeeds");

    second.spec.refresh_credentials_now = true;
    let error = expect_api_error(
        "the second writer's replace with a stale resourceVersion",
        api.replace(&name, &PostParams::default(), &second).await,
        409,
    );
    assert_eq!(
        error.reason, "Conflict",
        "expected reason Conflict, found {:?}",
        error.reason
    );
    assert_message_mentions(
        "the second writer's replace",
        &error,
        &["the object has been modified"],
    );

    // The same holds for the status subresource.
    second.status = Some(full_status());
    expect_api_error(
        "a replace_status with a stale resourceVersion",
        api.replace_status(&name, &PostParams::default(), &second)
            .await,
        409,
    );

    let read = api.get(&name).await.expect("read back");
    assert!(
        read.spec.resync_now && !read.spec.refresh_credentials_now,
        "expected the first writer's change (resyncNow) and not the second's (refreshCredentialsNow), found {:?}",
        read.spec
    );
    assert_eq!(
        read.status, None,
        "expected the rejected status write to leave no status, found {:?}",
        read.status
    );

    delete_quietly(&api, &name).await;
}

// ---------------------------------------------------------------------------
// 7. Application round trip under our CRD
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_every_field_round_trips_unchanged() {
    let client = global_client().await;
    let api: Api<Application> = Api::all(client.clone());
    let name = test_support::unique_name("app-full");

    let mut app = managed_application(&name, full_application_spec());
    // No status subresource: Kyma's application operator writes the status
    // with the object, and it must stick.
    app.status = Some(ApplicationStatus {
        installation_status: Some(InstallationStatus {
            status: "deployed".into(),
            description: Some("Install complete".into()),
        }),
    });
    api.create(&PostParams::default(), &app)
        .await
        .expect("create an Application with every field set");

    let read = api.get(&name).await.expect("read the Application back");
    assert_unchanged("the Application spec", &app.spec, &read.spec);
    assert_unchanged(
        "the Application's metadata.labels",
        &app.metadata.labels,
        &read.metadata.labels,
    );
    assert_unchanged(
        "the Application status (part of the object)",
        &app.status,
        &read.status,
    );
    assert!(read.is_managed_by_compass());

    // A minimal Application (what an unmanaged one may look like) too.
    let minimal_name = test_support::unique_name("app-minimal");
    let minimal = Application::new(&minimal_name, ApplicationSpec::default());
    api.create(&PostParams::default(), &minimal)
        .await
        .expect("create a minimal Application");
    let read = api.get(&minimal_name).await.expect("read it back");
    assert_unchanged("the minimal Application spec", &minimal.spec, &read.spec);
    assert!(!read.is_managed_by_compass());

    delete_quietly(&api, &name).await;
    delete_quietly(&api, &minimal_name).await;
}

// ---------------------------------------------------------------------------
// 6. The original Kyma CRDs
// ---------------------------------------------------------------------------

const ORIGINAL_CRDS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/kyma-crds");

/// The original CRDs, or why they are not available.
fn original_crds() -> Result<Vec<CustomResourceDefinition>, String> {
    let dir = PathBuf::from(ORIGINAL_CRDS_DIR);
    if !dir.is_dir() {
        return Err(format!("{} is absent", dir.display()));
    }
    let files = [
        "compassconnections.compass.kyma-project.io.yaml",
        "applications.applicationconnector.kyma-project.io.yaml",
    ];
    let mut crds = Vec::new();
    for file in files {
        let path = dir.join(file);
        crds.extend(read_crds(&path)?);
    }
    Ok(crds)
}

fn read_crds(path: &Path) -> Result<Vec<CustomResourceDefinition>, String> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut crds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
        if value.is_null() {
            continue;
        }
        let crd: CustomResourceDefinition = serde_yaml::from_value(value)
            .map_err(|e| format!("{} is not a CRD: {e}", path.display()))?;
        crds.push(crd);
    }
    Ok(crds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    shared_reference_absent,
    ignore = "../shared/kyma-crds (the original Kyma CRDs) is absent; with CI set this test runs and fails"
)]
async fn our_types_read_and_write_objects_under_the_original_kyma_crds() {
    let crds = original_crds().unwrap_or_else(|reason| {
        panic!(
            "the original Kyma CRDs, which this test checks against, are not available: {reason}"
        )
    });
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "compassconnections.compass.kyma-project.io",
            "applications.applicationconnector.kyma-project.io"
        ],
        "expected the two original CRDs, found {names:?}"
    );
    for crd in &crds {
        for version in &crd.spec.versions {
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_none(),
                "expected the original CRD {:?} to have no status subresource, found one",
                crd.metadata.name
            );
        }
    }

    compass_runtime_agent::agent::install_crypto_provider();
    let env = tokio::task::spawn_blocking(TestEnv::start_new)
        .await
        .expect("start thread")
        .expect("a second test apiserver starts");
    let client = env.client().await;
    test_support::install_crds(&client, &crds)
        .await
        .expect("the original CRDs install");

    original_compass_connection(&client).await;
    original_application(&client).await;
    go_agent_application(&client).await;
    go_agent_compass_connection(&client).await;
}

/// The status our type writes, as the original CRD stores it: the fields
/// beyond the original (conditions, observedGeneration, per-application
/// results) are pruned.
fn as_pruned_by_the_original(mut status: CompassConnectionStatus) -> CompassConnectionStatus {
    status.conditions = vec![];
    status.observed_generation = None;
    status.connection_status.configuration_source = String::new();
    if let Some(sync) = status.synchronization_status.as_mut() {
        sync.applications = vec![];
        sync.applications_not_listed = 0;
    }
    status
}

async fn original_compass_connection(client: &Client) {
    let api: Api<CompassConnection> = Api::all(client.clone());
    let name = test_support::unique_name("cc-original");

    // Without a subresource the status is part of the object: a create keeps it.
    let mut connection = CompassConnection::new(&name, full_spec());
    connection.status = Some(full_status());
    api.create(&PostParams::default(), &connection)
        .await
        .expect("create a CompassConnection with status under the original CRD");
    let read = api
        .get(&name)
        .await
        .expect("read it back under the original CRD");
    assert_unchanged("the spec under the original CRD", &full_spec(), &read.spec);
    assert_unchanged(
        "the status under the original CRD (its unknown fields pruned)",
        &Some(as_pruned_by_the_original(full_status())),
        &read.status,
    );

    // The status subresource does not exist: the agent's write_status gets a
    // 404 there and falls back to a merge patch of the object.
    expect_api_error(
        "patch_status under the original CRD (no status subresource)",
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": null_timestamps_status() })),
        )
        .await,
        404,
    );
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": null_timestamps_status() })),
    )
    .await
    .expect("merge-patch the status with the object under the original CRD");
    let read = api.get(&name).await.expect("read it back");
    assert_unchanged(
        "the status written by a merge patch under the original CRD",
        &Some(as_pruned_by_the_original(null_timestamps_status())),
        &read.status,
    );
    assert_unchanged("the spec after the status patch", &full_spec(), &read.spec);
}

async fn original_application(client: &Client) {
    let api: Api<Application> = Api::all(client.clone());
    let name = test_support::unique_name("app-original");
    let app = managed_application(&name, full_application_spec());
    api.create(&PostParams::default(), &app)
        .await
        .expect("create an Application with our type under the original CRD");
    let read = api.get(&name).await.expect("read it back");
    assert_unchanged(
        "the Application spec under the original CRD",
        &app.spec,
        &read.spec,
    );
    assert_unchanged(
        "the Application's labels under the original CRD",
        &app.metadata.labels,
        &read.metadata.labels,
    );

    // encodeUrl left unset is defaulted to true by the original CRD (the
    // agent does not count it as a difference).
    let defaulted_name = test_support::unique_name("app-original-default");
    let mut spec = full_application_spec();
    spec.encode_url = None;
    let defaulted = managed_application(&defaulted_name, spec);
    api.create(&PostParams::default(), &defaulted)
        .await
        .expect("create an Application without encodeUrl under the original CRD");
    let read = api.get(&defaulted_name).await.expect("read it back");
    let mut expected = defaulted.spec.clone();
    expected.encode_url = Some(true);
    assert_unchanged(
        "the Application spec under the original CRD (encodeUrl defaulted to true)",
        &expected,
        &read.spec,
    );
}

/// An Application as the original Go agent writes it: every entry carries a
/// `credentials` object, empty when there are none.
async fn go_agent_application(client: &Client) {
    let raw = dynamic_api::<Application>(client);
    let api: Api<Application> = Api::all(client.clone());
    let name = test_support::unique_name("app-go");
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE },
        },
        "spec": {
            "description": "Commerce",
            "skipVerify": false,
            "encodeUrl": true,
            "labels": null,
            "displayName": "",
            "providerDisplayName": "",
            "longDescription": "",
            "services": [{
                "id": "bundle-1",
                "name": "orders",
                "identifier": "",
                "displayName": "Orders",
                "description": "Orders",
                "providerDisplayName": "",
                "entries": [
                    {
                        "type": "API",
                        "id": "api-1",
                        "name": "orders-api",
                        "targetUrl": "https://commerce.example.com/orders",
                        "centralGatewayUrl": "http://central-application-gateway.kyma-system:8080/commerce/orders/orders-api",
                        "gatewayUrl": "",
                        "credentials": { "type": "", "secretName": "" }
                    },
                    {
                        "type": "API",
                        "id": "api-2",
                        "name": "stock-api",
                        "targetUrl": "https://commerce.example.com/stock",
                        "centralGatewayUrl": "",
                        "gatewayUrl": "",
                        "credentials": {
                            "type": "OAuth",
                            "secretName": "commerce-stock-oauth",
                            "authenticationUrl": "https://auth.example.com/token",
                            "csrfInfo": { "tokenEndpointURL": "https://commerce.example.com/csrf" }
                        },
                        "requestParametersSecretName": "commerce-stock-params"
                    },
                    {
                        "type": "Events",
                        "id": "events-1",
                        "name": "orders-events",
                        "targetUrl": "",
                        "centralGatewayUrl": "",
                        "gatewayUrl": "",
                        "credentials": { "type": "", "secretName": "" }
                    }
                ]
            }],
            "compassMetadata": {
                "applicationId": "99999999-9999-9999-9999-999999999999",
                "authentication": { "clientIds": ["client-a"] }
            }
        }
    }))
    .expect("a DynamicObject");
    raw.create(&PostParams::default(), &object)
        .await
        .expect("create the Go agent's Application as raw JSON under the original CRD");

    let read = api
        .get(&name)
        .await
        .expect("read the Go agent's Application with our type");
    let entries: Vec<&Entry> = read
        .spec
        .services
        .iter()
        .flat_map(|s| s.entries.iter())
        .collect();
    assert_eq!(
        entries.len(),
        3,
        "expected 3 entries, found {}",
        entries.len()
    );
    let credentials: Vec<(&str, Option<&Credentials>)> = entries
        .iter()
        .map(|e| (e.id.as_str(), e.credentials.as_ref()))
        .collect();
    let oauth = Credentials {
        credential_type: "OAuth".into(),
        secret_name: "commerce-stock-oauth".into(),
        authentication_url: "https://auth.example.com/token".into(),
        csrf_info: Some(CsrfInfo {
            token_endpoint_url: "https://commerce.example.com/csrf".into(),
        }),
    };
    assert_unchanged(
        "the credentials of the Go agent's entries ({type:\"\", secretName:\"\"} read as none)",
        &vec![("api-1", None), ("api-2", Some(&oauth)), ("events-1", None)],
        &credentials,
    );
    assert_eq!(
        entries[1].request_parameters_secret_name, "commerce-stock-params",
        "expected requestParametersSecretName to be read"
    );
    assert_eq!(
        entries.iter().map(|e| e.entry_type).collect::<Vec<_>>(),
        [EntryType::Api, EntryType::Api, EntryType::Events],
        "expected the entry types API, API, Events"
    );
    assert_unchanged(
        "the Go agent's compassMetadata",
        &Some(CompassMetadata {
            application_id: "99999999-9999-9999-9999-999999999999".into(),
            authentication: Authentication {
                client_ids: vec!["client-a".into()],
            },
        }),
        &read.spec.compass_metadata,
    );
    assert!(read.is_managed_by_compass());

    // Taking it over: our type writes it back as the Go agent writes it (the
    // empty credentials object included, so that neither agent rewrites what
    // the other wrote) and the original CRD accepts it.
    let mut taken_over = read.clone();
    taken_over.spec.description = "Commerce (taken over)".into();
    api.replace(&name, &PostParams::default(), &taken_over)
        .await
        .expect("replace the Go agent's Application with our type under the original CRD");
    let read_again = api.get(&name).await.expect("read it back");
    assert_unchanged(
        "the taken-over Application spec",
        &taken_over.spec,
        &read_again.spec,
    );
    let stored = raw.get(&name).await.expect("read it as raw JSON");
    let first_entry = &stored.data["spec"]["services"][0]["entries"][0];
    assert_eq!(
        first_entry.get("credentials"),
        Some(&json!({"type": "", "secretName": ""})),
        "expected our write to keep the Go agent's empty credentials, found {first_entry}"
    );
}

/// A CompassConnection as the original Go agent writes it: `renewed` null,
/// `error` omitted, `synchronizationStatus` null.
async fn go_agent_compass_connection(client: &Client) {
    let raw = dynamic_api::<CompassConnection>(client);
    let api: Api<CompassConnection> = Api::all(client.clone());
    let name = test_support::unique_name("cc-go");
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "compass.kyma-project.io/v1alpha1",
        "kind": "CompassConnection",
        "metadata": { "name": name },
        "spec": {
            "managementInfo": {
                "directorUrl": "https://director.example.com/graphql",
                "connectorUrl": "https://connector.example.com/graphql"
            }
        },
        "status": {
            "connectionState": "Connected",
            "connectionStatus": {
                "established": "2025-01-01T10:00:00Z",
                "renewed": null,
                "lastSync": "2025-01-01T10:00:00Z",
                "lastSuccess": "2025-01-01T10:00:00Z",
                "certificateStatus": {
                    "acquired": "2025-01-01T10:00:00Z",
                    "notBefore": "2025-01-01T09:59:00Z",
                    "notAfter": "2025-04-01T10:00:00Z"
                }
            },
            "synchronizationStatus": null
        }
    }))
    .expect("a DynamicObject");
    raw.create(&PostParams::default(), &object)
        .await
        .expect("create the Go agent's CompassConnection as raw JSON under the original CRD");
    let read = api
        .get(&name)
        .await
        .expect("read the Go agent's CompassConnection with our type");
    let expected = CompassConnectionStatus {
        connection_state: ConnectionState::Connected,
        connection_status: ConnectionStatus {
            established: ts("2025-01-01T10:00:00Z"),
            renewed: None,
            last_sync: ts("2025-01-01T10:00:00Z"),
            last_success: ts("2025-01-01T10:00:00Z"),
            certificate_status: CertificateStatus {
                acquired: ts("2025-01-01T10:00:00Z"),
                not_before: ts("2025-01-01T09:59:00Z"),
                not_after: ts("2025-04-01T10:00:00Z"),
            },
            error: String::new(),
            configuration_source: String::new(),
        },
        synchronization_status: None,
        conditions: vec![],
        observed_generation: None,
    };
    assert_unchanged(
        "the Go agent's CompassConnection status",
        &Some(expected),
        &read.status,
    );
    assert_unchanged(
        "the Go agent's CompassConnection spec",
        &plain_spec(),
        &read.spec,
    );
}
